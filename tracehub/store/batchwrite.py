"""Writes one `Batch` inside the writer's open transaction: idempotency keys, spans, trace rows,
events, lifecycle (END / ERROR) and evals.

Idempotent by construction: an item whose idempotency key was seen with the same body is skipped
and answered with the first result; a span already stored (same trace_id, span_id) is not stored or
counted again. It uses the DB-API cursor and `executemany` only, no per-span ORM objects; it never
commits (the writer does, once per group of requests).
"""

from __future__ import annotations

import hashlib
import json
import operator
import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator

import orjson
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from tracehub.records import (
    STATUS_ERROR,
    STATUS_SUCCESS,
    Batch,
    EvalRecord,
    EventRecord,
    Idem,
    Mapped,
    SpanRecord,
)
from tracehub.store import amendment, spanbody, tracerow

LIFECYCLE_END = frozenset(("END", "ERROR"))


@dataclass
class WriteResult:
    spans_stored: int = 0
    spans_duplicate: int = 0
    events_stored: int = 0
    evals_stored: int = 0
    # Per idempotency key: "created", "duplicate" (same body seen before), "conflict" or "orphan".
    keys: dict[str, str] = field(default_factory=dict)
    # The first answer stored for each "duplicate" key, to replay verbatim.
    replayed: dict[str, Any] = field(default_factory=dict)
    # Spans refused because their parent is unknown (only with Batch.require_parents).
    orphans: set[tuple[str, str]] = field(default_factory=set)
    # Spans not stored because the same (trace_id, span_id) already was.
    duplicates: set[tuple[str, str]] = field(default_factory=set)
    # (project_id, trace_id) of the traces this batch completed (`tracerow.completed`): the
    # writer hands them to the decision worker once committed.
    completed: list[tuple[int, str]] = field(default_factory=list)


def dumps(value: Any) -> bytearray:
    """A JSON column's value: UTF-8 bytes, which the statements turn into text (`Sql.pj`).

    As str, the JSON was decoded from orjson's UTF-8, encoded again to cross from a decode worker,
    decoded there and encoded once more to be bound (UTF-8 encoding was 15% of the writer's
    instructions); as bytes the writer runs 9% fewer, the decode side 12.6%. A bytearray, not
    bytes: sqlite3 binds it without an adapter lookup.
    UTF-8 as is (no \\u escapes) so search and storage see Korean text as written; json takes
    what orjson refuses (ints beyond 64 bits).
    """
    try:
        return bytearray(orjson.dumps(value, default=str))
    except TypeError:
        return bytearray(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str), "utf-8")


class JsonBytes(Dumper):
    """Binds a `dumps` value on PostgreSQL as json text, which the server only checks: no cast,
    no detour through bytea. For the writer's connection (`bind_json_bytes`)."""

    oid = psycopg.adapters.types["json"].oid

    def dump(self, obj: bytearray) -> bytearray:
        return obj


class JsonBytesBinary(JsonBytes):
    """The same in binary COPY, where json's binary form is its text."""

    format = Format.BINARY


_JSON_OID = JsonBytes.oid


def bind_json_bytes(dbapi: Any) -> None:
    dbapi.adapters.register_dumper(bytearray, JsonBytes)
    dbapi.adapters.register_dumper(None, JsonBytesBinary)  # by type, for COPY's set_types


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# SQLite's limit on the parameters of a statement: 999 before 3.32, 32,766 since (or as built;
# Debian's takes 250,000). `Sql.use_variable_limit` reads the connection's; statements bind a
# few other parameters beside a list of values.
SQLITE_MIN_VARIABLES = 999
CHUNK_SPARE = 8

# PostgreSQL's sequence trace_seq counts in steps of this (migration 0011): each value starts a block.
TRACE_SEQ_BLOCK = 1000


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
        while len(out) < n:
            if self._seq_next >= self._seq_end:
                cur.execute("SELECT nextval('trace_seq')")
                self._seq_next = cur.fetchone()[0]
                self._seq_end = self._seq_next + TRACE_SEQ_BLOCK
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
        return [tuple(_no_nul(v) for v in row) for row in rows]

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
                copy.set_types([_JSON_OID if c in json_columns else types[c] for c in columns])
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


def _no_nul(value: Any) -> Any:
    if isinstance(value, list):
        return [_no_nul(v) for v in value]
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


