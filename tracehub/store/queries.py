"""Read queries for the API and UI. Every function takes the caller's project_id and filters by it.

Results are plain dicts shaped by the API's field names; rendering times and JSON is the API's job.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Sequence

import sqlalchemy as sa

from tracehub.store import search, spanbody
from tracehub.store.completion import COMPLETION, CUTOFF
from tracehub.store.schema import evaluation_results, projects, resources, span_events, spans, traces

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
    eval_name: str | None = None
    eval_passed: bool | None = None
    user_review_passed: bool | None = None


def _dicts(result: sa.CursorResult[Any]) -> list[dict[str, Any]]:
    """Rows as plain dicts: a third of what copying RowMappings costs (a 200-trace page, 1,000 spans)."""
    keys = list(result.keys())
    return [dict(zip(keys, row)) for row in result]


def _trace_columns(text: Sequence[sa.ColumnElement[Any]]) -> list[sa.ColumnElement[Any]]:
    """A trace row's columns as the API reads them: its status and awaited parents at the
    moment of the read (`CUTOFF`), and `text` for input / output."""
    skip = ("status", "input_text", "output_text")
    return [col for col in traces.c if col.name not in skip] + [
        COMPLETION.status.label("status"), COMPLETION.awaited.label("awaited_parent_count"), *text]


def trace_read_columns() -> list[sa.ColumnElement[Any]]:
    """The columns `get_trace` reads, for a statement that reads more beside them (`CUTOFF` bound)."""
    return _trace_columns([traces.c.input_text, traces.c.output_text])


@functools.cache
def _list_columns() -> list[sa.ColumnElement[Any]]:
    return _trace_columns([sa.func.substr(col, 1, LIST_TEXT_LIMIT).label(col.name)
                           for col in (traces.c.input_text, traces.c.output_text)])


def list_traces(conn: sa.Connection, project_id: int, f: TraceFilter, page: int,
                page_size: int, cutoff_ns: int) -> tuple[list[dict[str, Any]], int, bool]:
    """The page's rows, the total and whether the total is capped (a common search counts
    `search.SEARCH_CAP` traces at most). `cutoff_ns`: the moment of the read as
    `completion.cutoff` has it."""
    c = COMPLETION
    at = {CUTOFF.key: cutoff_ns}
    conds: list[sa.ColumnElement[bool]] = [traces.c.project_id == project_id]
    for column, value in (
        (traces.c.model, f.model), (traces.c.environment, f.environment),
        (traces.c.user_id, f.user_id), (traces.c.session_id, f.session_id), (traces.c.name, f.name),
        (traces.c.decision, f.decision),
    ):
        if value is not None:
            conds.append(column == value)
    if f.status is not None:
        conds.append(c.status_is(f.status))
    if f.has_open_spans is not None:
        conds.append(c.open_count > 0 if f.has_open_spans else c.open_count == 0)
    if f.start_after_ns is not None:
        conds.append(traces.c.start_ns >= f.start_after_ns)
    if f.start_before_ns is not None:
        conds.append(traces.c.start_ns < f.start_before_ns)
    found = search.find(conn, project_id, f.search) if f.search else None
    if found is not None:
        conds.append(found.condition)
    if f.user_review_passed is not None:
        conds.append(traces.c.user_review_passed == f.user_review_passed)
    if f.eval_name is not None or f.eval_passed is not None:
        ev = evaluation_results.c
        matched = sa.select(ev.trace_id).where(ev.project_id == project_id)
        if f.eval_name is not None:
            matched = matched.where(ev.eval_name == f.eval_name)
        if f.eval_passed is not None:
            matched = matched.where(ev.passed == f.eval_passed)
        conds.append(traces.c.trace_id.in_(matched))
    where = sa.and_(*conds)
    capped = False
    if len(conds) == 1:  # the project's traces: the writer keeps their count
        total = conn.execute(sa.select(projects.c.trace_count).where(projects.c.id == project_id)
                             ).scalar_one_or_none() or 0
    elif found is not None and found.capped:
        if len(conds) == 2:  # the search alone: the index found more than the cap
            total = search.SEARCH_CAP + 1
        else:
            counted = sa.select(traces.c.trace_id).where(where).limit(search.SEARCH_CAP + 1).subquery()
            total = conn.execute(sa.select(sa.func.count()).select_from(counted), at).scalar_one()
        capped = total > search.SEARCH_CAP
        total = min(total, search.SEARCH_CAP)
    else:
        total = conn.execute(sa.select(sa.func.count()).select_from(traces).where(where), at).scalar_one()
    newest_first = (traces.c.start_ns.desc(), traces.c.trace_id.desc())  # one index walked backwards
    # The page's ids first, from the index alone; then only those rows. Selected in one step,
    # PostgreSQL read and cut the text of every row before the page (page 100: 72 ms of 6,000 rows).
    page_ids = (sa.select(traces.c.trace_id).where(where).order_by(*newest_first)
                .limit(page_size).offset((page - 1) * page_size))
    rows = _dicts(conn.execute(
        sa.select(*_list_columns())
        .where(traces.c.project_id == project_id, traces.c.trace_id.in_(page_ids.scalar_subquery())), at
    ))
    # Sorted here: asked to, SQLite walked the whole start index again to avoid sorting 50 rows.
    rows.sort(key=lambda r: (r["start_ns"], r["trace_id"]), reverse=True)
    return rows, total, capped


def get_trace(conn: sa.Connection, project_id: int, trace_id: str, cutoff_ns: int) -> dict[str, Any] | None:
    """`cutoff_ns`: the moment of the read as `completion.cutoff` has it."""
    rows = _dicts(conn.execute(_trace_query(conn.dialect.name),
                               {"p": project_id, "t": trace_id, CUTOFF.key: cutoff_ns}))
    return rows[0] if rows else None


@functools.cache
def _trace_query(dialect: str) -> sa.Select[Any]:
    # Built once, the moment of the read a parameter: building it anew took most of reading it.
    return sa.select(*_trace_columns([traces.c.input_text, traces.c.output_text])).where(
        traces.c.project_id == sa.bindparam("p", type_=sa.Integer),
        traces.c.trace_id == sa.bindparam("t", type_=sa.String))


def trace_spans(conn: sa.Connection, project_id: int, trace_id: str) -> list[dict[str, Any]]:
    """A trace's spans in start order, JSON columns as their stored text, which an answer embeds as
    it is. On PostgreSQL the driver used to parse json into objects that the answer encoded again;
    the 1,000-span detail took 77-81 ms (p50) that way and 61-64 as text."""
    return span_rows(conn, _trace_spans_query(conn.dialect.name), {"p": project_id, "t": trace_id})


def span_rows(conn: sa.Connection, query: sa.Select[Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Whole span rows (`_trace_spans_query` and its narrowings), their bodies opened."""
    return spanbody.open_rows(_dicts(conn.execute(query, params)))


