"""The open spans an :class:`~llm_trace_hub.client.LLMTraceClient` is responsible for.

The facade's API is imperative (``start_span`` ... ``end_span(span_id=...)``), so it must find a
span again by id, from any thread or task, and know which spans are still open when the app calls
``flush()``. That bookkeeping lives here, behind one lock; the OTel context (contextvars) remains
the only notion of "current span".
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from opentelemetry.context import Context
from opentelemetry.trace import Span, Tracer

from llm_trace_hub.serialize import to_json

SpanType = str  # llm, embedding, tool, retriever, chain, agent, node, judge, span


def hex_span_id(span: Span) -> str:
    return format(span.get_span_context().span_id, "016x")


def hex_trace_id(span: Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


_PLAIN_TYPES = frozenset({str, bool, int, float})


def otel_attributes(values: Mapping[str, Any] | None, max_bytes: int) -> dict[str, Any]:
    """Keep OTel-valid values as they are; everything else (dicts, objects) becomes JSON."""
    out: dict[str, Any] = {}
    if not values:
        return out
    for key, value in values.items():
        # Exact-type test first: this runs for every attribute of every span.
        if type(value) in _PLAIN_TYPES and type(key) is str:
            out[key] = value
        elif isinstance(value, str | bool | int | float):
            out[str(key)] = value
        elif isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
            out[str(key)] = list(value)
        elif value is not None:
            out[str(key)] = to_json(value, max_bytes)
    return out


class SpanHandle(NamedTuple):
    """What ``start_span`` returns: ids in the hub's hex form, plus the OTel span itself."""

    span_id: str
    trace_id: str
    name: str
    span: Span


@dataclass(slots=True)
class OpenSpan:
    handle: SpanHandle
    parent_context: Context  # made current again when this span ends while current
    context: Context | None = None  # the context attached at start, with this span current
    parent_trace: int | None = None  # the trace id of parent_context's current span, if known


@dataclass(slots=True)
class OpenTrace:
    root: OpenSpan
    tracer: Tracer
    graph_name: str | None = None
    run_id: str | None = None
    # LangGraph node_id -> span (kept after the node ends: later nodes may name it as parent)
    nodes: dict[str, SpanHandle] = field(default_factory=dict)
    node_spans: dict[str, str] = field(default_factory=dict)  # node_id -> open span_id
    steps: int = 0


class SpanRegistry:
    """Open traces and spans by hex id; safe to use from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: dict[str, OpenSpan] = {}
        self._traces: dict[str, OpenTrace] = {}
        self._by_int: dict[int, OpenTrace] = {}  # hot path: no hex formatting to find a trace

    def add_trace(self, trace: OpenTrace) -> None:
        with self._lock:
            self._traces[trace.root.handle.trace_id] = trace
            self._by_int[trace.root.handle.span.get_span_context().trace_id] = trace
            self._spans[trace.root.handle.span_id] = trace.root

    def add_span(self, span: OpenSpan) -> None:
        self._spans[span.handle.span_id] = span  # one dict store: atomic, no lock needed

    def span(self, span_id: str) -> OpenSpan | None:
        return self._spans.get(span_id)

    def trace(self, trace_id: str) -> OpenTrace | None:
        return self._traces.get(trace_id)

    def trace_by_int(self, trace_id: int) -> OpenTrace | None:
        return self._by_int.get(trace_id)

    def latest_trace(self) -> OpenTrace | None:
        with self._lock:
            return next(reversed(self._traces.values()), None)

    def pop_span(self, span_id: str) -> OpenSpan | None:
        return self._spans.pop(span_id, None)  # atomic under the GIL

    def pop_trace(self, trace_id: str) -> tuple[OpenTrace | None, list[OpenSpan]]:
        """Remove a trace; return it and its other spans still open, newest first."""
        with self._lock:
            trace = self._traces.pop(trace_id, None)
            if trace is not None:
                self._by_int.pop(trace.root.handle.span.get_span_context().trace_id, None)
            children = [
                s
                for s in list(self._spans.values())  # C-level copy: safe against lock-free adds
                if s.handle.trace_id == trace_id and (trace is None or s is not trace.root)
            ]
            for member in children:
                self._spans.pop(member.handle.span_id, None)
            if trace is not None:
                self._spans.pop(trace.root.handle.span_id, None)
        children.reverse()  # dicts keep start order: end the innermost first
        return trace, children

    def trace_ids(self) -> list[str]:
        with self._lock:
            return list(self._traces)

    def orphan_spans(self) -> list[OpenSpan]:
        """Open spans whose trace was not started by this client (e.g. explicit parents)."""
        with self._lock:
            snapshot = list(self._spans.values())
            orphans = [s for s in snapshot if s.handle.trace_id not in self._traces]
            for orphan in orphans:
                self._spans.pop(orphan.handle.span_id, None)
        return orphans
