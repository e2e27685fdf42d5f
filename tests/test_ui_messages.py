"""Chat messages of the trace page (tracehub.ui.messages, _chat.html) over spans that real
instrumentations captured (tests/fixtures, /work/shared/fixtures/otlp-js), decoded by the
collector as the server decodes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fixture_otlp import capture_to_logs_request, capture_to_trace_request
from tracehub.collector import otlp
from tracehub.ui import messages
from tracehub.ui.render import Templates

FIXTURES = Path(__file__).parent / "fixtures" / "otel-captures"
JS = Path(__file__).parent / "fixtures" / "otlp-js"
SHARED_JS = Path("/work/shared/fixtures/otlp-js")


def _rows(capture_name: str) -> list[dict[str, Any]]:
    """The capture's spans as read-model rows: attributes and events as stored (JSON text), log
    records as the span's LOG events."""
    capture = json.loads((FIXTURES / capture_name).read_text())
    spans = otlp.decode_traces(capture_to_trace_request(capture).SerializeToString()).spans
    logs_request = capture_to_logs_request(capture)
    events = otlp.decode_logs(logs_request.SerializeToString()).events if logs_request else []
    return [{"span_id": s.span_id, "name": s.name, "span_type": s.mapped.span_type, "model": s.mapped.model,
             "attributes": json.dumps(s.attributes), "events": json.dumps(s.events),
             "input_text": s.mapped.input_text, "output_text": s.mapped.output_text,
             "span_events": [{"event_type": e.event_type, "name": e.name, "payload": e.payload}
                             for e in events if e.span_id == s.span_id]} for s in spans]


def _js_spans(name: str) -> list[Any]:
    path = JS / name if (JS / name).exists() else SHARED_JS / name
    if not path.exists():
        pytest.skip(f"{name} not in the fixtures")
    return otlp.decode_traces(path.read_bytes(), "json" if name.endswith(".json") else "protobuf").spans


def _named(rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["name"] == name]


