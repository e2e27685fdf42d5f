"""Building raw OTLP requests, shared by the tests and the benchmarks (bench/ puts tests/ on sys.path).

Nothing here may need pytest or the test harness at import time: the benchmarks run without them.
"""

from __future__ import annotations

import secrets
import socket
from typing import TYPE_CHECKING, Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

if TYPE_CHECKING:
    from conftest import ServerProcess

EXPORT_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
NS = 1_780_000_000_000_000_000


def free_ports(n: int) -> list[int]:
    """n distinct free ports: each socket stays bound until all are chosen (one at a time, the
    kernel may hand out a port just released, and a server would then fail to bind)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def any_value(value: Any) -> AnyValue:
    """A Python value (as a decoded attribute shows it) as an OTLP AnyValue."""
    if value is None:
        return AnyValue()  # the empty AnyValue is how OTLP says "no value"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, (bytes, bytearray)):
        return AnyValue(bytes_value=bytes(value))
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=key_values(value)))
    raise TypeError(f"cannot express {type(value).__name__} as an OTLP AnyValue")


def key_values(attributes: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=str(k), value=any_value(v)) for k, v in attributes.items()]


def new_trace_id() -> bytes:
    return secrets.token_bytes(16)


def make_span(trace_id: bytes, span_id: bytes, parent: bytes = b"", name: str = "op",
              start: int = NS, end: int = NS + 5_000_000, **attrs: Any) -> Span:
    """A span whose attributes are the keyword arguments, `__` standing for `.` in their names."""
    return Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
                start_time_unix_nano=start, end_time_unix_nano=end, kind=Span.SPAN_KIND_INTERNAL,
                attributes=key_values({key.replace("__", "."): value for key, value in attrs.items()}))


def request_of(*spans: Span) -> bytes:
    req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    return bytes(req.SerializeToString())


def post(server: ServerProcess, body: bytes, path: str = "/v1/traces", **headers: str) -> httpx.Response:
    base = {"content-type": "application/x-protobuf", "x-api-key": server.api_key}
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    return httpx.post(server.otlp_http + path, content=body, headers=base, timeout=30)
