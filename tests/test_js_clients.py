"""JavaScript clients' real request bodies (tests/fixtures/otlp-js), replayed into a real server.

Every file is posted byte for byte to /v1/traces, OTLP/JSON as `application/json` and the numbered
protobuf bodies in the order the client sent them, into a project of the test's own, on SQLite and
PostgreSQL. Expectations are read from the raw attributes (fixture_js, with opentelemetry-proto),
never from our mapping code: which span is a model call, tool or chain by what its instrumentation
says; model, tokens, content, user and session as the client sent them. The trace's tokens and cost
count each model call once although the AI SDK's outer spans (and Traceloop's rewrite of them) repeat
the usage of their calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest

from conftest import Project, ServerProcess, own_project, ui_client
from fixture_js import REQUESTS, content_type, spans_of

Spans = dict[str, list[dict[str, Any]]]  # trace id -> the spans sent, in the order sent

USER, SESSION = "u1", "s1"  # every AI SDK call and Traceloop workflow of the captures
MODEL_CALLS = ("ai.generateText.doGenerate", "ai.streamText.doStream")
OUTER_CALLS = ("ai.generateText", "ai.streamText")


@pytest.fixture(scope="module")
def project(server: ServerProcess) -> Iterator[Project]:
    with own_project(server, "js-clients") as made:
        yield made


@pytest.fixture(scope="module")
def replayed(server: ServerProcess, project: Project) -> tuple[Spans, dict[str, dict[str, Any]]]:
    """Post every request body; the spans sent per trace, and what the API shows per trace."""
    sent: Spans = {}
    for path in REQUESTS:
        r = httpx.post(server.otlp_http + "/v1/traces", content=path.read_bytes(), timeout=30,
                       headers={"content-type": content_type(path), "x-api-key": project.key})
        assert r.status_code == 200, (path.name, r.content)
        assert b"rejected" not in r.content, r.content
        for span in spans_of(path):
            sent.setdefault(span["trace_id"], []).append(span)
    got = {tid: server.wait_trace(tid, len(spans), client=project.client)
           for tid, spans in sent.items()}
    return sent, got


def stored(replayed: tuple[Spans, dict[str, dict[str, Any]]]
           ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(span as sent, span as the API shows it) for every span of every capture."""
    sent, got = replayed
    for tid, spans in sent.items():
        by_id = {s["span_id"]: s for s in got[tid]["spans"]}
        for span in spans:
            yield span, by_id[span["span_id"]]


def kind_of(attrs: dict[str, Any]) -> str:
    """What the instrumentation says the span is."""
    operation = attrs.get("ai.operationId")
    if operation in MODEL_CALLS or attrs.get("gen_ai.operation.name") == "chat":
        return "llm"
    if operation in OUTER_CALLS:
        return "chain"
    if operation == "ai.toolCall" or attrs.get("traceloop.span.kind") == "tool":
        return "tool"
    return {"workflow": "chain", "task": "chain"}.get(attrs.get("traceloop.span.kind", ""), "span")


def tool_of(attrs: dict[str, Any]) -> Any:
    """The tool a tool span ran, as its instrumentation states it; None for other spans."""
    if kind_of(attrs) != "tool":
        return None
    return next(attrs[k] for k in ("ai.toolCall.name", "gen_ai.tool.name", "traceloop.entity.name") if k in attrs)


def user_of(attrs: dict[str, Any]) -> Any:
    return next((attrs[k] for k in ("ai.telemetry.metadata.userId",
                                    "traceloop.association.properties.user_id",
                                    "traceloop.association.properties.userId") if k in attrs), None)


def session_of(attrs: dict[str, Any]) -> Any:
    return next((attrs[k] for k in ("ai.telemetry.metadata.sessionId",
                                    "traceloop.association.properties.session_id",
                                    "traceloop.association.properties.sessionId") if k in attrs),
                None)


def test_every_file_replays_and_every_span_arrives_as_sent(
        replayed: tuple[Spans, dict[str, dict[str, Any]]]) -> None:
    sent, got = replayed
    assert len(REQUESTS) == 12 and len(sent) == 6
    for tid, spans in sent.items():
        trace = got[tid]
        assert {s["span_id"] for s in trace["spans"]} == {s["span_id"] for s in spans}
        assert trace["trace"]["span_count"] == len(spans) and not trace["trace"]["has_open_spans"]
    for span, out in stored(replayed):
        assert (out["name"], out["parent_span_id"]) == (span["name"], span["parent_span_id"])
        assert out["attributes"] == span["attributes"]  # nothing dropped or rewritten
        assert out["resource"] == span["resource"]
        assert [e["name"] for e in out["events"] if e["event_type"] == "OTEL"] == [
            e["name"] for e in span["events"]]


