"""Internal records that flow from the collector to the store.

Every receiver (OTLP gRPC, OTLP HTTP, the JSON ingest API) turns its input into these records and
nothing else; the store writes them and the processors read them. They carry no behaviour and never
import from collector, store or api, so every stage can depend on this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# span_type vocabulary shared by the mapping, the store and the UI.
SPAN_TYPES = ("llm", "embedding", "tool", "retriever", "reranker", "chain", "agent", "node", "judge",
              "guardrail", "evaluator", "span")

# Span status vocabulary (the spec's): an un-ended span is "running".
STATUS_RUNNING = "running"
STATUS_SUCCESS = "success"
STATUS_ERROR = "error"


@dataclass(slots=True)
class Mapped:
    """What the semantic-convention mapping reads out of one span's attributes."""

    span_type: str = "span"
    model: str | None = None
    input_text: str | None = None
    output_text: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    user_id: str | None = None
    session_id: str | None = None
    environment: str | None = None
    graph_name: str | None = None
    node_name: str | None = None
    step: int | None = None


@dataclass(slots=True)
class SpanRecord:
    """One span, ids as lowercase hex, times as Unix nanoseconds (end None while running)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int | None
    status: str
    status_message: str | None
    mapped: Mapped
    attributes: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    cost_usd: float | None = None


@dataclass(slots=True)
class EventRecord:
    """An append-only event on a span: an OTLP log record, or a LOG / AMENDMENT / lifecycle event."""

    trace_id: str | None
    span_id: str | None
    event_type: str
    name: str
    time_ns: int
    payload: dict[str, Any]
    # Text a GenAI content event contributes to its span's input / output.
    input_text: str | None = None
    output_text: str | None = None
    idempotency_key: str | None = None


@dataclass(slots=True)
class Batch:
    """Everything one request delivers for one project; written in one transaction."""

    project_id: int
    spans: list[SpanRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.spans) + len(self.events)
