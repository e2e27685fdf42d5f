"""Search: a case-insensitive substring match over span names, input, output and attributes, span
events (log messages, amendments) and trace text.

Indexing is off the ingest path. The writer calls `index_step()` between commits when it is idle
(and at least once a second under load); `search_state` says up to which row id each table is
indexed. A query reads the index for rows up to that mark and scans the rows above it, so results
are complete the moment data is committed, and only the unindexed tail costs a scan.

SQLite: FTS5 tables with the trigram tokenizer over the rows themselves (external content), without
token positions (`detail=none`: half the indexing cost, a third of the size). A query of three or
more characters finds the rows that hold all of its trigrams, then keeps those whose text contains
it. PostgreSQL: side tables of lower-cased documents with pg_trgm GIN indexes. Queries shorter than three
characters (many Korean words are two syllables) cannot use trigrams and scan the project's rows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tracehub.store.background import rollback
from tracehub.store.faults import lost
from tracehub.store.schema import SEARCH_DOCUMENT_PG, SEARCH_EVENTS_PG, SEARCH_TRACES_PG, traces

if TYPE_CHECKING:
    from tracehub.store.batchwrite import Sql

log = logging.getLogger(__name__)


class Indexed:
    """One indexed table: where its rows live and how the two dialects index them."""

    def __init__(self, table: str, columns: tuple[str, ...], fts: str, pg_table: str,
                 pg_document: str) -> None:
        self.table, self.columns, self.fts = table, columns, fts
        self.pg_table, self.pg_document = pg_table, pg_document


INDEXED = (
    Indexed("spans", ("name", "input_text", "output_text", "attributes"), "spans_fts", "span_search",
            SEARCH_DOCUMENT_PG),
    Indexed("span_events", ("name", "payload"), "span_events_fts", "span_event_search",
            SEARCH_EVENTS_PG),
)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _likes(columns: tuple[str, ...], prefix: str = "") -> str:
    return "(" + " OR ".join(f"{prefix}{c} LIKE :q ESCAPE '\\'" for c in columns) + ")"


# Enough trigrams to make the candidates few; the substring check afterwards decides.
MAX_QUERY_TRIGRAMS = 24


def _trigrams(text: str) -> list[str]:
    grams = list(dict.fromkeys(text[i:i + 3] for i in range(len(text) - 2)))
    if len(grams) > MAX_QUERY_TRIGRAMS:
        step = (len(grams) - 1) / (MAX_QUERY_TRIGRAMS - 1)
        grams = [grams[round(i * step)] for i in range(MAX_QUERY_TRIGRAMS)]
    return grams


def condition(dialect: str, project_id: int, text: str) -> sa.ColumnElement[bool]:
    """Traces whose text, spans or span events contain `text`, in any case."""
    selects = []
    for t in INDEXED:
        tail = f"id > (SELECT indexed_upto FROM search_state WHERE name = '{t.table}')"
        if dialect != "sqlite":
            selects.append(f"SELECT trace_id FROM {t.pg_table} WHERE project_id = :p AND doc LIKE :q")
            selects.append(f"SELECT trace_id FROM {t.table} WHERE project_id = :p AND {tail}"
                           f" AND {t.pg_document} LIKE :q")
        elif len(text) >= 3:
            # One trigram is the whole query; a longer one needs its trigrams in this order.
            check = "" if len(text) == 3 else " AND " + _likes(t.columns, "r.")
            # The index must drive: joined, SQLite walked the project's rows and ran the match
            # once per row (minutes on 200,000 spans).
            selects.append(f"SELECT r.trace_id FROM {t.table} r WHERE r.id IN"
                           f" (SELECT rowid FROM {t.fts} WHERE {t.fts} MATCH :m)"
                           f" AND +r.project_id = :p{check}")
            selects.append(f"SELECT trace_id FROM {t.table} WHERE project_id = :p AND {tail}"
                           f" AND {_likes(t.columns)}")
        else:
            selects.append(f"SELECT trace_id FROM {t.table} WHERE project_id = :p AND {_likes(t.columns)}")
    # Trace rows change with every batch, so their own text is scanned, not indexed.
    trace_text = (f"{SEARCH_TRACES_PG} LIKE :q" if dialect != "sqlite"
                  else _likes(("name", "input_text", "output_text")))
    selects.append(f"SELECT trace_id FROM traces WHERE project_id = :p AND {trace_text}")
    sql = " UNION ".join(selects)
    params = {"p": project_id, "q": _like(text.lower() if dialect != "sqlite" else text),
              "m": " AND ".join('"' + g.replace('"', '""') + '"' for g in _trigrams(text))}
    matched = sa.text(sql).bindparams(**{k: v for k, v in params.items() if f":{k}" in sql})
    return traces.c.trace_id.in_(matched.columns(sa.column("trace_id", sa.String)))


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
    for t in INDEXED:
        cur.execute(f"SELECT indexed_upto FROM search_state WHERE name = {p}", [t.table])
        mark = cur.fetchone()[0]
        cur.execute(f"SELECT max(id) FROM (SELECT id FROM {t.table} WHERE id > {p} ORDER BY id LIMIT {p})"
                    " AS chunk", [mark, limit])
        upto = cur.fetchone()[0]
        if upto is None:
            continue
        if pg:
            cur.execute(f"INSERT INTO {t.pg_table} (id, project_id, trace_id, doc)"
                        f" SELECT id, project_id, trace_id, {t.pg_document} FROM {t.table}"
                        " WHERE id > %s AND id <= %s ON CONFLICT (id) DO NOTHING", [mark, upto])
        else:
            cols = ", ".join(t.columns)
            cur.execute(f"INSERT INTO {t.fts} (rowid, {cols}) SELECT id, {cols} FROM {t.table}"
                        " WHERE id > ? AND id <= ?", [mark, upto])
        done += cur.rowcount if cur.rowcount and cur.rowcount > 0 else 0
        cur.execute(f"UPDATE search_state SET indexed_upto = {p} WHERE name = {p}", [upto, t.table])
    return done


def unindexed_rows(cur: Any, pg: bool) -> int:
    """Rows committed but not yet in the index (the tail queries scan)."""
    total = 0
    for t in INDEXED:
        cur.execute(f"SELECT count(*) FROM {t.table} WHERE id > "
                    f"(SELECT indexed_upto FROM search_state WHERE name = '{t.table}')")
        total += cur.fetchone()[0]
    return total