SPAN_COLUMNS = (
    "project_id", "trace_id", "span_id", "parent_span_id", "parent_remote", "name", "kind", "span_type",
    "status", "status_message", "start_ns", "end_ns", "model", "input_text", "output_text", "input_tokens",
    "output_tokens", "total_tokens", "cost_usd", "user_id", "session_id", "environment",
    "graph_name", "node_name", "step", "resource_id", "attributes", "scope", "events", "links", "body",
)
_SPAN_JSON = frozenset(("attributes", "scope", "events", "links"))
_TRACE_JSON = frozenset(("attributes",))
_RESOURCE_JSON = frozenset(("attributes",))
EVENT_COLUMNS = ("project_id", "trace_id", "span_id", "event_type", "name", "time_ns", "payload",
                 "idempotency_key")
EVAL_COLUMNS = ("project_id", "trace_id", "span_id", "eval_name", "eval_model", "score", "passed",
                "metadata", "user_review_passed", "created_ns")


class RowEncoder:
    """Encodes one request's span rows. Its spans share their resource and scope objects: each is
    encoded once, the rows share the one string, and each resource goes into `resources` (its id:
    its JSON), which the writer stores once (`BatchWriter`); the rows name it by id.

    With `nul_free` (PostgreSQL, which refuses NUL in text) a NUL in a text column becomes U+FFFD;
    SQLite keeps it, and JSON keeps it escaped on both. Done here, in the decode worker, rather than
    by the writer as it stores the rows: looking cost its thread ~3 us a span."""

    def __init__(self, resources: dict[int, bytearray], nul_free: bool) -> None:
        self.resources = resources
        self.nul_free = nul_free
        # By id(): the objects outlive the encoder, so an id is never reused in these.
        self._scopes: dict[int, bytearray] = {}
        self._resource_ids: dict[int, int | None] = {}

    def resource_id(self, resource: dict[str, Any]) -> int | None:
        key = id(resource)
        if key in self._resource_ids:
            return self._resource_ids[key]
        rid = None
        if resource:
            doc = dumps(resource)
            rid = content_id(doc)
            self.resources[rid] = doc
        self._resource_ids[key] = rid
        return rid

    def scope(self, scope: dict[str, Any]) -> bytearray:
        out = self._scopes.get(id(scope))
        if out is None:
            out = self._scopes[id(scope)] = dumps(scope)
        return out


def content_id(doc: bytes | bytearray) -> int:
    """A 64-bit name of a JSON document, from its bytes."""
    return int.from_bytes(hashlib.blake2b(doc, digest_size=8).digest(), "big", signed=True)


def span_row(project_id: int, s: SpanRecord, encoder: RowEncoder) -> tuple[Any, ...]:
    """The spans-table row of `s`, all but its trace's number, which the writer adds, followed by
    the span's input and output texts (`_STORED`), which the row has only in its body."""
    m = s.mapped
    if s.row is not None:  # a record rebuilt from its row has its JSON only there
        resource_id, attributes, scope, events, links, body = s.row[_ENCODED_AT:_STORED]
        # Packed again below: the texts may have changed.
        attributes, scope, events, links = (v.encode() for v in spanbody.unpack(body)[2:])
    else:
        resource_id, attributes, scope = encoder.resource_id(s.resource), dumps(s.attributes), encoder.scope(s.scope)
        events = dumps(s.events) if s.events else _NO_ITEMS
        links = dumps(s.links) if s.links else _NO_ITEMS
    texts = m.input_text, m.output_text
    if encoder.nul_free and any(v and "\x00" in v for v in texts):
        texts = tuple(_no_nul(v) for v in texts)
    body = spanbody.pack(*texts, attributes, scope, events, links)
    row = (
        project_id, s.trace_id, s.span_id, s.parent_span_id, s.parent_remote or None, s.name, s.kind,
        m.span_type, s.status, s.status_message, s.start_ns, s.end_ns, m.model, None, None,
        m.input_tokens, m.output_tokens, m.total_tokens, s.cost_usd, m.user_id, m.session_id,
        m.environment, m.graph_name, m.node_name, m.step, resource_id, _IN_BODY, _IN_BODY, _IN_BODY, _IN_BODY,
        body, *texts,
    )
    if encoder.nul_free and any(v and "\x00" in v for v in _span_text(row)):
        row = tuple(_no_nul(v) for v in row)
    return row