def test_span_types_models_and_tokens_count_each_model_call_once(
        replayed: tuple[Spans, dict[str, dict[str, Any]]]) -> None:
    for span, out in stored(replayed):
        attrs = span["attributes"]
        assert out["span_type"] == kind_of(attrs), span["name"]
        if out["span_type"] == "llm":
            assert out["model"] == attrs["gen_ai.response.model"]
            assert (out["input_tokens"], out["output_tokens"]) == (
                attrs.get("gen_ai.usage.input_tokens"), attrs.get("gen_ai.usage.output_tokens"))
        if attrs.get("ai.operationId") in OUTER_CALLS:
            # the call as the application made it: its model and the usage of all its calls,
            # shown on the span but never counted again
            assert out["model"] == attrs.get("ai.model.id", attrs.get("gen_ai.request.model"))
            assert (out["input_tokens"], out["output_tokens"]) == (
                attrs["ai.usage.inputTokens"], attrs["ai.usage.outputTokens"])
            assert out["cost_usd"] is None
        if out["span_type"] == "tool":
            assert out["model"] is None and out["cost_usd"] is None

    sent, got = replayed
    priced = 0
    for tid, spans in sent.items():
        trace = got[tid]["trace"]
        calls = [s for s in spans if kind_of(s["attributes"]) == "llm"]
        tin = sum(s["attributes"].get("gen_ai.usage.input_tokens", 0) for s in calls)
        tout = sum(s["attributes"].get("gen_ai.usage.output_tokens", 0) for s in calls)
        assert (trace["input_tokens"], trace["output_tokens"], trace["total_tokens"]) == (
            tin, tout, tin + tout)
        outer = [s["attributes"] for s in spans if s["attributes"].get("ai.operationId")
                 in OUTER_CALLS]
        if outer and len(calls) > 1:  # a generateText with two calls: 104 in, not 208
            assert tin == sum(a["ai.usage.inputTokens"] for a in outer)
        costs = [s["cost_usd"] for s in got[tid]["spans"] if s["span_type"] == "llm"]
        assert trace["cost_usd"] == pytest.approx(sum(c or 0 for c in costs))
        priced += sum(1 for c in costs if c)
        if calls:
            assert trace["model"] == calls[0]["attributes"]["gen_ai.response.model"]
    assert priced >= 8  # gpt-4o-mini is in the price catalogue: the sums above are of real costs


def test_input_and_output_read_as_text(replayed: tuple[Spans, dict[str, dict[str, Any]]]) -> None:
    for span, out in stored(replayed):
        attrs = span["attributes"]
        operation = attrs.get("ai.operationId")
        if operation in MODEL_CALLS and "ai.prompt.messages" in attrs:  # the AI SDK's own spans
            for message in json.loads(attrs["ai.prompt.messages"]):
                content = message["content"]
                texts = [content] if isinstance(content, str) else [
                    p["text"] for p in content if p["type"] == "text"]
                for text in texts:
                    assert f"{message['role']}: {text}" in out["input_text"]
            calls = json.loads(attrs.get("ai.response.toolCalls", "[]"))
            pieces = [attrs.get("ai.response.text")] + [
                f"call {c['toolName']}({c['input']})" for c in calls]
            assert out["output_text"] == "\n".join(p for p in pieces if p)
        if operation in OUTER_CALLS and "ai.prompt" in attrs:
            prompt = json.loads(attrs["ai.prompt"])
            user = prompt.get("prompt") or prompt["messages"][-1]["content"]
            assert out["input_text"] == f"system: {prompt['system']}\nuser: {user}"
            assert out["output_text"] == attrs["ai.response.text"]
        if operation == "ai.toolCall":  # JSON text as the AI SDK sent it (compact)
            args = attrs.get("ai.toolCall.args", attrs.get("gen_ai.tool.call.arguments"))
            result = attrs.get("ai.toolCall.result", attrs.get("gen_ai.tool.call.result"))
            assert (out["input_text"], out["output_text"]) == (args, result)
        entity_input = attrs.get("traceloop.entity.input", "")
        if entity_input.startswith('{"args"'):  # decorated functions: the arguments, no wrapper
            args = json.loads(entity_input)["args"]
            assert out["input_text"] == (args[0] if args else None)
            output = json.loads(attrs["traceloop.entity.output"])
            assert out["output_text"] == (output if isinstance(output, str) else
                                          json.dumps(output, ensure_ascii=False,
                                                     separators=(",", ":")))
        if out["span_type"] == "llm" and attrs.get("gen_ai.input.messages"):
            assert out["input_text"] and out["output_text"]
            last = json.loads(attrs["gen_ai.input.messages"])[-1]["parts"][-1]
            if last["type"] == "text":
                assert out["input_text"].endswith(f"user: {last['content']}")