def _summary(found: list[messages.Message]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    return [(m.role, [(p.kind, p.text or p.name) for p in m.parts]) for m in found]


def test_genai_parts_messages_with_tool_call_and_result() -> None:
    first, second = _named(_rows("openai-v2_tool_call_span_and_event.json"), "chat gpt-4o-mini")
    chat = messages.chat(first)
    assert chat is not None
    assert _summary(chat.input) == [("user", [("text", "Weather in Paris?")])]
    call = chat.output[0].parts[0]
    assert (call.kind, call.id, call.name) == ("tool_call", "call_abc123", "get_weather")
    assert json.loads(call.arguments or "") == {"city": "Paris"}
    assert chat.output[0].finish_reason == "tool_calls"

    chat = messages.chat(second)
    assert chat is not None
    assert [m.role for m in chat.input] == ["user", "assistant", "tool"]
    result = chat.input[2].parts[0]
    assert (result.kind, result.id, result.content) == ("tool_result", "call_abc123", "18C and cloudy")
    assert _summary(chat.output) == [("assistant", [("text", "Hello from the fake server. Paris is 18C.")])]


def test_genai_system_role_and_finish_reason() -> None:
    [span] = _named(_rows("openai-v2_chat_span_only.json"), "chat gpt-4o-mini")
    chat = messages.chat(span)
    assert chat is not None
    assert _summary(chat.input) == [("system", [("text", "You are terse.")]), ("user", [("text", "Say hello.")])]
    assert chat.output[0].finish_reason == "stop"


def test_traceloop_system_instructions_and_tool_definitions() -> None:
    rows = _rows("traceloop_router_rag.json")
    chat = messages.chat(_named(rows, "FakeToolChatModel.chat")[0])
    assert chat is not None
    assert _summary(chat.system) == [("system", [("text", "You are a concise assistant. Use the context.")])]
    assert chat.input[0].role == "user" and "Which port does OTLP HTTP use?" in chat.input[0].parts[0].text
    assert chat.output[0].parts[0].text == "Port 4318 is OTLP/HTTP; port 4317 is OTLP/gRPC."

    agent = messages.chat(_named(_rows("traceloop_react_agent_events.json"), "create_agent react_agent")[0])
    assert agent is not None
    assert [t.name for t in agent.tools] == ["get_weather", "calculator"]
    assert "city" in json.loads(agent.tools[0].parameters or "")["properties"]


def test_genai_events_as_log_records() -> None:
    """Traceloop's event mode: messages arrive as gen_ai.*.message / gen_ai.choice log records."""
    rows = _rows("traceloop_react_agent_events.json")
    with_events = [r for r in rows if r["span_events"]]
    assert with_events
    chats = [messages.chat(r) for r in with_events]
    last = chats[-1]
    assert last is not None
    assert [m.role for m in last.input] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert [p.kind for p in last.input[2].parts] == ["text", "tool_call"]
    assert last.input[3].parts[0].kind == "tool_result" and last.input[3].parts[0].content == "It is 18C and cloudy in Paris."
    assert _summary(last.output) == [("assistant", [("text", "Paris is 18C and cloudy; 18+2 = 20.")])]
    assert last.output[0].finish_reason == "stop"


def test_openinference_flattened_messages_tools_and_finish_reason() -> None:
    models = _named(_rows("openinference_react_agent.json"), "FakeToolChatModel")
    chat = messages.chat(models[1])
    assert chat is not None
    assert [m.role for m in chat.input] == ["system", "user", "assistant", "tool"]
    call = chat.input[2].parts[1]
    assert (call.kind, call.id, call.name) == ("tool_call", "call_w_1", "get_weather")
    assert json.loads(call.arguments or "") == {"city": "Paris"}
    result = chat.input[3].parts[0]
    assert (result.kind, result.id, result.name, result.content) == (
        "tool_result", "call_w_1", "get_weather", "It is 18C and cloudy in Paris.")
    assert chat.output[0].parts[0].name == "calculator" and chat.output[0].finish_reason == "tool_calls"
    assert [t.name for t in chat.tools] == ["get_weather", "calculator"]
    assert "Evaluate" in chat.tools[1].description


def test_openinference_state_messages_in_input_value() -> None:
    """A node span's input.value (application/json) holds LangChain messages."""
    agent = _named(_rows("openinference_react_agent.json"), "agent")[0]
    chat = messages.chat({**agent, "attributes": {k: v for k, v in json.loads(agent["attributes"]).items()
                                                  if not k.startswith("llm.")}})
    assert chat is not None
    assert _summary(chat.input) == [("user", [("text", "Weather in Paris, and what is 18+2?")])]
    assert chat.output[0].role == "assistant" and chat.output[0].parts[1].name == "get_weather"


def test_spans_without_messages_answer_none() -> None:
    rows = _rows("openinference_router_rag.json")
    assert messages.chat(_named(rows, "DocsRetriever")[0]) is None
    assert messages.chat({"attributes": "{}", "events": "[]", "input_text": "plain", "output_text": None}) is None


def test_js_instrumentations() -> None:
    spans = _js_spans("traceloop-instrumentation-openai_chat-tools.otlp.json")
    chats = [messages.chat({"attributes": s.attributes}) for s in spans if s.name.startswith("chat")]
    with_tools = [c for c in chats if c is not None and c.tools]
    assert with_tools and with_tools[0].tools[0].name == "get_weather"
    assert with_tools[-1].input[2].parts[0].kind == "tool_result"
    korean = chats[0]
    assert korean is not None and korean.input[1].parts[0].text == "환불 규정 알려줘"

    vercel = _js_spans("vercel-ai-sdk_generate-and-stream.otlp.json")
    first = next(s for s in vercel if s.name == "ai.generateText.doGenerate")
    chat = messages.chat({"attributes": first.attributes})
    assert chat is not None
    assert [m.role for m in chat.input] == ["system", "user"]
    call = chat.output[0].parts[0]
    assert (call.kind, call.name, call.id) == ("tool_call", "getWeather", "call_weather_1")
    assert chat.tools[0].name == "getWeather"


@pytest.mark.parametrize("attributes", [
    {"gen_ai.input.messages": "[{not json"},
    {"gen_ai.input.messages": 42, "gen_ai.output.messages": [None, 3, "x", {"parts": "oops"}]},
    {"gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "tool_call", "arguments": "{bad"}]}]'},
    {"gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "blob", "mime_type": "image/png", "content": "AAAA"}]}]'},
    {"llm.input_messages.0.message.role": ["a"], "llm.input_messages.0.message.content": {"x": 1}},
    {"gen_ai.prompt.0.role": None, "gen_ai.prompt.0.content": 5},
    {"gen_ai.tool.definitions": "[1, 2, {\"name\": 3}]", "llm.tools.0.tool.json_schema": "{"},
    {"input.value": '{"messages": "nope"}', "input.mime_type": "application/json"},
    {"langfuse.observation.input": "[" * 5000},
])
def test_malformed_values_never_raise(attributes: dict[str, Any]) -> None:
    for span in ({"attributes": attributes}, {"attributes": json.dumps(attributes), "events": "not json",
                                              "span_events": "x"}):
        messages.chat(span)  # answers or None, never raises
    assert messages.chat({"attributes": "{broken"}) is None
    assert messages.chat({}) is None


def test_blob_parts_are_placeholders() -> None:
    chat = messages.chat({"attributes": {"gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBORw0KGgo="},
        {"type": "uri", "modality": "image", "uri": "https://example.com/cat.png"},
        {"type": "text", "content": "what is this?"}]}])}})
    assert chat is not None
    parts = chat.input[0].parts
    assert [(p.kind, p.mime_type, p.uri) for p in parts[:2]] == [
        ("image", "image/png", None), ("image", "image", "https://example.com/cat.png")]
    assert all("iVBOR" not in (p.text + (p.uri or "")) for p in parts)


def test_rendered_chat_escapes_text() -> None:
    payload = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    span = {"attributes": {
        "gen_ai.system_instructions": payload,
        "gen_ai.input.messages": json.dumps([{"role": payload, "parts": [{"type": "text", "content": payload}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": payload, "parts": [
            {"type": "tool_call", "id": payload, "name": payload, "arguments": {"q": payload}},
            {"type": "text", "content": payload * 100}]}]),
        "gen_ai.tool.definitions": json.dumps([{"name": payload, "description": payload}]),
    }}
    chat = messages.chat(span)
    assert chat is not None
    templates = Templates()
    for lang in ("en", "ko"):
        html = templates.render(lang, "_chat.html", {"chat": chat})
        assert "<script" not in html and "<img" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "style=" not in html and "msg-other" in html
        assert "<details class=\"long\">" in html  # the long text collapses
    assert "도구 호출" in templates.render("ko", "_chat.html", {"chat": chat})