_ENCODED_AT = SPAN_COLUMNS.index("resource_id")
_STORED = len(SPAN_COLUMNS)
# What the writer stores: a span's row and its trace's number, which only the writer knows.
_SPAN_INSERT = (*SPAN_COLUMNS, "trace_seq")
_NO_ITEMS = bytearray(b"[]")  # most spans' events and links; shared, never changed
_IN_BODY = bytearray(b"")  # the JSON columns of a row with a body (`spanbody`)
# A span row's text from the client: where `RowEncoder.nul_free` looks for NUL (its input and output
# are looked at before they go into the body).
_span_text = operator.itemgetter(*(SPAN_COLUMNS.index(c) for c in (
    "name", "span_type", "status_message", "model", "user_id", "session_id", "environment", "graph_name",
    "node_name")))


def insert_annotation_spans(cur: Any, sql: Sql, project_id: int, trace_id: str, spans: list[SpanRecord]) -> None:
    """Spans stored in the stored trace `trace_id` without folding them into its row: the decision
    engine's judge spans, which the tree shows, but which must not stretch the application's
    duration or add to its tokens, cost and span count. Without resources. The trace's number and
    root are found by the statement (nothing is inserted if the trace is not stored): a span without
    a parent hangs from the root, so the caller need not read it first. Nothing waits for a result."""
    encoder = RowEncoder({}, sql.pg)
    q = sql.p
    # The JSON columns are '' (the body has the documents): bound, PostgreSQL would take '' as json.
    values = [f"COALESCE({q}, NULLIF(t.root_span_id, {q}))" if c == "parent_span_id" else
              "''" if c in _SPAN_JSON else q for c in SPAN_COLUMNS]
    statement = (f"INSERT INTO spans ({', '.join(_SPAN_INSERT)}) SELECT {', '.join(values)}, t.seq FROM traces t"
                 f" WHERE t.project_id = {q} AND t.trace_id = {q} ON CONFLICT (trace_seq, span_id) DO NOTHING")
    parent = SPAN_COLUMNS.index("parent_span_id")
    rows = []
    for s in spans:
        row = [v for c, v in zip(SPAN_COLUMNS, span_row(project_id, s, encoder)) if c not in _SPAN_JSON]
        rows.append((*row[:parent], s.parent_span_id, s.span_id, *row[parent + 1:], project_id, trace_id))
    sql.executemany(cur, statement, rows)


def span_from_row(row: tuple[Any, ...]) -> SpanRecord:
    """The record of a `span_row` (made in a decode worker): every field but the JSON ones, which
    stay encoded in `row` (as bytes, not bytearrays, once they crossed from the worker: both bind
    the same way)."""
    (_pid, trace_id, span_id, parent_span_id, parent_remote, name, kind, span_type, status, status_message,
     start_ns, end_ns, model, _input, _output, input_tokens, output_tokens, total_tokens, cost_usd,
     user_id, session_id, environment, graph_name, node_name, step) = row[:_ENCODED_AT]
    input_text, output_text = row[_STORED:]
    # Positional: keywords cost a third more, on the server's event loop, for every span.
    return SpanRecord(
        trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, status_message,
        Mapped(span_type, model, input_text, output_text, input_tokens, output_tokens, total_tokens,
               user_id, session_id, environment, graph_name, node_name, step),
        {}, {}, {}, [], [], cost_usd, None, row, bool(parent_remote))


def _span_values(s: SpanRecord) -> dict[str, Any]:
    """A record's amendable fields, by their column names (`amendment.AMENDABLE`)."""
    m = s.mapped
    return {"name": s.name, "span_type": m.span_type, "status": s.status, "status_message": s.status_message,
            "model": m.model, "input_text": m.input_text, "output_text": m.output_text,
            "input_tokens": m.input_tokens, "output_tokens": m.output_tokens, "total_tokens": m.total_tokens,
            "cost_usd": s.cost_usd}


def _amended(s: SpanRecord, patches: list[Any]) -> SpanRecord:
    """A copy of `s` with `patches` applied, for its trace row to fold in."""
    values = _span_values(s)
    for patch in patches:
        amendment.apply_patch(values, patch)
    mapped = replace(s.mapped, **{k: values[k] for k in (
        "span_type", "model", "input_text", "output_text", "input_tokens", "output_tokens", "total_tokens")})
    return replace(s, name=values["name"], status=values["status"], status_message=values["status_message"],
                   cost_usd=values["cost_usd"], mapped=mapped)


