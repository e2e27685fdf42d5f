"""OpenTelemetry instrumentation for LangGraph: one span per graph run and per node execution.

Usage
-----
.. code-block:: python

    from opentelemetry.sdk.trace import TracerProvider
    from llm_trace_hub.langgraph import LangGraphInstrumentor

    LangGraphInstrumentor().instrument(tracer_provider=provider)   # provider: optional
    graph.invoke({"question": "refund policy?"})                  # traced
    LangGraphInstrumentor().uninstrument()

or with no code change: ``opentelemetry-instrument python app.py`` (the instrumentor is registered
under the ``opentelemetry_instrumentor`` entry point as ``langgraph``), or
``llm_trace_hub.configure()`` which also points the exporter at LLM Trace Hub.

What you get
------------
* Graph run (``invoke``/``ainvoke``/``stream``/``astream``; a subgraph is a run inside its parent's
  node): span named after the graph, ``tracehub.span.type=chain``, ``langgraph.graph.name``,
  ``input.value``/``output.value`` (JSON). Root span, or child of the span current at the call.
* Node execution: span named after the node, ``tracehub.span.type=node``,
  ``langgraph.graph.name``, ``langgraph.node``, ``langgraph.step``, ``langgraph.triggers``,
  ``langgraph.task.id``, ``langgraph.goto`` (targets chosen by conditional edges),
  ``input.value`` (the state the node received) and ``output.value`` (the update it wrote).
  An exception becomes an ``exception`` event with ERROR status; an interrupt an event only.
* Inside a node: ``chat <model>`` spans (OTel GenAI: ``gen_ai.operation.name``, request/response
  model, ``gen_ai.usage.input_tokens``/``output_tokens``, ``gen_ai.input.messages``/
  ``gen_ai.output.messages`` in the "parts" JSON format), ``execute_tool <name>`` spans
  (``gen_ai.tool.name``, ``gen_ai.tool.call.arguments``/``result``) and ``retrieve <name>``
  spans. The node span is the current span while the node runs, so spans from any other
  instrumentation (OpenAI, httpx, your own) nest under it as well, in threads and asyncio tasks.

Content capture
---------------
States, messages and tool arguments may hold personal data. ``instrument(capture_content=False)``
or ``LLM_TRACE_HUB_CAPTURE_CONTENT=false`` keeps only names, structure, timings, models and token
counts. ``instrument(max_content_bytes=N)`` or ``LLM_TRACE_HUB_MAX_CONTENT_BYTES`` (default 16384)
bounds each captured value; a cut value ends with ``…[truncated]`` and is valid UTF-8. Values
are serialized safely: pydantic models, dataclasses, messages, bytes, sets and cycles never raise.

How it hooks in
---------------
``Pregel.stream``/``astream`` and LangGraph's node runner (``run_with_retry``/``arun_with_retry``
in ``langgraph.pregel._runner``, the one place node tasks run) are wrapped; a LangChain
callback handler is added to each graph run's callbacks for model, tool and retriever spans.
``uninstrument()`` restores the originals and switches that handler off.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Collection
from types import ModuleType
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from llm_trace_hub.langgraph.package import _instruments
from llm_trace_hub.settings import ContentSettings
from llm_trace_hub.version import __version__

logger = logging.getLogger(__name__)

# Where LangGraph runs node tasks: `_runner` since 0.4-ish, `runner` before.
_RUNNER_MODULES = ("langgraph.pregel._runner", "langgraph.pregel.runner")


def _runner_module() -> ModuleType | None:
    for name in _RUNNER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "run_with_retry") and hasattr(module, "arun_with_retry"):
            return module
    return None


class LangGraphInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces LangGraph graph runs and node executions (see the module documentation)."""

    _handler: Any = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        # Imported here so that loading the entry point never requires LangGraph.
        from llm_trace_hub.langgraph._callbacks import SpanCallbackHandler
        from llm_trace_hub.langgraph._graph import GraphTracing

        content = ContentSettings.from_env(
            capture=kwargs.get("capture_content"), max_bytes=kwargs.get("max_content_bytes")
        )
        tracer = trace.get_tracer(
            __name__, __version__, tracer_provider=kwargs.get("tracer_provider")
        )
        handler = SpanCallbackHandler(tracer, content)
        tracing = GraphTracing(tracer, content, handler)
        from langgraph.pregel import Pregel

        runner = _runner_module()
        if runner is None:
            # Refuse loudly rather than trace graph runs without their nodes.
            logger.warning("this LangGraph has no node runner hook; not instrumented")
            return
        wrap_function_wrapper(Pregel, "stream", tracing.stream)
        wrap_function_wrapper(Pregel, "astream", tracing.astream)
        wrap_function_wrapper(runner, "run_with_retry", tracing.run_node)
        wrap_function_wrapper(runner, "arun_with_retry", tracing.arun_node)
        LangGraphInstrumentor._handler = handler

    def _uninstrument(self, **kwargs: Any) -> None:
        from langgraph.pregel import Pregel

        unwrap(Pregel, "stream")
        unwrap(Pregel, "astream")
        runner = _runner_module()
        if runner is not None:
            unwrap(runner, "run_with_retry")
            unwrap(runner, "arun_with_retry")
        handler = LangGraphInstrumentor._handler
        if handler is not None:
            # Configs built while instrumented may still hold it: make it inert.
            handler.enabled = False
            LangGraphInstrumentor._handler = None


__all__ = ["LangGraphInstrumentor"]
