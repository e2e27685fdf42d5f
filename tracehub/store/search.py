"""Search: a case-insensitive substring match over span names, input, output and attributes, span
events (log messages, amendments) and trace text.

Indexing is off the ingest path. The writer calls `index_step()` between commits when it is idle
(and at least once a second under load); `search_state` says up to which row id each table is
indexed. A query reads the index for rows up to that mark and scans the rows above it, so results
are complete the moment data is committed, and only the unindexed tail costs a scan. `IndexLag`
dates that tail (`/readyz`, `/metrics`).

The spans' index holds a document per trace and indexing step (`_index_spans`): what the spans'
bodies say (tracehub/store/spanbody.py), which never changes. SQLite: FTS5 tables with the trigram
tokenizer, without token positions (`detail=none`: half the indexing cost, a third of the size);
a spans document lists the trace's distinct words (`document`). A query with words of three or more
characters finds the documents that hold all of their trigrams, then keeps the traces whose rows
contain it; one or two characters (many Korean words are two syllables) take the
indexed trigrams that start with them (`fts5vocab`, by range). PostgreSQL: side tables of
lower-cased documents with pg_trgm GIN indexes, and the spans above the mark are read in Python
(`_pg_spans_tail`); a spans document starts with the short pieces of its non-ASCII words behind marks
(`short_pieces`), so one or two such characters are a trigram too. Other queries of one or two
characters scan the documents.

A trace's name and text are a span's, found with it, unless they are its own (`traces.own_text`).

The trace list asks `find()`: a search the index answers with at most SEARCH_CAP traces is their
ids (exact count); a more common one is checked trace by trace as the list walks newest first,
which finds the newest 50 of 90,000 matches in a few dozen checks, and the count stops at the cap.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import sqlalchemy as sa

from tracehub.store import spanbody
from tracehub.store.background import rollback
from tracehub.store.faults import lost
from tracehub.store.schema import SEARCH_DOCUMENT_PG, SEARCH_EVENTS_PG, SEARCH_TRACES_PG, traces

if TYPE_CHECKING:
    from tracehub.store.sql import Sql

log = logging.getLogger(__name__)


class Indexed:
    """One indexed table: where its rows live and how the two dialects index them. On SQLite a
    column's value is an expression over the row (`value`): a span's texts may be in its body
    (tracehub/store/spanbody.py)."""

    def __init__(self, table: str, columns: tuple[str, ...], fts: str, pg_table: str,
                 pg_document: str, sqlite_values: tuple[str, ...] | None = None) -> None:
        self.table, self.columns, self.fts = table, columns, fts
        self.pg_table, self.pg_document = pg_table, pg_document
        self._values = sqlite_values or tuple("{s}" + c for c in columns)  # {s}: "alias." or ""

    def value(self, column: str, alias: str = "") -> str:
        return self._values[self.columns.index(column)].format(s=f"{alias}." if alias else "")

    def values(self, alias: str = "") -> list[str]:
        return [self.value(c, alias) for c in self.columns]


INDEXED = (
    Indexed("spans", ("name", "input_text", "output_text", "attributes"), "spans_fts", "span_search",
            SEARCH_DOCUMENT_PG, ("{s}name", "coalesce(th_body({s}body, 0), {s}input_text)",
                                 "coalesce(th_body({s}body, 1), {s}output_text)",
                                 "coalesce(th_body({s}body, 2), {s}attributes)")),
    Indexed("span_events", ("name", "payload"), "span_events_fts", "span_event_search",
            SEARCH_EVENTS_PG),
)


def padded(t: Indexed, column: str) -> str:
    """What SQLite's index holds of a row's column: its value padded with two spaces, so a
    character at the end of a text (or a text of one or two) starts a trigram that a short query
    finds (`probe_queries`). Deleting a row from the index must give these same values."""
    return f"{t.value(column)} || '  '"


# PostgreSQL: between the spans' texts in a trace's document. A query holds no such character, so
# none is found across two spans.
SEPARATOR = "\x1f"
# PostgreSQL: marks a spans document's short pieces (`short_pieces`): a letter, so pg_trgm takes it
# into its trigrams, and one no query holds.
SHORT_MARK = "\ua66e"


def fts_values(t: Indexed) -> str:
    return ", ".join(padded(t, c) for c in t.columns)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _likes(values: list[str] | tuple[str, ...]) -> str:
    return "(" + " OR ".join(f"{v} LIKE :q ESCAPE '\\'" for v in values) + ")"


# Matching traces a search counts at most: the list says "1,000+" beyond (`Found.capped`).
SEARCH_CAP = 1000
# PostgreSQL: rows the index may answer before a search counts as common (its DISTINCT reads them
# all before it answers; SQLite's stops at SEARCH_CAP traces). Rows of one trace repeat.
PROBE_ROWS = 4 * SEARCH_CAP
# PostgreSQL: cpu_operator_cost while probing (`_document_cost`); its default is 0.0025.
DOCUMENT_OPERATOR_COST = 0.25
# Enough trigrams to make the candidates few; the substring check afterwards decides.
MAX_QUERY_TRIGRAMS = 24
# SQLite, a query of one or two characters: the indexed trigrams that start with it, at most this
# many (`_short_terms`); a character followed by more kinds than that is common.
MAX_PREFIX_TERMS = 400


def _trigrams(text: str | list[str]) -> list[str]:
    """A text's trigrams (or those given), at most MAX_QUERY_TRIGRAMS spread over them."""
    grams = list(dict.fromkeys(text[i:i + 3] for i in range(len(text) - 2))) if isinstance(text, str) else text
    if len(grams) > MAX_QUERY_TRIGRAMS:
        step = (len(grams) - 1) / (MAX_QUERY_TRIGRAMS - 1)
        grams = [grams[round(i * step)] for i in range(MAX_QUERY_TRIGRAMS)]
    return grams


