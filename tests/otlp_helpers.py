"""Building raw OTLP requests for the protocol tests."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from conftest import ServerProcess

EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
NS = 1_780_000_000_000_000_000


def new_trace_id() -> bytes:
    return secrets.token_bytes(16)


def make_span(trace_id: bytes, span_id: bytes, parent: bytes = b"", name: str = "op",
              start: int = NS, end: int = NS + 5_000_000, **attrs: Any) -> Span:
    span = Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
                start_time_unix_nano=start, end_time_unix_nano=end, kind=Span.SPAN_KIND_INTERNAL)
    for key, value in attrs.items():
        v = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=str(value))
        span.attributes.append(KeyValue(key=key.replace("__", "."), value=v))
    return span


def request_of(*spans: Span) -> bytes:
    req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    return bytes(req.SerializeToString())


def post(server: ServerProcess, body: bytes, path: str = "/v1/traces", **headers: str) -> httpx.Response:
    base = {"content-type": "application/x-protobuf", "x-api-key": server.api_key}
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return httpx.post(server.otlp_http + path, content=body, headers=base, timeout=30)


