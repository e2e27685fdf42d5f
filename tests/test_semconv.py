"""Semantic-convention mapping against every real capture in tests/fixtures, plus bad input.

The captures come from real instrumentation packages (see tests/fixtures/README.md); ids and
timestamps change per run, so these tests compare span names, order and mapped fields only.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from fixture_js import REQUESTS, spans_of
from tracehub.collector.semconv import MAX_PARSE_CHARS, map_log, map_span
from tracehub.records import SPAN_TYPES, Mapped

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES = FIXTURES / "otel-captures"
CAPTURE_NAMES = sorted(p.name for p in CAPTURES.glob("*.json"))

ENV = "capture"  # every capture's resource sets deployment.environment=capture
QUESTION = "Which port does OTLP HTTP use?"
# Tool-call arguments read as compact JSON, however the instrumentation sent them.
WEATHER_CALL = 'call get_weather({"city":"Paris"})'
CALC_CALL = 'call calculator({"expression":"18+2"})'
SYSTEM_AGENT = "system: You are a helpful agent. Use tools."
USER_AGENT = "user: Weather in Paris, and what is 18+2?"
# The ReAct agent's last model call, rendered: the same text whichever instrumentation reports it.
REACT_FINAL_INPUT = "\n".join([
    SYSTEM_AGENT, USER_AGENT, "assistant: Let me check the weather.", WEATHER_CALL,
    "tool: It is 18C and cloudy in Paris.", "assistant: " + CALC_CALL, "tool: 20"])


def load(name: str) -> dict[str, Any]:
    with open(CAPTURES / name, encoding="utf-8") as fh:
        capture: dict[str, Any] = json.load(fh)
    return capture


def mapped_spans(capture: dict[str, Any]) -> list[tuple[dict[str, Any], Mapped]]:
    return [(s, map_span(s["name"], s["kind"], s["attributes"], s["resource_attributes"],
                         s["events"])) for s in capture["spans"]]


def rows(pairs: list[tuple[dict[str, Any], Mapped]]) -> list[tuple[Any, ...]]:
    return [(s["name"], m.span_type, m.node_name, m.step) for s, m in pairs]


def by_name(pairs: list[tuple[dict[str, Any], Mapped]], name: str) -> list[Mapped]:
    return [m for s, m in pairs if s["name"] == name]


def tokens(m: Mapped) -> tuple[int | None, int | None, int | None]:
    return m.input_tokens, m.output_tokens, m.total_tokens


def tool_names(pairs: list[tuple[dict[str, Any], Mapped]]) -> list[tuple[str, str | None]]:
    """(span name, tool name) of the tool spans; no other span has a tool name."""
    assert [s["name"] for s, m in pairs if m.span_type != "tool" and m.tool_name is not None] == []
    return [(s["name"], m.tool_name) for s, m in pairs if m.span_type == "tool"]


def test_every_capture_is_covered() -> None:
    assert CAPTURE_NAMES == [
        "openai-v2_chat_span_only.json", "openai-v2_error_span_only.json",
        "openai-v2_tool_call_span_and_event.json", "openinference_llm_error.json",
        "openinference_react_agent.json", "openinference_router_rag.json",
        "traceloop_react_agent_events.json", "traceloop_router_rag.json"]


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_mapping_is_valid_and_leaves_attributes_untouched(name: str) -> None:
    capture = load(name)
    before = copy.deepcopy(capture["spans"])
    for _span, m in mapped_spans(capture):
        assert m.span_type in SPAN_TYPES
        assert m.environment == ENV
        for text in (m.input_text, m.output_text):
            assert text is None or (isinstance(text, str) and text)
        assert (m.tool_name is not None) == (m.span_type == "tool")  # every capture's tools state theirs
    assert capture["spans"] == before  # the mapping only reads


# ---------------------------------------------------------------- openai-v2


def test_openai_v2_chat() -> None:
    capture = load("openai-v2_chat_span_only.json")
    (app, app_m), (chat, m) = mapped_spans(capture)
    assert (app_m.span_type, app_m.user_id, app_m.session_id) == ("span", "user-42", "sess-0001")
    assert (app_m.input_text, app_m.output_text, app_m.model) == (None, None, None)
    assert chat["name"] == "chat gpt-4o-mini"
    assert m.span_type == "llm"
    assert m.model == "gpt-4o-mini-2024-07-18"  # the response model wins over the request model
    assert tokens(m) == (21, 9, 30)  # total derived from input + output
    assert m.input_text == "system: You are terse.\nuser: Say hello."
    assert m.output_text == capture["extra"]["result"]
    assert (m.node_name, m.step, m.graph_name) == (None, None, None)


def test_openai_v2_error_keeps_request_model_and_input() -> None:
    (_, _), (chat, m) = mapped_spans(load("openai-v2_error_span_only.json"))
    assert chat["status"]["code"] == "ERROR"
    assert (m.span_type, m.model) == ("llm", "rate-limited-model")
    assert tokens(m) == (None, None, None)
    assert (m.input_text, m.output_text) == ("user: hi", None)


def test_openai_v2_tool_call_spans_and_their_log_records_agree() -> None:
    capture = load("openai-v2_tool_call_span_and_event.json")
    pairs = mapped_spans(capture)
    first, second = by_name(pairs, "chat gpt-4o-mini")
    assert (first.input_text, first.output_text) == ("user: Weather in Paris?", WEATHER_CALL)
    assert second.input_text == ("user: Weather in Paris?\nassistant: " + WEATHER_CALL
                                 + "\ntool: 18C and cloudy")
    assert second.output_text == capture["extra"]["result"]
    assert tokens(first) == tokens(second) == (21, 9, 30)
    spans = {s["span_id"]: m for s, m in pairs}
    assert len(capture["logs"]) == 2
    for log in capture["logs"]:
        # structured values in the log, JSON strings on the span: the same text either way
        assert isinstance(log["attributes"]["gen_ai.input.messages"], list)
        target = spans[log["span_id"]]
        assert map_log(log["event_name"], log["body"], log["attributes"]) == (
            target.input_text, target.output_text)


# ---------------------------------------------------------------- OpenInference

ROUTER_RAG_ROWS: list[tuple[Any, ...]] = [
    ("router_rag_graph", "chain", None, None),
    ("router", "node", "router", 1),
    ("RunnableCallable", "chain", "router", 1),
    ("retrieve", "node", "retrieve", 2),
    ("DocsRetriever", "retriever", "retrieve", 2),
    ("search_docs", "tool", "retrieve", 2),
    ("answer", "node", "answer", 3),
    ("FakeToolChatModel", "llm", "answer", 3),
]


def test_openinference_router_rag() -> None:
    capture = load("openinference_router_rag.json")
    pairs = mapped_spans(capture)
    assert rows(pairs) == ROUTER_RAG_ROWS
    assert tool_names(pairs) == [("search_docs", "search_docs")]  # tool.name
    for _, m in pairs:
        assert (m.user_id, m.session_id) == ("user-42", "sess-0001")
        assert m.input_text and m.output_text
    root, llm = pairs[0][1], pairs[-1][1]
    assert root.graph_name == "router_rag_graph"  # only the graph's own span knows its name
    assert root.input_text == QUESTION  # input.value as sent
    assert json.loads(root.output_text or "")["answer"] == capture["extra"]["result"]
    assert (llm.model, tokens(llm)) == ("fake-gpt-4o-mini", (64, 11, 75))
    assert llm.input_text is not None
    assert llm.input_text.startswith(
        "system: You are a concise assistant. Use the context.\nuser: Context:\nOTLP/HTTP uses")
    assert llm.input_text.endswith("Question: " + QUESTION)
    assert llm.output_text == capture["extra"]["result"]
    assert by_name(pairs, "answer")[0].output_text == capture["extra"]["result"]
    assert by_name(pairs, "DocsRetriever")[0].input_text == QUESTION
    for name in ("router", "answer", "DocsRetriever", "search_docs"):
        for m in by_name(pairs, name):
            assert m.model is None and tokens(m) == (None, None, None)


def test_openinference_llm_error() -> None:
    pairs = mapped_spans(load("openinference_llm_error.json"))
    assert rows(pairs) == ROUTER_RAG_ROWS
    assert tool_names(pairs) == [("search_docs", "search_docs")]
    failed = {s["name"] for s, _ in pairs if s["status"]["code"] == "ERROR"}
    assert failed == {"router_rag_graph", "answer", "FakeToolChatModel"}
    for span, m in pairs:
        assert m.input_text
        # a failed step produced nothing; an empty LangChain LLMResult is not an answer
        assert (m.output_text is None) == (span["name"] in failed)
    llm = pairs[-1][1]
    assert (llm.model, tokens(llm)) == ("fake-gpt-4o-mini", (None, None, None))
    assert llm.input_text and llm.input_text.startswith("system: You are a concise assistant.")


REACT_OI_ROWS: list[tuple[Any, ...]] = [("react_agent", "agent", None, None)]
for _step in (1, 3, 5):
    if _step > 1:
        REACT_OI_ROWS += [("tools", "node", "tools", _step - 1),
                          ({3: "get_weather", 5: "calculator"}[_step], "tool", "tools", _step - 1)]
    REACT_OI_ROWS += [("agent", "node", "agent", _step), ("call_model", "chain", "agent", _step),
                      ("RunnableSequence", "chain", "agent", _step),
                      ("Prompt", "chain", "agent", _step),
                      ("FakeToolChatModel", "llm", "agent", _step),
                      ("should_continue", "chain", "agent", _step)]


def test_openinference_react_agent() -> None:
    capture = load("openinference_react_agent.json")
    pairs = mapped_spans(capture)
    assert rows(pairs) == REACT_OI_ROWS
    assert tool_names(pairs) == [("get_weather", "get_weather"), ("calculator", "calculator")]
    assert pairs[0][1].graph_name == "react_agent"
    for _, m in pairs:
        assert (m.user_id, m.session_id) == ("user-42", "sess-0001")
        assert m.input_text and m.output_text
    llms = by_name(pairs, "FakeToolChatModel")
    assert [tokens(m) for m in llms] == [(17, 11, 28), (31, 5, 36), (31, 8, 39)]
    assert {m.model for m in llms} == {"fake-gpt-4o-mini"}
    assert [m.output_text for m in llms] == [
        "Let me check the weather.\n" + WEATHER_CALL, CALC_CALL, capture["extra"]["result"]]
    assert llms[0].input_text == SYSTEM_AGENT + "\n" + USER_AGENT
    assert llms[2].input_text == REACT_FINAL_INPUT
    assert [m.input_text for m in by_name(pairs, "get_weather") + by_name(pairs, "calculator")] == [
        "Paris", "18+2"]
    # chains keep input.value as sent (JSON), not the partial llm.input_messages OpenInference adds
    chain = by_name(pairs, "call_model")[0]
    assert chain.input_text and json.loads(chain.input_text)["messages"][0]["type"] == "human"


# ---------------------------------------------------------------- Traceloop


def test_traceloop_router_rag() -> None:
    capture = load("traceloop_router_rag.json")
    pairs = mapped_spans(capture)
    assert rows(pairs) == [
        ("invoke_agent router_rag_graph", "agent", None, None),
        ("router_rag_graph.workflow", "agent", None, None),
        ("execute_task router", "node", "router", 1),
        ("execute_task RunnableCallable", "chain", "router", 1),
        ("execute_task retrieve", "node", "retrieve", 2),
        ("vector_db_retrieve DocsRetriever", "retriever", "retrieve", 2),
        ("execute_tool search_docs", "tool", "retrieve", 2),
        ("execute_task answer", "node", "answer", 3),
        ("FakeToolChatModel.chat", "llm", "answer", 3),
    ]
    assert tool_names(pairs) == [("execute_tool search_docs", "search_docs")]
    assert {m.graph_name for _, m in pairs} == {"router_rag_graph"}
    root = pairs[0][1]
    # the root only carries gen_ai.conversation.id (LangGraph's thread id): the session fallback
    assert (root.user_id, root.session_id) == (None, "thread-abc")
    for _, m in pairs[1:]:
        assert (m.user_id, m.session_id) == ("user-42", "sess-0001")
        assert m.input_text and m.output_text
    named = {s["name"]: m for s, m in pairs}
    # Traceloop's {"inputs": ..., "tags": ..., "metadata": ...} envelope is unwrapped
    assert named["router_rag_graph.workflow"].input_text == json.dumps({"question": QUESTION})
    assert named["execute_task router"].input_text == json.dumps(
        {"question": QUESTION, "context": []})
    assert named["execute_task router"].output_text == '{"route": "retrieve"}'
    assert named["execute_task RunnableCallable"].output_text == "retrieve"
    assert named["vector_db_retrieve DocsRetriever"].input_text == QUESTION
    assert named["execute_tool search_docs"].input_text == json.dumps({"query": QUESTION},
                                                                      separators=(",", ":"))
    assert named["execute_tool search_docs"].output_text == (
        f"Doc hit for '{QUESTION}': OTLP/HTTP listens on port 4318, gRPC on 4317.")
    assert named["execute_task answer"].output_text == json.dumps(
        {"answer": capture["extra"]["result"]})
    llm = named["FakeToolChatModel.chat"]
    assert (llm.model, tokens(llm)) == ("fake-gpt-4o-mini", (64, 11, 75))
    assert llm.input_text and llm.input_text.startswith(
        "system: You are a concise assistant. Use the context.\nuser: Context:\n")
    assert llm.output_text == capture["extra"]["result"]
    # the same model call reads the same as OpenInference reported it
    oi_llm = mapped_spans(load("openinference_router_rag.json"))[-1][1]
    assert (llm.input_text, llm.output_text) == (oi_llm.input_text, oi_llm.output_text)


def test_traceloop_react_agent_with_content_in_log_records() -> None:
    capture = load("traceloop_react_agent_events.json")
    pairs = mapped_spans(capture)
    expected: list[tuple[Any, ...]] = [("create_agent react_agent", "agent", None, None),
                ("invoke_agent react_agent", "agent", None, None),
                ("react_agent.workflow", "agent", None, None)]
    for step in (1, 3, 5):
        if step > 1:
            tool = {3: "get_weather", 5: "calculator"}[step]
            expected += [("execute_task tools", "node", "tools", step - 1),
                         (f"execute_tool {tool}", "tool", "tools", step - 1)]
        expected += [("execute_task agent", "node", "agent", step),
                     ("execute_task call_model", "chain", "agent", step),
                     ("execute_task RunnableSequence", "chain", "agent", step),
                     ("execute_task Prompt", "chain", "agent", step),
                     ("FakeToolChatModel.chat", "llm", "agent", step),
                     ("execute_task should_continue", "chain", "agent", step)]
    assert rows(pairs) == expected
    assert tool_names(pairs) == [("execute_tool get_weather", "get_weather"),
                                 ("execute_tool calculator", "calculator")]
    assert {m.graph_name for _, m in pairs} == {"react_agent"}
    create = pairs[0][1]
    assert create.input_text == SYSTEM_AGENT  # gen_ai.system_instructions as a plain string
    llms = by_name(pairs, "FakeToolChatModel.chat")
    assert [tokens(m) for m in llms] == [(17, 11, 28), (31, 5, 36), (31, 8, 39)]
    assert [m.input_text for m in llms] == [None, None, None]  # the prompt travels in the logs
    oi_llms = by_name(mapped_spans(load("openinference_react_agent.json")), "FakeToolChatModel")
    assert [m.output_text for m in llms] == [m.output_text for m in oi_llms]

    # Each log record contributes one message; joined per span they read as the model call.
    inputs: dict[str, list[str]] = {}
    outputs: dict[str, list[str]] = {}
    for log in capture["logs"]:
        text_in, text_out = map_log(log["event_name"], log["body"], log["attributes"])
        assert (text_in is None) != (text_out is None)
        assert (text_out is not None) == (log["event_name"] == "gen_ai.choice")
        if text_in is not None:
            inputs.setdefault(log["span_id"], []).append(text_in)
        if text_out is not None:
            outputs.setdefault(log["span_id"], []).append(text_out)
    # Traceloop attaches them to the RunnableSequence task around each model call.
    sequences = [s["span_id"] for s in capture["spans"]
                 if s["name"] == "execute_task RunnableSequence"]
    assert list(inputs) == sequences == list(outputs)
    joined_in = ["\n".join(inputs[sid]) for sid in sequences]
    joined_out = ["\n".join(outputs[sid]) for sid in sequences]
    assert joined_in == [m.input_text for m in oi_llms]
    assert joined_in[2] == REACT_FINAL_INPUT
    assert joined_out == [m.output_text for m in llms]


# ---------------------------------------------------------------- JavaScript clients (otlp-js)

WEATHER_SEOUL = 'call getWeather({"city":"Seoul"})'
SEOUL_RESULT = '{"city":"Seoul","tempC":21,"condition":"sunny"}'
SEOUL_ANSWER = "It is sunny in Seoul, 21°C. 서울은 맑아요."
WEATHER_PROMPT = "system: You are a weather assistant.\nuser: What is the weather in Seoul?"
REFUND_PROMPT = ("system: You answer questions about the refund policy.\n"
                 "user: What is the refund policy?")


def js_spans(stem: str) -> list[tuple[dict[str, Any], Mapped]]:
    """The mapped spans of every request of one otlp-js capture, in the order they were sent."""
    return [(s, map_span(s["name"], "INTERNAL", s["attributes"], s["resource"], s["events"]))
            for path in REQUESTS if path.name.startswith(stem) for s in spans_of(path)]


def test_every_js_capture_is_covered() -> None:
    assert sorted({p.name.split(".")[0] for p in REQUESTS}) == [
        "traceloop-instrumentation-openai_chat-tools", "traceloop-node-sdk_workflow_ai-sdk",
        "vercel-ai-sdk_generate-and-stream"]


def test_vercel_ai_sdk() -> None:
    pairs = js_spans("vercel-ai-sdk")
    assert [(s["name"], m.span_type) for s, m in pairs] == [
        ("ai.generateText.doGenerate", "llm"), ("ai.toolCall", "tool"),
        ("ai.generateText.doGenerate", "llm"), ("ai.generateText", "chain"),
        ("ai.streamText.doStream", "llm"), ("ai.streamText", "chain")]
    assert tool_names(pairs) == [("ai.toolCall", "getWeather")]  # ai.toolCall.name
    for _, m in pairs:  # only in ai.telemetry.metadata.*; the function id names the trace
        assert (m.user_id, m.session_id, m.trace_name) == ("u1", "s1", "demo")
    first, tool, second, outer, stream, outer_stream = (m for _, m in pairs)
    assert (first.input_text, first.output_text) == (WEATHER_PROMPT, WEATHER_SEOUL)
    assert (tool.input_text, tool.output_text) == ('{"city":"Seoul"}', SEOUL_RESULT)
    assert second.input_text == "\n".join(
        [WEATHER_PROMPT, "assistant: " + WEATHER_SEOUL, "tool: " + SEOUL_RESULT])
    assert second.output_text == SEOUL_ANSWER
    # the outer span is the call as the application made it, with the usage of both model calls
    assert (outer.input_text, outer.output_text) == (WEATHER_PROMPT, SEOUL_ANSWER)
    assert (outer.model, tokens(outer)) == ("gpt-4o-mini", (104, 23, 127))
    assert [(m.model, tokens(m)) for m in (first, second, stream)] == [
        ("gpt-4o-mini-2024-07-18", (41, 9, 50)), ("gpt-4o-mini-2024-07-18", (63, 14, 77)),
        ("gpt-4o-mini-2024-07-18", (30, 8, 38))]
    assert (stream.input_text, stream.output_text) == (
        REFUND_PROMPT, "Refunds are accepted within 7 days.")
    assert (outer_stream.input_text, outer_stream.output_text) == (
        stream.input_text, stream.output_text)
    assert (tool.model, tokens(tool)) == (None, (None, None, None))


def test_openllmetry_js_sdk_with_ai_sdk_spans() -> None:
    pairs = js_spans("traceloop-node-sdk")
    assert [(s["name"], m.span_type) for s, m in pairs] == [
        ("retrieve_policy.task", "chain"), ("get_weather.tool", "tool"),
        ("chat gpt-4o-mini", "llm"), ("support_chat.workflow", "chain"),
        ("chat gpt-4o-mini", "llm"), ("execute_tool getWeather", "tool"),
        ("chat gpt-4o-mini", "llm"),
        ("chat gpt-4o-mini", "chain"),  # the rewritten ai.generateText: model and usage, no call
        ("chat gpt-4o-mini", "llm"), ("chat gpt-4o-mini", "chain")]
    # the decorated tool by its entity name; the rewritten ai.toolCall by gen_ai.tool.name
    assert tool_names(pairs) == [("get_weather.tool", "get_weather"), ("execute_tool getWeather", "getWeather")]
    for span_, m in pairs:  # user_id from the decorator, userId from the AI SDK's metadata
        assert (m.user_id, m.session_id) == ("u1", "s1"), span_["attributes"]
    task, tool, openai, workflow = (m for _, m in pairs[:4])
    # decorated functions: the arguments, not the {"args": [...], "kwargs": {}} wrapper
    assert (task.input_text, task.output_text) == (
        "refund", "policy for refund: refunds within 7 days")
    assert (tool.input_text, tool.output_text) == ("Seoul", '{"city":"Seoul","tempC":21}')
    assert workflow.input_text is None  # called without arguments
    assert workflow.output_text and json.loads(workflow.output_text)["weather"]["tempC"] == 21
    assert (openai.model, tokens(openai)) == ("gpt-4o-mini-2024-07-18", (22, 7, 29))
    assert openai.output_text == "환불은 7일 이내 가능합니다. Refunds within 7 days."
    outer = pairs[7][1]
    assert (outer.model, tokens(outer)) == ("gpt-4o-mini", (104, 23, 127))
    assert (outer.trace_name, workflow.trace_name) == ("demo", None)  # the AI SDK's function id
    assert (outer.input_text, outer.output_text) == (
        "user: What is the weather in Seoul?", SEOUL_ANSWER)


def test_a_tool_call_reads_the_same_whichever_instrumentation_reported_it() -> None:
    # The same AI SDK run, reported by the AI SDK itself and rewritten by Traceloop's processor
    # (arguments and results as JSON text in one, as objects in the other).
    native = {s["name"]: m for s, m in js_spans("vercel-ai-sdk") if m.span_type in ("llm", "tool")}
    traceloop = [m for s, m in js_spans("traceloop-node-sdk") if s["attributes"].get(
        "ai.operationId") in ("ai.generateText.doGenerate", "ai.toolCall")]
    vercel = [m for s, m in js_spans("vercel-ai-sdk") if s["name"] in (
        "ai.generateText.doGenerate", "ai.toolCall")]
    assert len(native) == 3 and len(traceloop) == len(vercel) == 3
    for a, b in zip(vercel, traceloop):
        assert (a.span_type, a.input_text, a.output_text) == (b.span_type, b.input_text,
                                                               b.output_text)
    # arguments as an object (OTel GenAI parts, Traceloop JS) and as a JSON string (OpenInference,
    # OpenAI chat format), compact or spaced: one rendering
    call = 'call get_weather({"city":"Seoul"})'
    objects = span({"gen_ai.operation.name": "chat", "gen_ai.output.messages": json.dumps([
        {"role": "assistant", "parts": [{"type": "tool_call", "name": "get_weather",
                                         "arguments": {"city": "Seoul"}}]}])})
    flat = span({"openinference.span.kind": "LLM",
                 "llm.output_messages.0.message.role": "assistant",
                 "llm.output_messages.0.message.tool_calls.0.tool_call.function.name":
                     "get_weather",
                 "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments":
                     '{"city": "Seoul"}'})
    chat_format = map_log("gen_ai.choice", {"index": 0, "message": {"tool_calls": [
        {"function": {"name": "get_weather", "arguments": '{ "city" : "Seoul" }'}}]}}, {})
    assert objects.output_text == flat.output_text == chat_format[1] == call
    chat_tools = [m for _, m in js_spans("traceloop-instrumentation-openai")]
    assert chat_tools[2].output_text == call
    # a tool span's arguments and result, from OpenInference, Traceloop and the AI SDK
    assert span({"openinference.span.kind": "TOOL", "input.value": '{"city": "Seoul"}'}) \
        .input_text == span({"gen_ai.operation.name": "execute_tool",
                             "gen_ai.tool.call.arguments": {"city": "Seoul"}}).input_text \
        == span({"ai.operationId": "ai.toolCall", "ai.toolCall.args": '{"city":"Seoul"}'}) \
        .input_text == '{"city":"Seoul"}'
    # text that is not JSON stays as sent
    assert span({"openinference.span.kind": "TOOL", "input.value": "{city: Seoul}"}) \
        .input_text == "{city: Seoul}"


@pytest.mark.parametrize(("operation", "expected"), [
    ("ai.generateText", "chain"), ("ai.streamText", "chain"), ("ai.generateObject", "chain"),
    ("ai.streamObject", "chain"), ("ai.embed", "chain"), ("ai.embedMany", "chain"),
    ("ai.rerank", "chain"), ("ai.generateText.doGenerate", "llm"),
    ("ai.streamText.doStream", "llm"), ("ai.generateObject.doGenerate", "llm"),
    ("ai.streamObject.doStream", "llm"), ("ai.embed.doEmbed", "embedding"),
    ("ai.embedMany.doEmbed", "embedding"), ("ai.rerank.doRerank", "reranker"),
    ("ai.toolCall", "tool"), ("ai.somethingNew", "chain"), ("ai.somethingNew.doIt", "llm"),
])
def test_ai_sdk_operations(operation: str, expected: str) -> None:
    # decided by the span's own operation id, whatever model attributes it carries
    assert span({"ai.operationId": operation, "gen_ai.request.model": "m"}).span_type == expected


def test_ai_sdk_content_of_other_operations_and_versions() -> None:
    obj = span({"ai.operationId": "ai.generateObject", "ai.model.id": "m",
                "ai.prompt": json.dumps({"prompt": [{"role": "user", "content": "Name a city"}]}),
                "ai.response.object": '{"city":"Seoul"}'})
    assert (obj.input_text, obj.output_text, obj.model) == (
        "user: Name a city", '{"city":"Seoul"}', "m")
    embed = span({"ai.operationId": "ai.embedMany.doEmbed", "ai.usage.tokens": 7,
                  "ai.values": ['"sunny day"', '"rainy day"']})
    assert (embed.span_type, embed.input_text, tokens(embed)) == (
        "embedding", "sunny day\nrainy day", (7, None, None))
    assert span({"ai.operationId": "ai.embed", "ai.value": '"one"'}).input_text == "one"
    # AI SDK 3.x / 4.x names: ai.result.*, ai.usage.promptTokens, tool calls with `args`
    old = span({"ai.operationId": "ai.generateText.doGenerate",
                "ai.usage.promptTokens": 5, "ai.usage.completionTokens": 2,
                "ai.prompt.messages": json.dumps([
                    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                    {"role": "assistant", "content": [
                        {"type": "tool-call", "toolName": "f", "args": {"a": 1}}]},
                    {"role": "tool", "content": [
                        {"type": "tool-result", "toolName": "f", "result": "done"}]},
                    {"role": "user", "content": [
                        {"type": "image", "image": "AAAA", "mediaType": "image/png"}]}]),
                "ai.result.text": "ok",
                "ai.result.toolCalls": json.dumps([{"toolName": "g", "args": {"b": 2}}])})
    assert tokens(old) == (5, 2, 7)
    assert old.input_text == 'user: hi\nassistant: call f({"a":1})\ntool: done\nuser: [image image/png]'
    assert old.output_text == 'ok\ncall g({"b":2})'
    assert span({"ai.operationId": "ai.generateText", "ai.prompt": "plain"}).input_text == "plain"
    snake = span({"ai.telemetry.metadata.user_id": "u", "ai.telemetry.metadata.session_id": "s"})
    assert (snake.user_id, snake.session_id) == ("u", "s")


def test_time_to_first_token() -> None:
    # The AI SDK's in milliseconds, OTel GenAI's in seconds; the AI SDK's first when both are there
    assert span({"ai.response.msToFirstChunk": 1.5}).first_token_ms == 1.5
    assert span({"ai.response.msToFirstChunk": 12}).first_token_ms == 12.0
    assert span({"gen_ai.response.time_to_first_chunk": 0.25}).first_token_ms == 250.0
    assert span({"ai.response.msToFirstChunk": 3.0, "gen_ai.response.time_to_first_chunk": 9.0}) \
        .first_token_ms == 3.0
    # what is not a finite number >= 0 says nothing, and the next source may
    for bad in ("1.5", True, -1.0, float("nan"), float("inf"), None, [1.0]):
        assert span({"ai.response.msToFirstChunk": bad}).first_token_ms is None, bad
        assert span({"ai.response.msToFirstChunk": bad, "gen_ai.response.time_to_first_chunk": 2}) \
            .first_token_ms == 2000.0
    assert span({"ai.response.msToFinish": 5.0}).first_token_ms is None


def test_tool_name() -> None:
    # each convention's attribute, on the spans it makes tools
    assert span({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "a"}).tool_name == "a"
    assert span({"openinference.span.kind": "TOOL", "tool.name": "b"}).tool_name == "b"
    assert span({"ai.operationId": "ai.toolCall", "ai.toolCall.name": "c"}).tool_name == "c"
    assert span({"traceloop.span.kind": "tool", "traceloop.entity.name": "d"}).tool_name == "d"
    assert span({"langfuse.observation.type": "tool", "gen_ai.tool.name": "e"}).tool_name == "e"
    assert span({"tracehub.span.type": "tool", "tool.name": "f"}).tool_name == "f"
    # OTel GenAI's first (Traceloop's rewrite of an AI SDK tool call states it with its entity name)
    assert span({"traceloop.span.kind": "tool", "traceloop.entity.name": "entity",
                 "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "genai"}).tool_name == "genai"
    assert span({"ai.operationId": "ai.toolCall", "ai.toolCall.name": "sdk", "tool.name": "oi"}).tool_name == "oi"
    # a Traceloop entity names a tool only where the span kind says tool
    for kind in ("workflow", "task", "agent"):
        assert span({"traceloop.span.kind": kind, "traceloop.entity.name": "x"}).tool_name is None
    assert span({"openinference.span.kind": "TOOL", "traceloop.entity.name": "x"}).tool_name is None
    # only tool spans: a model call that lists a tool, or a tool span typed otherwise, has none
    assert span({"gen_ai.operation.name": "chat", "gen_ai.tool.name": "x"}).tool_name is None
    assert span({"tracehub.span.type": "chain", "ai.operationId": "ai.toolCall",
                 "ai.toolCall.name": "x"}).tool_name is None
    assert span({"tool.name": "x"}).tool_name is None
    # what is not a name says nothing, and the next source may
    for bad in ("", "  ", True, None, ["x"], {"a": 1}):
        assert span({"openinference.span.kind": "TOOL", "tool.name": bad}).tool_name is None, bad
        assert span({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": bad,
                     "ai.toolCall.name": "next"}).tool_name == "next", bad
    assert span({"openinference.span.kind": "TOOL"}).tool_name is None


@pytest.mark.parametrize(("entity_input", "expected"), [
    ('{"args":[],"kwargs":{}}', None),
    ('{"args":["refund"],"kwargs":{}}', "refund"),
    ('{"args":[{"q":"x"}],"kwargs":{}}', '{"q": "x"}'),
    ('{"args":["a",2],"kwargs":{}}', '["a", 2]'),
    ('{"args":[],"kwargs":{"q":"x"}}', '{"q": "x"}'),
    ('{"args":["a"],"kwargs":{"q":"x"}}', '{"args":["a"],"kwargs":{"q":"x"}}'),
    ('{"args":["a"],"other":1}', '{"args":["a"],"other":1}'),
    ('"quoted"', "quoted"),
])
def test_traceloop_decorated_call_inputs(entity_input: str, expected: str | None) -> None:
    assert span({"traceloop.span.kind": "task", "traceloop.entity.input": entity_input}) \
        .input_text == expected


# ---------------------------------------------------------------- explicit attributes


def span(attributes: dict[str, Any], name: str = "s", resource: dict[str, Any] | None = None,
         events: list[dict[str, Any]] | None = None) -> Mapped:
    return map_span(name, "INTERNAL", attributes, resource or {}, events or [])


def test_empty_span_maps_to_defaults() -> None:
    assert span({}) == Mapped()
    assert map_span("", "UNSPECIFIED", {}, {}, []).span_type == "span"


def test_our_langgraph_attributes_and_override() -> None:
    m = span({"langgraph.graph.name": "support", "langgraph.node": "router", "langgraph.step": 2,
              "langgraph.triggers": ["start:router"], "openinference.span.kind": "LLM"},
             name="whatever")
    # our own node attribute makes the node span, whatever the span's name or other kinds say
    assert (m.span_type, m.graph_name, m.node_name, m.step) == ("node", "support", "router", 2)
    m = span({"langgraph.node": "grader", "langgraph.step": "3", "tracehub.span.type": "JUDGE"})
    assert (m.span_type, m.node_name, m.step) == ("judge", "grader", 3)
    unknown = span({"tracehub.span.type": "banana", "gen_ai.operation.name": "chat"})
    assert unknown.span_type == "llm"
    assert span({"tracehub.span.type": "guardrail", "openinference.span.kind": "LLM"}).span_type \
        == "guardrail"


def test_inherited_node_context_does_not_make_a_node() -> None:
    meta = json.dumps({"langgraph_node": "tools", "langgraph_step": 4})
    assert span({"metadata": meta, "openinference.span.kind": "CHAIN"}, name="tools").span_type \
        == "node"
    child = span({"metadata": meta, "openinference.span.kind": "CHAIN"}, name="RunnableLambda")
    assert (child.span_type, child.node_name, child.step) == ("chain", "tools", 4)
    # a specific kind is kept even when the name matches the node
    tool = span({"metadata": meta, "openinference.span.kind": "TOOL"}, name="tools")
    assert (tool.span_type, tool.node_name) == ("tool", "tools")
    # metadata as a structured value (kvlist) and with compact separators
    assert span({"metadata": {"langgraph_node": "a", "langgraph_step": 1}}, name="a").span_type \
        == "node"
    compact = span({"metadata": '{"langgraph_node":"a","langgraph_step":-1}'}, name="a")
    assert (compact.span_type, compact.step) == ("node", -1)
    tl = {"traceloop.association.properties.langgraph_node": "plan",
          "traceloop.association.properties.langgraph_step": 1,
          "gen_ai.operation.name": "execute_task", "traceloop.span.kind": "task"}
    assert span({**tl, "gen_ai.task.name": "plan"}).span_type == "node"
    assert span({**tl, "gen_ai.task.name": "RunnableSequence"}).span_type == "chain"
    assert span({**tl, "gen_ai.operation.name": "chat"}, name="plan").span_type == "llm"


def test_langfuse_attributes() -> None:
    m = span({
        "langfuse.observation.type": "generation",
        "langfuse.observation.model.name": "claude-x",
        "langfuse.observation.usage_details": json.dumps({"input": 10, "output": 4}),
        "langfuse.observation.input": json.dumps([{"role": "user", "content": "안녕하세요"}]),
        "langfuse.observation.output": json.dumps("반갑습니다"),
        "langfuse.user.id": "u-1", "langfuse.session.id": "s-1", "langfuse.environment": "prod",
    })
    assert (m.span_type, m.model, tokens(m)) == ("llm", "claude-x", (10, 4, 14))
    assert (m.input_text, m.output_text) == ("user: 안녕하세요", "반갑습니다")
    assert (m.user_id, m.session_id, m.environment) == ("u-1", "s-1", "prod")
    # Langfuse's default type says nothing, so the GenAI operation decides
    assert span({"langfuse.observation.type": "span", "gen_ai.operation.name": "embeddings"}) \
        .span_type == "embedding"
    trace_level = span({"langfuse.trace.input": "q", "langfuse.trace.output": '{"a": 1}'})
    assert (trace_level.input_text, trace_level.output_text) == ("q", '{"a": 1}')
    both = span({"langfuse.trace.input": "q", "input.value": "own"})
    assert both.input_text == "own"


def test_langfuse_sdk_span() -> None:
    """Attributes as the Langfuse Python SDK (5.x) sends them: propagated trace attributes,
    flattened metadata with JSON values, observation fields as JSON text."""
    m = span({
        "user.id": "u1", "session.id": "s1", "langfuse.trace.name": "chat-turn",
        "langfuse.trace.tags": ["t1", "t2"], "langfuse.trace.metadata.tenant": '"acme"',
        "langfuse.observation.type": "generation", "langfuse.observation.model.name": "gpt-4o-mini",
        "langfuse.observation.input": '[{"role": "user", "content": "hi"}]',
        "langfuse.observation.output": '{"role": "assistant", "content": "hello"}',
        "langfuse.observation.usage_details": '{"input": 10, "output": 5}',
        "langfuse.observation.cost_details": '{"input": 0.001, "output": 0.002}',
        "langfuse.observation.metadata.route": '"/chat"',
    }, name="llm")
    assert (m.span_type, m.model, tokens(m)) == ("llm", "gpt-4o-mini", (10, 5, 15))
    assert (m.input_text, m.output_text) == ("user: hi", "hello")  # the one message returned
    assert (m.user_id, m.session_id, m.trace_name) == ("u1", "s1", "chat-turn")
    # Langfuse's name wins over the AI SDK's function id; a name that is no text names nothing
    assert span({"ai.telemetry.functionId": "f", "langfuse.trace.name": "t"}).trace_name == "t"
    assert span({"ai.telemetry.functionId": "f", "langfuse.trace.name": ["t"]}).trace_name == "f"
    assert span({"langfuse.trace.name": " "}).trace_name is None
    # a message with tool calls reads as other instrumentations' do; other objects stay as sent
    call = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Seoul"}'}}]}
    assert span({"langfuse.observation.type": "generation",
                 "langfuse.observation.output": json.dumps(call)}).output_text == 'call get_weather({"city":"Seoul"})'
    assert span({"langfuse.observation.output": '{"role": "admin"}'}).output_text == '{"role": "admin"}'


@pytest.mark.parametrize(("observation_type", "expected"), [
    ("generation", "llm"), ("agent", "agent"), ("tool", "tool"), ("retriever", "retriever"),
    ("embedding", "embedding"), ("evaluator", "evaluator"), ("guardrail", "guardrail"),
    ("chain", "chain"), ("span", "span"), ("event", "span"), ("GENERATION", "llm")])
def test_langfuse_observation_types(observation_type: str, expected: str) -> None:
    assert span({"langfuse.observation.type": observation_type}).span_type == expected


@pytest.mark.parametrize(("usage", "expected"), [
    ({"input": 10, "output": 5, "total": 15}, (10, 5, 15)),
    # Langfuse's LangChain handler takes cached and reasoning tokens out of input and output;
    # Langfuse adds every key naming input (output) back, as it does here
    ({"input": 70, "input_cache_read": 30, "output": 4, "output_reasoning": 6}, (100, 10, 110)),
    ({"input_tokens": 12, "cache_read_input_tokens": 8, "output_tokens": 3}, (20, 3, 23)),
    # OpenAI's usage object as the Langfuse OpenAI integration passes it on
    ({"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
      "prompt_tokens_details": {"cached_tokens": 4}}, (9, 2, 11)),
    ({"input": "n/a", "output": None, "total": 3}, (None, None, 3)),
    ({"input": 2**62, "input_cached": 2**62}, (None, None, None)),  # past the store's range
])
def test_langfuse_usage_details(usage: dict[str, Any], expected: tuple[Any, ...]) -> None:
    assert tokens(span({"langfuse.observation.usage_details": json.dumps(usage)})) == expected


@pytest.mark.parametrize(("attributes", "expected"), [
    ({"openinference.span.kind": "RERANKER"}, "reranker"),
    ({"openinference.span.kind": "guardrail"}, "guardrail"),
    ({"openinference.span.kind": "EVALUATOR"}, "evaluator"),
    ({"openinference.span.kind": "UNKNOWN"}, "span"),
    ({"gen_ai.operation.name": "generate_content"}, "llm"),
    ({"gen_ai.operation.name": "text_completion"}, "llm"),
    ({"gen_ai.operation.name": "execute_tool"}, "tool"),
    ({"gen_ai.operation.name": "create_agent"}, "agent"),
    ({"gen_ai.operation.name": "invoke_workflow"}, "chain"),
    ({"traceloop.span.kind": "workflow"}, "chain"),
    ({"traceloop.span.kind": "tool"}, "tool"),
    ({"llm.request.type": "embedding"}, "embedding"),
    ({"llm.request.type": "chat"}, "llm"),
    ({"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o"}, "llm"),
    ({"openinference.span.kind": "CHAIN", "gen_ai.operation.name": "chat"}, "chain"),
    ({"gen_ai.operation.name": 7}, "span"),
])
def test_span_type_sources(attributes: dict[str, Any], expected: str) -> None:
    assert span(attributes).span_type == expected


def test_precedence_of_ids_model_and_environment() -> None:
    m = span({"user.id": "a", "langfuse.user.id": "b", "session.id": "s",
              "gen_ai.conversation.id": "c", "gen_ai.request.model": "req",
              "gen_ai.response.model": "resp", "llm.model_name": "oi",
              "deployment.environment.name": "span-env"},
             resource={"deployment.environment": "old", "deployment.environment.name": "new"})
    assert (m.user_id, m.session_id, m.model, m.environment) == ("a", "s", "resp", "new")
    m = span({"traceloop.association.properties.thread_id": "t-1",
              "traceloop.association.properties.user_id": 42, "llm.model_name": "oi",
              "deployment.environment.name": "span-env"},
             resource={"service.name": "x"})
    assert (m.user_id, m.session_id, m.model, m.environment) == ("42", "t-1", "oi", "span-env")
    assert span({"gen_ai.conversation.id": "conv", "traceloop.association.properties.thread_id":
                 "t"}).session_id == "conv"


def test_older_genai_attribute_names() -> None:
    m = span({
        "llm.request.type": "chat", "gen_ai.request.model": "gpt-3.5-turbo",
        "gen_ai.usage.prompt_tokens": 8, "gen_ai.usage.completion_tokens": 2,
        "llm.usage.total_tokens": 11,
        "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Be brief.",
        "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "날씨 어때?",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "",
        "gen_ai.completion.0.tool_calls.0.name": "get_weather",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "서울"}',
    })
    assert (m.span_type, m.model, tokens(m)) == ("llm", "gpt-3.5-turbo", (8, 2, 11))
    assert m.input_text == "system: Be brief.\nuser: 날씨 어때?"
    assert m.output_text == 'call get_weather({"city":"서울"})'


def test_genai_span_events_feed_input_and_output() -> None:
    events = [
        {"name": "gen_ai.content.prompt", "time_unix_nano": 1,
         "attributes": {"gen_ai.prompt": json.dumps([{"role": "user", "content": "hi"}])}},
        {"name": "exception", "time_unix_nano": 2, "attributes": {"exception.message": "boom"}},
        {"name": "gen_ai.content.completion", "time_unix_nano": 3,
         "attributes": {"gen_ai.completion": json.dumps([{"role": "assistant", "content": "yo"}])}},
    ]
    m = span({"gen_ai.operation.name": "chat"}, events=events)
    assert (m.input_text, m.output_text) == ("user: hi", "yo")
    events = [
        {"name": "gen_ai.system.message", "time_unix_nano": 1,
         "attributes": {"gen_ai.system": "openai", "content": "rules"}},
        {"name": "gen_ai.user.message", "time_unix_nano": 2,
         "attributes": {"gen_ai.event.content": json.dumps({"content": "질문"})}},
        {"name": "gen_ai.choice", "time_unix_nano": 3,
         "attributes": {"index": 0, "message": json.dumps({"content": "답"})}},
    ]
    m = span({"gen_ai.operation.name": "chat"}, events=events)
    assert (m.input_text, m.output_text) == ("system: rules\nuser: 질문", "답")
    # attributes win over events
    m = span({"gen_ai.operation.name": "chat", "gen_ai.input.messages": '[{"role": "user", '
              '"parts": [{"type": "text", "content": "attr"}]}]'}, events=events)
    assert m.input_text == "user: attr"
    assert span({}, events=[{"name": "exception", "attributes": {"x": 1}}]).input_text is None


def test_genai_parts_of_every_shape_render() -> None:
    def rendered(parts: Any) -> str | None:
        return span({"gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": parts}])}).input_text

    assert rendered([{"type": "text", "content": "a"}]) == "user: a"
    assert rendered([{"type": "text", "text": "b"}]) == "user: b"
    assert rendered([{"type": "text", "content": ""}]) is None
    assert rendered([{"type": "text", "content": [{"type": "text", "content": "nested"}]}]) == "user: nested"
    assert rendered([{"type": "text", "content": "a"}, {"type": "text", "content": ""},
                     {"type": "blob", "mime_type": "image/png"}]) == "user: a\n[blob image/png]"
    assert rendered([]) is None


def test_korean_text_passes_through_unchanged() -> None:
    question = "원금 보장 투자 추천해줘 — 환불 규정 알려줘"
    answer = "답변: 환불은 7일 이내 가능합니다 🙂"
    m = span({"gen_ai.operation.name": "chat",
              "gen_ai.input.messages": json.dumps(
                  [{"role": "user", "parts": [{"type": "text", "content": question}]}]),
              "gen_ai.output.messages": json.dumps(
                  [{"role": "assistant", "parts": [
                      {"type": "text", "content": answer},
                      {"type": "tool_call", "name": "검색", "arguments": {"질의": question}}]}])})
    assert m.input_text == "user: " + question
    assert m.output_text == answer + "\ncall 검색(" + json.dumps(
        {"질의": question}, ensure_ascii=False, separators=(",", ":")) + ")"
    assert "\\u" not in (m.output_text or "")
    chain = span({"input.value": question, "output.value": answer, "user.id": "사용자"})
    assert (chain.input_text, chain.output_text, chain.user_id) == (question, answer, "사용자")
    wrapped = span({"traceloop.entity.input": json.dumps({"inputs": {"q": question}, "tags": []})})
    assert wrapped.input_text == json.dumps({"q": question}, ensure_ascii=False)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("value", "expected"), [
    (12, 12), ("12", 12), (" 7 ", 7), (12.0, 12), ("3.0", 3), (0, 0),
    ("garbage", None), ("", None), (True, None), (-5, None), (2**70, None), (12.5, None),
    (float("nan"), None), (float("inf"), None), ([1], None), ({"a": 1}, None), (None, None),
    ("9" * 400, None),
])
def test_token_counts_are_coerced_or_dropped(value: Any, expected: int | None) -> None:
    m = span({"gen_ai.usage.input_tokens": value, "gen_ai.usage.output_tokens": 3})
    assert m.input_tokens == expected
    assert m.total_tokens == (None if expected is None else expected + 3)


def test_given_total_wins_and_invalid_first_source_falls_through() -> None:
    m = span({"llm.token_count.prompt": 5, "llm.token_count.completion": 6,
              "llm.token_count.total": 20})
    assert tokens(m) == (5, 6, 20)
    m = span({"gen_ai.usage.input_tokens": "n/a", "llm.token_count.prompt": "9"})
    assert tokens(m) == (9, None, None)


def test_malformed_json_is_kept_as_text() -> None:
    m = span({"gen_ai.operation.name": "chat", "gen_ai.input.messages": "not json [",
              "gen_ai.output.messages": '[{"role": "assistant", "parts": ['})
    assert (m.span_type, m.input_text) == ("llm", "not json [")
    assert m.output_text == '[{"role": "assistant", "parts": ['
    m = span({"metadata": '{"langgraph_node": ', "openinference.span.kind": "CHAIN"})
    assert (m.span_type, m.node_name) == ("chain", None)
    m = span({"langfuse.observation.usage_details": "{bad", "traceloop.entity.input": "{bad"})
    assert (tokens(m), m.input_text) == ((None, None, None), "{bad")
    m = span({"gen_ai.input.messages": "[]", "input.value": "fallback",
              "gen_ai.operation.name": "chat"})
    assert m.input_text == "fallback"  # an empty message list is no answer


def test_wrong_types_map_to_none_without_raising() -> None:
    m = span({"user.id": ["a"], "session.id": {"x": 1}, "gen_ai.request.model": True,
              "langgraph.node": 3.5, "langgraph.step": "two", "input.value": {"k": "v"},
              "output.value": [1, 2], "gen_ai.output.messages": 5,
              "tracehub.span.type": None})
    assert (m.user_id, m.session_id, m.model) == (None, None, None)
    assert (m.node_name, m.step, m.span_type) == ("3.5", None, "node")
    assert (m.input_text, m.output_text) == ('{"k": "v"}', "[1, 2]")
    bad_events: list[Any] = [None, 3, {"name": 5}, {"name": "gen_ai.choice", "attributes": None}]
    assert map_span("x", "CLIENT", {"gen_ai.operation.name": "chat"}, {}, bad_events).span_type \
        == "llm"
    assert map_span(None, None, None, None, None) == Mapped()  # type: ignore[arg-type]


def test_huge_and_deeply_nested_values_do_not_stall_or_raise() -> None:
    huge = json.dumps([{"role": "user", "content": "x" * MAX_PARSE_CHARS}])
    m = span({"gen_ai.operation.name": "chat", "gen_ai.input.messages": huge})
    assert m.input_text == huge  # too big to parse: kept as the client's raw text
    deep = "[" * 100_000 + "]" * 100_000
    m = span({"gen_ai.operation.name": "chat", "gen_ai.input.messages": deep,
              "metadata": '{"langgraph_node": ' + deep + "}", "langfuse.observation.input": deep})
    assert m.span_type == "llm" and m.input_text == deep
    assert map_log("gen_ai.user.message", deep, {}) == ("user: " + deep, None)


def test_random_garbage_never_raises() -> None:
    rng = random.Random(1234)
    keys = ["gen_ai.input.messages", "gen_ai.output.messages", "llm.input_messages.0.message.role",
            "llm.input_messages.0.message.content", "metadata", "gen_ai.usage.input_tokens",
            "traceloop.entity.input", "langfuse.observation.usage_details", "input.value",
            "gen_ai.system_instructions", "traceloop.association.properties.langgraph_node",
            "gen_ai.prompt.0.content", "gen_ai.completion.0.tool_calls.0.name",
            "langfuse.observation.input", "output.value", "openinference.span.kind"]
    values: list[Any] = [None, "", "[", "{}", "[]", '[{"role": 1, "parts": 5}]', '{"inputs": null}',
                         '[{"parts": [{"type": "tool_call"}]}]', 3, -1, 2.5, True, [None, {}],
                         {"parts": [[]]}, [{"role": "user", "content": [{"type": "image_url"}]}],
                         '{"generations": [[{"text": 1}], 2]}', '"quoted"', "LLM", "x" * 50]
    for _ in range(3000):
        attrs = {rng.choice(keys): rng.choice(values) for _ in range(rng.randint(0, 6))}
        m = span(attrs, name=rng.choice(["", "x", "tools"]),
                 events=[{"name": rng.choice(["gen_ai.choice", "gen_ai.user.message"]),
                          "attributes": {"message": rng.choice(values)}}])
        assert m.span_type in SPAN_TYPES
        for text in (m.input_text, m.output_text):
            assert text is None or isinstance(text, str)
        result = map_log(rng.choice([None, "gen_ai.choice", "gen_ai.assistant.message",
                                     "gen_ai.client.inference.operation.details"]),
                         rng.choice(values), {rng.choice(keys): rng.choice(values)})
        assert all(t is None or isinstance(t, str) for t in result)


# ---------------------------------------------------------------- map_log


def test_map_log_shapes() -> None:
    assert map_log("gen_ai.user.message", {"content": "hi"}, {}) == ("user: hi", None)
    assert map_log("gen_ai.user.message", "plain body", {}) == ("user: plain body", None)
    assert map_log(None, '{"content": "from json"}', {"event.name": "gen_ai.system.message"}) \
        == ("system: from json", None)
    assert map_log("gen_ai.tool.message", {"content": "20", "id": "c1"}, {}) == ("tool: 20", None)
    assert map_log("gen_ai.assistant.message", {"content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}, {}) \
        == ('assistant: call f({"a":1})', None)
    assert map_log("gen_ai.choice", {"index": 0, "message": {"role": "assistant", "content": "ok"},
                                     "finish_reason": "stop"}, {}) == (None, "ok")
    details = {"gen_ai.system_instructions": [{"type": "text", "content": "be nice"}],
               "gen_ai.input.messages": [{"role": "user", "parts": [{"type": "text",
                                                                     "content": "q"}]}],
               "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                   {"type": "text", "content": "a"}]}])}
    expected = ("system: be nice\nuser: q", "a")
    assert map_log("gen_ai.client.inference.operation.details", None, details) == expected
    assert map_log("gen_ai.client.inference.operation.details", details, {}) == expected
    assert map_log("app.log", {"content": "x"}, {}) == (None, None)
    assert map_log(None, "text", {}) == (None, None)
    assert map_log("gen_ai.choice", None, {}) == (None, None)
