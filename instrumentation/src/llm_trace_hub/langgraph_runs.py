"""LangGraph run/node recording by hand, for graphs the instrumentor cannot see.

Part of :class:`~llm_trace_hub.client.LLMTraceClient`. Use it when the graph runs in another
framework or language, or to record a run after the fact:

.. code-block:: python

    trace_id = client.start_langgraph_run(graph_name="agent_router", run_id="lg-run-002",
                                          input_text="환불 규정 알려줘", model="gpt-4.1-mini")
    client.start_langgraph_node(node_id="router", node_name="intent_router", node_type="router",
                                input_state={"question": "환불 규정 알려줘"})
    client.end_langgraph_node(node_id="router", output_state={"route": "policy_lookup"})
    client.start_langgraph_node(node_id="policy_lookup", node_name="policy_lookup",
                                node_type="tool", parent_node_id="router",
                                input_state={"route": "policy_lookup"})
    client.end_langgraph_node(node_id="policy_lookup", output_state={"policy_id": "refund-v3"})
    client.flush()

The run is a trace whose root span is the graph (``tracehub.span.type=chain``); each node is an
OTel span with the same attributes the LangGraph instrumentor emits (``langgraph.node``,
``langgraph.step``, ``langgraph.triggers``, ``input.value``/``output.value``) plus
``langgraph.node.type`` and ``langgraph.node.id``; the run's root and its nodes carry
``langgraph.run.id`` when a ``run_id`` is given, as the JSON API's runs do. A node is the child
of ``parent_node_id``'s span when given, else of the run's root. ``ingest_langgraph_run``
instead posts a finished run as one JSON document to ``/api/v1/ingest/langgraph-runs``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.context import Context

from llm_trace_hub import attributes as attr
from llm_trace_hub.http_api import HubAPI
from llm_trace_hub.serialize import to_json, to_jsonable
from llm_trace_hub.spans import OpenTrace, SpanHandle, SpanRegistry, SpanType, otel_attributes


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class TraceClient(Protocol):
    """What the run methods use of :class:`~llm_trace_hub.client.LLMTraceClient`.

    The methods below take ``self`` as this protocol, so mypy checks the client against it
    (``client.py`` asserts it once) instead of trusting a second copy of the client's signatures.
    """

    _registry: SpanRegistry
    max_content_bytes: int
    environment: str | None
    api: HubAPI

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
    ) -> str: ...

    def _resolve_trace(self, trace_id: str | None) -> OpenTrace | None: ...

    def _open_span(
        self,
        name: str,
        parent: Context,
        tracer: trace.Tracer,
        values: dict[str, Any],
        current: Context | None = None,
        owner: OpenTrace | None = None,
        parent_trace: int | None = None,
    ) -> SpanHandle: ...

    def end_span(
        self,
        status: str = "success",
        span_id: str | None = None,
        output_text: Any = None,
        attributes: Mapping[str, Any] | None = None,
        error: BaseException | str | None = None,
    ) -> None: ...


def _langgraph_run(client: TraceClient, trace_id: str | None) -> OpenTrace:
    open_trace = client._resolve_trace(trace_id)
    if open_trace is None or open_trace.graph_name is None:
        raise ValueError("no LangGraph run is open: call start_langgraph_run() first")
    return open_trace


class LangGraphRunsMixin:
    """The ``*_langgraph_*`` methods of :class:`LLMTraceClient`."""

    def start_langgraph_run(
        self: TraceClient,
        graph_name: str,
        run_id: str | None = None,
        input_text: Any = None,
        model: str | None = None,
        environment: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> str:
        """Open a trace for one graph run; return its 32-hex trace id."""
        values = dict(attributes or {})
        values[attr.LANGGRAPH_GRAPH_NAME] = graph_name
        if run_id is not None:
            values[attr.LANGGRAPH_RUN_ID] = run_id
        trace_id = self.start_trace(
            name=graph_name,
            input_text=input_text,
            model=model,
            environment=environment,
            user_id=user_id,
            session_id=session_id,
            attributes=values,
            span_type="chain",
        )
        open_trace = self._registry.trace(trace_id)
        if open_trace is not None:
            open_trace.graph_name = graph_name
            open_trace.run_id = run_id
        return trace_id

    def start_langgraph_node(
        self: TraceClient,
        node_id: str,
        node_name: str | None = None,
        node_type: str | None = None,
        parent_node_id: str | None = None,
        input_state: Any = None,
        *,
        step: int | None = None,
        triggers: Sequence[str] | None = None,
        trace_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> SpanHandle:
        """Open a node span; ``step`` defaults to the order nodes were started in this run."""
        run = _langgraph_run(self, trace_id)
        name = node_name or node_id
        run.steps += 1
        parent_handle = run.nodes.get(parent_node_id) if parent_node_id else None
        if triggers is None:
            triggers = [parent_handle.name] if parent_handle is not None else []
        values = otel_attributes(attributes, self.max_content_bytes)
        values.update(
            {
                attr.SPAN_TYPE: "node",
                attr.LANGGRAPH_GRAPH_NAME: run.graph_name or "",
                attr.LANGGRAPH_NODE: name,
                attr.LANGGRAPH_NODE_ID: node_id,
                attr.LANGGRAPH_STEP: step if step is not None else run.steps,
                attr.LANGGRAPH_TRIGGERS: [str(t) for t in triggers],
            }
        )
        if node_type:
            values[attr.LANGGRAPH_NODE_TYPE] = node_type
        if run.run_id is not None:
            values[attr.LANGGRAPH_RUN_ID] = run.run_id
        if input_state is not None:
            values[attr.INPUT_VALUE] = to_json(input_state, self.max_content_bytes)
            values[attr.INPUT_MIME_TYPE] = attr.MIME_JSON
        parent_span = parent_handle.span if parent_handle is not None else run.root.handle.span
        handle = self._open_span(
            name,
            trace.set_span_in_context(parent_span),
            run.tracer,
            values,
            owner=run,
        )
        run.nodes[node_id] = handle
        run.node_spans[node_id] = handle.span_id
        return handle

    def end_langgraph_node(
        self: TraceClient,
        node_id: str,
        output_state: Any = None,
        status: str = "success",
        error: BaseException | str | None = None,
        *,
        trace_id: str | None = None,
    ) -> None:
        """End a node span, recording the state it produced."""
        run = _langgraph_run(self, trace_id)
        span_id = run.node_spans.pop(node_id, None)
        if span_id is None:
            return
        extra: dict[str, Any] = {}
        if output_state is not None:
            extra[attr.OUTPUT_VALUE] = to_json(output_state, self.max_content_bytes)
            extra[attr.OUTPUT_MIME_TYPE] = attr.MIME_JSON
        self.end_span(status=status, span_id=span_id, attributes=extra, error=error)

    def ingest_langgraph_run(
        self: TraceClient,
        graph_name: str,
        nodes: Sequence[Mapping[str, Any]],
        *,
        run_id: str | None = None,
        trace_id: str | None = None,
        status: str = "success",
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        model: str | None = None,
        environment: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Any:
        """POST a finished run (the spec's body) to ``/api/v1/ingest/langgraph-runs``."""
        run_id = run_id or f"lg-run-{uuid.uuid4().hex[:12]}"
        body_nodes: list[dict[str, Any]] = []
        for node in nodes:
            item: dict[str, Any] = to_jsonable(dict(node), self.max_content_bytes)
            for key in ("start_time", "end_time"):
                if isinstance(node.get(key), datetime):
                    item[key] = _iso(node[key])
            # Stable per run and node: a retried request is recognised by the hub.
            item.setdefault("idempotency_key", f"{run_id}:{item.get('node_id')}")
            body_nodes.append(item)
        body: dict[str, Any] = {
            "trace_id": trace_id or uuid.uuid4().hex,
            "run_id": run_id,
            "graph_name": graph_name,
            "status": status,
            "start_time": _iso(start_time),
            "end_time": _iso(end_time),
            "model": model,
            "environment": environment or self.environment,
            "nodes": body_nodes,
        }
        body.update(extra or {})
        return self.api.post_json(
            "/api/v1/ingest/langgraph-runs", {k: v for k, v in body.items() if v is not None}
        )
