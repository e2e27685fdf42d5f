"""Internal records that flow from the collector to the store, and the store's answer.

Every receiver (OTLP gRPC, OTLP HTTP, the JSON ingest API) turns its input into these records and
nothing else; the store writes them and answers a `WriteResult`, which the processors read with them.
They carry no behaviour and never import from collector, store or api, so every stage can depend on
this module alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# span_type vocabulary shared by the mapping, the store and the UI.
SPAN_TYPES = ("llm", "embedding", "tool", "retriever", "reranker", "chain", "agent", "node", "judge",
              "guardrail", "evaluator", "span")

# Spans that call a model: the ones tokens and cost are counted on (their parents often repeat
# the usage, and counting both would double it).
MODEL_CALL_SPAN_TYPES = frozenset(("llm", "embedding"))

# Span status vocabulary (the spec's): an un-ended span is "running".
STATUS_RUNNING = "running"
STATUS_SUCCESS = "success"
STATUS_ERROR = "error"
# OTel's status codes by their number (`SpanRecord.status_code`): the status folds UNSET and OK.
OTEL_STATUS_CODES = ("UNSET", "OK", "ERROR")


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
    # The trace's name as the span states it (Langfuse's `langfuse.trace.name`, the Vercel AI SDK's
    # function id); the root's names the trace instead of the root's own name.
    trace_name: str | None = None
    # A streaming model call's time to its first chunk, in ms (the Vercel AI SDK's msToFirstChunk).
    first_token_ms: float | None = None
    # A tool span's tool (the Vercel AI SDK's `ai.toolCall.name`: its spans are all `ai.toolCall`).
    tool_name: str | None = None


@dataclass(frozen=True, slots=True)
class Idem:
    """A client's idempotency key, the hash of the item it came with, and the answer to replay."""

    key: str
    request_hash: str
    response: dict[str, Any] = field(default_factory=dict)


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
    idem: Idem | None = None
    # The spans-table row, encoded ahead (by a decode worker or the receiving thread) so the writer
    # thread only writes. A span decoded in a worker has its JSON only here (and its resource in
    # its batch): `attributes`, `resource`, `scope`, `events` and `links` are empty
    # (store.spanrow.span_from_row).
    row: tuple[Any, ...] | None = None
    # The parent is in another process (an OTLP span's flags say so: W3C traceparent from a caller):
    # this span is a local root of the trace, and its parent is not waited for.
    parent_remote: bool = False
    # OTel's status code as sent (0 UNSET, 1 OK, 2 ERROR), which `status` folds into success / error;
    # None where there is none (the JSON ingest API's spans, judge spans).
    status_code: int | None = None


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
    idem: Idem | None = None


@dataclass(slots=True)
class TraceRecord:
    """Trace fields a JSON client states explicitly; None means "not stated, derive it"."""

    trace_id: str
    name: str | None = None
    status: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    model: str | None = None
    environment: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    input_text: str | None = None
    output_text: str | None = None
    attributes: dict[str, Any] | None = None
    user_review_passed: bool | None = None
    graph_name: str | None = None


@dataclass(slots=True)
class EvalRecord:
    trace_id: str
    eval_name: str
    span_id: str | None = None
    eval_model: str | None = None
    score: float | None = None
    passed: bool | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    user_review_passed: bool | None = None
    created_ns: int = 0
    idem: Idem | None = None


@dataclass(slots=True)
class Batch:
    """Everything one request delivers for one project; written in one transaction.

    With `require_parents`, a span whose parent is neither stored nor in the batch is refused
    (the JSON API's allow_missing_parent=false); OTLP accepts spans in any order.
    """

    project_id: int
    spans: list[SpanRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    traces: list[TraceRecord] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)
    require_parents: bool = False
    # The spans' resources, JSON by id: their rows name them by id (store.spanrow.RowEncoder).
    resources: dict[int, bytearray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.spans) + len(self.events) + len(self.traces) + len(self.evals)


@dataclass
class WriteResult:
    """What the store answers for one `Batch` (`store.batchwrite.BatchWriter`), once it is committed."""

    spans_stored: int = 0
    spans_duplicate: int = 0
    events_stored: int = 0
    evals_stored: int = 0
    # Per idempotency key: "created", "duplicate" (same body seen before), "conflict" or "orphan".
    keys: dict[str, str] = field(default_factory=dict)
    # The first answer stored for each "duplicate" key, to replay verbatim.
    replayed: dict[str, Any] = field(default_factory=dict)
    # Spans refused because their parent is unknown (only with Batch.require_parents).
    orphans: set[tuple[str, str]] = field(default_factory=set)
    # Spans not stored because the same (trace_id, span_id) already was.
    duplicates: set[tuple[str, str]] = field(default_factory=set)
    # (project_id, trace_id) of the traces this batch completed (`tracerow.completed`): the
    # writer hands them to the decision worker once committed.
    completed: list[tuple[int, str]] = field(default_factory=list)
