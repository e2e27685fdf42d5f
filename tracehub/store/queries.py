"""Read queries for the API and UI. Every function takes the caller's project_id and filters by it.

Results are plain dicts shaped by the API's field names; rendering times and JSON is the API's job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from tracehub.store.schema import SEARCH_DOCUMENT_PG, span_events, spans, traces

LIST_TEXT_LIMIT = 1000  # list rows carry previews; the detail carries the full text


@dataclass(frozen=True)
class TraceFilter:
    status: str | None = None
    model: str | None = None
    environment: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    name: str | None = None
    search: str | None = None
    decision: str | None = None
    has_open_spans: bool | None = None
    start_after_ns: int | None = None
    start_before_ns: int | None = None


def _search_condition(dialect: str, project_id: int, text: str) -> sa.ColumnElement[bool]:
    """Traces with a span whose name, input, output or attributes contain `text` (any case)."""
    if dialect == "sqlite":
        if len(text) >= 3:
            # Trigram index: a phrase query is a case-insensitive substring match.
            phrase = '"' + text.replace('"', '""') + '"'
            matched = sa.text(
                "SELECT s.trace_id FROM spans_fts JOIN spans s ON s.id = spans_fts.rowid"
                " WHERE spans_fts MATCH :q AND s.project_id = :p"
            ).bindparams(q=phrase, p=project_id)
        else:
            # Too short for trigrams: scan, bounded by the project.
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            matched = sa.text(
                "SELECT trace_id FROM spans WHERE project_id = :p AND ("
                "name LIKE :q ESCAPE '\\' OR input_text LIKE :q ESCAPE '\\'"
                " OR output_text LIKE :q ESCAPE '\\' OR attributes LIKE :q ESCAPE '\\')"
            ).bindparams(q=like, p=project_id)
    else:
        like = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        matched = sa.text(
            f"SELECT trace_id FROM spans WHERE project_id = :p AND {SEARCH_DOCUMENT_PG} LIKE :q"
        ).bindparams(q=like, p=project_id)
    return traces.c.trace_id.in_(matched.columns(sa.column("trace_id", sa.String)))


def _open_count() -> sa.ColumnElement[int]:
    return traces.c.running_span_count + traces.c.missing_parent_count


def list_traces(conn: sa.Connection, project_id: int, f: TraceFilter, page: int,
                page_size: int) -> tuple[list[dict[str, Any]], int]:
    conds: list[sa.ColumnElement[bool]] = [traces.c.project_id == project_id]
    for column, value in (
        (traces.c.status, f.status), (traces.c.model, f.model), (traces.c.environment, f.environment),
        (traces.c.user_id, f.user_id), (traces.c.session_id, f.session_id), (traces.c.name, f.name),
        (traces.c.decision, f.decision),
    ):
        if value is not None:
            conds.append(column == value)
    if f.has_open_spans is not None:
        conds.append(_open_count() > 0 if f.has_open_spans else _open_count() == 0)
    if f.start_after_ns is not None:
        conds.append(traces.c.start_ns >= f.start_after_ns)
    if f.start_before_ns is not None:
        conds.append(traces.c.start_ns < f.start_before_ns)
    if f.search:
        conds.append(_search_condition(conn.dialect.name, project_id, f.search))
    where = sa.and_(*conds)
    total = conn.execute(sa.select(sa.func.count()).select_from(traces).where(where)).scalar_one()
    preview = [sa.func.substr(c, 1, LIST_TEXT_LIMIT).label(c.name)
               for c in (traces.c.input_text, traces.c.output_text)]
    columns = [c for c in traces.c if c.name not in ("input_text", "output_text")] + preview
    rows = conn.execute(
        sa.select(*columns).where(where)
        .order_by(traces.c.start_ns.desc(), traces.c.trace_id)
        .limit(page_size).offset((page - 1) * page_size)
    ).mappings().all()
    return [dict(r) for r in rows], total


def get_trace(conn: sa.Connection, project_id: int, trace_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(traces).where(traces.c.project_id == project_id, traces.c.trace_id == trace_id)
    ).mappings().first()
    return dict(row) if row else None


def trace_spans(conn: sa.Connection, project_id: int, trace_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(spans).where(spans.c.project_id == project_id, spans.c.trace_id == trace_id)
        .order_by(spans.c.start_ns, spans.c.id)
    ).mappings().all()
    return [dict(r) for r in rows]


def trace_events(conn: sa.Connection, project_id: int, trace_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(span_events).where(span_events.c.project_id == project_id,
                                     span_events.c.trace_id == trace_id)
        .order_by(span_events.c.time_ns, span_events.c.id)
    ).mappings().all()
    out = []
    for r in rows:
        event = dict(r)
        if isinstance(event["payload"], str):
            event["payload"] = json.loads(event["payload"])
        out.append(event)
    return out