def test_a_tool_call_reads_the_same_whichever_instrumentation_reported_it(
        replayed: tuple[Spans, dict[str, dict[str, Any]]]) -> None:
    # One AI SDK run reported by the AI SDK itself (tool arguments and results as JSON text) and
    # by Traceloop's rewrite of it (as objects in gen_ai.*.messages): span for span the same text.
    vercel: list[tuple[Any, ...]] = []
    traceloop: list[tuple[Any, ...]] = []
    for span, out in stored(replayed):
        operation = span["attributes"].get("ai.operationId")
        if operation is not None:
            row = (operation, out["span_type"], out["input_text"], out["output_text"])
            (vercel if span["name"].startswith("ai.") else traceloop).append(row)
    assert len(vercel) == len(traceloop) == 6
    # (the outer spans differ: Traceloop's rewrite leaves the system prompt out of their input)
    assert [r for r in vercel if r[0] not in OUTER_CALLS] == [
        r for r in traceloop if r[0] not in OUTER_CALLS]
    calls = [r for r in vercel if r[3] and r[3].startswith("call ")]
    assert [r[3] for r in calls] == ['call getWeather({"city":"Seoul"})']
    assert 'assistant: call getWeather({"city":"Seoul"})\ntool: {"city":"Seoul","tempC":21,' \
        in vercel[2][2]
    # arguments sent as an object by @traceloop/instrumentation-openai
    chat = next(out for span, out in stored(replayed) if span["attributes"].get(
        "gen_ai.response.finish_reasons") == ["tool_call"] and "ai.operationId" not in span[
        "attributes"])
    assert chat["output_text"] == 'call get_weather({"city":"Seoul"})'


def test_user_and_session_find_the_traces(
        server: ServerProcess, project: Project,
        replayed: tuple[Spans, dict[str, dict[str, Any]]]) -> None:
    sent, got = replayed
    for span, out in stored(replayed):
        assert (out["user_id"], out["session_id"]) == (user_of(span["attributes"]),
                                                       session_of(span["attributes"]))
    mine = {tid for tid, spans in sent.items() if any(user_of(s["attributes"]) for s in spans)}
    assert len(mine) == 5  # all but the plain openai client's trace
    for tid in mine:
        assert (got[tid]["trace"]["user_id"], got[tid]["trace"]["session_id"]) == (USER, SESSION)
    for params in ({"user_id": USER}, {"session_id": SESSION}):
        r = project.client.get("/api/v1/traces", params={**params, "page_size": 50})
        assert r.status_code == 200, r.text
        assert {t["trace_id"] for t in r.json()["items"]} == mine


def test_time_to_first_token_of_streaming_calls(
        server: ServerProcess, project: Project, replayed: tuple[Spans, dict[str, dict[str, Any]]]) -> None:
    # The AI SDK's msToFirstChunk (Traceloop's rewrite keeps it) is the span's time to first token;
    # the attribute and the ai.stream.firstChunk event stay as sent.
    for span, out in stored(replayed):
        assert out["time_to_first_token_ms"] == span["attributes"].get("ai.response.msToFirstChunk"), span["name"]
    streams = [(span, out) for span, out in stored(replayed)
               if span["attributes"].get("ai.operationId") == "ai.streamText.doStream"]
    assert len(streams) == 2
    with closing(ui_client(server, project.key)) as ui:
        for span, out in streams:
            ms = span["attributes"]["ai.response.msToFirstChunk"]
            assert isinstance(ms, float) and out["attributes"]["ai.response.msToFirstChunk"] == ms
            first = next(e for e in out["events"] if e["name"] == "ai.stream.firstChunk")
            assert first["attributes"]["ai.response.msToFirstChunk"] == ms
            light = project.client.get(f"/api/v1/traces/{span['trace_id']}/spans").json()["items"]
            assert next(s for s in light if s["span_id"] == span["span_id"])["time_to_first_token_ms"] == ms
            panel = ui.get(f"/traces/{span['trace_id']}/spans/{span['span_id']}", headers={"hx-request": "true"})
            assert panel.status_code == 200, panel.text
            assert 1 < ms < 1000 and f'<dd class="first-token">{ms:.0f} ms</dd>' in panel.text
            assert 'class="muted status-code"' in panel.text and ">UNSET<" in panel.text