class StoredResources:
    """The resources a writer knows to be committed, so a request from a known process does not
    store its resource again: that statement, one round trip per request, was ~6% of PostgreSQL's
    writer thread. Ids count only once their transaction commits (`commit`). Retention deletes
    resources no span names (tracehub/store/retention.py): known ids are forgotten every MAX_AGE_S,
    far below the shortest retention, so none is taken as stored after that."""

    LIMIT = 10_000  # a bound on memory; past it, known ids are forgotten and stored again
    MAX_AGE_S = 600.0

    def __init__(self) -> None:
        self._committed: set[tuple[int, int]] = set()
        self._pending: set[tuple[int, int]] = set()
        self._since = time.monotonic()

    def __contains__(self, key: tuple[int, int]) -> bool:
        if time.monotonic() - self._since > self.MAX_AGE_S:
            self._committed.clear()
            self._since = time.monotonic()
        return key in self._committed or key in self._pending

    def written(self, pid: int, ids: Iterable[int]) -> None:
        self._pending.update((pid, rid) for rid in ids)

    def commit(self) -> None:
        if len(self._committed) + len(self._pending) > self.LIMIT:
            self._committed.clear()
        self._committed |= self._pending
        self._pending.clear()

    def rollback(self) -> None:
        self._pending.clear()


def count_new_traces(cur: Any, sql: Sql, new_traces: dict[int, int]) -> None:
    """Add the trace rows a transaction stored first to their projects' `trace_count`."""
    q = sql.p
    for pid, added in sorted(new_traces.items()):
        cur.execute(f"UPDATE projects SET trace_count = trace_count + {q} WHERE id = {q}", (added, pid))


