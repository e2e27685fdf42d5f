"""End to end: the SDK and the LangGraph instrumentor export OTLP to a real hub; we read back
through its REST API what a user would see (node panel data, nesting, states, token counts).

Uses the root conftest's `server` fixture (a `tracehub serve` process per database backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.prebuilt import create_react_agent
from opentelemetry.sdk.trace import TracerProvider

from llm_trace_hub import HubAPIError, LLMTraceClient
from llm_trace_hub.langgraph import LangGraphInstrumentor
from llm_trace_hub.provider import build_tracer_provider
from llm_trace_hub.settings import HubSettings
from sdk_fakes import (
    NodeFailure,
    echo_model,
    failing_graph,
    lookup_policy,
    react_model,
    router_graph,
    subgraph_app,
)

HERE = Path(__file__).resolve().parent


class Trace:
    """The detail document of one trace with lookups for assertions."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.trace = doc["trace"]
        self.spans: list[dict[str, Any]] = doc["spans"]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["name"] == name]

    def one(self, name: str) -> dict[str, Any]:
        found = self.named(name)
        assert len(found) == 1, (name, [s["name"] for s in self.spans])
        return found[0]

    def parent(self, span: dict[str, Any]) -> dict[str, Any] | None:
        return next((s for s in self.spans if s["span_id"] == span["parent_span_id"]), None)


@pytest.fixture
def hub_provider(server: Any) -> Iterator[TracerProvider]:
    """The SDK's own OTLP/HTTP pipeline (BatchSpanProcessor) pointed at the test server."""
    provider = build_tracer_provider(
        HubSettings(server.url, server.api_key),
        service_name="e2e-app",
        environment="test",
        shutdown_on_exit=False,
    )
    yield provider
    provider.shutdown()


@pytest.fixture
def traced(hub_provider: TracerProvider) -> Iterator[Callable[..., None]]:
    instrumentor = LangGraphInstrumentor()

    def start(**kwargs: Any) -> None:
        instrumentor.instrument(tracer_provider=hub_provider, **kwargs)

    yield start
    instrumentor.uninstrument()


def run_and_fetch(
    server: Any, provider: TracerProvider, run: Callable[[], Any], root_name: str, min_spans: int
) -> Trace:
    """Run a graph inside a marker span so the test knows the trace id, export, read back."""
    tracer = provider.get_tracer("e2e")
    with (
        tracer.start_as_current_span(f"test:{root_name}") as marker,
        contextlib.suppress(NodeFailure),
    ):
        run()
    trace_id = format(marker.get_span_context().trace_id, "032x")
    assert provider.force_flush(10_000)
    return Trace(server.wait_trace(trace_id, min_spans))


def test_router_graph_node_spans(server: Any, hub_provider: TracerProvider, traced: Any) -> None:
    traced()
    question = "what is the refund policy"
    t = run_and_fetch(
        server,
        hub_provider,
        lambda: router_graph(echo_model()).invoke({"question": question}),
        "router",
        min_spans=5,
    )
    graph = t.one("agent_router")
    assert graph["span_type"] == "chain"
    assert t.parent(graph)["name"] == "test:router"  # type: ignore[index]
    planner, lookup = t.one("planner"), t.one("policy_lookup")
    for node, step in ((planner, 1), (lookup, 2)):
        assert node["span_type"] == "node"
        assert node["parent_span_id"] == graph["span_id"]
        assert node["langgraph"] == {
            "graph_name": "agent_router",
            "node_name": node["name"],
            "step": step,
        }
        assert node["status"] == "success"
    assert json.loads(planner["input_text"])["question"] == question
    assert json.loads(planner["output_text"])["route"] == "policy"
    assert json.loads(lookup["output_text"])["answer"] == "the refund window is 30 days"

    chat = t.one("chat fake-gpt-4o")
    assert chat["parent_span_id"] == lookup["span_id"]
    assert chat["span_type"] == "llm"
    assert chat["model"] == "fake-gpt-4o-2024"
    assert (chat["input_tokens"], chat["output_tokens"], chat["total_tokens"]) == (5, 6, 11)
    assert question in (chat["input_text"] or "")
    assert "refund window" in (chat["output_text"] or "")
    assert t.trace["input_tokens"] == 5 and t.trace["output_tokens"] == 6
    assert t.trace["environment"] == "test"
    assert t.trace["span_count"] == 5 and t.trace["has_open_spans"] is False


def test_react_agent_async_with_tool(
    server: Any, hub_provider: TracerProvider, traced: Any
) -> None:
    traced()
    agent = create_react_agent(react_model(), [lookup_policy], name="support_agent")
    t = run_and_fetch(
        server,
        hub_provider,
        lambda: asyncio.run(
            agent.ainvoke({"messages": [HumanMessage("what is the refund policy")]})
        ),
        "react",
        min_spans=8,
    )
    graph = t.one("support_agent")
    agents = sorted(t.named("agent"), key=lambda s: s["langgraph"]["step"])
    tools = t.one("tools")
    assert [a["langgraph"]["step"] for a in agents] == [1, 3] and tools["langgraph"]["step"] == 2
    assert all(n["parent_span_id"] == graph["span_id"] for n in [*agents, tools])
    tool_span = t.one("execute_tool lookup_policy")
    assert tool_span["parent_span_id"] == tools["span_id"]
    assert tool_span["span_type"] == "tool"
    assert tool_span["attributes"]["gen_ai.tool.call.result"].startswith("policy for refund")
    chats = t.named("chat fake-gpt-4o")
    assert sorted(c["parent_span_id"] for c in chats) == sorted(a["span_id"] for a in agents)
    assert sum(c["input_tokens"] for c in chats) == 5 + (5 + 7)
    assert t.trace["input_tokens"] == 17
    assert t.trace["output_tokens"] == sum(c["output_tokens"] for c in chats)


