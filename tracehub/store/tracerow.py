"""Trace-level derived fields, maintained incrementally from the spans and events of each batch.

Pure functions over a trace row held as a dict (the `traces` table's columns): the writer reads the
rows a transaction touches, folds in what is new, and upserts them. Nothing here does I/O, and
nothing here scans all spans of a trace.
"""

from __future__ import annotations

from typing import Any

from tracehub.records import (
    MODEL_CALL_SPAN_TYPES,
    STATUS_ERROR,
    STATUS_RUNNING,
    STATUS_SUCCESS,
    SpanRecord,
    TraceRecord,
)

TRACE_COLUMNS = (
    "project_id", "trace_id", "name", "status", "start_ns", "end_ns", "model", "environment",
    "user_id", "session_id", "input_text", "output_text", "attributes", "root_span_id",
    "span_count", "running_span_count", "missing_parent_count", "error_count", "input_tokens",
    "output_tokens", "cost_usd", "decision", "user_review_passed", "input_rank_ns",
    "output_rank_ns", "updated_ns", "status_explicit", "graph_name", "awaited_parents", "seq",
    "last_span_ns", "own_text",
)

# Explicit fields a JSON client may state; they win over what the spans derive.
_EXPLICIT = ("name", "model", "environment", "user_id", "session_id", "input_text", "output_text",
             "attributes", "user_review_passed", "graph_name", "start_ns", "end_ns")


def new_row(project_id: int, trace_id: str, seq: int, now: int) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TRACE_COLUMNS)
    row.update(project_id=project_id, trace_id=trace_id, status=STATUS_RUNNING, start_ns=None,
               span_count=0, running_span_count=0, missing_parent_count=0, error_count=0,
               input_tokens=0, output_tokens=0, cost_usd=0.0, updated_ns=now, seq=seq, last_span_ns=now,
               own_text=False)
    return row


def fold_span(row: dict[str, Any], s: SpanRecord, declared: set[str]) -> None:
    """Fold one newly stored span into its trace row (counts, times, root, text, model, tokens).
    A batch's spans come in start order; `declared` (kept over one batch) holds the traces whose
    model this batch took from a span that is not a model call, which a model call then replaces.

    The root is the span without a parent. Until it is stored, a local root stands in for it: a
    span whose parent is remote (the trace began in another process) or itself. A trace with
    neither is named after its earliest span, the top of what arrived. A span that states the
    trace's name (`Mapped.trace_name`) names it so instead of by its own name."""
    m = s.mapped
    row["span_count"] += 1
    if s.end_ns is None:
        row["running_span_count"] += 1
    if s.status == STATUS_ERROR:
        row["error_count"] += 1
    earliest = row["start_ns"] is None or s.start_ns < row["start_ns"]
    if earliest:
        row["start_ns"] = s.start_ns
    if s.end_ns is not None and (row["end_ns"] is None or s.end_ns > row["end_ns"]):
        row["end_ns"] = s.end_ns
    parent = s.parent_span_id
    is_root = parent is None or ((s.parent_remote or parent == s.span_id) and row["root_span_id"] is None)
    if is_root:
        row["root_span_id"] = s.span_id
        row["name"] = m.trace_name or s.name
    elif row["root_span_id"] is None and (row["name"] is None or earliest):
        row["name"] = m.trace_name or s.name
    call = m.span_type in MODEL_CALL_SPAN_TYPES
    if call:
        row["input_tokens"] += m.input_tokens or 0
        row["output_tokens"] += m.output_tokens or 0
    # The trace's model is one that was called, else one a span declared; the earliest wins.
    if m.model:
        if not row["model"]:
            row["model"] = m.model
            if not call:
                declared.add(row["trace_id"])
        elif call and row["trace_id"] in declared:
            row["model"] = m.model
            declared.discard(row["trace_id"])
    if s.cost_usd:
        row["cost_usd"] += s.cost_usd
    for field in ("environment", "user_id", "session_id", "graph_name"):
        value = getattr(m, field)
        if value and not row[field]:
            row[field] = value
    # The root's text wins (rank -1); otherwise the earliest input and the latest output.
    if m.input_text:
        rank = -1 if is_root else s.start_ns
        current = row["input_rank_ns"]
        if current is None or (current != -1 and rank < current):
            row["input_text"], row["input_rank_ns"] = m.input_text, rank
    if m.output_text:
        rank = -1 if is_root else (s.end_ns or s.start_ns)
        current = row["output_rank_ns"]
        if current is None or (current != -1 and (rank == -1 or rank > current)):
            row["output_text"], row["output_rank_ns"] = m.output_text, rank