def _fts_phrase(gram: str) -> str:
    return '"' + gram.replace('"', '""') + '"'


@dataclass(frozen=True)
class Found:
    """How the trace list keeps a search's traces. A search the index answers with few rows is a
    list of trace ids (`trace_ids`, exact). A common one is a condition the list checks trace by
    trace as it walks its order (`condition`): the newest 50 of 20,000 matches cost a few dozen
    checks, where collecting every match took seconds; the list then counts up to SEARCH_CAP."""

    condition: sa.ColumnElement[bool]
    trace_ids: list[str] | None

    @property
    def capped(self) -> bool:
        return self.trace_ids is None


def find(conn: sa.Connection, project_id: int, text: str) -> Found:
    """Traces whose text, spans or span events contain `text`, in any case."""
    dialect = conn.dialect.name
    # The marks are read first and bound as values: from a subquery PostgreSQL planned a scan of
    # every row (70 ms at 300,000 spans with none unindexed). The index may pass a mark before the
    # search runs; its rows are then read twice, never missed.
    marks: dict[str, int] = dict(conn.execute(sa.text("SELECT name, indexed_upto FROM search_state")).all())
    tail = _pg_spans_tail(conn, project_id, text, marks["spans"]) if dialect != "sqlite" else set()
    found = _probe(conn, dialect, project_id, text, marks) if len(tail) <= SEARCH_CAP else None
    if found is None or len(found | tail) > SEARCH_CAP:
        return Found(_each_trace(dialect, text, marks, tail), None)
    found |= tail
    ids = sorted(found)
    return Found(traces.c.trace_id.in_(ids), ids)


def _pg_spans_tail(conn: sa.Connection, project_id: int, text: str, mark: int) -> set[str]:
    """PostgreSQL: the traces of the project's spans above the index's mark that hold `text`. Their
    text is in their bodies, which only Python reads; a text an event filled later is in their
    columns."""
    needle, found = text.lower(), set()
    # A page at a time: the rows above the mark are many while ingest outruns the index.
    query = sa.text(f"SELECT id, trace_id, {DOCUMENT_COLUMNS} FROM spans WHERE project_id = :p AND id > :after"
                    " ORDER BY id LIMIT 2000")
    rows = conn.execute(query, {"p": project_id, "after": mark}).all()
    while rows:
        for _id, trace_id, name, body, input_text, output_text, attributes in rows:
            if trace_id not in found and (needle in _pg_text(name, body, input_text, output_text, attributes)
                                          or any(needle in v.lower() for v in (input_text, output_text) if v)):
                found.add(trace_id)
        rows = conn.execute(query, {"p": project_id, "after": rows[-1][0]}).all()
    return found


