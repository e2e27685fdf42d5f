"""The trace read model: one trace as every reader sees it (the API's detail, the UI, the decision
engine), its spans with their AMENDMENTs applied (`tracehub.store.amendment`) over the span as
stored. The trace row holds the same amendments in its totals, which the writer folded in. With
the trace come its evals and its decision log (decisions and judge runs, newest first).
Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from tracehub.store import amendment, decisions, queries


@dataclass
class TraceModel:
    """A trace row (its status and awaited parents as `completion` has them) and its merged spans.

    Each span is its stored row (JSON columns as text) with its amendments applied, plus
    `span_events` (its events from `span_events`, time order) and `amendments` (those that are
    AMENDMENTs). An amendment of attributes merges key by key; the span's `attributes` is then a
    dict, else the stored text."""

    trace: dict[str, Any]
    spans: list[dict[str, Any]]
    events: list[dict[str, Any]]  # events that name no span
    evals: list[dict[str, Any]]
    decisions: list[dict[str, Any]] = field(default_factory=list)  # `trace_decisions` rows
    judge_runs: list[dict[str, Any]] = field(default_factory=list)


def trace_read_model(conn: sa.Connection, project_id: int, trace_id: str, cutoff_ns: int,
                     spans: bool = True) -> TraceModel | None:
    """The trace as of `cutoff_ns` (`completion.cutoff`), or None if it is not stored. Without
    `spans`, only its row and evals: what the decision engine reads (the row already holds what
    the spans add up to)."""
    trace = queries.get_trace(conn, project_id, trace_id, cutoff_ns)
    if trace is None:
        return None
    if not spans:
        return TraceModel(trace, [], [], queries.trace_evals(conn, project_id, trace_id))
    rows = queries.trace_spans(conn, project_id, trace_id)
    events = queries.trace_events(conn, project_id, trace_id)
    evals = queries.trace_evals(conn, project_id, trace_id)
    by_span: dict[str | None, list[dict[str, Any]]] = {}
    for event in events:
        by_span.setdefault(event["span_id"], []).append(event)
    for span in rows:
        amendment.merge_events(span, by_span.get(span["span_id"], []))
    return TraceModel(trace, rows, by_span.get(None, []), evals,
                      decisions.trace_decision_rows(conn, project_id, trace_id),
                      decisions.trace_judge_runs(conn, project_id, trace_id))
