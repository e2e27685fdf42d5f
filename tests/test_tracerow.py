"""A trace's name, as the writer folds it from its spans (`tracerow`): the root's stated trace
name (`Mapped.trace_name`: Langfuse's `langfuse.trace.name`, the AI SDK's function id) before the
root's own name, also through a decode worker's row."""

from __future__ import annotations

from typing import Any

from tracehub.records import STATUS_SUCCESS, Mapped, SpanRecord
from tracehub.store import tracerow
from tracehub.store.spanrow import RowEncoder, span_from_row, span_row

TRACE = "0af7651916cd43dd8448eb211c80319c"


def record(span_id: str, name: str, parent: str | None = None, start: int = 1,
           trace_name: str | None = None) -> SpanRecord:
    return SpanRecord(TRACE, span_id, parent, name, "INTERNAL", start, start + 1, STATUS_SUCCESS, None,
                      Mapped(trace_name=trace_name), {})


def folded(*spans: SpanRecord) -> dict[str, Any]:
    row = tracerow.new_row(1, TRACE, 1, 0)
    for s in spans:
        tracerow.fold_span(row, s, set())
    return row


def test_the_roots_trace_name_names_the_trace() -> None:
    assert folded(record("a" * 16, "handle-request", trace_name="chat-turn"))["name"] == "chat-turn"
    assert folded(record("a" * 16, "handle-request"))["name"] == "handle-request"


def test_only_the_root_names_a_trace_once_it_is_stored() -> None:
    root, child = "a" * 16, "b" * 16
    # the root first, or the child first (an earlier export): the root decides either way
    for order in ((0, 1), (1, 0)):
        spans = (record(root, "POST /chat", start=1), record(child, "ai.generateText", root, 2, "weather"))
        assert folded(*(spans[i] for i in order))["name"] == "POST /chat"
    # until the root arrives, its stand-in names the trace the same way
    assert folded(record(child, "ai.generateText", root, 2, "weather"))["name"] == "weather"


def test_an_amendment_keeps_the_name_unless_it_renames_the_root() -> None:
    root = record("a" * 16, "handle-request", trace_name="chat-turn")
    row = folded(root)
    before = {"name": root.name, "span_id": root.span_id, "span_type": "span", "input_tokens": None,
              "output_tokens": None, "cost_usd": None, "status": STATUS_SUCCESS, "model": None,
              "input_text": None, "output_text": None, "start_ns": 1, "end_ns": 2}
    tracerow.amend_span(row, before, {**before, "output_text": "done"})
    assert row["name"] == "chat-turn"
    tracerow.amend_span(row, before, {**before, "name": "renamed"})
    assert row["name"] == "renamed"


def test_a_decode_workers_row_carries_the_trace_name() -> None:
    s = record("a" * 16, "ai.generateText", trace_name="weather")
    assert span_from_row(span_row(1, s, RowEncoder({}, False))).mapped.trace_name == "weather"
    assert span_from_row(span_row(1, record("a" * 16, "x"), RowEncoder({}, True))).mapped.trace_name is None
