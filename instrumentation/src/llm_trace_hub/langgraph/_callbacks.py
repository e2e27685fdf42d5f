"""LangChain callback handler that turns model, tool and retriever runs into OTel spans.

The LangGraph instrumentor puts one :class:`SpanCallbackHandler` into the callbacks of every
graph run; LangChain hands it on to every runnable, chat model and tool the nodes call, in
threads and asyncio tasks alike. It creates:

* ``chat <model>`` (kind CLIENT) per chat-model call: ``gen_ai.operation.name=chat``, request and
  response model, token usage, finish reasons, and the input/output messages when content capture
  is on. Plain LLMs give ``text_completion <model>``.
* ``execute_tool <name>`` per tool call, with ``gen_ai.tool.*`` arguments and result.
* ``retrieve <name>`` per retriever call.

Parent choice: both the current OTel context (the node span the instrumentor made current, or a
span the node's own code opened) and the LangChain run tree (a tool run wrapping this model call)
are ancestors of the call; the one that started later is the innermost and wins. When the current
context has no span (a thread started without copying contextvars), the run tree alone decides.

The handler must never raise into the application and never block: it only creates spans.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from llm_trace_hub import attributes as attr
from llm_trace_hub.langgraph._messages import messages_json, output_messages_json
from llm_trace_hub.serialize import to_json, to_text, truncate_utf8
from llm_trace_hub.settings import ContentSettings

logger = logging.getLogger(__name__)
_MAX_TRACKED_RUNS = 100_000  # runs abandoned mid-way (a stream closed early) must not pile up
_MAX_ANCESTRY_HOPS = 64


@dataclass(slots=True)
class _Run:
    parent: UUID | None
    span: Span | None  # a span this handler created for the run
    context: Context | None  # context children of this run should use as parent


def _start_ns(span: Span) -> int:
    return int(getattr(span, "start_time", None) or 0)


def _error(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def _model_name(metadata: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
    for value in (
        metadata.get("ls_model_name"),
        params.get("model"),
        params.get("model_name"),
        params.get("model_id"),
    ):
        if isinstance(value, str) and value:
            return value
    return None


class SpanCallbackHandler(BaseCallbackHandler):
    """Creates GenAI spans for LangChain runs; shared by all graph runs of one instrumentor."""

    run_inline = True  # spans are cheap to start; running inline keeps the caller's context
    raise_error = False
    ignore_custom_event = True

    def __init__(self, tracer: Tracer, content: ContentSettings) -> None:
        super().__init__()
        self._tracer = tracer
        self._content = content
        self._runs: dict[UUID, _Run] = {}
        self._graph_runs: dict[UUID, Span] = {}
        self.enabled = True

    # -- bookkeeping -------------------------------------------------------------------------
    def watch_graph_run(self, run_id: UUID, span: Span) -> None:
        """Let ``on_chain_end`` of the graph's own run put the final output on its span."""
        self._graph_runs[run_id] = span

    def forget_graph_run(self, run_id: UUID) -> None:
        self._graph_runs.pop(run_id, None)

    def _track(self, run_id: UUID, run: _Run) -> None:
        if len(self._runs) >= _MAX_TRACKED_RUNS:
            self._runs.clear()
        self._runs[run_id] = run

    def _parent_context(self, parent_run_id: UUID | None) -> Context:
        current = otel_context.get_current()
        current_span = trace.get_current_span(current)
        has_current = current_span.get_span_context().is_valid
        run_id, hops = parent_run_id, 0
        while run_id is not None and hops < _MAX_ANCESTRY_HOPS:
            run = self._runs.get(run_id)
            if run is None:
                break
            if run.span is not None and run.context is not None:
                if not has_current or _start_ns(run.span) >= _start_ns(current_span):
                    return run.context
                return current
            if not has_current and run.context is not None:
                return run.context
            run_id, hops = run.parent, hops + 1
        return current

    def _start(
        self,
        name: str,
        run_id: UUID,
        parent_run_id: UUID | None,
        kind: SpanKind,
        attributes: dict[str, Any],
    ) -> Span | None:
        if not self.enabled:
            return None
        parent = self._parent_context(parent_run_id)
        span = self._tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        self._track(run_id, _Run(parent_run_id, span, trace.set_span_in_context(span, parent)))
        return span

    def _finish(self, run_id: UUID) -> Span | None:
        run = self._runs.pop(run_id, None)
        return run.span if run is not None else None

    # -- chains: only tracked, so model calls in bare threads still find their node ----------
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.enabled:
            return
        current = otel_context.get_current()
        valid = trace.get_current_span(current).get_span_context().is_valid
        self._track(run_id, _Run(parent_run_id, None, current if valid else None))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._runs.pop(run_id, None)
        span = self._graph_runs.pop(run_id, None)
        if span is not None and self._content.capture and span.is_recording():
            span.set_attributes(
                {
                    attr.OUTPUT_VALUE: to_json(outputs, self._content.max_bytes),
                    attr.OUTPUT_MIME_TYPE: attr.MIME_JSON,
                }
            )

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._runs.pop(run_id, None)
        self._graph_runs.pop(run_id, None)

    # -- models --------------------------------------------------------------------------------
    def _start_model(
        self,
        operation: str,
        prompt_messages: Sequence[Any],
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
    ) -> None:
        meta = metadata or {}
        params = kwargs.get("invocation_params") or {}
        model = _model_name(meta, params)
        attributes: dict[str, Any] = {
            attr.SPAN_TYPE: "llm",
            attr.GEN_AI_OPERATION_NAME: operation,
        }
        if model:
            attributes[attr.GEN_AI_REQUEST_MODEL] = model
        if isinstance(meta.get("ls_provider"), str):
            attributes[attr.GEN_AI_PROVIDER_NAME] = meta["ls_provider"]
        temperature = meta.get("ls_temperature", params.get("temperature"))
        if isinstance(temperature, int | float) and not isinstance(temperature, bool):
            attributes[attr.GEN_AI_REQUEST_TEMPERATURE] = float(temperature)
        max_tokens = meta.get("ls_max_tokens", params.get("max_tokens"))
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
            attributes[attr.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        if self._content.capture:
            attributes[attr.GEN_AI_INPUT_MESSAGES] = messages_json(
                prompt_messages, self._content.max_bytes
            )
        name = f"{operation} {model}" if model else operation
        self._start(name, run_id, parent_run_id, SpanKind.CLIENT, attributes)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        prompt = messages[0] if messages else []
        self._start_model("chat", prompt, run_id, parent_run_id, metadata, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        prompt = prompts[:1]
        self._start_model("text_completion", prompt, run_id, parent_run_id, metadata, kwargs)

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._finish(run_id)
        if span is None:
            return
        try:
            self._set_response(span, response)
        finally:
            span.end()

    def _set_response(self, span: Span, response: Any) -> None:
        generations = getattr(response, "generations", None) or [[]]
        llm_output = getattr(response, "llm_output", None) or {}
        input_tokens = output_tokens = 0
        seen_usage = False
        outputs: list[tuple[Any, str | None]] = []
        finish_reasons: list[str] = []
        response_model: Any = llm_output.get("model_name") or llm_output.get("model")
        for generation in generations[0]:
            message = getattr(generation, "message", None)
            info = getattr(generation, "generation_info", None) or {}
            meta = getattr(message, "response_metadata", None) or {}
            reason = (
                meta.get("finish_reason") or meta.get("stop_reason") or info.get("finish_reason")
            )
            if isinstance(reason, str):
                finish_reasons.append(reason)
            response_model = meta.get("model_name") or meta.get("model") or response_model
            usage = getattr(message, "usage_metadata", None)
            if isinstance(usage, Mapping):
                seen_usage = True
                input_tokens += int(usage.get("input_tokens") or 0)
                output_tokens += int(usage.get("output_tokens") or 0)
            outputs.append(
                (message if message is not None else getattr(generation, "text", ""), reason)
            )
        if not seen_usage:  # providers that only fill llm_output (OpenAI-style token_usage)
            usage = llm_output.get("token_usage") or llm_output.get("usage") or {}
            if isinstance(usage, Mapping) and usage:
                seen_usage = True
                input_tokens = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
                output_tokens = int(
                    usage.get("completion_tokens") or usage.get("output_tokens") or 0
                )
        # One set_attributes call: each set_attribute takes the span's lock and validates.
        values: dict[str, Any] = {}
        if seen_usage:
            values[attr.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
            values[attr.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
        if isinstance(response_model, str) and response_model:
            values[attr.GEN_AI_RESPONSE_MODEL] = response_model
        if finish_reasons:
            values[attr.GEN_AI_RESPONSE_FINISH_REASONS] = finish_reasons
        if self._content.capture and outputs:
            values[attr.GEN_AI_OUTPUT_MESSAGES] = output_messages_json(
                outputs, self._content.max_bytes
            )
        if values:
            span.set_attributes(values)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._finish(run_id)
        if span is not None:
            _error(span, error)
            span.end()

    # -- tools ---------------------------------------------------------------------------------
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        info = serialized or {}
        name = str(kwargs.get("name") or info.get("name") or "tool")
        attributes: dict[str, Any] = {
            attr.SPAN_TYPE: "tool",
            attr.GEN_AI_OPERATION_NAME: "execute_tool",
            attr.GEN_AI_TOOL_NAME: name,
        }
        if isinstance(kwargs.get("tool_call_id"), str):
            attributes[attr.GEN_AI_TOOL_CALL_ID] = kwargs["tool_call_id"]
        if isinstance(info.get("description"), str) and info["description"]:
            attributes[attr.GEN_AI_TOOL_DESCRIPTION] = truncate_utf8(info["description"], 1024)
        if self._content.capture:
            limit = self._content.max_bytes
            arguments = to_json(inputs, limit) if inputs is not None else to_text(input_str, limit)
            attributes[attr.GEN_AI_TOOL_CALL_ARGUMENTS] = arguments
        self._start(f"execute_tool {name}", run_id, parent_run_id, SpanKind.INTERNAL, attributes)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._finish(run_id)
        if span is None:
            return
        # A ToolMessage carries the text in .content and marks handled failures with status.
        content = getattr(output, "content", output)
        if self._content.capture:
            span.set_attribute(
                attr.GEN_AI_TOOL_CALL_RESULT, to_text(content, self._content.max_bytes)
            )
        if getattr(output, "status", None) == "error":
            span.set_status(Status(StatusCode.ERROR, to_text(content, 512)))
        span.end()

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._finish(run_id)
        if span is not None:
            _error(span, error)
            span.end()

    # -- retrievers ----------------------------------------------------------------------------
    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "retriever")
        attributes: dict[str, Any] = {attr.SPAN_TYPE: "retriever"}
        if self._content.capture:
            attributes[attr.INPUT_VALUE] = to_text(query, self._content.max_bytes)
            attributes[attr.INPUT_MIME_TYPE] = attr.MIME_TEXT
        self._start(f"retrieve {name}", run_id, parent_run_id, SpanKind.INTERNAL, attributes)

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._finish(run_id)
        if span is None:
            return
        if self._content.capture:
            span.set_attributes(
                {
                    attr.OUTPUT_VALUE: to_json(documents, self._content.max_bytes),
                    attr.OUTPUT_MIME_TYPE: attr.MIME_JSON,
                }
            )
        span.end()

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        span = self._finish(run_id)
        if span is not None:
            _error(span, error)
            span.end()