class BatchWriter:
    """One batch's writes; make a new one per batch. With `new_traces` the trace rows it stores
    first are added there, per project, for the writer to count just before COMMIT
    (`count_new_traces`): the project's row is then locked only while the transaction waits for
    nothing else, so server processes sharing a database cannot deadlock on it."""

    def __init__(self, cur: Any, sql: Sql, stored_resources: StoredResources,
                 new_traces: dict[int, int] | None = None) -> None:
        self.cur = cur
        self.sql = sql
        self._stored_resources = stored_resources
        self._new_traces = new_traces
        self._touched: set[str] = set()  # trace rows to upsert
        self._stored_traces: set[str] = set()  # of those, the ones already in the database
        self._completed_before: set[str] = set()  # of those, the ones already completed
        self._new_keys: dict[str, Idem] = {}
        self._encoder = RowEncoder({}, sql.pg)
        self._seqs: Iterator[int] = iter(())  # for the trace rows this batch inserts

    def _select(self, query: str, params: list[Any]) -> list[Any]:
        self.cur.execute(query, self.sql.rows([tuple(params)])[0])
        return list(self.cur.fetchall())

    def write(self, batch: Batch) -> WriteResult:
        result = WriteResult()
        pid = batch.project_id
        self._encoder = RowEncoder(batch.resources, self.sql.pg)
        spans = self._claim_keys(pid, batch.spans, result)
        events = self._claim_keys(pid, batch.events, result)
        evals = self._claim_keys(pid, batch.evals, result)
        may_insert = {s.trace_id for s in spans} | {t.trace_id for t in batch.traces}
        rows = self._trace_rows(pid, may_insert | {e.trace_id for e in events if e.trace_id and (
            e.event_type in LIFECYCLE_END or e.input_text or e.output_text
            or e.event_type == amendment.EVENT_TYPE)})
        inserts = len(may_insert - rows.keys())
        if inserts:
            self._seqs = self.sql.next_seqs(self.cur, inserts)
        if spans:
            self._write_spans(pid, spans, rows, batch.require_parents, result)
            self._store_resources(pid, batch.resources)
            for s in spans:  # a refused span does not use up its key
                if s.idem is not None and (s.trace_id, s.span_id) in result.orphans:
                    self._new_keys.pop(s.idem.key, None)
                    result.keys[s.idem.key] = "orphan"
        for t in batch.traces:
            row = rows.get(t.trace_id) or rows.setdefault(
                t.trace_id, tracerow.new_row(pid, t.trace_id, next(self._seqs), time.time_ns()))
            tracerow.apply_explicit(row, t)
            self._touched.add(t.trace_id)
        if events:
            self._write_events(pid, events, rows)
            result.events_stored = len(events)
        if evals:
            self._write_evals(pid, evals, rows)
            result.evals_stored = len(evals)
        touched = [rows[t] for t in self._touched]
        self._upsert_traces(touched)
        result.completed = [(pid, row["trace_id"]) for row in touched
                            if tracerow.completed(row) and row["trace_id"] not in self._completed_before]
        self._record_keys(pid, result)
        return result

    # -- idempotency keys ----------------------------------------------------------------------

    def _claim_keys(self, pid: int, items: list[Any], result: WriteResult) -> list[Any]:
        """Items to write: those without a key, or whose key is new. Marks the others."""
        keyed = [i.idem for i in items if i.idem is not None]
        if not keyed:
            return items
        seen = {key: (h, _loads(response)) for k_in, k_params in self.sql.any_of("key", [k.key for k in keyed])
                for key, h, response in self._select(
                    f"SELECT key, request_hash, response FROM idempotency_keys"
                    f" WHERE project_id = {self.sql.p} AND {k_in}", [pid, *k_params])}
        seen.update({k: (i.request_hash, i.response) for k, i in self._new_keys.items()})
        keep = []
        for item in items:
            idem = item.idem
            if idem is None:
                keep.append(item)
            elif idem.key in seen:
                first_hash, first_response = seen[idem.key]
                if first_hash == idem.request_hash:
                    result.keys[idem.key] = "duplicate"
                    result.replayed[idem.key] = first_response
                else:
                    result.keys[idem.key] = "conflict"
            else:
                seen[idem.key] = (idem.request_hash, idem.response)
                self._new_keys[idem.key] = idem
                result.keys[idem.key] = "created"
                keep.append(item)
        return keep

    def _record_keys(self, pid: int, result: WriteResult) -> None:
        if not self._new_keys:
            return
        now = time.time_ns()
        cols = ("project_id", "key", "request_hash", "response", "created_ns")
        # PostgreSQL: a key another server process claimed since `_claim_keys` looked fails the
        # transaction (a unique violation), which the writer runs again (`faults.conflict`): it then
        # answers the item as the other's duplicate instead of storing it twice. SQLite has one writer.
        self.sql.executemany(
            self.cur, self.sql.insert_sql("idempotency_keys", cols, frozenset(("response",)),
                                          "" if self.sql.pg else "ON CONFLICT (project_id, key) DO NOTHING"),
            [(pid, k, i.request_hash, dumps(i.response), now) for k, i in self._new_keys.items()])
        self._new_keys = {}

    # -- spans ---------------------------------------------------------------------------------

    def _trace_rows(self, pid: int, trace_ids: set[str]) -> dict[str, dict[str, Any]]:
        if not trace_ids:
            return {}
        lock = " FOR UPDATE" if self.sql.pg else ""
        found = [r for t_in, t_params in self.sql.any_of("trace_id", trace_ids) for r in self._select(
            f"SELECT {', '.join(tracerow.TRACE_COLUMNS)} FROM traces"
            f" WHERE project_id = {self.sql.p} AND {t_in}{lock}", [pid, *t_params])]
        rows = {}
        for r in found:
            row = dict(zip(tracerow.TRACE_COLUMNS, r))
            row["attributes"] = _loads(row["attributes"])
            rows[row["trace_id"]] = row
            if tracerow.completed(row):
                self._completed_before.add(row["trace_id"])
        self._stored_traces.update(rows)
        return rows

    def _write_spans(self, pid: int, spans: list[SpanRecord], rows: dict[str, dict[str, Any]],
                     require_parents: bool, result: WriteResult) -> None:
        unique: dict[tuple[str, str], SpanRecord] = {}
        for s in spans:
            unique.setdefault((s.trace_id, s.span_id), s)
        # (trace, id) pairs of the batch's spans and of the parents they name, in traces already
        # stored: a span is stored with its trace row, so a trace without one has no spans yet.
        stored = self._stored_traces
        keys = {key for key in unique if key[0] in stored} | {
            (s.trace_id, s.parent_span_id) for s in unique.values()
            if s.parent_span_id and s.trace_id in stored}
        existing: set[tuple[str, str]] = set()
        if keys:
            existing = self._stored_spans(pid, {(rows[t]["seq"], span_id) for t, span_id in keys})
        new = [s for key, s in unique.items() if key not in existing]
        result.duplicates = {key for key in unique if key in existing}
        new_keys = {(s.trace_id, s.span_id) for s in new}
        if require_parents:
            known = existing | new_keys
            result.orphans = {(s.trace_id, s.span_id) for s in new
                              if s.parent_span_id and (s.trace_id, s.parent_span_id) not in known}
            new = [s for s in new if (s.trace_id, s.span_id) not in result.orphans]
        result.spans_stored, result.spans_duplicate = len(new), len(spans) - len(new)
        if not new:
            return
        amended = self._apply_earlier_events(pid, new)
        now = time.time_ns()
        awaited: dict[str, set[str]] = {}  # per trace: parents named by its spans, not stored
        declared: set[str] = set()

        def folded() -> Iterator[tuple[Any, ...]]:
            # Each span is folded into its trace row as COPY takes its row, so on PostgreSQL the
            # folding overlaps the database's work instead of coming before it (in isolation the
            # writer took ~4 us a span less: 46-53 -> 42-49).
            for s in sorted(new, key=operator.attrgetter("start_ns")):
                row = rows.get(s.trace_id) or rows.setdefault(
                    s.trace_id, tracerow.new_row(pid, s.trace_id, next(self._seqs), now))
                tracerow.fold_span(row, amended.get((s.trace_id, s.span_id), s) if amended else s, declared)
                row["last_span_ns"] = now
                self._touched.add(s.trace_id)
                waiting = awaited.get(s.trace_id)
                if waiting is None:
                    waiting = awaited[s.trace_id] = set((row["awaited_parents"] or "").split())
                if s.span_id in waiting:  # a stored child counted this span as missing
                    waiting.discard(s.span_id)
                    row["missing_parent_count"] -= 1
                parent = s.parent_span_id
                # A remote parent is in another process's trace data: not waited for.
                if (parent and parent not in waiting and (s.trace_id, parent) not in existing
                        and (s.trace_id, parent) not in new_keys and not s.parent_remote):
                    waiting.add(parent)
                    row["missing_parent_count"] += 1
                encoded = s.row if s.row is not None and s.row[0] == pid else span_row(pid, s, self._encoder)
                yield (*encoded[:_STORED], row["seq"])

        self.sql.insert(self.cur, "spans", _SPAN_INSERT, _SPAN_JSON, folded(),
                        "ON CONFLICT (trace_seq, span_id) DO NOTHING")
        for trace_id, waiting in awaited.items():
            rows[trace_id]["awaited_parents"] = " ".join(sorted(waiting)) or None

    def _stored_spans(self, pid: int, keys: set[tuple[int, str]], running: bool = False) -> set[tuple[str, str]]:
        """(trace_id, span_id) of the spans stored under `keys` (trace_seq, span_id); only those
        without an end with `running`."""
        return {tuple(r) for pairs, params in self.sql.pairs(keys) for r in self._select(
            f"SELECT s.trace_id, s.span_id FROM {pairs} {self.sql.join} spans s ON s.trace_seq = k.t"
            f" AND s.span_id = k.s AND s.project_id = {self.sql.p}" + (" WHERE s.end_ns IS NULL" if running else ""),
            [*params, pid])}

    def _store_resources(self, pid: int, resources: dict[int, bytearray]) -> None:
        new = [(pid, rid, doc) for rid, doc in resources.items() if (pid, rid) not in self._stored_resources]
        if new:
            self.sql.executemany(
                self.cur, self.sql.insert_sql("resources", ("project_id", "resource_id", "attributes"),
                                              _RESOURCE_JSON, "ON CONFLICT (project_id, resource_id) DO NOTHING"),
                new)
            self._stored_resources.written(pid, (rid for _, rid, _ in new))

    def _apply_earlier_events(self, pid: int, new: list[SpanRecord]) -> dict[tuple[str, str], SpanRecord]:
        """Content (GenAI log records), END / ERROR events and AMENDMENTs that arrived before
        their span. Answers the amended spans, by key, as their trace rows fold them in; a span
        is stored as it came (amendments never edit one)."""
        found = [r for t_in, t_params in self.sql.any_of("trace_id", {s.trace_id for s in new})
                 for r in self._select(
                     f"SELECT trace_id, span_id, event_type, time_ns, payload FROM span_events"
                     f" WHERE project_id = {self.sql.p} AND {t_in} AND span_id IS NOT NULL"
                     " AND event_type IN ('LOG', 'END', 'ERROR', 'AMENDMENT') ORDER BY time_ns, id",
                     [pid, *t_params])]
        if not found:
            return {}
        by_span: dict[tuple[str, str], list[tuple[str, int, Any]]] = defaultdict(list)
        for trace_id, span_id, event_type, time_ns, payload in found:
            by_span[(trace_id, span_id)].append((event_type, time_ns, _loads(payload)))
        amended: dict[tuple[str, str], SpanRecord] = {}
        for s in new:
            events = by_span.get((s.trace_id, s.span_id))
            if not events:
                continue
            ins: list[str] = []
            outs: list[str] = []
            patches: list[Any] = []
            changed = False
            for event_type, time_ns, payload in events:
                if event_type == amendment.EVENT_TYPE:
                    patches.append(amendment.patch_of(payload))
                    continue
                derived = payload.get("derived") or {}
                if derived.get("input_text"):
                    ins.append(derived["input_text"])
                if derived.get("output_text"):
                    outs.append(derived["output_text"])
                if event_type in LIFECYCLE_END and s.end_ns is None:
                    changed = True
                    s.end_ns = time_ns
                    s.status = STATUS_ERROR if event_type == "ERROR" else STATUS_SUCCESS
                    s.status_message = s.status_message or payload.get("message")
            if ins and not s.mapped.input_text:
                changed = True
                s.mapped.input_text = "\n".join(ins)
            if outs and not s.mapped.output_text:
                changed = True
                s.mapped.output_text = "\n".join(outs)
            if changed:
                s.row = span_row(pid, s, self._encoder)
            if patches:
                amended[(s.trace_id, s.span_id)] = _amended(s, patches)
        return amended

    def _upsert_traces(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        cols = tracerow.TRACE_COLUMNS
        now = time.time_ns()
        new: list[tuple[Any, ...]] = []
        stored: list[tuple[Any, ...]] = []
        for row in rows:
            row["status"] = tracerow.status_of(row)
            row["updated_ns"] = now
            (stored if row["trace_id"] in self._stored_traces else new).append(tuple(
                dumps(row[c]) if c == "attributes" and row[c] is not None else row[c] for c in cols))
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c not in ("project_id", "trace_id", "seq"))
        upsert = f"ON CONFLICT (project_id, trace_id) DO UPDATE SET {updates}"
        if new:
            # Most of a batch's traces are new: on PostgreSQL they are COPYed, as spans are. Upserted
            # one statement each, a row cost its backend 63-90 us; COPYed, 30-47. In trace id order,
            # so two processes storing some of the same traces first wait for each other one way.
            new.sort()
            self.sql.insert(self.cur, "traces", cols, _TRACE_JSON, self.sql.rows(new), upsert)
        if stored:
            self.sql.executemany(self.cur, self.sql.insert_sql("traces", cols, _TRACE_JSON, upsert), stored)
        if new:
            pid = rows[0]["project_id"]
            if self._new_traces is None:
                count_new_traces(self.cur, self.sql, {pid: len(new)})
            else:
                self._new_traces[pid] = self._new_traces.get(pid, 0) + len(new)

    # -- events and evals ----------------------------------------------------------------------

    def _write_events(self, pid: int, events: list[EventRecord], rows: dict[str, dict[str, Any]]) -> None:
        q = self.sql.p
        params = []
        texts: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
        ends: dict[tuple[str, str], EventRecord] = {}
        for e in sorted(events, key=lambda e: e.time_ns):
            payload = e.payload
            if e.input_text or e.output_text:
                payload = {**payload, "derived": {"input_text": e.input_text,
                                                  "output_text": e.output_text}}
                if e.trace_id and e.span_id:
                    ins, outs = texts[(e.trace_id, e.span_id)]
                    if e.input_text:
                        ins.append(e.input_text)
                    if e.output_text:
                        outs.append(e.output_text)
            if e.event_type in LIFECYCLE_END and e.trace_id and e.span_id:
                ends.setdefault((e.trace_id, e.span_id), e)
            params.append((pid, e.trace_id, e.span_id, e.event_type, e.name, e.time_ns, dumps(payload),
                           e.idem.key if e.idem else None))
        amends = [(t, s, e) for e in events if e.event_type == amendment.EVENT_TYPE
                  and (t := e.trace_id) is not None and (s := e.span_id) is not None and t in rows]
        if amends:  # before the batch's events are stored: those stored are the earlier ones
            self._fold_amendments(pid, amends, rows)
        self.sql.insert(self.cur, "span_events", EVENT_COLUMNS, frozenset(("payload",)), self.sql.rows(params))
        # Spans already stored without content take it from their log records.
        updates = []
        for (trace_id, span_id), (ins, outs) in texts.items():
            row = rows.get(trace_id)
            if row is None:  # a trace without a row has no spans
                continue
            input_text, output_text = "\n".join(ins) or None, "\n".join(outs) or None
            updates.append((input_text, output_text, pid, row["seq"], span_id))
            if (input_text and not row["input_text"]) or (output_text and not row["output_text"]):
                row["own_text"] = True  # the span may keep text of its own: search the trace's
            row["input_text"] = row["input_text"] or input_text
            row["output_text"] = row["output_text"] or output_text
            self._touched.add(trace_id)
        if updates:
            self.sql.executemany(
            self.cur, f"UPDATE spans SET input_text = COALESCE(input_text, {q}),"
                f" output_text = COALESCE(output_text, {q})"
                f" WHERE project_id = {q} AND trace_seq = {q} AND span_id = {q}", updates)
        if ends:
            self._close_spans(pid, ends, rows)

    def _fold_amendments(self, pid: int, amends: list[tuple[str, str, EventRecord]],
                         rows: dict[str, dict[str, Any]]) -> None:
        """AMENDMENTs of stored spans: their trace rows' totals follow (`tracerow.amend_span`).
        One of a span not stored yet waits for it (`_apply_earlier_events`)."""
        q = self.sql.p
        columns = ("trace_id", "span_id", "start_ns", "end_ns", *amendment.AMENDABLE)
        stored: dict[tuple[str, str], dict[str, Any]] = {}
        for pairs, params in self.sql.pairs({(rows[t]["seq"], s) for t, s, _ in amends}):
            for r in self._select(
                    f"SELECT {', '.join('s.' + c for c in columns)} FROM {pairs} {self.sql.join} spans s"
                    f" ON s.trace_seq = k.t AND s.span_id = k.s AND s.project_id = {q}", [*params, pid]):
                stored[(r[0], r[1])] = dict(zip(columns, r))
        if not stored:
            return
        # Per span: (time, new?, patch) of its amendments, the stored ones first among equal times.
        patches: dict[tuple[str, str], list[tuple[int, bool, Any]]] = defaultdict(list)
        for t_in, t_params in self.sql.any_of("trace_id", {t for t, _ in stored}):
            for trace_id, span_id, time_ns, payload in self._select(
                    f"SELECT trace_id, span_id, time_ns, payload FROM span_events WHERE project_id = {q}"
                    f" AND {t_in} AND event_type = 'AMENDMENT' ORDER BY time_ns, id", [pid, *t_params]):
                if (trace_id, span_id) in stored:
                    patches[(trace_id, span_id)].append((time_ns, False, amendment.patch_of(_loads(payload))))
        for t, s, e in amends:
            if (t, s) in stored:
                patches[(t, s)].append((e.time_ns, True, amendment.patch_of(e.payload)))
        for key, applied in patches.items():
            if not any(new for _, new, _ in applied):
                continue
            before, after = dict(stored[key]), dict(stored[key])
            for _, new, patch in sorted(applied, key=operator.itemgetter(0, 1)):
                if not new:
                    amendment.apply_patch(before, patch)
                amendment.apply_patch(after, patch)
            tracerow.amend_span(rows[key[0]], before, after)
            self._touched.add(key[0])

    def _close_spans(self, pid: int, ends: dict[tuple[str, str], EventRecord],
                     rows: dict[str, dict[str, Any]]) -> None:
        """END / ERROR events end stored running spans; for spans not stored yet they wait."""
        q = self.sql.p
        keys = {(rows[t]["seq"], s) for t, s in ends if t in rows}  # a trace without a row has no spans
        running = self._stored_spans(pid, keys, running=True) if keys else set()
        updates = []
        now = time.time_ns()
        for key in running:
            e = ends[key]
            error = e.event_type == "ERROR"
            row = rows[key[0]]
            updates.append((e.time_ns, STATUS_ERROR if error else STATUS_SUCCESS,
                            e.payload.get("message") if error else None,
                            e.payload.get("output_text"), pid, row["seq"], key[1]))
            tracerow.close_span(row, e.time_ns, error, now)
            self._touched.add(key[0])
        if updates:
            self.sql.executemany(
            self.cur, f"UPDATE spans SET end_ns = {q}, status = {q}, status_message = COALESCE({q}, status_message),"
                f" output_text = COALESCE(output_text, {q})"
                f" WHERE project_id = {q} AND trace_seq = {q} AND span_id = {q}", updates)

    def _write_evals(self, pid: int, evals: list[EvalRecord], rows: dict[str, dict[str, Any]]) -> None:
        self.sql.insert(
            self.cur, "evaluation_results", EVAL_COLUMNS, frozenset(("metadata",)),
            self.sql.rows([(pid, e.trace_id, e.span_id, e.eval_name, e.eval_model, e.score, e.passed,
                            dumps(e.metadata), e.user_review_passed, e.created_ns) for e in evals]))
        reviewed = [e for e in evals if e.user_review_passed is not None]
        if reviewed:
            q = self.sql.p
            self.sql.executemany(
            self.cur, f"UPDATE traces SET user_review_passed = {q} WHERE project_id = {q} AND trace_id = {q}",
                [(e.user_review_passed, pid, e.trace_id) for e in reviewed])
            for e in reviewed:
                if e.trace_id in rows:
                    rows[e.trace_id]["user_review_passed"] = e.user_review_passed