def _probe(conn: sa.Connection, dialect: str, project_id: int, text: str,
           marks: dict[str, int]) -> set[str] | None:
    """The matching traces' ids from the index (the unindexed rows scanned, and the traces' own
    text), or None once more than SEARCH_CAP traces match (or, on PostgreSQL, PROBE_ROWS rows).
    One statement, so one snapshot: the index and the rows above its mark as of one moment."""
    queries = probe_queries(conn, dialect, text, marks)
    if queries is None:
        return None
    limit = SEARCH_CAP + 1 if dialect == "sqlite" else PROBE_ROWS + 1
    params: dict[str, Any] = {"p": project_id, "q": _like(text.lower() if dialect != "sqlite" else text),
                              "n": limit}
    parts = []
    for i, (sql, extra) in enumerate(queries):
        for name, value in extra.items():
            sql = sql.replace(f":{name}", f":{name}{i}")
            params[f"{name}{i}"] = value
        parts.append(f"SELECT {i} AS part, trace_id FROM ({sql}) AS part{i}")
    counts = [0] * len(parts)
    found: set[str] = set()
    with _document_cost(conn, dialect):
        for part, trace_id in conn.execute(sa.text(" UNION ALL ".join(parts)), params):
            counts[part] += 1
            found.add(trace_id)
    if max(counts, default=0) >= limit or len(found) > SEARCH_CAP:
        return None
    return found


@contextlib.contextmanager
def _document_cost(conn: sa.Connection, dialect: str) -> Iterator[None]:
    """PostgreSQL prices a LIKE as one operator call, but on a document it detoasts and scans a
    trace's text (~24 KB): it read every document (650 ms at 100,000 spans, the heap being small
    with the text in TOAST) or every one of the project's, rather than the trigram index (2 ms).
    The probe runs with operators priced as what they are here, on the read connection, which is
    in autocommit (no SET LOCAL), so the setting is reset after."""
    if dialect == "sqlite":
        yield
        return
    conn.exec_driver_sql(f"SET cpu_operator_cost = {DOCUMENT_OPERATOR_COST}")
    try:
        yield
    finally:
        conn.exec_driver_sql("RESET cpu_operator_cost")


def probe_queries(conn: sa.Connection, dialect: str, text: str,
                  marks: dict[str, int]) -> list[tuple[str, dict[str, Any]]] | None:
    """The probe's statements, each with its own parameters; None if the query is too common to
    look up (the list then checks each trace). `marks`: how far each table is indexed."""
    out: list[tuple[str, dict[str, Any]]] = []
    for t in INDEXED:
        tail = f"id > {int(marks[t.table])}"
        if dialect != "sqlite":
            # Shorter than a trigram, LIKE made PostgreSQL read the whole GIN index and recheck
            # every row (5 s for "환불" at 300,000 spans); strpos scans the documents in order and
            # stops at the limit, soon for a common word.
            has, extra = "doc LIKE :q", {}
            if len(text) < 3 and t.table == "spans" and not text.isascii():
                has, extra = "doc LIKE :short", {"short": _like(SHORT_MARK * (3 - len(text)) + text.lower())}
            elif len(text) < 3:
                has, extra = "strpos(doc, :lower) > 0", {"lower": text.lower()}
            out.append((f"SELECT trace_id FROM {t.pg_table} WHERE project_id = :p AND {has} LIMIT :n", extra))
            if t.table != "spans":  # the spans' text is in their bodies: `_pg_spans_tail`
                out.append((f"SELECT trace_id FROM {t.table} WHERE project_id = :p AND {tail}"
                            f" AND {t.pg_document} LIKE :q LIMIT :n", {}))
            continue
        query = _query_match(conn, t, text)
        if query is None:
            return None
        match, exact = query
        if match is not None:
            # The index drives, rows in its order: joined the other way, SQLite walked the
            # project's rows and ran the match once per row (minutes on 200,000 spans). Unless
            # the trigrams found are the match itself, the rows are checked; a document is a
            # trace's spans (`_index_spans`): any of them may hold the text.
            check = "" if exact else " AND " + (
                f"EXISTS (SELECT 1 FROM spans s WHERE s.trace_seq = r.trace_seq AND {_likes(t.values('s'))})"
                if t.table == "spans" else _likes(t.values("r")))
            out.append((f"SELECT DISTINCT r.trace_id FROM {t.fts} f CROSS JOIN {t.table} r"
                        f" WHERE f.{t.fts} MATCH :m AND r.id = f.rowid AND r.project_id = :p{check} LIMIT :n",
                        {"m": match}))
        out.append((f"SELECT DISTINCT trace_id FROM {t.table} WHERE project_id = :p AND {tail}"
                    f" AND {_likes(t.values())} LIMIT :n", {}))
    # A trace's name and text are a span's (searched above) unless they are its own: stated by a
    # client or amended (`own_text`, which a partial index lists). Those change with any batch, so
    # they are scanned, not indexed.
    out.append((f"SELECT trace_id FROM traces WHERE project_id = :p AND own_text AND {_trace_text(dialect)}"
                " LIMIT :n", {}))
    return out


