"""Hostile text in every place the UI shows stored data: nothing of it runs in the browser.

Script and markup payloads go into span names, inputs and outputs (plain and as chat messages),
attribute keys and values, resource attributes, events, trace user and session ids, eval names and
policy text, through the real ingest paths. Each page is then opened in Chromium: no payload may
run (`window.__xss` stays unset), no element of theirs may exist in the DOM, the browser must
report no Content-Security-Policy refusal (that would mean markup got through and only the policy
stopped it), and the payload must be shown as text.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from conftest import Project, ServerProcess, browser_session, own_project
from otlp_helpers import make_span

SCRIPT = "<script>window.__xss='script'</script>"
IMG = "<img src=x onerror=\"window.__xss='img'\">"
SVG = "\"><svg onload=\"window.__xss='svg'\">"
PAYLOADS = (SCRIPT, IMG, SVG)
HOSTILE = " ".join(PAYLOADS)
INJECTED = ("[onerror], [onload], [onclick], [onmouseover], img[src='x'], "
            "script:not([src]):not([type='application/json'])")


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _otlp_trace(server: ServerProcess, key: str) -> tuple[str, str]:
    """A trace with payloads in names, messages, attribute keys and values, resource and events;
    (trace id, the LLM span's id)."""
    trace_id, root_id, llm_id = secrets.token_bytes(16), secrets.token_bytes(8), secrets.token_bytes(8)
    now = time.time_ns()
    root = make_span(trace_id, root_id, name=f"agent {SCRIPT}", start=now, end=now + 2_000_000_000)
    root.attributes.extend([_kv(f"tag.{IMG}", SVG), _kv("input.value", HOSTILE), _kv("output.value", HOSTILE),
                            _kv("session.id", f"s-{SCRIPT}"), _kv("user.id", f"u-{IMG}")])
    llm = make_span(trace_id, llm_id, root_id, name=f"chat {IMG}", start=now + 10_000_000, end=now + 900_000_000)
    messages_in = [{"role": "system", "parts": [{"type": "text", "content": SVG}]},
                   {"role": "user", "parts": [{"type": "text", "content": SCRIPT}]}]
    messages_out = [{"role": "assistant", "finish_reason": "tool_call", "parts": [
        {"type": "text", "content": IMG},
        {"type": "tool_call", "id": "c1", "name": f"lookup{SVG}", "arguments": {"q": SCRIPT}}]}]
    llm.attributes.extend([
        _kv("gen_ai.operation.name", "chat"), _kv("gen_ai.request.model", f"gpt-4o{SVG}"),
        _kv("gen_ai.input.messages", json.dumps(messages_in)), _kv("gen_ai.output.messages", json.dumps(messages_out)),
        _kv(SCRIPT, IMG)])
    llm.status.code = llm.status.STATUS_CODE_ERROR
    llm.status.message = f"failed {SCRIPT}"
    event = Span.Event(name=f"retry {IMG}", time_unix_nano=now + 20_000_000)
    event.attributes.append(_kv(SVG, SCRIPT))
    llm.events.append(event)
    resource = Resource(attributes=[_kv("service.name", f"svc {SCRIPT}")])
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource, scope_spans=[ScopeSpans(spans=[root, llm])])]).SerializeToString()
    r = httpx.post(f"{server.url}/v1/traces", content=body,
                   headers={"content-type": "application/x-protobuf", "x-api-key": key})
    assert r.status_code == 200, r.text
    return trace_id.hex(), llm_id.hex()


@pytest.fixture(scope="module")
def hostile(server_factory: Any) -> Iterator[tuple[ServerProcess, Project, dict[str, str]]]:
    server = server_factory("sqlite")
    with own_project(server, "ui-xss", auto_decide=False) as p:
        trace_id, span_id = _otlp_trace(server, p.key)
        server.wait_trace(trace_id, 2, client=p.client)
        r = p.client.post("/api/v1/evals", json={"trace_id": trace_id, "eval_name": f"faithful{SCRIPT}",
                                                 "score": 0.2, "passed": False, "metadata": {IMG: SVG}})
        assert r.status_code == 201, r.text
        policy = {"name": "hostile", "description": HOSTILE, "active": True, "definition": {"rules": [{
            "id": "r1", "priority": 1, "metadata": {"note": HOSTILE},
            "when": {"field": "request.text", "op": "contains", "value": SCRIPT},
            "then": {"action": "ESCALATE", "reason_code": "HOSTILE_TEXT", "severity": "high"}}]}}
        made = p.client.post("/api/v1/policies", json=policy)
        assert made.status_code == 201, made.text
        decided = p.client.post("/api/v1/decide", json={
            "trace_id": trace_id, "request_payload": {"text": HOSTILE}, "response_payload": {"text": HOSTILE}})
        assert decided.status_code == 201 and decided.json()["action"] == "ESCALATE", decided.text
        ids = {"trace": trace_id, "span": span_id, "policy": str(made.json()["policy_id"]),
               "case": decided.json()["case_id"]}
        yield server, p, ids


def _pages(ids: dict[str, str]) -> list[str]:
    search = httpx.QueryParams({"search": "agent"})
    return ["/", f"/?{search}", f"/traces/{ids['trace']}", f"/traces/{ids['trace']}?span={ids['span']}",
            "/sessions", f"/sessions?{httpx.QueryParams({'session_id': 's-' + SCRIPT})}",
            "/cases", f"/cases/{ids['case']}", "/policies", f"/policies/{ids['policy']}"]


def test_no_stored_payload_runs_on_any_page(chromium: Any, hostile: tuple[ServerProcess, Project, dict[str, str]]
                                            ) -> None:
    server, p, ids = hostile
    with browser_session(chromium, server, p.key) as ui:
        ui.page.on("dialog", lambda d: ui.errors.append(f"dialog: {d.message}"))
        shown_anywhere: set[str] = set()
        for path in _pages(ids):
            ui.goto(path)
            ui.page.wait_for_load_state("networkidle")
            assert ui.page.evaluate("window.__xss === undefined"), (path, ui.page.evaluate("window.__xss"))
            injected = ui.page.evaluate(f"Array.from(document.querySelectorAll({json.dumps(INJECTED)}))"
                                        ".map(e => e.outerHTML.slice(0, 120))")
            assert injected == [], (path, injected)
            text = ui.page.inner_text("body")
            shown_anywhere.update(payload for payload in PAYLOADS if payload in text)
            assert not ui.errors, (path, ui.errors)
        # Each payload was rendered as visible text somewhere (not dropped, not interpreted).
        assert shown_anywhere == set(PAYLOADS)
