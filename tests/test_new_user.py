"""What a new user meets first, through a real server: an eval's answer says whether its trace is
stored, and a `log` span event's metadata reads back as the object the app passed."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from conftest import ServerProcess


def _eval(server: ServerProcess, trace_id: str, **extra: Any) -> httpx.Response:
    return server.client.post("/api/v1/evals", json={"trace_id": trace_id, "eval_name": "faithfulness",
                                                     "score": 0.9, "passed": True, **extra})


def test_an_eval_of_an_unknown_trace_is_kept_and_the_answer_says_so(server: ServerProcess) -> None:
    trace_id = secrets.token_hex(16)
    r = _eval(server, trace_id, idempotency_key=f"unknown-{trace_id}")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["trace_found"] is False and body["status"] == "created"
    assert trace_id in body["warning"] and "kept" in body["warning"]
    replay = _eval(server, trace_id, idempotency_key=f"unknown-{trace_id}")
    assert replay.status_code == 200 and replay.json()["trace_found"] is False

    server.client.post("/api/v1/ingest/traces", json={
        "trace": {"trace_id": trace_id, "name": "late"},
        "spans": [{"span_id": secrets.token_hex(8), "name": "late", "status": "success",
                   "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:01Z"}],
    }).raise_for_status()
    detail = server.client.get(f"/api/v1/traces/{trace_id}").json()
    assert [e["eval_name"] for e in detail["evals"]] == ["faithfulness"]  # the early one was kept
    known = _eval(server, trace_id)
    assert known.status_code == 201 and known.json()["trace_found"] is True
    assert "warning" not in known.json()


def test_log_event_metadata_reads_back_as_an_object(server: ServerProcess) -> None:
    """The SDK's `log` event sends its metadata map as JSON text; other text stays as sent."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"{server.url}/v1/traces", headers={"x-api-key": server.api_key})))
    with provider.get_tracer("t").start_as_current_span("step") as span:
        span.add_event("log", {"message": "m", "metadata": '{"k":5,"filter":{"region":"KR"}}'})
        span.add_event("log", {"message": "cut", "metadata": '{"k":"abc…[truncated]'})
        span.add_event("log", {"message": "list", "metadata": "[1,2]"})
        span.add_event("other", {"metadata": '{"k":5}'})
    provider.shutdown()
    trace_id = format(span.get_span_context().trace_id, "032x")
    [stored] = server.wait_trace(trace_id, 1)["spans"]
    assert [e["attributes"].get("metadata") for e in stored["events"]] == [
        {"k": 5, "filter": {"region": "KR"}}, '{"k":"abc…[truncated]', "[1,2]", '{"k":5}']