def _query_match(conn: sa.Connection, t: Indexed, text: str) -> tuple[str | None, bool] | None:
    """SQLite: the FTS5 query that finds the documents which may hold `text` (None in it: none
    can), and whether the documents it finds are the matches; None if too common to look up. A spans
    document lists words (`document`), so its trigrams are asked for within the query's words:
    every word of a match lies inside a word of the text. One or two characters (many Korean
    words are two syllables) take the indexed trigrams that start with them, at most
    MAX_PREFIX_TERMS."""
    words = text.split() if t.table == "spans" else [text]
    long = [w for w in words if len(w) >= 3]
    if long:
        grams = _trigrams(list(dict.fromkeys(g for w in long for g in _trigrams(w))))
        return " AND ".join(map(_fts_phrase, grams)), words == [text] and len(text) == 3
    if not words:
        return None
    prefix = max(words, key=len).lower()
    terms = conn.execute(sa.text(f"SELECT term FROM {t.fts}_vocab WHERE term >= :lo AND term < :hi LIMIT :n"),
                         {"lo": prefix, "hi": prefix + "\U0010ffff", "n": MAX_PREFIX_TERMS + 1}).scalars().all()
    if len(terms) > MAX_PREFIX_TERMS:
        return None
    return " OR ".join(map(_fts_phrase, terms)) or None, words == [text]


def _trace_text(dialect: str) -> str:
    if dialect != "sqlite":
        return f"{SEARCH_TRACES_PG} LIKE :q"
    return _likes(("name", "input_text", "output_text"))


def _each_trace(dialect: str, text: str, marks: dict[str, int], tail: set[str]) -> sa.ColumnElement[bool]:
    """The search as a condition on each trace row the list reads: its own text, its spans and its
    span events (on PostgreSQL their indexed documents, and the rows above the marks). Unqualified
    columns in a subquery are its own table's. OFFSET 0 keeps PostgreSQL from turning a check into
    one scan of every matching row, hashed (7 s at 300,000 spans), where the walk needs a few dozen
    traces checked."""
    checks = [f"(own_text AND {_trace_text(dialect)})"]
    of_trace = "s.project_id = traces.project_id AND s.trace_id = traces.trace_id"
    for t in INDEXED:
        key = "s.trace_seq = traces.seq" if t.table == "spans" else of_trace
        if dialect == "sqlite":
            checks.append(f"EXISTS (SELECT 1 FROM {t.table} s WHERE {key} AND {_likes(t.values())})")
            continue
        checks.append(f"EXISTS (SELECT 1 FROM {t.pg_table} s WHERE {of_trace} AND doc LIKE :q OFFSET 0)")
        if t.table != "spans":  # the spans above the mark: `tail`
            checks.append(f"EXISTS (SELECT 1 FROM {t.table} s WHERE {key} AND s.id > {int(marks[t.table])}"
                          f" AND {t.pg_document} LIKE :q OFFSET 0)")
    q = _like(text.lower() if dialect != "sqlite" else text)
    condition = sa.text("(" + " OR ".join(checks) + ")").bindparams(q=q)
    if not tail:
        return condition  # type: ignore[return-value]
    # One array parameter: an IN list binds a parameter a trace, and psycopg takes 65,535.
    return sa.or_(condition, sa.text("traces.trace_id = ANY(:tail)").bindparams(tail=sorted(tail)))