@functools.cache
def _trace_spans_query(dialect: str) -> sa.Select[Any]:
    # Built once: building it took more than running it (~430 of ~610 us for 10 spans on SQLite).
    as_text = sa.cast if dialect == "postgresql" else sa.type_coerce
    columns = [as_text(c, sa.Text).label(c.name) if isinstance(c.type, sa.JSON) else c
               for c in spans.c]
    resource = sa.func.coalesce(as_text(resources.c.attributes, sa.Text), "{}").label("resource")
    project_id = sa.bindparam("p", type_=sa.Integer)
    seq = sa.select(traces.c.seq).where(traces.c.project_id == project_id,
                                        traces.c.trace_id == sa.bindparam("t", type_=sa.String))
    return (
        sa.select(*columns, resource)
        .select_from(spans.outerjoin(resources, sa.and_(resources.c.project_id == spans.c.project_id,
                                                        resources.c.resource_id == spans.c.resource_id)))
        .where(spans.c.project_id == project_id, spans.c.trace_seq == seq.scalar_subquery())
        .order_by(spans.c.start_ns, spans.c.id)
    )


def trace_events(conn: sa.Connection, project_id: int, trace_id: str) -> list[dict[str, Any]]:
    events = _dicts(conn.execute(_trace_events_query(conn.dialect.name), {"p": project_id, "t": trace_id}))
    for event in events:
        if isinstance(event["payload"], str):
            event["payload"] = json.loads(event["payload"])
    return events


@functools.cache
def _trace_events_query(dialect: str) -> sa.Select[Any]:
    e = span_events.c
    return (sa.select(span_events)
            .where(e.project_id == sa.bindparam("p", type_=sa.Integer),
                   e.trace_id == sa.bindparam("t", type_=sa.String))
            .order_by(e.time_ns, e.id))


def trace_evals(conn: sa.Connection, project_id: int, trace_id: str) -> list[dict[str, Any]]:
    return _dicts(conn.execute(_trace_evals_query(conn.dialect.name), {"p": project_id, "t": trace_id}))


@functools.cache
def _trace_evals_query(dialect: str) -> sa.Select[Any]:
    ev = evaluation_results.c
    return (sa.select(evaluation_results)
            .where(ev.project_id == sa.bindparam("p", type_=sa.Integer),
                   ev.trace_id == sa.bindparam("t", type_=sa.String))
            .order_by(ev.created_ns, ev.id))


def stored_trace_ids(conn: sa.Connection, project_id: int, trace_ids: list[str]) -> set[str]:
    """Those of `trace_ids` that the project has a trace row for."""
    t = traces.c
    return set(conn.execute(
        sa.select(t.trace_id).where(t.project_id == project_id, t.trace_id.in_(trace_ids))
    ).scalars())


RECENT_VALUES_SCAN = 500  # newest traces whose distinct values the UI's filters suggest


