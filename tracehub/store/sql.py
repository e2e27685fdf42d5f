"""The write path's SQL dialect (`Sql`): the few differences between SQLite's and psycopg's SQL that
the writer, the search index and retention meet (placeholders, lists of values within SQLite's
parameter limit, joins on key pairs, trace numbers, COPY on PostgreSQL). It never commits.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Iterable, Iterator

from tracehub.store.jsoncolumns import JSON_OID

# SQLite's limit on the parameters of a statement: 999 before 3.32, 32,766 since (or as built;
# Debian's takes 250,000). `Sql.use_variable_limit` reads the connection's; statements bind a
# few other parameters beside a list of values.
SQLITE_MIN_VARIABLES = 999
CHUNK_SPARE = 8

# PostgreSQL's sequence trace_seq counts in steps of this (migration 0011): each value starts a block.
TRACE_SEQ_BLOCK = 1000
# A block's numbers left unused after this long are given up: its partition may have stopped being
# the active one (tracehub/store/partitions.py), and must get no new traces once dropping is due.
SEQ_BLOCK_MAX_AGE_S = 60.0


class Sql:
    """The few differences between SQLite's and psycopg's SQL on the write path."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        self.p = "%s" if self.pg else "?"
        # JSON goes in as UTF-8 bytes (`dumps`) and is stored as text / json (`JsonBytes`).
        self.pj = "%s" if self.pg else "CAST(? AS TEXT)"
        # SQLite keeps the left side of a CROSS JOIN as the outer loop; PostgreSQL plans freely.
        self.join = "JOIN" if self.pg else "CROSS JOIN"
        self._copy_types: dict[str, dict[str, int]] = {}  # table: column: type oid
        self._seq_next = self._seq_end = 0  # PostgreSQL: the trace numbers reserved and not used yet
        self._seq_taken = 0.0  # when that block was reserved (time.monotonic)
        self._chunk = SQLITE_MIN_VARIABLES - CHUNK_SPARE  # SQLite: values bound in one statement

    def use_variable_limit(self, dbapi: Any) -> None:
        """SQLite: bind at most as many parameters a statement as the connection takes."""
        self._chunk = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - CHUNK_SPARE

    def any_of(self, column: str, values: Iterable[Any]) -> Iterator[tuple[str, list[Any]]]:
        """Conditions that `column` is among `values`, each with its parameters: one on PostgreSQL
        (an array), one per `_chunk` values on SQLite, which caps the parameters of a statement."""
        values = sorted(set(values))
        if self.pg:
            yield f"{column} = ANY(%s)", [values]
            return
        for part in _chunks(values, self._chunk):
            yield f"{column} IN ({','.join('?' * len(part))})", part

    def begin(self, cur: Any) -> None:
        # SQLite: take the write lock up front so a read-modify-write cannot fail on upgrade.
        cur.execute("BEGIN" if self.pg else "BEGIN IMMEDIATE")

    def pairs(self, keys: Iterable[tuple[int, str]]) -> Iterator[tuple[str, list[Any]]]:
        """Relations k(t, s) of (trace_seq, span_id) pairs to drive a join (`self.join`): one
        index probe per pair, where `t IN (...) AND s IN (...)` probes every combination. One on
        PostgreSQL, one per `_chunk` parameters on SQLite (`any_of`)."""
        keys = sorted(keys)
        if self.pg:
            yield ("unnest(%s::bigint[], %s::text[]) AS k(t, s)",
                   [[t for t, _ in keys], [i for _, i in keys]])
            return
        for part in _chunks(keys, self._chunk // 2):
            values = ",".join("(?,?)" for _ in part)
            yield f"(SELECT column1 AS t, column2 AS s FROM (VALUES {values})) AS k", [
                v for key in part for v in key]

    def next_seqs(self, cur: Any, n: int) -> Iterator[int]:
        """`n` unused trace numbers (`traces.seq`), increasing."""
        if not self.pg:
            cur.execute("SELECT max(seq) FROM traces")  # under the write lock (`begin`)
            top = cur.fetchone()[0] or 0
            return iter(range(top + 1, top + 1 + n))
        # Each nextval reserves a block (the sequence counts in TRACE_SEQ_BLOCK): one round trip
        # per ~1,000 new traces instead of one per request; other processes get other blocks.
        out: list[int] = []
        if time.monotonic() - self._seq_taken > SEQ_BLOCK_MAX_AGE_S:
            self._seq_next = self._seq_end
        while len(out) < n:
            if self._seq_next >= self._seq_end:
                cur.execute("SELECT nextval('trace_seq')")
                self._seq_next = cur.fetchone()[0]
                self._seq_end = self._seq_next + TRACE_SEQ_BLOCK
                self._seq_taken = time.monotonic()
            take = min(n - len(out), self._seq_end - self._seq_next)
            out.extend(range(self._seq_next, self._seq_next + take))
            self._seq_next += take
        return iter(out)

    def placeholders(self, columns: Iterable[str], json_columns: frozenset[str]) -> str:
        return ", ".join(self.pj if c in json_columns else self.p for c in columns)

    def insert_sql(self, table: str, columns: tuple[str, ...], json_columns: frozenset[str],
                   on_conflict: str = "") -> str:
        return (f"INSERT INTO {table} ({', '.join(columns)})"
                f" VALUES ({self.placeholders(columns, json_columns)}) {on_conflict}")

    def rows(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """PostgreSQL refuses NUL in text, which a client may send: there it becomes U+FFFD, SQLite
        keeps it. JSON keeps it escaped on both (json takes \\u0000, jsonb did not)."""
        if not self.pg:
            return rows
        return [tuple(no_nul(v) for v in row) for row in rows]

    def executemany(self, cur: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
        cur.executemany(sql, self.rows(rows))

    def insert(self, cur: Any, table: str, columns: tuple[str, ...], json_columns: frozenset[str],
               rows: Iterable[tuple[Any, ...]], on_conflict: str = "") -> None:
        """Insert rows known to be new. PostgreSQL COPYs them: row by row INSERTs started an executor
        for each (~12% of the backend's time a span) and cost the writer thread more too. Binary
        COPY spares both sides escaping and parsing text: in isolation the backend's time a span
        went from ~76 to ~62 us, the writer thread's from ~44 to ~33. A row that is not new after
        all fails the transaction there; SQLite takes `on_conflict`. The rows come through `rows`,
        or are span rows, encoded without NUL for PostgreSQL (`RowEncoder`)."""
        if self.pg:
            types = self._copy_types.get(table)
            if types is None:
                cur.execute("SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass"
                            " AND attnum > 0 AND NOT attisdropped", [table])
                types = self._copy_types[table] = dict(cur.fetchall())
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                # JSON goes in through `JsonBytesBinary`, also into a text column (a span's
                # documents): in binary COPY both take the same bytes.
                copy.set_types([JSON_OID if c in json_columns else types[c] for c in columns])
                for row in rows:
                    copy.write_row(row)
            return
        cur.executemany(self.insert_sql(table, columns, json_columns, on_conflict), rows)


def _chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    if len(values) <= size:  # all but outsized requests: no copy
        yield values
        return
    for i in range(0, len(values), size):
        yield values[i:i + size]


def no_nul(value: Any) -> Any:
    """`value` with NUL, which PostgreSQL refuses in text, as U+FFFD (in lists too)."""
    if isinstance(value, list):
        return [no_nul(v) for v in value]
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value