def close_span(row: dict[str, Any], end_ns: int, error: bool, now: int) -> None:
    """A running span of this trace ended (an END or ERROR event)."""
    row["last_span_ns"] = now
    row["running_span_count"] = max(0, row["running_span_count"] - 1)
    if error:
        row["error_count"] += 1
    if row["end_ns"] is None or end_ns > row["end_ns"]:
        row["end_ns"] = end_ns


def _usage(span: dict[str, Any]) -> tuple[int, int]:
    if span["span_type"] not in MODEL_CALL_SPAN_TYPES:
        return 0, 0
    return span["input_tokens"] or 0, span["output_tokens"] or 0


def amend_span(row: dict[str, Any], before: dict[str, Any], after: dict[str, Any]) -> None:
    """An AMENDMENT changed a stored span of this trace from `before` to `after` (its columns,
    `amendment.apply_patch`): the trace follows as if the span had come as amended."""
    (in_before, out_before), (in_after, out_after) = _usage(before), _usage(after)
    row["input_tokens"] += in_after - in_before
    row["output_tokens"] += out_after - out_before
    row["cost_usd"] += (after["cost_usd"] or 0) - (before["cost_usd"] or 0)
    row["error_count"] += (after["status"] == STATUS_ERROR) - (before["status"] == STATUS_ERROR)
    is_root = row["root_span_id"] == after["span_id"]
    text = (row["name"], row["input_text"], row["output_text"])
    # Only a new name renames the trace: a root's `trace_name` may have named it (`fold_span`).
    if after["name"] != before["name"] and (
            is_root or (row["root_span_id"] is None and row["name"] == before["name"])):
        row["name"] = after["name"]
    if after["model"] != before["model"] and row["model"] in (None, before["model"]):
        row["model"] = after["model"]
    # Text as `fold_span` ranks it; the span that gave the trace its text gives the amended one.
    if after["input_text"] and after["input_text"] != before["input_text"]:
        rank = -1 if is_root else after["start_ns"]
        current = row["input_rank_ns"]
        if current is None or current == rank or (current != -1 and rank < current):
            row["input_text"], row["input_rank_ns"] = after["input_text"], rank
    if after["output_text"] and after["output_text"] != before["output_text"]:
        rank = -1 if is_root else (after["end_ns"] or after["start_ns"])
        current = row["output_rank_ns"]
        if current is None or current == rank or (current != -1 and (rank == -1 or rank > current)):
            row["output_text"], row["output_rank_ns"] = after["output_text"], rank
    if (row["name"], row["input_text"], row["output_text"]) != text:
        row["own_text"] = True  # amended: the span's row keeps the text as it came


def apply_explicit(row: dict[str, Any], t: TraceRecord) -> None:
    for field in _EXPLICIT:
        value = getattr(t, field)
        if value is not None:
            row[field] = value
    if t.name is not None or t.input_text is not None or t.output_text is not None:
        row["own_text"] = True
    if t.input_text is not None:
        row["input_rank_ns"] = -1  # stated by the client: no span text replaces it
    if t.output_text is not None:
        row["output_rank_ns"] = -1
    if t.status is not None:
        row["status_explicit"] = t.status
    if row["start_ns"] is None:
        row["start_ns"] = t.start_ns if t.start_ns is not None else row["updated_ns"]


def status_of(row: dict[str, Any]) -> str:
    """The stored status. A trace without a root is complete when no parent is awaited: its spans
    then all name parents within it (a cycle). Parents awaited too long are given up at read time
    (tracehub/store/completion.py), since that depends on the clock."""
    if row["status_explicit"]:
        return str(row["status_explicit"])
    if row["error_count"]:
        return STATUS_ERROR
    if row["running_span_count"] or row["missing_parent_count"] or not row["span_count"]:
        return STATUS_RUNNING
    return STATUS_SUCCESS


def completed(row: dict[str, Any]) -> bool:
    """Whether the row (its `status` as `status_of` stored it) is of a completed trace as the
    writer knows it: `tracehub.store.completion`'s `completed` without the parents it gives up
    after the grace, which only a read at a later time can tell."""
    return row["status"] != STATUS_RUNNING and not row["running_span_count"] and not row["missing_parent_count"]
