"""A trace's spans without their heavy columns, and one span in full: what large traces need.

The read model (`readmodel.trace_read_model`) carries every span whole: a 10,000-span trace is
tens of megabytes of text. `light_spans` reads only what a tree and a waterfall draw (ids,
parent, name, type, status, times, model, tokens, cost, LangGraph names), in start order, a page
at a time if asked; `one_span` reads a single span as the read model has it (stored row, `span_events`,
`amendments`). Both apply the trace's AMENDMENTs (`tracehub.store.amendment`), so they say what
the read model says; `graph_spans` gives the read-model rows of the LangGraph spans alone.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import sqlalchemy as sa

from tracehub.store import amendment
from tracehub.store.queries import _dicts, _trace_spans_query, span_rows
from tracehub.store.schema import span_events, spans, traces

LIGHT_COLUMNS = ("span_id", "parent_span_id", "parent_remote", "name", "span_type", "tool_name", "status",
                 "status_code", "start_ns", "end_ns", "first_token_ms", "model", "input_tokens", "output_tokens",
                 "total_tokens", "cost_usd", "graph_name", "node_name", "step")


def _trace_seq() -> sa.ScalarSelect[Any]:
    return sa.select(traces.c.seq).where(traces.c.project_id == sa.bindparam("p", type_=sa.Integer),
                                         traces.c.trace_id == sa.bindparam("t", type_=sa.String)
                                         ).scalar_subquery()


@functools.cache
def _light_query(paged: bool) -> sa.Select[Any]:
    # Built once (building a query costs more than running it on a small trace).
    query = (sa.select(*(spans.c[name] for name in LIGHT_COLUMNS))
             .where(spans.c.project_id == sa.bindparam("p", type_=sa.Integer), spans.c.trace_seq == _trace_seq())
             .order_by(spans.c.start_ns, spans.c.id))
    if paged:
        query = query.limit(sa.bindparam("limit", type_=sa.Integer)).offset(sa.bindparam("offset", type_=sa.Integer))
    return query


@functools.cache
def _amendments_query() -> sa.Select[Any]:
    e = span_events.c
    return (sa.select(e.span_id, e.time_ns, e.payload)
            .where(e.project_id == sa.bindparam("p", type_=sa.Integer),
                   e.trace_id == sa.bindparam("t", type_=sa.String),
                   e.event_type == amendment.EVENT_TYPE)
            .order_by(e.time_ns, e.id))


def _amendments(conn: sa.Connection, project_id: int, trace_id: str) -> dict[str, list[Any]]:
    """Each span's AMENDMENT patches, in the order they apply."""
    patches: dict[str, list[Any]] = {}
    for span_id, _time, payload in conn.execute(_amendments_query(), {"p": project_id, "t": trace_id}):
        if span_id is not None:
            payload = json.loads(payload) if isinstance(payload, str) else payload
            patches.setdefault(span_id, []).append(amendment.patch_of(payload))
    return patches


def light_spans(conn: sa.Connection, project_id: int, trace_id: str, page: int | None = None,
                page_size: int = 1000) -> list[dict[str, Any]]:
    """The trace's spans in start order, LIGHT_COLUMNS only, amendments applied: all of them, or
    page `page` (from 1) of `page_size`."""
    params: dict[str, Any] = {"p": project_id, "t": trace_id}
    if page is not None:
        params.update(limit=page_size, offset=(page - 1) * page_size)
    rows = _dicts(conn.execute(_light_query(page is not None), params))
    patches = _amendments(conn, project_id, trace_id)
    if patches:
        for row in rows:
            for patch in patches.get(row["span_id"], ()):
                amendment.apply_patch(row, patch)
    return rows


def _merge(conn: sa.Connection, project_id: int, trace_id: str, rows: list[dict[str, Any]]) -> None:
    """The read model's merge (`readmodel.trace_read_model`) for some of a trace's spans."""
    if not rows:
        return
    e = span_events.c
    events = _dicts(conn.execute(
        sa.select(span_events).where(e.project_id == project_id, e.trace_id == trace_id,
                                     e.span_id.in_([r["span_id"] for r in rows]))
        .order_by(e.time_ns, e.id)))
    by_span: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if isinstance(event["payload"], str):
            event["payload"] = json.loads(event["payload"])
        by_span.setdefault(event["span_id"], []).append(event)
    for span in rows:
        amendment.merge_events(span, by_span.get(span["span_id"], []))


@functools.cache
def _one_span_query(dialect: str) -> sa.Select[Any]:
    return _trace_spans_query(dialect).where(spans.c.span_id == sa.bindparam("s", type_=sa.String))


def one_span(conn: sa.Connection, project_id: int, trace_id: str, span_id: str) -> dict[str, Any] | None:
    """One span as the read model has it, or None if the trace holds no such span."""
    rows = span_rows(conn, _one_span_query(conn.dialect.name), {"p": project_id, "t": trace_id, "s": span_id})
    _merge(conn, project_id, trace_id, rows)
    return rows[0] if rows else None


@functools.cache
def _graph_spans_query(dialect: str) -> sa.Select[Any]:
    return _trace_spans_query(dialect).where(sa.or_(spans.c.graph_name.is_not(None), spans.c.node_name.is_not(None)))


def graph_spans(conn: sa.Connection, project_id: int, trace_id: str) -> list[dict[str, Any]]:
    """The read-model rows of the trace's LangGraph spans (a graph or node name), start order."""
    rows = span_rows(conn, _graph_spans_query(conn.dialect.name), {"p": project_id, "t": trace_id})
    _merge(conn, project_id, trace_id, rows)
    return rows
