"""Every capture from a real third-party instrumentation, replayed as OTLP into a real server.

Expectations are read from the raw captured attributes (never from our own mapping code): every
span arrives with its attributes untouched, tokens / model / user / session / LangGraph node come
out of the convention that carried them, and GenAI log records fill their span's content.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ServerProcess
from fixture_otlp import capture_to_logs_request, capture_to_trace_request

CAPTURES = sorted((Path(__file__).parent / "fixtures" / "otel-captures").glob("*.json"))
INPUT_TOKENS = ("gen_ai.usage.input_tokens", "llm.token_count.prompt")
OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "llm.token_count.completion")
MODEL = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name")


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((attrs[k] for k in keys if attrs.get(k) is not None), None)


def _is_llm(attrs: dict[str, Any]) -> bool:
    return attrs.get("openinference.span.kind") == "LLM" or attrs.get("gen_ai.operation.name") == "chat"


def _node_of(span: dict[str, Any]) -> str | None:
    """The LangGraph node this span is the execution of, from the raw capture."""
    attrs = span["attributes"]
    meta = attrs.get("metadata")
    if isinstance(meta, str):
        node = json.loads(meta).get("langgraph_node")
        return node if node == span["name"] else None
    node = attrs.get("traceloop.association.properties.langgraph_node")
    return node if node and span["name"] == f"execute_task {node}" else None


def _post(server: ServerProcess, path: str, message: Any) -> None:
    r = httpx.post(server.otlp_http + path, content=message.SerializeToString(), timeout=30,
                   headers={"content-type": "application/x-protobuf", "x-api-key": server.api_key})
    assert r.status_code == 200, r.content
    assert b"rejected" not in r.content


@pytest.mark.parametrize("capture_path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_capture_replays_with_every_field_mapped(server: ServerProcess, capture_path: Path) -> None:
    capture = json.loads(capture_path.read_text())
    logs = capture_to_logs_request(capture)
    if logs is not None:  # content logs may arrive before their spans
        _post(server, "/v1/logs", logs)
    _post(server, "/v1/traces", capture_to_trace_request(capture))

    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in capture["spans"]:
        by_trace.setdefault(span["trace_id"], []).append(span)
    for trace_id, sent in by_trace.items():
        got = server.wait_trace(trace_id, len(sent))
        stored = {s["span_id"]: s for s in got["spans"]}
        assert set(stored) == {s["span_id"] for s in sent}
        for span in sent:
            out = stored[span["span_id"]]
            attrs = span["attributes"]
            assert out["name"] == span["name"]
            assert out["parent_span_id"] == span["parent_span_id"]
            assert out["attributes"] == attrs  # nothing dropped or rewritten
            assert out["resource"] == span["resource_attributes"]
            assert out["status"] == ("error" if span["status"]["code"] == "ERROR" else "success")
            assert len([e for e in out["events"] if e["event_type"] == "OTEL"]) == len(span["events"])
            if _first(attrs, INPUT_TOKENS) is not None:
                assert out["input_tokens"] == _first(attrs, INPUT_TOKENS)
                assert out["output_tokens"] == _first(attrs, OUTPUT_TOKENS)
            if _is_llm(attrs):
                assert out["span_type"] == "llm" and out["model"] == _first(attrs, MODEL)
            if attrs.get("user.id"):
                assert (out["user_id"], out["session_id"]) == (attrs["user.id"], attrs["session.id"])
            node = _node_of(span)
            if node:
                assert out["span_type"] == "node"
                assert out["langgraph"]["node_name"] == node
                assert isinstance(out["langgraph"]["step"], int)
            if span["status"]["code"] != "ERROR" and (attrs.get("input.value") or attrs.get(
                    "gen_ai.input.messages") or attrs.get("traceloop.entity.input")):
                assert out["input_text"], span["name"]

        trace = got["trace"]
        llm_spans = [s for s in sent if _is_llm(s["attributes"])]
        assert trace["span_count"] == len(sent) and not trace["has_open_spans"]
        assert trace["input_tokens"] == sum(_first(s["attributes"], INPUT_TOKENS) or 0 for s in llm_spans)
        assert trace["output_tokens"] == sum(_first(s["attributes"], OUTPUT_TOKENS) or 0 for s in llm_spans)
        assert trace["status"] == ("error" if any(s["status"]["code"] == "ERROR" for s in sent)
                                   else "success")
        assert trace["environment"] == sent[0]["resource_attributes"].get("deployment.environment")
        if llm_spans:
            assert trace["model"] == _first(llm_spans[0]["attributes"], MODEL)
        users = {s["attributes"].get("user.id") or s["attributes"].get(
            "traceloop.association.properties.user_id") for s in sent} - {None}
        if users:
            assert trace["user_id"] in users

    for record in capture["logs"]:
        got = server.wait_trace(record["trace_id"], 1)
        span = next(s for s in got["spans"] if s["span_id"] == record["span_id"])
        names = [e["name"] for e in span["events"] if e["event_type"] == "LOG"]
        assert record["event_name"] in names
        assert span["input_text"] or span["output_text"]