def test_stream_subgraph_and_error(server: Any, hub_provider: TracerProvider, traced: Any) -> None:
    traced()
    app = subgraph_app(echo_model("summary"))
    t = run_and_fetch(
        server,
        hub_provider,
        lambda: list(app.stream({"messages": [HumanMessage("refund rules?")]})),
        "subgraph",
        min_spans=8,
    )
    inner = t.one("research_graph")
    assert t.parent(inner)["name"] == "research"  # type: ignore[index]
    for name in ("search", "summarize"):
        node = t.one(name)
        assert node["parent_span_id"] == inner["span_id"]
        assert node["langgraph"]["graph_name"] == "research_graph"
    assert t.parent(t.one("chat fake-gpt-4o"))["name"] == "summarize"  # type: ignore[index]

    failed = run_and_fetch(
        server,
        hub_provider,
        lambda: failing_graph().invoke({"messages": [HumanMessage("go")]}),
        "failing",
        min_spans=4,
    )
    boom = failed.one("boom")
    assert boom["status"] == "error"
    assert any(e["name"] == "exception" for e in boom["events"])
    assert failed.trace["error_count"] >= 1


def test_capture_off_keeps_tokens(server: Any, hub_provider: TracerProvider, traced: Any) -> None:
    traced(capture_content=False)
    t = run_and_fetch(
        server,
        hub_provider,
        lambda: router_graph(echo_model()).invoke({"question": "refund secret 123"}),
        "capture-off",
        min_spans=5,
    )
    assert not any("secret" in json.dumps(s) for s in t.spans)
    assert t.one("chat fake-gpt-4o")["input_tokens"] == 3


def test_sdk_spec_flow(server: Any) -> None:
    client = LLMTraceClient(base_url=server.url, api_key=server.api_key, service_name="sdk-e2e")
    trace_id = client.start_trace(
        name="chat-request",
        input_text="원금 보장 투자 추천해줘",
        model="gpt-4.1-mini",
        environment="prod",
        user_id="user-42",
        session_id="session-1",
    )
    span = client.start_span("retrieval", span_type="tool", attributes={"source": "kb"})
    client.log_event("retrieved 5 docs", metadata={"k": 5})
    client.end_span(status="success", span_id=span.span_id)
    eval_error: HubAPIError | None = None
    try:
        client.attach_eval(
            eval_name="faithfulness",
            eval_model="gpt-4.1-mini",
            score=0.72,
            passed=True,
            trace_id=trace_id,
            user_review_passed=True,
        )
    except HubAPIError as exc:
        eval_error = exc
    client.end_trace(output_text="원금 보장 상품은 없습니다")
    assert client.flush()
    t = Trace(server.wait_trace(trace_id, 2))
    client.shutdown()

    assert t.trace["trace_id"] == trace_id
    assert (t.trace["user_id"], t.trace["session_id"]) == ("user-42", "session-1")
    assert t.trace["environment"] == "prod"
    assert t.one("chat-request")["model"] == "gpt-4.1-mini"
    assert t.trace["input_text"] == "원금 보장 투자 추천해줘"
    assert t.trace["output_text"] == "원금 보장 상품은 없습니다"
    retrieval = t.one("retrieval")
    assert retrieval["span_id"] == span.span_id and retrieval["span_type"] == "tool"
    assert retrieval["parent_span_id"] == t.one("chat-request")["span_id"]
    assert retrieval["attributes"]["source"] == "kb"
    [log] = [e for e in retrieval["events"] if e["name"] == "log"]
    assert log["attributes"]["message"] == "retrieved 5 docs"
    assert log["attributes"]["metadata"] == {"k": 5}  # an object, though OTel sent it as text
    assert eval_error is None
    evals = server.wait_trace(trace_id, 2)["evals"]
    assert [(e["eval_name"], e["score"], e["passed"]) for e in evals] == [
        ("faithfulness", 0.72, True)
    ]


def test_sdk_trace_model(server: Any) -> None:
    client = LLMTraceClient(base_url=server.url, api_key=server.api_key)
    trace_id = client.start_trace(name="model-only", input_text="q", model="gpt-4.1-mini")
    client.flush()
    t = Trace(server.wait_trace(trace_id, 1))
    client.shutdown()
    assert t.trace["model"] == "gpt-4.1-mini"


