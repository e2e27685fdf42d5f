"""Span structure produced by LangGraphInstrumentor, read from the OTel in-memory exporter."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import create_react_agent
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

from llm_trace_hub.langgraph import LangGraphInstrumentor
from llm_trace_hub.serialize import TRUNCATION_MARKER
from sdk_fakes import (
    NodeFailure,
    ScriptedChatModel,
    echo_model,
    failing_graph,
    lookup_policy,
    react_model,
    router_graph,
    subgraph_app,
)
from sdk_fixtures import exporter, finished, instrument, provider  # noqa: F401  (fixtures)

Instrument = Callable[..., LangGraphInstrumentor]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def check_router_run(spans: Any, question: str, answer: str) -> None:
    """Shape shared by invoke/ainvoke/stream/astream of the router graph."""
    graph = spans.one("agent_router")
    assert graph.parent is None
    assert attrs(graph)["tracehub.span.type"] == "chain"
    assert attrs(graph)["langgraph.graph.name"] == "agent_router"
    assert json.loads(attrs(graph)["input.value"]) == {"question": question}
    final = json.loads(attrs(graph)["output.value"])
    assert final["answer"] == answer and final["log"] == ["planner", "policy_lookup"]

    planner, lookup = spans.one("planner"), spans.one("policy_lookup")
    assert spans.named("small_talk") == []  # the conditional edge chose policy_lookup
    for node, step in ((planner, 1), (lookup, 2)):
        a = attrs(node)
        assert spans.parent_of(node) is graph
        assert a["tracehub.span.type"] == "node"
        assert a["langgraph.graph.name"] == "agent_router"
        assert a["langgraph.node"] == node.name
        assert a["langgraph.step"] == step
        assert a["input.mime_type"] == "application/json"
    assert attrs(planner)["langgraph.triggers"] == ("branch:to:planner",)
    assert attrs(planner)["langgraph.goto"] == ("policy_lookup",)
    assert json.loads(attrs(planner)["input.value"]) == {"question": question, "log": []}
    assert json.loads(attrs(planner)["output.value"]) == {"route": "policy", "log": ["planner"]}
    assert json.loads(attrs(lookup)["output.value"]) == {"answer": answer, "log": ["policy_lookup"]}

    chat = spans.one("chat fake-gpt-4o")
    assert spans.parent_of(chat) is lookup  # the LLM call nests under its node
    a = attrs(chat)
    assert chat.kind == SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "chat"
    assert a["tracehub.span.type"] == "llm"
    assert a["gen_ai.request.model"] == "fake-gpt-4o"
    assert a["gen_ai.response.model"] == "fake-gpt-4o-2024"
    assert a["gen_ai.usage.input_tokens"] == len(question.split())
    assert a["gen_ai.usage.output_tokens"] == len(answer.split())
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": question}]}
    ]
    assert json.loads(a["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": answer}],
            "finish_reason": "stop",
        }
    ]
    assert {s.context.trace_id for s in spans.all} == {graph.context.trace_id}
    assert all(s.end_time is not None and s.end_time >= s.start_time for s in spans.all)


QUESTION = "what is the refund policy"
ANSWER = "the refund window is 30 days"


def test_invoke_traces_graph_nodes_and_llm(instrument: Instrument, finished: Any) -> None:
    instrument()
    result = router_graph(echo_model(ANSWER)).invoke({"question": QUESTION})
    assert result["answer"] == ANSWER
    check_router_run(finished(), QUESTION, ANSWER)


def test_ainvoke_runs_async_node_body(instrument: Instrument, finished: Any) -> None:
    instrument()
    result = asyncio.run(router_graph(echo_model(ANSWER)).ainvoke({"question": QUESTION}))
    assert result["answer"] == ANSWER
    check_router_run(finished(), QUESTION, ANSWER)


def test_stream_updates(instrument: Instrument, finished: Any) -> None:
    instrument()
    chunks = list(router_graph(echo_model(ANSWER)).stream({"question": QUESTION}))
    assert [next(iter(c)) for c in chunks] == ["planner", "policy_lookup"]
    check_router_run(finished(), QUESTION, ANSWER)


def test_astream_messages_mode(instrument: Instrument, finished: Any) -> None:
    instrument()

    async def consume() -> list[Any]:
        graph = router_graph(echo_model(ANSWER))
        return [c async for c in graph.astream({"question": QUESTION}, stream_mode="messages")]

    chunks = asyncio.run(consume())
    assert any(getattr(msg, "content", "") == ANSWER for msg, _meta in chunks)
    check_router_run(finished(), QUESTION, ANSWER)


def test_consumer_code_between_chunks_is_not_inside_the_graph_span(
    instrument: Instrument, finished: Any, provider: TracerProvider
) -> None:
    instrument()
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        for _chunk in router_graph(echo_model()).stream({"question": QUESTION}):
            with tracer.start_as_current_span("handle_chunk"):
                pass
        assert trace.get_current_span() is request
    spans = finished()
    graph = spans.one("agent_router")
    assert spans.parent_of(graph) is spans.one("request")
    assert {spans.parent_of(s).name for s in spans.named("handle_chunk")} == {"request"}  # type: ignore[union-attr]


def test_breaking_out_of_stream_ends_the_run_span(instrument: Instrument, finished: Any) -> None:
    instrument()
    stream = router_graph(echo_model()).stream({"question": QUESTION})
    first = next(stream)
    stream.close()
    assert "planner" in first
    graph = finished().one("agent_router")
    assert graph.end_time is not None
    assert graph.status.status_code == StatusCode.UNSET
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_subgraph_nests_under_its_parent_node(instrument: Instrument, finished: Any) -> None:
    instrument()
    model = echo_model("three documents say thirty days")
    result = subgraph_app(model).invoke({"messages": [HumanMessage("refund rules?")]})
    assert result["messages"][-1].content == "three documents say thirty days"
    spans = finished()
    outer = spans.one("outer_graph")
    research_node = spans.one("research")
    inner = spans.one("research_graph")
    assert spans.parent_of(research_node) is outer
    assert spans.parent_of(inner) is research_node
    assert attrs(inner)["langgraph.graph.name"] == "research_graph"
    for name in ("search", "summarize"):
        node = spans.one(name)
        assert spans.parent_of(node) is inner
        assert attrs(node)["langgraph.graph.name"] == "research_graph"
    assert attrs(spans.one("prepare"))["langgraph.graph.name"] == "outer_graph"
    chat = spans.one("chat fake-gpt-4o")
    assert spans.parent_of(chat) is spans.one("summarize")
    # summarize saw: human + system + "found 3 documents" = 2 + 2 + 3 words
    assert attrs(chat)["gen_ai.usage.input_tokens"] == 7


def test_conditional_edge_other_branch(instrument: Instrument, finished: Any) -> None:
    instrument()
    result = router_graph(echo_model()).invoke({"question": "hi there"})
    assert result["answer"] == "hello!"
    spans = finished()
    assert attrs(spans.one("planner"))["langgraph.goto"] == ("small_talk",)
    assert attrs(spans.one("small_talk"))["langgraph.step"] == 2
    assert spans.named("policy_lookup") == [] and spans.of_type("llm") == []


def test_react_agent_with_tool(instrument: Instrument, finished: Any) -> None:
    instrument()
    agent = create_react_agent(react_model(), [lookup_policy], name="support_agent")
    result = agent.invoke({"messages": [HumanMessage("what is the refund policy")]})
    assert result["messages"][-1].content == "refunds are accepted within 30 days"
    spans = finished()
    graph = spans.one("support_agent")
    agent_nodes = spans.named("agent")
    assert [attrs(n)["langgraph.step"] for n in agent_nodes] == [1, 3]
    tools_node = spans.one("tools")
    assert attrs(tools_node)["langgraph.step"] == 2
    assert all(spans.parent_of(n) is graph for n in [*agent_nodes, tools_node])

    chats = sorted(spans.named("chat fake-gpt-4o"), key=lambda s: s.start_time or 0)
    assert [spans.parent_of(c) for c in chats] == sorted(
        agent_nodes, key=lambda s: s.start_time or 0
    )
    first_out = json.loads(attrs(chats[0])["gen_ai.output.messages"])
    assert first_out[0]["parts"] == [
        {
            "type": "tool_call",
            "id": "call-1",
            "name": "lookup_policy",
            "arguments": {"topic": "refund"},
        }
    ]
    second_in = json.loads(attrs(chats[1])["gen_ai.input.messages"])
    assert [m["role"] for m in second_in] == ["user", "assistant", "tool"]
    assert second_in[2]["parts"][0]["type"] == "tool_call_response"
    tool_result = "policy for refund: refunds within 30 days"
    assert attrs(chats[1])["gen_ai.usage.input_tokens"] == 5 + len(tool_result.split())

    tool_span = spans.one("execute_tool lookup_policy")
    assert spans.parent_of(tool_span) is tools_node
    t = attrs(tool_span)
    assert t["gen_ai.operation.name"] == "execute_tool"
    assert t["tracehub.span.type"] == "tool"
    assert t["gen_ai.tool.name"] == "lookup_policy"
    assert t["gen_ai.tool.call.id"] == "call-1"
    assert json.loads(t["gen_ai.tool.call.arguments"]) == {"topic": "refund"}
    assert t["gen_ai.tool.call.result"] == "policy for refund: refunds within 30 days"


def test_async_react_agent_with_tool(instrument: Instrument, finished: Any) -> None:
    instrument()
    agent = create_react_agent(react_model(), [lookup_policy], name="support_agent")
    asyncio.run(agent.ainvoke({"messages": [HumanMessage("what is the refund policy")]}))
    spans = finished()
    assert spans.parent_of(spans.one("execute_tool lookup_policy")) is spans.one("tools")
    for chat in spans.named("chat fake-gpt-4o"):
        assert spans.parent_of(chat).name == "agent"  # type: ignore[union-attr]


def test_node_exception_is_recorded(instrument: Instrument, finished: Any) -> None:
    instrument()
    with pytest.raises(NodeFailure):
        failing_graph().invoke({"messages": [HumanMessage("go")]})
    spans = finished()
    assert spans.one("ok").status.status_code == StatusCode.UNSET
    for span in (spans.one("boom"), spans.one("failing_graph")):
        assert span.status.status_code == StatusCode.ERROR
        assert "database unavailable" in (span.status.description or "")
        [event] = [e for e in span.events if e.name == "exception"]
        assert event.attributes is not None
        assert event.attributes["exception.type"].endswith("NodeFailure")
    assert spans.parent_of(spans.one("boom")) is spans.one("failing_graph")


def test_capture_content_off(instrument: Instrument, finished: Any) -> None:
    instrument(capture_content=False)
    router_graph(echo_model()).invoke({"question": QUESTION})
    spans = finished()
    assert len(spans.all) == 4  # graph, planner, policy_lookup, chat
    content_keys = {
        "input.value",
        "output.value",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
    }
    for span in spans.all:
        assert not content_keys & set(attrs(span)), span.name
    chat = attrs(spans.one("chat fake-gpt-4o"))
    assert chat["gen_ai.usage.input_tokens"] == 5  # counts stay
    assert attrs(spans.one("planner"))["langgraph.step"] == 1


def test_capture_content_off_by_env(
    instrument: Instrument, finished: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLM_TRACE_HUB_CAPTURE_CONTENT", "false")
    instrument()
    router_graph(echo_model()).invoke({"question": QUESTION})
    assert all("input.value" not in attrs(s) for s in finished().all)


def test_states_are_size_limited(instrument: Instrument, finished: Any) -> None:
    instrument(max_content_bytes=256)
    question = "refund " + "é" * 1000
    router_graph(echo_model()).invoke({"question": question})
    planner_input = attrs(finished().one("planner"))["input.value"]
    assert planner_input.endswith(TRUNCATION_MARKER)
    assert len(planner_input.encode("utf-8")) <= 256


def test_uninstrument_restores_langgraph(instrument: Instrument, finished: Any) -> None:
    instrumentor = instrument()
    graph = router_graph(echo_model())
    graph.invoke({"question": QUESTION})
    assert len(finished().all) == 4
    instrumentor.uninstrument()
    result = graph.invoke({"question": QUESTION})
    assert result["answer"] == "the refund window is 30 days"
    assert len(finished().all) == 4  # nothing new
    import langgraph.pregel._runner as runner
    from langgraph.pregel.main import Pregel

    assert not hasattr(Pregel.stream, "__wrapped__")
    assert not hasattr(runner.run_with_retry, "__wrapped__")


def test_node_span_is_current_in_node_body_and_its_threads(
    instrument: Instrument, finished: Any, provider: TracerProvider
) -> None:
    """Spans opened by node code nest under the node; a model called from a bare thread too."""
    instrument()
    tracer = provider.get_tracer("app")
    model = echo_model("ok")

    def work(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        with tracer.start_as_current_span("user_step"):
            model.invoke("inside user span")
        # A plain thread starts with an empty OTel context; given the node's config, the
        # LangChain run tree still links the model call to this node.
        box: list[Any] = []
        worker = threading.Thread(target=lambda: box.append(model.invoke("in thread", config)))
        worker.start()
        worker.join()
        return {"messages": [AIMessage("done")]}

    builder = StateGraph(MessagesState)
    builder.add_node("work", work)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    builder.compile(name="threads").invoke({"messages": []})
    spans = finished()
    node = spans.one("work")
    user_step = spans.one("user_step")
    assert spans.parent_of(user_step) is node
    chats = {
        json.loads(attrs(c)["gen_ai.input.messages"])[0]["parts"][0]["content"]: c
        for c in spans.named("chat fake-gpt-4o")
    }
    assert spans.parent_of(chats["inside user span"]) is user_step
    assert spans.parent_of(chats["in thread"]) is node


def test_parallel_branches_and_concurrent_runs(instrument: Instrument, finished: Any) -> None:
    instrument()
    builder = StateGraph(MessagesState)
    model = echo_model("ok")
    for name in ("left", "right"):
        builder.add_node(name, lambda s, n=name: {"messages": [model.invoke(n)]})
        builder.add_edge(START, name)
        builder.add_edge(name, END)
    graph = builder.compile(name="fanout")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: graph.invoke({"messages": []}), range(4)))
    spans = finished()
    runs = spans.named("fanout")
    assert len(runs) == 4 and len({r.context.trace_id for r in runs}) == 4
    for run in runs:
        nodes = spans.children(run)
        assert sorted(n.name for n in nodes) == ["left", "right"]
        assert {attrs(n)["langgraph.step"] for n in nodes} == {1}
        for node in nodes:
            [chat] = spans.children(node)
            assert (
                json.loads(attrs(chat)["gen_ai.input.messages"])[0]["parts"][0]["content"]
                == node.name
            )


def test_graph_called_inside_span_is_its_child(
    instrument: Instrument, finished: Any, provider: TracerProvider
) -> None:
    instrument()
    with provider.get_tracer("app").start_as_current_span("http_request"):
        router_graph(echo_model()).invoke({"question": "hi"})
    spans = finished()
    assert spans.parent_of(spans.one("agent_router")) is spans.one("http_request")


def test_model_error_marks_llm_span(instrument: Instrument, finished: Any) -> None:
    class Broken(ScriptedChatModel):
        def _generate(self, *args: Any, **kwargs: Any) -> Any:
            raise TimeoutError("provider timed out")

    instrument()
    with pytest.raises(TimeoutError):
        router_graph(Broken(script=[AIMessage("x")])).invoke({"question": QUESTION})
    spans = finished()
    chat = spans.one("chat fake-gpt-4o")
    assert chat.status.status_code == StatusCode.ERROR
    assert spans.parent_of(chat) is spans.one("policy_lookup")
    assert spans.one("policy_lookup").status.status_code == StatusCode.ERROR


def test_entry_point_is_registered() -> None:
    from importlib.metadata import entry_points

    [ep] = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "langgraph"]
    assert ep.value == "llm_trace_hub.langgraph:LangGraphInstrumentor"
    assert ep.load() is LangGraphInstrumentor


def test_interrupt_is_an_event_not_an_error(instrument: Instrument, finished: Any) -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command, interrupt

    instrument()

    def approve(state: MessagesState) -> dict[str, Any]:
        answer = interrupt("approve refund?")
        return {"messages": [AIMessage(f"approved: {answer}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("approve", approve)
    builder.add_edge(START, "approve")
    builder.add_edge("approve", END)
    graph = builder.compile(checkpointer=InMemorySaver(), name="approval")
    config: RunnableConfig = {"configurable": {"thread_id": "t-1"}}
    paused = graph.invoke({"messages": [HumanMessage("refund")]}, config)
    assert "__interrupt__" in paused
    first = finished().one("approve")
    assert first.status.status_code == StatusCode.UNSET
    [event] = [e for e in first.events if e.name == "langgraph.interrupt"]
    assert "approve refund?" in str((event.attributes or {})["value"])

    resumed = graph.invoke(Command(resume="yes"), config)
    assert resumed["messages"][-1].content == "approved: yes"
    spans = finished()
    runs = spans.named("approval")
    assert len(runs) == 2 and all(r.status.status_code == StatusCode.UNSET for r in runs)
    second = next(s for s in spans.named("approve") if s.context != first.context)
    assert json.loads(attrs(second)["output.value"])["messages"][0]["content"] == "approved: yes"