def step_committed(dbapi: Any, sql: Sql, limit: int) -> int | None:
    """`index_step` in a transaction of its own; None if it failed (logged and rolled back: search
    stays complete through the scan of unindexed rows, and the caller tries again later). Raises
    if the connection broke."""
    cur = dbapi.cursor()
    try:
        sql.begin(cur)
        done = index_step(cur, sql.pg, limit)
        cur.execute("COMMIT")
    except Exception:
        rollback(dbapi)
        if lost(dbapi):
            raise  # the caller replaces the connection
        log.exception("search indexing step failed; retrying after the next commit")
        return None
    return done


def index_step(cur: Any, pg: bool, limit: int) -> int:
    """Index up to `limit` new rows of each indexed table; the caller commits. Returns how many."""
    p = "%s" if pg else "?"
    done = 0
    HORIZON.waiting = False
    for t in INDEXED:
        cur.execute(f"SELECT indexed_upto FROM search_state WHERE name = {p}", [t.table])
        mark = cur.fetchone()[0]
        cur.execute(f"SELECT max(id) FROM {t.table}")
        newest = cur.fetchone()[0]
        LAG.seen(t.table, newest)
        final = HORIZON.final_upto(cur, t.table) if pg else None
        if pg and newest is not None and newest > (final or 0):
            HORIZON.waiting = True
        if pg and final is None:
            continue
        cur.execute(f"SELECT max(id) FROM (SELECT id FROM {t.table} WHERE id > {p}"
                    f"{f' AND id <= {int(final)}' if final is not None else ''} ORDER BY id LIMIT {p}) AS chunk",
                    [mark, limit])
        upto = cur.fetchone()[0]
        LAG.indexed(t.table, upto if upto is not None else mark)
        if upto is None:
            continue
        if t.table == "spans":
            done += _index_spans(cur, pg, t, mark, upto)
        elif pg:
            cur.execute(f"INSERT INTO {t.pg_table} (id, project_id, trace_id, doc)"
                        f" SELECT id, project_id, trace_id, {t.pg_document} FROM {t.table}"
                        " WHERE id > %s AND id <= %s ON CONFLICT (id) DO NOTHING", [mark, upto])
            done += max(cur.rowcount, 0)
        else:
            cur.execute(f"INSERT INTO {t.fts} (rowid, {', '.join(t.columns)}) SELECT id, {fts_values(t)}"
                        f" FROM {t.table} WHERE id > ? AND id <= ?", [mark, upto])
            done += max(cur.rowcount, 0)
        cur.execute(f"UPDATE search_state SET indexed_upto = {p} WHERE name = {p}", [upto, t.table])
    return done


