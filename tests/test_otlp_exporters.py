"""The real OpenTelemetry SDK exporters (gRPC, HTTP/protobuf, gzip or not) into a real server."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from conftest import ServerProcess


def _exporters(server: ServerProcess) -> dict[str, Any]:
    headers = {"x-api-key": server.api_key}
    return {
        "grpc": lambda: GrpcExporter(endpoint=server.otlp_grpc, insecure=True, headers=headers),
        "grpc-gzip": lambda: GrpcExporter(endpoint=server.otlp_grpc, insecure=True, headers=headers,
                                          compression=__import__("grpc").Compression.Gzip),
        "http": lambda: HttpExporter(endpoint=server.otlp_http + "/v1/traces", headers=headers),
        "http-gzip": lambda: HttpExporter(endpoint=server.otlp_http + "/v1/traces", headers=headers,
                                          compression=HttpCompression.Gzip),
        "http-main-port": lambda: HttpExporter(endpoint=server.url + "/v1/traces", headers=headers),
    }


def _agent_trace(provider: TracerProvider, question: str) -> str:
    tracer = provider.get_tracer("test.app")
    with tracer.start_as_current_span("agent.request", attributes={
        "user.id": "user-7", "session.id": "sess-7", "input.value": question,
    }) as root:
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 5,
            "custom.flag": True, "custom.list": [1, 2, 3],
        }):
            pass
        with tracer.start_as_current_span("lookup") as failing:
            failing.set_status(Status(StatusCode.ERROR, "tool timed out"))
        root.set_attribute("output.value", "답변: 환불은 7일 이내 가능합니다")
        return format(root.get_span_context().trace_id, "032x")


@pytest.mark.parametrize("transport", ["grpc", "grpc-gzip", "http", "http-gzip", "http-main-port"])
def test_sdk_exporter_spans_are_stored_and_mapped(server: ServerProcess, transport: str) -> None:
    exporter = _exporters(server)[transport]()
    provider = TracerProvider(resource=Resource.create({
        "service.name": "exporter-test", "deployment.environment.name": "staging"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_id = _agent_trace(provider, f"질문 via {transport}: 환불 규정 알려줘")
    provider.shutdown()

    detail = server.wait_trace(trace_id, 3)
    trace = detail["trace"]
    assert trace["span_count"] == 3
    assert trace["name"] == "agent.request"
    assert trace["status"] == "error" and trace["error_count"] == 1
    assert trace["has_open_spans"] is False and trace["completion_rate"] == 1.0
    assert trace["input_text"] == f"질문 via {transport}: 환불 규정 알려줘"
    assert trace["output_text"] == "답변: 환불은 7일 이내 가능합니다"
    assert (trace["input_tokens"], trace["output_tokens"], trace["total_tokens"]) == (12, 5, 17)
    assert (trace["model"], trace["environment"]) == ("gpt-4o-mini", "staging")
    assert (trace["user_id"], trace["session_id"]) == ("user-7", "sess-7")
    spans = {s["name"]: s for s in detail["spans"]}
    llm = spans["chat gpt-4o-mini"]
    assert llm["span_type"] == "llm" and llm["kind"] == "INTERNAL"
    assert llm["attributes"]["custom.flag"] is True
    assert llm["attributes"]["custom.list"] == [1, 2, 3]
    assert llm["resource"]["service.name"] == "exporter-test"
    assert spans["lookup"]["status"] == "error"
    assert spans["lookup"]["status_message"] == "tool timed out"
    root_id = spans["agent.request"]["span_id"]
    assert detail["tree"][0]["span_id"] == root_id
    assert {c["name"] for c in detail["tree"][0]["children"]} == {"chat gpt-4o-mini", "lookup"}
    assert detail["evals"] == [] and detail["decisions"] == [] and detail["judge_runs"] == []


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_status_code_keeps_unset_and_ok_apart(server: ServerProcess, transport: str) -> None:
    """`status` reads success for OTel's UNSET and OK alike; `status_code` says which was sent, in the
    trace's detail, the light span list and one span."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_exporters(server)[transport]()))
    tracer = provider.get_tracer("test.app")
    with tracer.start_as_current_span("request") as root:
        with tracer.start_as_current_span("unset"):
            pass
        with tracer.start_as_current_span("ok") as ok:
            ok.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("failed") as failed:
            failed.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")

    detail = server.wait_trace(trace_id, 4)
    expected = {"request": ("success", "UNSET"), "unset": ("success", "UNSET"), "ok": ("success", "OK"),
                "failed": ("error", "ERROR")}
    assert {s["name"]: (s["status"], s["status_code"]) for s in detail["spans"]} == expected
    light = server.client.get(f"/api/v1/traces/{trace_id}/spans").json()["items"]
    assert {s["name"]: (s["status"], s["status_code"]) for s in light} == expected
    ok_id = format(ok.get_span_context().span_id, "016x")
    one = server.client.get(f"/api/v1/traces/{trace_id}/spans/{ok_id}").json()
    assert (one["status"], one["status_code"], one["time_to_first_token_ms"]) == ("success", "OK", None)


def test_bad_key_is_unauthenticated_on_every_transport(server: ServerProcess) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult

    provider = TracerProvider()
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("x") as span:
        pass
    finished = [span]  # type: ignore[list-item]
    grpc_exp = GrpcExporter(endpoint=server.otlp_grpc, insecure=True, headers={"x-api-key": "nope"})
    http_exp = HttpExporter(endpoint=server.otlp_http + "/v1/traces", headers={"x-api-key": "nope"})
    assert grpc_exp.export(finished) == SpanExportResult.FAILURE
    assert http_exp.export(finished) == SpanExportResult.FAILURE
    grpc_exp.shutdown()
    http_exp.shutdown()
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert server.client.get(f"/api/v1/traces/{trace_id}").status_code == 404
