"""Spans for graph runs and node executions, by wrapping LangGraph's Pregel engine.

* ``Pregel.stream`` / ``Pregel.astream`` (``invoke``/``ainvoke`` and subgraphs go through them):
  one span per graph run, named after the graph (``run_name`` or ``compile(name=...)``), a child
  of whatever span is current. The run's span and graph name are made current **only while the
  engine runs** (around each step of the generator), never while the caller handles a chunk, so
  a consumer's own spans are not adopted and an early ``break`` cannot corrupt the context.
* ``run_with_retry`` / ``arun_with_retry`` (the single place LangGraph executes a node task, in
  the calling thread, a worker thread with copied contextvars, or an asyncio task): one span per
  node execution, made current for the node body so every LLM, tool or user span inside nests
  under it. Retries of a node stay inside its one span.

Interrupts and ``Command(graph=PARENT)`` are control flow (``GraphBubbleUp``), recorded as events
and never as errors. Wrappers call the wrapped function exactly once, whatever happens here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any
from uuid import UUID, uuid4

from langchain_core.callbacks import BaseCallbackManager
from langgraph.errors import GraphBubbleUp, GraphInterrupt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from llm_trace_hub import attributes as attr
from llm_trace_hub.langgraph._callbacks import SpanCallbackHandler
from llm_trace_hub.serialize import to_json
from llm_trace_hub.settings import ContentSettings

_GRAPH_NAME_KEY = otel_context.create_key("llm_trace_hub.langgraph.graph_name")
_SKIPPED_NODES = frozenset({"__start__", "__end__"})
_BRANCH_PREFIX = "branch:to:"
_KEPT_RESERVED_CHANNELS = {"__root__": None, "__return__": None}


def _graph_name(instance: Any, config: Mapping[str, Any] | None) -> str:
    run_name = (config or {}).get("run_name")
    if isinstance(run_name, str) and run_name:
        return run_name
    try:
        return str(instance.get_name())
    except Exception:  # a custom Pregel subclass with a broken get_name
        return type(instance).__name__


def _split_call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    graph_input = args[0] if args else kwargs.get("input")
    config = args[1] if len(args) > 1 else kwargs.get("config")
    return graph_input, config


def _with_config(
    args: tuple[Any, ...], kwargs: dict[str, Any], config: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if len(args) > 1:
        return (args[0], config, *args[2:]), kwargs
    return args, {**kwargs, "config": config}


def _error(span: Span, error: BaseException) -> None:
    if isinstance(error, GraphInterrupt):
        span.add_event("langgraph.interrupt", {"value": to_json(error.args, 4096)})
    elif isinstance(error, GraphBubbleUp):
        span.add_event("langgraph.bubble_up", {"type": type(error).__name__})
    elif isinstance(error, asyncio.CancelledError | GeneratorExit):
        span.add_event("cancelled", {"type": type(error).__name__})
    else:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


class GraphTracing:
    """Holds the tracer, content settings and callback handler the wrappers share."""

    def __init__(self, tracer: Tracer, content: ContentSettings, handler: SpanCallbackHandler):
        self.tracer = tracer
        self.content = content
        self.handler = handler

    # -- graph runs ----------------------------------------------------------------------------
    def _config_for_run(self, instance: Any, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """The caller's config plus our callback handler and a run_id we can recognise."""
        new: dict[str, Any] = dict(config or {})
        callbacks = new.get("callbacks")
        if callbacks is None:  # ensure_config would let ours replace the graph's own callbacks
            callbacks = (getattr(instance, "config", None) or {}).get("callbacks")
        handler = self.handler
        if callbacks is None:
            new["callbacks"] = [handler]
        elif isinstance(callbacks, BaseCallbackManager):
            if handler not in callbacks.handlers:
                manager = callbacks.copy()
                manager.add_handler(handler, inherit=True)
                new["callbacks"] = manager
        elif isinstance(callbacks, list | tuple) and handler not in callbacks:
            new["callbacks"] = [*callbacks, handler]
        if new.get("run_id") is None:
            new["run_id"] = uuid4()
        return new

    def _start_run(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Span, Context, UUID, tuple[Any, ...], dict[str, Any]]:
        graph_input, config = _split_call(args, kwargs)
        name = _graph_name(instance, config)
        run_config = self._config_for_run(instance, config)
        attributes: dict[str, Any] = {
            attr.SPAN_TYPE: "chain",
            attr.LANGGRAPH_GRAPH_NAME: name,
        }
        if self.content.capture:
            attributes[attr.INPUT_VALUE] = to_json(graph_input, self.content.max_bytes)
            attributes[attr.INPUT_MIME_TYPE] = attr.MIME_JSON
        span = self.tracer.start_span(name, attributes=attributes)
        ctx = otel_context.set_value(_GRAPH_NAME_KEY, name, trace.set_span_in_context(span))
        run_id = run_config["run_id"]
        if isinstance(run_id, UUID):
            self.handler.watch_graph_run(run_id, span)
        args, kwargs = _with_config(args, kwargs, run_config)
        return span, ctx, run_id, args, kwargs

    def _end_run(self, span: Span, run_id: Any, error: BaseException | None) -> None:
        if isinstance(run_id, UUID):
            self.handler.forget_graph_run(run_id)
        if error is not None:
            _error(span, error)
        span.end()

    def stream(
        self, wrapped: Callable[..., Iterator[Any]], instance: Any, args: Any, kwargs: Any
    ) -> Iterator[Any]:
        span, ctx, run_id, args, kwargs = self._start_run(instance, tuple(args), dict(kwargs))
        return self._traced_iterator(wrapped(*args, **kwargs), span, ctx, run_id)

    def _traced_iterator(
        self, inner: Iterator[Any], span: Span, ctx: Context, run_id: Any
    ) -> Iterator[Any]:
        error: BaseException | None = None
        try:
            while True:
                token = otel_context.attach(ctx)
                try:
                    item = next(inner)
                except StopIteration:
                    return
                finally:
                    otel_context.detach(token)
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            if error is not None and hasattr(inner, "close"):
                inner.close()  # GeneratorExit from an early break: stop the engine now
            self._end_run(span, run_id, error if not isinstance(error, GeneratorExit) else None)

    def astream(
        self, wrapped: Callable[..., AsyncIterator[Any]], instance: Any, args: Any, kwargs: Any
    ) -> AsyncIterator[Any]:
        span, ctx, run_id, args, kwargs = self._start_run(instance, tuple(args), dict(kwargs))
        return self._traced_async_iterator(wrapped(*args, **kwargs), span, ctx, run_id)

    async def _traced_async_iterator(
        self, inner: AsyncIterator[Any], span: Span, ctx: Context, run_id: Any
    ) -> AsyncIterator[Any]:
        error: BaseException | None = None
        try:
            while True:
                token = otel_context.attach(ctx)
                try:
                    item = await inner.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    otel_context.detach(token)
                yield item
        except BaseException as exc:
            error = exc
            raise
        finally:
            close = getattr(inner, "aclose", None)
            if error is not None and close is not None:
                await close()
            self._end_run(span, run_id, error if not isinstance(error, GeneratorExit) else None)

    # -- node executions -----------------------------------------------------------------------
    def _start_node(self, task: Any) -> Span:
        config = getattr(task, "config", None) or {}
        metadata = config.get("metadata") or {}
        attributes: dict[str, Any] = {
            attr.SPAN_TYPE: "node",
            attr.LANGGRAPH_NODE: task.name,
            attr.LANGGRAPH_TRIGGERS: [str(t) for t in getattr(task, "triggers", ()) or ()],
        }
        graph_name = otel_context.get_value(_GRAPH_NAME_KEY)
        if isinstance(graph_name, str):
            attributes[attr.LANGGRAPH_GRAPH_NAME] = graph_name
        step = metadata.get("langgraph_step")
        if isinstance(step, int):
            attributes[attr.LANGGRAPH_STEP] = step
        if isinstance(getattr(task, "id", None), str):
            attributes[attr.LANGGRAPH_TASK_ID] = task.id
        namespace = metadata.get("langgraph_checkpoint_ns")
        if isinstance(namespace, str) and namespace:
            attributes[attr.LANGGRAPH_CHECKPOINT_NS] = namespace
        if self.content.capture:
            attributes[attr.INPUT_VALUE] = to_json(
                getattr(task, "input", None), self.content.max_bytes
            )
            attributes[attr.INPUT_MIME_TYPE] = attr.MIME_JSON
        return self.tracer.start_span(task.name, attributes=attributes)

    def _node_output(self, span: Span, task: Any) -> None:
        """The node's update, as the graph saw it: its writes to state channels."""
        update: dict[str, Any] = {}
        goto: list[str] = []
        for write in list(getattr(task, "writes", None) or ()):
            channel, value = write[0], write[1]
            if not isinstance(channel, str):
                continue
            if channel.startswith(_BRANCH_PREFIX):
                goto.append(channel[len(_BRANCH_PREFIX) :])
            elif not channel.startswith("__") or channel in _KEPT_RESERVED_CHANNELS:
                update[channel] = value
        # One set_attributes call: each set_attribute takes the span's lock and validates.
        values: dict[str, Any] = {}
        if goto:
            values["langgraph.goto"] = goto
        if self.content.capture:
            if len(update) == 1 and next(iter(update)) in _KEPT_RESERVED_CHANNELS:
                output: Any = next(iter(update.values()))  # a non-dict state / a @task result
            else:
                output = update
            values[attr.OUTPUT_VALUE] = to_json(output, self.content.max_bytes)
            values[attr.OUTPUT_MIME_TYPE] = attr.MIME_JSON
        if values:
            span.set_attributes(values)

    def run_node(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        task = args[0] if args else kwargs.get("task")
        if getattr(task, "name", None) in _SKIPPED_NODES or not hasattr(task, "name"):
            return wrapped(*args, **kwargs)
        span = self._start_node(task)
        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                _error(span, exc)
                raise
            else:
                self._node_output(span, task)
                return result
            finally:
                span.end()

    async def arun_node(
        self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any
    ) -> Any:
        task = args[0] if args else kwargs.get("task")
        if getattr(task, "name", None) in _SKIPPED_NODES or not hasattr(task, "name"):
            return await wrapped(*args, **kwargs)
        span = self._start_node(task)
        with trace.use_span(span, record_exception=False, set_status_on_exception=False):
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                _error(span, exc)
                raise
            else:
                self._node_output(span, task)
                return result
            finally:
                span.end()