def _index_spans(cur: Any, pg: bool, t: Indexed, mark: int, upto: int) -> int:
    """Index the spans with ids in (mark, upto] as one document per trace: a trace's spans share
    most of their text (a system prompt, the messages each call passes on), so a trigram is listed
    once for the trace rather than once a span (a third of the entries on bench/ingest.py's
    traces, and of the indexing work). A document is named by its first span's id. Returns how
    many spans."""
    if pg:
        cur.execute(f"SELECT id, project_id, trace_id, {DOCUMENT_COLUMNS} FROM spans WHERE id > %s AND id <= %s"
                    " ORDER BY id", [mark, upto])
        rows = cur.fetchall()
        by_trace: dict[Any, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_trace.setdefault((row[1], row[2]), []).append(row)
        docs = []
        for (pid, trace_id), group in by_trace.items():
            doc = SEPARATOR.join(_pg_text(*r[3:]) for r in group)
            # The pieces first: a LIKE that finds one stops there, not at the end of the text.
            docs.append((group[0][0], pid, trace_id, short_pieces(doc) + SEPARATOR + doc))
        cur.executemany(f"INSERT INTO {t.pg_table} (id, project_id, trace_id, doc) VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT (id) DO NOTHING", docs)
        return len(rows)
    cur.execute(f"SELECT id, trace_seq, {DOCUMENT_COLUMNS} FROM spans WHERE id > ? AND id <= ? ORDER BY id",
                [mark, upto])
    rows = cur.fetchall()
    groups: dict[Any, list[tuple[Any, ...]]] = {}
    for row in rows:
        groups.setdefault(row[1], []).append(row)
    docs = [(group[0][0], *document(group)) for group in groups.values()]
    cur.executemany(f"INSERT INTO {t.fts} (rowid, {', '.join(t.columns)}) VALUES (?, ?, ?, ?, ?)", docs)
    cur.executemany("INSERT INTO spans_fts_docs (id, last_id) VALUES (?, ?)",
                    [(group[0][0], group[-1][0]) for group in groups.values()])
    return len(rows)


# A span's columns its part of a document is made of (`_values`).
DOCUMENT_COLUMNS = "name, body, input_text, output_text, attributes"


def _values(name: str, body: bytes | None, *columns: str | None) -> tuple[str | None, ...]:
    """A span's name, input, output and attributes as its body says (a row stored without one, by
    SQL of its own, as its columns say)."""
    return (name, *(spanbody.unpack(body)[:3] if body is not None else columns))


def _pg_text(name: str, body: bytes | None, *columns: str | None) -> str:
    """PostgreSQL: a span's part of its trace's document, lower-cased (queries are), without NUL
    (which PostgreSQL's text refuses)."""
    return " ".join(v for v in _values(name, body, *columns) if v is not None).lower().replace("\x00", "\ufffd")


def short_pieces(text: str) -> str:
    """PostgreSQL: the one- and two-character pieces of `text`'s words that hold a non-ASCII
    character, each behind SHORT_MARK to make three characters, once each. A Korean word of one
    or two syllables is shorter than a trigram, and pg_trgm would read its whole GIN index for
    it; with its marks it is a trigram the index finds, only here. ASCII pieces are left out:
    the most common, and English words of two letters are found in the first documents read."""
    pieces: set[str] = set()
    if text.isascii():  # most documents: no word to split out
        return ""
    for word in set(text.split()):
        if word.isascii():
            continue
        for i, char in enumerate(word):
            if not char.isascii():
                pieces.add(SHORT_MARK * 2 + char)
            pair = word[i:i + 2]
            if len(pair) == 2 and not pair.isascii():
                pieces.add(SHORT_MARK + pair)
    return " ".join(sorted(pieces))


def document(spans: list[tuple[Any, ...]]) -> tuple[str | None, ...]:
    """SQLite: the index's document of some of a trace's spans, (id, trace_seq, *DOCUMENT_COLUMNS)
    in id order: the distinct words (runs of non-space) of the spans' names, inputs, outputs and
    attributes, each column the words the ones before it did not have, sorted, padded with two
    spaces (`padded` says why). A trace's spans repeat their messages, attributes repeat input and output:
    the words are about a third of the text, and indexing costs with the text's length. What the
    span rows' bodies say, which never changes: deleting the document
    (`tracehub.store.retention`) gives it again. A query's trigrams are taken within its words
    (`_query_match`), so trigrams across two words of a document are never asked for."""
    texts: list[list[str]] = [[], [], [], []]
    for row in spans:
        for column, value in zip(texts, _values(*row[2:])):
            if value:
                column.append(value)
    seen: set[str] = set()
    columns: list[list[str]] = []
    for column in texts:
        words = set(" ".join(column).split()) - seen
        seen |= words
        columns.append(sorted(words))  # sorted: the same document again, whatever the hash seed
    return tuple(" ".join(c) + "  " if c else None for c in columns)


class Horizon:
    """PostgreSQL: up to which id every row of a table is final. With several server processes rows
    commit out of id order (one writer's COPY takes its ids, another's commits first), and a mark
    moved past a row not committed yet would never come back to it: search would miss the row.
    An id is final once every transaction of this database that was open when the table's sequence
    had handed it out has ended. `final_upto` records (the sequence's last value, the transactions
    open) and answers the value recorded before once those have ended (the value read at once if
    none is open), else None: indexing lags by a step while writers are at work, and waits for a
    transaction left open in this database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[Any, ...], tuple[int, list[int], list[Any]]] = {}
        self.waiting = False  # the last step left rows it may not index yet

    def final_upto(self, cur: Any, table: str) -> int | None:
        info = cur.connection.info
        key = (info.host, info.port, info.dbname, table)  # tests run several databases in one process
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None:
                cur.execute("SELECT count(*) FROM pg_stat_activity a JOIN unnest(%s::int[], %s::timestamptz[])"
                            " AS o(pid, xact_start) ON a.pid = o.pid AND a.xact_start = o.xact_start",
                            [pending[1], pending[2]])
                if cur.fetchone()[0]:
                    return None
            # The sequence first, then who is open: a transaction holding an id at or below the
            # value read is open when the list is read, or has ended.
            cur.execute("SELECT coalesce(last_value, 0) FROM pg_sequences s"
                        " WHERE s.schemaname || '.' || s.sequencename = pg_get_serial_sequence(%s, 'id')", [table])
            last = cur.fetchone()[0]
            cur.execute("SELECT coalesce(array_agg(pid), '{}'), coalesce(array_agg(xact_start), '{}')"
                        " FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL"
                        " AND pid <> pg_backend_pid()")
            pids, starts = cur.fetchone()
            if not pids:  # nothing open: every id handed out is final now
                self._pending.pop(key, None)
                return int(last)
            self._pending[key] = (last, list(pids), list(starts))
            return pending[0] if pending is not None else None


HORIZON = Horizon()


def index_state(cur: Any) -> tuple[int, float]:
    """(rows committed but not yet in the index, which the tail queries scan; seconds since the
    oldest of them was first seen by this process's indexing, `IndexLag`)."""
    rows, lag = 0, 0.0
    for t in INDEXED:
        cur.execute(f"SELECT indexed_upto FROM search_state WHERE name = '{t.table}'")
        mark = cur.fetchone()[0]
        cur.execute(f"SELECT count(*) FROM {t.table} WHERE id > {int(mark)}")
        rows += cur.fetchone()[0]
        lag = max(lag, LAG.behind(t.table, mark))
    return rows, lag


class IndexLag:
    """When each table's largest row id was first seen, sampled by every indexing step (at least
    once a second while rows wait): how long the rows above the index's mark have waited. Per
    process; with replicas each samples the shared tables, so each reports the same lag within a
    step."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, collections.deque[tuple[float, int]]] = {}
        self._upto: dict[str, int] = {}  # each table's mark as this process's last step left it

    def seen(self, table: str, max_id: int | None) -> None:
        if max_id is None:
            return
        with self._lock:
            marks = self._seen.setdefault(table, collections.deque(maxlen=3600))
            if not marks or max_id > marks[-1][1]:
                marks.append((time.monotonic(), max_id))

    def indexed(self, table: str, upto: int) -> None:
        with self._lock:
            self._upto[table] = upto

    def lag(self) -> float:
        """How long the oldest row the last steps left unindexed has waited, over the tables."""
        with self._lock:
            marks = list(self._upto.items())
        return max((self.behind(table, upto) for table, upto in marks), default=0.0)

    def behind(self, table: str, indexed_upto: int) -> float:
        with self._lock:
            marks = self._seen.get(table)
            while marks and len(marks) > 1 and marks[1][1] <= indexed_upto:
                marks.popleft()  # the entry before the first unindexed one stays: it dates it
            if not marks:
                return 0.0
            for at, max_id in marks:
                if max_id > indexed_upto:
                    return time.monotonic() - at
        return 0.0


LAG = IndexLag()
