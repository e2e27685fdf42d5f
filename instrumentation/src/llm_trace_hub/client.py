"""``LLMTraceClient``: the SDK facade of the spec, built on the OpenTelemetry SDK.

.. code-block:: python

    from llm_trace_hub import LLMTraceClient

    client = LLMTraceClient(base_url="http://localhost:8000", api_key="dev-key")
    trace_id = client.start_trace(name="chat-request", input_text="...", model="gpt-4.1-mini",
                                  environment="prod", user_id="user-42", session_id="session-1")
    span = client.start_span("retrieval", span_type="tool", attributes={"source": "kb"})
    client.log_event("retrieved 5 docs", metadata={"k": 5})
    client.end_span(status="success", span_id=span.span_id)
    client.attach_eval(eval_name="faithfulness", eval_model="gpt-4.1-mini", score=0.72,
                       passed=True, trace_id=trace_id, user_review_passed=True)
    client.end_trace(output_text="...")   # optional: flush() ends what is still open
    client.flush()

Every trace and span is a real OTel span: a private ``TracerProvider`` with a
``BatchSpanProcessor`` and the OTLP/HTTP exporter to ``{base_url}/v1/traces`` (header
``x-api-key``), so batching, retries and backoff are the OTel SDK's and the app never waits on the
network. Ids are returned as the hub shows them: trace ids 32 hex digits, span ids 16.

Context: ``start_trace``/``start_span`` make the new span current in the OTel context (a
contextvar), so nested calls, asyncio tasks created afterwards and other OTel instrumentation
(the LangGraph instrumentor, HTTP clients) nest under it. A thread started without copying
contextvars can use :meth:`LLMTraceClient.wrap` or pass ``trace_id=`` / ``parent_span_id=``;
failing both, the most recently started open trace of this client is the parent.

OTel exports a span only once it has ended: ``flush()`` therefore ends every span this client
still has open (marked ``tracehub.auto_ended``) before pushing the batch out, and returns False
when spans did not reach the hub (check it before a short script exits). ``attach_eval`` and
``ingest_langgraph_run`` are plain JSON calls (``/api/v1/evals``,
``/api/v1/ingest/langgraph-runs``) with retries and an idempotency key; they raise
:class:`~llm_trace_hub.http_api.HubAPIError` when the hub refuses or cannot be reached.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from llm_trace_hub import attributes as attr
from llm_trace_hub.http_api import HubAPI
from llm_trace_hub.langgraph_runs import LangGraphRunsMixin, TraceClient
from llm_trace_hub.provider import build_span_processor, build_tracer_provider, hub_span_exporter
from llm_trace_hub.serialize import to_text
from llm_trace_hub.settings import DEFAULT_MAX_CONTENT_BYTES, HubSettings
from llm_trace_hub.spans import (
    OpenSpan,
    OpenTrace,
    SpanHandle,
    SpanRegistry,
    SpanType,
    hex_span_id,
    hex_trace_id,
    otel_attributes,
)
from llm_trace_hub.version import __version__

T = TypeVar("T")
_STATUSES = frozenset({"success", "error"})
_OK = Status(StatusCode.OK)
_ID64 = 1 << 64


class LLMTraceClient(LangGraphRunsMixin):
    """Traces, spans, events and evals for LLM Trace Hub (see the module documentation)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        service_name: str = "llm-app",
        environment: str | None = None,
        tracer_provider: TracerProvider | None = None,
        span_exporter: SpanExporter | None = None,
        span_processor: SpanProcessor | None = None,
        max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
        http_timeout_s: float = 10.0,
        http_max_attempts: int = 5,
        http_api: HubAPI | None = None,
    ) -> None:
        self.settings = HubSettings.from_env(base_url, api_key)
        self.service_name = service_name
        self.environment = environment
        self.max_content_bytes = max_content_bytes
        self._owns_providers = tracer_provider is None
        self._providers: dict[str | None, TracerProvider] = {}
        self._processor: SpanProcessor | None = None
        if tracer_provider is not None:
            self._providers[None] = tracer_provider
        else:
            # One processor (one export queue and thread) shared by the per-environment providers.
            self._processor = span_processor or build_span_processor(
                span_exporter or hub_span_exporter(self.settings)
            )
            atexit.register(self._processor.shutdown)  # drains what the app did not flush
        self._providers_lock = threading.Lock()
        self._registry = SpanRegistry()
        # A context this client made current and the trace id of the span current in it: the
        # next start_span of that task finds its parent's trace here instead of looking it up.
        self._hint: tuple[Context | None, int] = (None, 0)
        self._tracer: trace.Tracer | None = None
        # A flush made for attach_eval found spans undelivered: the next force_flush reports it.
        self._undelivered = False
        self.api = http_api or HubAPI(
            self.settings.base_url,
            self.settings.api_key,
            timeout_s=http_timeout_s,
            max_attempts=http_max_attempts,
        )

    # -- providers -----------------------------------------------------------------------------
    def _provider(self, environment: str | None) -> TracerProvider:
        """One provider per deployment environment: it is a resource attribute in OTel."""
        if not self._owns_providers:
            return self._providers[None]
        env = environment or self.environment
        with self._providers_lock:
            provider = self._providers.get(env)
            if provider is None:
                provider = build_tracer_provider(
                    self.settings,
                    service_name=self.service_name,
                    environment=env,
                    span_processor=self._processor,
                    shutdown_on_exit=False,  # the shared processor is shut down once, by us
                )
                self._providers[env] = provider
            return provider

    @property
    def tracer_provider(self) -> TracerProvider:
        """The provider of the default environment (e.g. to pass to an instrumentor)."""
        return self._provider(None)

    # -- traces --------------------------------------------------------------------------------
    def start_trace(
        self,
        name: str,
        input_text: Any = None,
        model: str | None = None,
        environment: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        *,
        span_type: SpanType = "chain",
    ) -> str:
        """Open a new trace (its root span becomes current); return its 32-hex trace id."""
        env = environment or self.environment
        values: dict[str, Any] = otel_attributes(attributes, self.max_content_bytes)
        values[attr.SPAN_TYPE] = span_type
        if model:
            values[attr.GEN_AI_REQUEST_MODEL] = model
        if user_id:
            values[attr.USER_ID] = user_id
        if session_id:
            values[attr.SESSION_ID] = session_id
        if env:
            values[attr.DEPLOYMENT_ENVIRONMENT] = env  # also on the resource; kept for any backend
        if input_text is not None:
            self._set_io(values, attr.INPUT_VALUE, attr.INPUT_MIME_TYPE, input_text)
        tracer = self._provider(env).get_tracer("llm_trace_hub", __version__)
        previous = otel_context.get_current()
        # A trace is a new root even when some other span happens to be current.
        span = tracer.start_span(name, context=Context(), attributes=values)
        handle = SpanHandle(hex_span_id(span), hex_trace_id(span), name, span)
        active = trace.set_span_in_context(span, previous)
        self._registry.add_trace(OpenTrace(OpenSpan(handle, previous, active), tracer))
        otel_context.attach(active)
        root_context = span.get_span_context()
        if root_context.is_valid:
            self._hint = (active, root_context.trace_id)
        return handle.trace_id

    def end_trace(
        self,
        output_text: Any = None,
        status: str = "success",
        trace_id: str | None = None,
        error: BaseException | str | None = None,
    ) -> None:
        """End a trace's root span (and any span of it still open); default: current trace."""
        open_trace = self._resolve_trace(trace_id)
        if open_trace is None:
            return
        _, children = self._registry.pop_trace(open_trace.root.handle.trace_id)
        for child in children:
            self._end(child, "success", None, None, auto=True)
        self._end(open_trace.root, status, output_text, error, auto=False)

    # -- spans ---------------------------------------------------------------------------------
    def start_span(
        self,
        name: str,
        span_type: SpanType = "span",
        attributes: Mapping[str, Any] | None = None,
        *,
        input_text: Any = None,
        model: str | None = None,
        trace_id: str | None = None,
        parent_span_id: str | None = None,
    ) -> SpanHandle:
        """Open a child span of the current span (or of the given parent) and make it current."""
        values = otel_attributes(attributes, self.max_content_bytes)
        values[attr.SPAN_TYPE] = span_type
        if model:
            values[attr.GEN_AI_REQUEST_MODEL] = model
        if input_text is not None:
            self._set_io(values, attr.INPUT_VALUE, attr.INPUT_MIME_TYPE, input_text)
        current = otel_context.get_current()
        if trace_id is None and parent_span_id is None:  # the usual case: under the current span
            hint = self._hint
            if hint[0] is current:
                current_trace: int | None = hint[1]
            else:
                current_context = trace.get_current_span(current).get_span_context()
                current_trace = current_context.trace_id if current_context.is_valid else None
            if current_trace is not None:
                owner = self._registry.trace_by_int(current_trace)
                if owner is not None:
                    return self._open_span(
                        name, current, owner.tracer, values, current, owner, current_trace
                    )
        parent, owner = self._parent(trace_id, parent_span_id, current)
        tracer = owner.tracer if owner is not None else self._default_tracer()
        return self._open_span(name, parent, tracer, values, current, owner)

    def _open_span(
        self,
        name: str,
        parent: Context,
        tracer: trace.Tracer,
        values: dict[str, Any],
        current: Context | None = None,
        owner: OpenTrace | None = None,
        parent_trace: int | None = None,
    ) -> SpanHandle:
        """Start a span under ``parent`` (a span of ``owner``, if given) and make it current.

        ``parent_trace``: when ``parent`` is ``current``, the trace id of its current span.
        """
        span = tracer.start_span(name, context=parent, attributes=values)
        ctx = span.get_span_context()
        span_int = ctx.span_id
        # to_bytes().hex() is the cheapest zero-padded hex of the usual 64-bit id.
        span_hex = span_int.to_bytes(8, "big").hex() if span_int < _ID64 else f"{span_int:016x}"
        trace_hex = owner.root.handle.trace_id if owner is not None else f"{ctx.trace_id:032x}"
        # tuple.__new__: SpanHandle's own __new__ is one more Python call per span.
        handle = tuple.__new__(SpanHandle, (span_hex, trace_hex, name, span))
        restore = current if current is not None else otel_context.get_current()
        active = trace.set_span_in_context(span, parent)
        self._registry.add_span(OpenSpan(handle, restore, active, parent_trace))
        otel_context.attach(active)
        if parent_trace is not None:  # a child has its parent's trace id
            self._hint = (active, parent_trace)
        return handle

    def end_span(
        self,
        status: str = "success",
        span_id: str | None = None,
        output_text: Any = None,
        attributes: Mapping[str, Any] | None = None,
        error: BaseException | str | None = None,
    ) -> None:
        """End a span (default: the current one) with status ``success`` or ``error``."""
        if span_id is None:
            span_id = hex_span_id(trace.get_current_span())
        open_span = self._registry.pop_span(span_id)
        if open_span is None:
            return  # unknown or already ended: ending twice is not the app's crash to have
        if attributes:
            open_span.handle.span.set_attributes(
                otel_attributes(attributes, self.max_content_bytes)
            )
        self._end(open_span, status, output_text, error, auto=False)

    @contextmanager
    def span(
        self,
        name: str,
        span_type: SpanType = "span",
        attributes: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Iterator[SpanHandle]:
        """``with client.span("retrieval", "retriever"):`` - ends with ``error`` on exceptions."""
        handle = self.start_span(name, span_type, attributes, **kwargs)
        try:
            yield handle
        except BaseException as exc:
            self.end_span("error", handle.span_id, error=exc)
            raise
        self.end_span("success", handle.span_id)

    def _end(
        self,
        open_span: OpenSpan,
        status: str,
        output: Any,
        error: BaseException | str | None,
        *,
        auto: bool,
    ) -> None:
        if status not in _STATUSES:
            raise ValueError(f"status must be 'success' or 'error', not {status!r}")
        span = open_span.handle.span
        if output is not None:
            values: dict[str, Any] = {}
            self._set_io(values, attr.OUTPUT_VALUE, attr.OUTPUT_MIME_TYPE, output)
            span.set_attributes(values)
        if auto:
            span.set_attribute(attr.AUTO_ENDED, True)
        if isinstance(error, BaseException):
            span.record_exception(error)
        if status == "error" or error is not None:
            message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            span.set_status(Status(StatusCode.ERROR, message if error is not None else None))
        else:
            span.set_status(_OK)
        span.end()
        self._restore(open_span)

    def _restore(self, open_span: OpenSpan) -> None:
        """If ``open_span`` is still current, make current again what was when it started."""
        current = otel_context.get_current()
        # Identity first: the usual case (still the context start attached) skips a lookup.
        if (
            current is not open_span.context
            and trace.get_current_span(current) is not open_span.handle.span
        ):
            return
        otel_context.attach(open_span.parent_context)
        if open_span.parent_trace is not None:
            self._hint = (open_span.parent_context, open_span.parent_trace)

    def _parent(
        self, trace_id: str | None, parent_span_id: str | None, current: Context
    ) -> tuple[Context, OpenTrace | None]:
        """Parent context for a new span: explicit ids, else the current span, else latest trace.

        Also the open trace the parent belongs to (its tracer and hex id serve the child), if any.
        """
        if parent_span_id is not None or trace_id is not None:
            explicit = self._explicit_parent(trace_id, parent_span_id)
            if explicit is not None:
                return explicit
        current_context = trace.get_current_span(current).get_span_context()
        if current_context.is_valid:
            return current, self._registry.trace_by_int(current_context.trace_id)
        latest = self._registry.latest_trace()
        if latest is not None:
            return trace.set_span_in_context(latest.root.handle.span), latest
        return current, None

    def _explicit_parent(
        self, trace_id: str | None, parent_span_id: str | None
    ) -> tuple[Context, OpenTrace | None] | None:
        if parent_span_id is not None:
            known = self._registry.span(parent_span_id)
            if known is not None:
                owner = self._registry.trace(known.handle.trace_id)
                return trace.set_span_in_context(known.handle.span), owner
            if trace_id is not None:  # a parent in another process or already ended
                remote = SpanContext(
                    int(trace_id.replace("-", ""), 16),
                    int(parent_span_id.replace("-", "")[:16], 16),
                    is_remote=True,
                    trace_flags=TraceFlags(TraceFlags.SAMPLED),
                )
                return trace.set_span_in_context(NonRecordingSpan(remote)), None
        if trace_id is not None:
            owner = self._registry.trace(trace_id.replace("-", ""))
            if owner is not None:
                return trace.set_span_in_context(owner.root.handle.span), owner
        return None

    def _default_tracer(self) -> trace.Tracer:
        if self._tracer is None:
            self._tracer = self._provider(None).get_tracer("llm_trace_hub", __version__)
        return self._tracer

    def _resolve_trace(self, trace_id: str | None) -> OpenTrace | None:
        if trace_id is not None:
            return self._registry.trace(trace_id.replace("-", ""))
        current = trace.get_current_span()
        if current.get_span_context().is_valid:
            found = self._registry.trace(hex_trace_id(current))
            if found is not None:
                return found
        return self._registry.latest_trace()

    def current_trace_id(self) -> str | None:
        """Trace id of the current span if any, else of the latest open trace."""
        current = trace.get_current_span()
        if current.get_span_context().is_valid:
            return hex_trace_id(current)
        latest = self._registry.latest_trace()
        return latest.root.handle.trace_id if latest else None

    def _set_io(self, values: dict[str, Any], key: str, mime_key: str, value: Any) -> None:
        values[key] = to_text(value, self.max_content_bytes)
        values[mime_key] = attr.MIME_TEXT if isinstance(value, str) else attr.MIME_JSON

    # -- events and evals ------------------------------------------------------------------------
    def log_event(
        self,
        message: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        level: str = "info",
        span_id: str | None = None,
    ) -> None:
        """Add a ``log`` span event (message, level, metadata) to the current span.

        ``metadata`` travels as JSON text (an OTel attribute cannot hold a map); the hub stores
        it as the object again.
        """
        target = self._registry.span(span_id) if span_id else None
        span = target.handle.span if target else trace.get_current_span()
        if not span.is_recording():
            latest = self._registry.latest_trace()
            if latest is None:
                return
            span = latest.root.handle.span
        event: dict[str, Any] = {
            attr.LOG_MESSAGE: to_text(message, self.max_content_bytes),
            attr.LOG_LEVEL: level,
        }
        if metadata is not None:
            event[attr.LOG_METADATA] = to_text(dict(metadata), self.max_content_bytes)
        span.add_event(attr.LOG_EVENT_NAME, event)

    def attach_eval(
        self,
        eval_name: str,
        score: float | None = None,
        passed: bool | None = None,
        *,
        eval_model: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_review_passed: bool | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """POST an evaluation result to ``/api/v1/evals``; retried safely (idempotency key)."""
        target = trace_id or self.current_trace_id()
        if target is None:
            raise ValueError("attach_eval needs a trace_id: no trace is open")
        # Spans ended so far reach the hub before the eval that refers to them.
        if not self._export_ended(30.0):
            self._undelivered = True
        body: dict[str, Any] = {
            "trace_id": target,
            "eval_name": eval_name,
            "eval_model": eval_model,
            "score": score,
            "passed": passed,
            "metadata": dict(metadata or {}),
            "user_review_passed": user_review_passed,
            "idempotency_key": idempotency_key or f"eval-{uuid.uuid4().hex}",
        }
        if span_id is not None:
            body["span_id"] = span_id
        return self.api.post_json("/api/v1/evals", body)

    # -- threads -------------------------------------------------------------------------------
    def wrap(self, fn: Callable[..., T]) -> Callable[..., T]:
        """``fn`` bound to a copy of the current context: spans it opens in a thread nest here."""
        ctx = contextvars.copy_context()

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> T:
            return ctx.copy().run(fn, *args, **kwargs)

        return run

    # -- delivery ------------------------------------------------------------------------------
    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export the spans ended so far, without ending open ones.

        False when they were not all delivered: the export timed out, or an export since the
        previous flush failed (hub unreachable, key refused; the exporter logs why).
        """
        delivered = self._export_ended(timeout_s) and not self._undelivered
        self._undelivered = False
        return delivered

    def _export_ended(self, timeout_s: float) -> bool:
        if self._processor is not None:
            return self._processor.force_flush(int(timeout_s * 1000))
        # A list, not a generator: every provider flushes even after one said False.
        return all([p.force_flush(int(timeout_s * 1000)) for p in list(self._providers.values())])

    def flush(self, timeout_s: float = 30.0) -> bool:
        """End every span still open (children first), then export everything ended.

        Returns :meth:`force_flush`'s answer: False when spans did not reach the hub.
        """
        for trace_id in self._registry.trace_ids():
            open_trace, children = self._registry.pop_trace(trace_id)
            for child in children:
                self._end(child, "success", None, None, auto=True)
            if open_trace is not None:
                self._end(open_trace.root, "success", None, None, auto=True)
        for orphan in reversed(self._registry.orphan_spans()):
            self._end(orphan, "success", None, None, auto=True)
        return self.force_flush(timeout_s)

    def shutdown(self) -> None:
        """Flush, stop the export thread (when this client owns it) and close HTTP clients."""
        self.flush()
        if self._processor is not None:
            self._processor.shutdown()
        self.api.close()

    def __enter__(self) -> LLMTraceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


if TYPE_CHECKING:
    # mypy checks here that the client is what the LangGraph run methods take as ``self``.
    _runs_client: type[TraceClient] = LLMTraceClient