def recent_values(conn: sa.Connection, project_id: int, columns: Sequence[str],
                  limit: int = 50) -> dict[str, list[str]]:
    """Distinct values of trace columns (model, environment) among the newest traces, for the
    list's filter suggestions: the start index bounds the read, however many traces are stored."""
    newest = conn.execute(
        sa.select(*(traces.c[name] for name in columns)).where(traces.c.project_id == project_id)
        .order_by(traces.c.start_ns.desc()).limit(RECENT_VALUES_SCAN)).all()
    found: dict[str, set[str]] = {name: set() for name in columns}
    for row in newest:
        for name, value in zip(columns, row):
            if value is not None and len(found[name]) < limit:
                found[name].add(value)
    return {name: sorted(values) for name, values in found.items()}


SESSIONS_WALK_MAX = 20_000  # traces read at a time while walking for sessions


def list_sessions(conn: sa.Connection, project_id: int, start_after_ns: int | None, page: int,
                  page_size: int, user_id: str | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Sessions (traces sharing a session_id) latest activity first, and whether more follow.

    The page's session ids come from walking the traces newest first (the start index, in
    batches) until the page is full: grouping every trace by session to sort the groups took
    0.5-2 s over 100,000 traces on SQLite. Then only those sessions' traces are summed. Each row:
    session_id, trace_count, first_ns, last_ns, input_tokens, output_tokens, cost_usd,
    error_count, user_count, user_id (one of its users); over the traces that pass the filters.
    """
    t = traces.c
    conds: list[sa.ColumnElement[bool]] = [t.project_id == project_id, t.session_id.is_not(None)]
    if start_after_ns is not None:
        conds.append(t.start_ns >= start_after_ns)
    if user_id is not None:
        conds.append(t.user_id == user_id)
    wanted = page * page_size + 1  # one more tells whether a next page exists
    found: dict[str, None] = {}
    after: tuple[int, str] | None = None
    batch = min(max(4 * wanted, 200), SESSIONS_WALK_MAX)
    while len(found) < wanted:
        walk = sa.select(t.session_id, t.start_ns, t.trace_id).where(*conds)
        if after is not None:
            walk = walk.where(sa.or_(t.start_ns < after[0], sa.and_(t.start_ns == after[0], t.trace_id < after[1])))
        newest = conn.execute(walk.order_by(t.start_ns.desc(), t.trace_id.desc()).limit(batch)).all()
        for session_id, _, _ in newest:
            found.setdefault(session_id, None)
        if len(newest) < batch:
            break
        after = (newest[-1][1], newest[-1][2])
        batch = min(batch * 2, SESSIONS_WALK_MAX)
    ordered = list(found)
    ids = ordered[(page - 1) * page_size:page * page_size]
    more = len(ordered) > page * page_size
    if not ids:
        return [], more
    # The same filters, the time not as an index range: given one, SQLite read the window's
    # traces by the start index instead of these sessions' by the session index.
    totals = [t.project_id == project_id]
    if start_after_ns is not None:
        totals.append(t.start_ns + 0 >= start_after_ns)
    if user_id is not None:
        totals.append(t.user_id == user_id)
    rows = _dicts(conn.execute(
        sa.select(
            t.session_id,
            sa.func.count().label("trace_count"),
            sa.func.min(t.start_ns).label("first_ns"),
            sa.func.max(t.start_ns).label("last_ns"),
            sa.func.sum(t.input_tokens).label("input_tokens"),
            sa.func.sum(t.output_tokens).label("output_tokens"),
            sa.func.sum(t.cost_usd).label("cost_usd"),
            sa.func.sum(sa.case((t.status == "error", 1), else_=0)).label("error_count"),
            sa.func.count(sa.distinct(t.user_id)).label("user_count"),
            sa.func.min(t.user_id).label("user_id"),
        ).where(*totals, t.session_id.in_(ids)).group_by(t.session_id)))
    for row in rows:  # SUM over BIGINT is NUMERIC on PostgreSQL
        for key in ("trace_count", "input_tokens", "output_tokens", "error_count", "user_count"):
            row[key] = int(row[key] or 0)
        row["cost_usd"] = float(row["cost_usd"] or 0.0)
    rank = {session_id: i for i, session_id in enumerate(ids)}
    rows.sort(key=lambda r: rank[r["session_id"]])
    return rows, more


SESSION_TURNS_LIMIT = 500


def session_traces(conn: sa.Connection, project_id: int, session_id: str, cutoff_ns: int,
                   limit: int = SESSION_TURNS_LIMIT) -> tuple[list[dict[str, Any]], int]:
    """A session's traces oldest first, with their whole input and output (the conversation's
    turns), at most `limit`; and how many it has. `cutoff_ns` as `list_traces` takes it."""
    t = traces.c
    where = sa.and_(t.project_id == project_id, t.session_id == session_id)
    total = conn.execute(sa.select(sa.func.count()).select_from(traces).where(where)).scalar_one()
    rows = _dicts(conn.execute(
        sa.select(*_trace_columns([t.input_text, t.output_text])).where(where)
        # `+ 0`: ordered by the start index, SQLite walked every trace of the project to find the
        # session's few (0.4 s of 100,000); this way it reads them by the session index and sorts.
        .order_by(t.start_ns + 0, t.trace_id).limit(limit), {CUTOFF.key: cutoff_ns}))
    return rows, int(total)