def test_sdk_langgraph_nodes(server: Any) -> None:
    client = LLMTraceClient(base_url=server.url, api_key=server.api_key)
    trace_id = client.start_langgraph_run(
        graph_name="agent_router",
        run_id="lg-run-002",
        input_text="환불 규정 알려줘",
        model="gpt-4.1-mini",
    )
    client.start_langgraph_node(
        node_id="router",
        node_name="intent_router",
        node_type="router",
        input_state={"question": "환불 규정 알려줘"},
    )
    client.end_langgraph_node(node_id="router", output_state={"route": "policy_lookup"})
    client.start_langgraph_node(
        node_id="policy_lookup",
        node_name="policy_lookup",
        node_type="tool",
        parent_node_id="router",
        input_state={"route": "policy_lookup"},
    )
    client.end_langgraph_node(node_id="policy_lookup", output_state={"policy_id": "refund-v3"})
    client.flush()
    t = Trace(server.wait_trace(trace_id, 3))
    client.shutdown()
    router, lookup = t.one("intent_router"), t.one("policy_lookup")
    assert router["span_type"] == "node" and lookup["span_type"] == "node"
    assert router["langgraph"] == {
        "graph_name": "agent_router",
        "node_name": "intent_router",
        "step": 1,
    }
    assert lookup["parent_span_id"] == router["span_id"]
    assert json.loads(lookup["output_text"]) == {"policy_id": "refund-v3"}
    assert t.trace["input_text"] == "환불 규정 알려줘"
    # One attribute name for the run id, whichever way the run was sent (see the JSON API's below).
    for name in ("agent_router", "intent_router", "policy_lookup"):
        assert t.one(name)["attributes"]["langgraph.run.id"] == "lg-run-002"


def test_sdk_ingest_langgraph_run(server: Any) -> None:
    client = LLMTraceClient(base_url=server.url, api_key=server.api_key, http_max_attempts=2)
    trace_id = "4" * 32
    try:
        client.ingest_langgraph_run(
            graph_name="agent_router",
            run_id="lg-run-e2e",
            trace_id=trace_id,
            status="success",
            start_time="2026-02-07T10:00:00Z",
            end_time="2026-02-07T10:00:04Z",
            model="gpt-4.1-mini",
            environment="prod",
            nodes=[
                {
                    "node_id": "plan",
                    "node_name": "planner",
                    "node_type": "router",
                    "start_time": "2026-02-07T10:00:00Z",
                    "end_time": "2026-02-07T10:00:01Z",
                    "input_state": {"question": "..."},
                    "output_state": {"route": "retrieval"},
                }
            ],
        )
    finally:
        client.shutdown()
    t = Trace(server.wait_trace(trace_id, 1))
    assert t.one("planner")["langgraph"]["node_name"] == "planner"
    for name in ("agent_router", "planner"):
        assert t.one(name)["attributes"]["langgraph.run.id"] == "lg-run-e2e"


def test_configure_one_liner_in_a_fresh_process(server: Any, tmp_path: Path) -> None:
    """`configure()` + an uninstrumented-looking LangGraph app: spans reach the hub."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        import llm_trace_hub
        from opentelemetry import trace
        provider = llm_trace_hub.configure({server.url!r}, {server.api_key!r},
                                           service_name="configured-app", environment="dev")
        from sdk_fakes import echo_model, router_graph
        with trace.get_tracer("app").start_as_current_span("request") as span:
            router_graph(echo_model()).invoke({{"question": "refund please"}})
        provider.force_flush()
        print(format(span.get_span_context().trace_id, "032x"))
    """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_TRACE_HUB_"))}
    done = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    t = Trace(server.wait_trace(done.stdout.strip(), 5))
    assert t.trace["environment"] == "dev"
    assert t.one("policy_lookup")["langgraph"]["graph_name"] == "agent_router"


def test_opentelemetry_instrument_picks_up_the_entry_point(server: Any, tmp_path: Path) -> None:
    """Zero-code: `opentelemetry-instrument python app.py` loads LangGraphInstrumentor."""
    script = tmp_path / "plain_app.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from opentelemetry import trace
        from llm_trace_hub.provider import build_tracer_provider
        from llm_trace_hub.settings import HubSettings
        # No llm_trace_hub.langgraph import here: only the entry point can instrument LangGraph.
        provider = build_tracer_provider(HubSettings({server.url!r}, {server.api_key!r}))
        trace.set_tracer_provider(provider)
        from sdk_fakes import echo_model, router_graph
        with trace.get_tracer("app").start_as_current_span("zero-code") as span:
            router_graph(echo_model()).invoke({{"question": "refund please"}})
        provider.force_flush()
        print(format(span.get_span_context().trace_id, "032x"))
    """)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_TRACE_HUB_"))}
    # Only our instrumentor: others installed in the environment are not under test here.
    env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "httpx,requests,urllib,urllib3,grpc,sqlalchemy"
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    done = subprocess.run(
        [str(launcher), sys.executable, str(script)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    t = Trace(server.wait_trace(done.stdout.strip().splitlines()[-1], 5))
    assert t.one("planner")["langgraph"]["graph_name"] == "agent_router"
    assert t.parent(t.one("chat fake-gpt-4o"))["name"] == "policy_lookup"  # type: ignore[index]