def test_status_codes_as_the_clients_sent_them(replayed: tuple[Spans, dict[str, dict[str, Any]]]) -> None:
    for span, out in stored(replayed):
        assert out["status_code"] == ("UNSET", "OK", "ERROR")[span["status_code"]], span["name"]
        assert out["status"] == ("error" if span["status_code"] == 2 else "success")


def test_a_tool_is_found_by_its_name_whichever_instrumentation_reported_it(
        project: Project, replayed: tuple[Spans, dict[str, dict[str, Any]]]) -> None:
    # OpenInference and Traceloop name a tool's span after the tool (`get_weather`, `get_weather.tool`,
    # `execute_tool getWeather`); the AI SDK names it `ai.toolCall` and states the tool in
    # `ai.toolCall.name`. The span keeps the attribute as sent, and the list's search, which reads
    # names and attributes alike, finds it.
    tools = {span["attributes"].get("ai.toolCall.name", span["attributes"].get("gen_ai.tool.name")): span
             for span, out in stored(replayed) if out["span_type"] == "tool"}
    ai_sdk = next(span for span, _ in stored(replayed) if span["name"] == "ai.toolCall")
    assert ai_sdk["attributes"]["ai.toolCall.name"] == "getWeather"
    for name, span in tools.items():
        if name is None:
            continue
        r = project.client.get("/api/v1/traces", params={"search": name, "page_size": 50})
        assert r.status_code == 200, r.text
        assert span["trace_id"] in {t["trace_id"] for t in r.json()["items"]}, name


def test_every_tool_span_names_its_tool(
        server: ServerProcess, project: Project, replayed: tuple[Spans, dict[str, dict[str, Any]]]) -> None:
    # The span's name stays as sent (the AI SDK's `ai.toolCall`); its tool is `tool_name`, in the
    # full and the light answer, and the tree and panel show it where the name does not say it.
    for span, out in stored(replayed):
        assert (out["name"], out["tool_name"]) == (span["name"], tool_of(span["attributes"])), span["name"]
    tools = [(span, out) for span, out in stored(replayed) if out["span_type"] == "tool"]
    assert sorted((span["name"], out["tool_name"]) for span, out in tools) == [
        ("ai.toolCall", "getWeather"), ("execute_tool getWeather", "getWeather"),
        ("get_weather.tool", "get_weather")]
    with closing(ui_client(server, project.key)) as ui:
        for span, out in tools:
            trace_id = span["trace_id"]
            light = project.client.get(f"/api/v1/traces/{trace_id}/spans").json()["items"]
            assert next(s for s in light if s["span_id"] == span["span_id"])["tool_name"] == out["tool_name"]
            detail = project.client.get(f"/api/v1/traces/{trace_id}").json()
            nodes, timeline = list(detail["tree"]), detail["timeline"]
            while not any(n["span_id"] == span["span_id"] for n in nodes):
                nodes = [c for n in nodes for c in n["children"]]
            assert next(n for n in nodes if n["span_id"] == span["span_id"])["tool_name"] == out["tool_name"]
            assert next(e for e in timeline if e["span_id"] == span["span_id"])["tool_name"] == out["tool_name"]
            page = ui.get(f"/traces/{trace_id}")
            assert page.status_code == 200, page.text
            found = re.search(r'<script type="application/json" id="spans">(.*?)</script>', page.text, re.S)
            assert found, page.text[:2000]
            labels = {row[0]: row[1] for row in json.loads(found.group(1))["rows"]}
            panel = ui.get(f"/traces/{trace_id}/spans/{span['span_id']}", headers={"hx-request": "true"})
            assert panel.status_code == 200, panel.text
            title = re.search(r'<h2 class="span-title">(.*?)</h2>', panel.text, re.S)
            assert title, panel.text[:2000]
            if span["name"] == "ai.toolCall":
                assert labels[span["span_id"]] == "ai.toolCall · getWeather"
                assert title.group(1) == 'ai.toolCall <span class="muted tool-name">· getWeather</span>'
            else:  # the name says it already
                assert labels[span["span_id"]] == span["name"] and title.group(1) == span["name"]
