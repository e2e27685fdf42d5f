"""Turn a capture from tests/fixtures/otel-captures into the OTLP protobuf requests it came from.

A capture is the JSON dump of finished spans and log records from an in-memory exporter (see
tests/fixtures/README.md). End-to-end tests replay it through a real server, so the conversion
mirrors what the Python OTLP exporter sends: spans grouped by resource and then by
instrumentation scope in first-seen order, ids as raw bytes from hex, enum names as proto enums,
attributes as AnyValue (arrays and kvlists included), and a log record's missing body as an empty
AnyValue, as the exporter sends it. Nothing is added, dropped or renamed.

No tests live here; import the two functions.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from otlp_helpers import any_value, key_values

__all__ = ["capture_to_logs_request", "capture_to_trace_request"]

_KINDS = {
    "UNSPECIFIED": Span.SPAN_KIND_UNSPECIFIED,
    "INTERNAL": Span.SPAN_KIND_INTERNAL,
    "SERVER": Span.SPAN_KIND_SERVER,
    "CLIENT": Span.SPAN_KIND_CLIENT,
    "PRODUCER": Span.SPAN_KIND_PRODUCER,
    "CONSUMER": Span.SPAN_KIND_CONSUMER,
}
_STATUS = {
    "UNSET": Status.STATUS_CODE_UNSET,
    "OK": Status.STATUS_CODE_OK,
    "ERROR": Status.STATUS_CODE_ERROR,
}


def capture_to_trace_request(capture: dict[str, Any]) -> ExportTraceServiceRequest:
    """All spans of a capture as one ExportTraceServiceRequest."""
    request = ExportTraceServiceRequest()
    resources: dict[str, ResourceSpans] = {}
    scopes: dict[tuple[str, str], ScopeSpans] = {}
    for span in capture.get("spans", []):
        resource_attrs = span.get("resource_attributes") or {}
        rkey = _key(resource_attrs)
        rs = resources.get(rkey)
        if rs is None:
            rs = request.resource_spans.add()
            rs.resource.CopyFrom(_resource(resource_attrs))
            resources[rkey] = rs
        scope = span.get("instrumentation_scope") or {}
        skey = (rkey, _key(scope))
        ss = scopes.get(skey)
        if ss is None:
            ss = rs.scope_spans.add()
            ss.scope.CopyFrom(_scope(scope))
            scopes[skey] = ss
        ss.spans.append(_span(span))
    return request


def capture_to_logs_request(capture: dict[str, Any]) -> ExportLogsServiceRequest | None:
    """All log records of a capture as one ExportLogsServiceRequest; None if it has none."""
    logs = capture.get("logs") or []
    if not logs:
        return None
    request = ExportLogsServiceRequest()
    resources: dict[str, ResourceLogs] = {}
    scopes: dict[tuple[str, str], ScopeLogs] = {}
    for record in logs:
        resource_attrs = record.get("resource_attributes") or {}
        rkey = _key(resource_attrs)
        rl = resources.get(rkey)
        if rl is None:
            rl = request.resource_logs.add()
            rl.resource.CopyFrom(_resource(resource_attrs))
            resources[rkey] = rl
        scope = record.get("instrumentation_scope") or {}
        skey = (rkey, _key(scope))
        sl = scopes.get(skey)
        if sl is None:
            sl = rl.scope_logs.add()
            sl.scope.CopyFrom(_scope(scope))
            scopes[skey] = sl
        sl.log_records.append(_log_record(record))
    return request


def _span(span: dict[str, Any]) -> Span:
    status = span.get("status") or {}
    out = Span(
        trace_id=_id(span.get("trace_id")),
        span_id=_id(span.get("span_id")),
        parent_span_id=_id(span.get("parent_span_id")),
        name=span.get("name") or "",
        kind=_KINDS[span.get("kind") or "UNSPECIFIED"],
        start_time_unix_nano=span.get("start_time_unix_nano") or 0,
        end_time_unix_nano=span.get("end_time_unix_nano") or 0,
        attributes=key_values(span.get("attributes") or {}),
        status=Status(code=_STATUS[status.get("code") or "UNSET"],
                      message=status.get("description") or ""),
    )
    if span.get("trace_state"):
        out.trace_state = span["trace_state"]
    for event in span.get("events") or []:
        out.events.add(name=event.get("name") or "",
                       time_unix_nano=event.get("time_unix_nano") or 0,
                       attributes=key_values(event.get("attributes") or {}))
    for link in span.get("links") or []:
        # Captures may nest the linked context ({"context": {...}}) or flatten it.
        context = link.get("context") or link
        out.links.add(trace_id=_id(context.get("trace_id")),
                      span_id=_id(context.get("span_id")),
                      trace_state=context.get("trace_state") or "",
                      attributes=key_values(link.get("attributes") or {}))
    return out


def _log_record(record: dict[str, Any]) -> LogRecord:
    out = LogRecord(
        time_unix_nano=record.get("time_unix_nano") or 0,
        observed_time_unix_nano=record.get("observed_time_unix_nano") or 0,
        severity_number=record.get("severity_number") or 0,  # type: ignore[arg-type]
        severity_text=record.get("severity_text") or "",
        attributes=key_values(record.get("attributes") or {}),
        trace_id=_id(record.get("trace_id")),
        span_id=_id(record.get("span_id")),
        event_name=record.get("event_name") or "",
    )
    out.body.CopyFrom(any_value(record.get("body")))
    return out


def _resource(attributes: dict[str, Any]) -> Resource:
    return Resource(attributes=key_values(attributes))


def _scope(scope: dict[str, Any]) -> InstrumentationScope:
    return InstrumentationScope(name=scope.get("name") or "", version=scope.get("version") or "",
                                attributes=key_values(scope.get("attributes") or {}))


def _id(value: str | None) -> bytes:
    return bytes.fromhex(value) if value else b""


def _key(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, default=str)
