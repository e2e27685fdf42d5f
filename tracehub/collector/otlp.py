"""OTLP decode: request bytes (protobuf or the spec's JSON encoding) -> internal records.

The gRPC and the HTTP receivers both call `decode_traces` / `decode_logs`; there is no second decode
path. An undecodable body raises `IngestError` (400 / INVALID_ARGUMENT). A decodable body with some
invalid spans yields the valid records plus a rejected count and message for OTLP partial success.
This module never touches the database.

Protobuf trace bodies are read by the C reader `_otlpwire` where it was built: the same parts that
`_trace_parts` reads from a parsed message (tests/test_otlpwire.py holds them equal), in a quarter
of the time. A body it does not take (malformed, or not as protobuf encoders write it) goes to
protobuf, whose answer stands.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tracehub.collector import semconv
from tracehub.collector.errors import invalid
from tracehub.records import (
    STATUS_ERROR,
    STATUS_RUNNING,
    STATUS_SUCCESS,
    EventRecord,
    SpanRecord,
)

# The shape of `TraceParts`; the C reader says which one it was built for.
PARTS_VERSION = 2
_wire_parts: Callable[[bytes | memoryview], TraceParts | None] | None = None
WIRE_READER_PROBLEM: str | None = None  # why the C reader is not used; protobuf then reads every body
try:
    from tracehub.collector import _otlpwire
except ImportError:
    WIRE_READER_PROBLEM = "it is not built (no C compiler at install)"
else:
    if getattr(_otlpwire, "PARTS_VERSION", None) == PARTS_VERSION:
        _wire_parts = _otlpwire.trace_parts
    else:  # a checkout updated since the install compiled it
        WIRE_READER_PROBLEM = "its build is older than its source (run `pip install -e .` again)"
WIRE_READER = _wire_parts is not None  # built and current
_built_wire_parts = _wire_parts


def use_wire_reader(on: bool) -> None:
    """The C reader on (where built) or off, in this process (`Settings.otlp_c_reader`)."""
    global _wire_parts
    _wire_parts = _built_wire_parts if on else None


def wire_reader_in_use() -> bool:
    return _wire_parts is not None

KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS_CODE_ERROR = 2
# Span.flags (trace.proto's SpanFlags): bit 8 says whether bit 9 is known, bit 9 that the parent
# is remote (the span continues a trace another process started).
_PARENT_REMOTE_KNOWN = 0x100
_PARENT_REMOTE = 0x200
_PARENT_IS_REMOTE = _PARENT_REMOTE_KNOWN | _PARENT_REMOTE
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
# Times are stored as BIGINT; OTLP's are unsigned.
MAX_TIME_NS = 2**63 - 1


@dataclass
class Decoded:
    spans: list[SpanRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    # Filled when rows are encoded (by a decode worker): see `Batch.resources`.
    resources: dict[int, bytearray] = field(default_factory=dict)

    def reject(self, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < 5:  # enough to diagnose; the count says the rest
            self.errors.append(message)

    @property
    def error_message(self) -> str:
        if not self.rejected:
            return ""
        more = self.rejected - len(self.errors)
        return "; ".join(self.errors) + (f"; and {more} more" if more > 0 else "")


def any_value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, which)


def attributes(kvs: Any) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        value = kv.value
        # Most values are non-empty strings: one read instead of WhichOneof and getattr, ~20% of
        # the decode worker's attribute time (an empty or non-string value reads as "").
        text = value.string_value
        out[kv.key] = text if text else any_value(value)
    return out


def _parse(message: Any, body: bytes | memoryview, content: str, fix_ids: Callable[[Any], None]) -> Any:
    try:
        if content == "json":
            doc = json.loads(bytes(body) if isinstance(body, memoryview) else body)
            if not isinstance(doc, dict):
                raise invalid("OTLP/JSON body must be a JSON object")
            fix_ids(doc)
            json_format.ParseDict(doc, message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise invalid(f"cannot decode OTLP {content} body: {exc}") from None
    return message


def _hex_to_b64(obj: dict[str, Any], key: str) -> None:
    # OTLP/JSON carries ids as hex; protobuf's JSON mapping expects base64 for bytes fields.
    value = obj.get(key)
    if isinstance(value, str) and value:
        try:
            obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
        except ValueError:
            obj[key] = base64.b64encode(b"\xff").decode()  # wrong length: rejected per span later


def _fix_trace_ids(doc: dict[str, Any]) -> None:
    for rs in _list(doc.get("resourceSpans") or doc.get("resource_spans")):
        for ss in _list(rs.get("scopeSpans") or rs.get("scope_spans")):
            for span in _list(ss.get("spans")):
                for key in ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"):
                    _hex_to_b64(span, key)
                for link in _list(span.get("links")):
                    for key in ("traceId", "trace_id", "spanId", "span_id"):
                        _hex_to_b64(link, key)


def _fix_log_ids(doc: dict[str, Any]) -> None:
    for rl in _list(doc.get("resourceLogs") or doc.get("resource_logs")):
        for sl in _list(rl.get("scopeLogs") or rl.get("scope_logs")):
            for record in _list(sl.get("logRecords") or sl.get("log_records")):
                for key in ("traceId", "trace_id", "spanId", "span_id"):
                    _hex_to_b64(record, key)


def _list(value: Any) -> list[Any]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _scope(scope: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": scope.name, "version": scope.version}
    if scope.attributes:
        out["attributes"] = attributes(scope.attributes)
    return out


def decode_traces(body: bytes | memoryview, content: str = "protobuf") -> Decoded:
    parts = _wire_parts(body) if _wire_parts is not None and content == "protobuf" else None
    if parts is None:
        parts = _trace_parts(_parse(ExportTraceServiceRequest(), body, content, _fix_trace_ids))
    resources, scopes, spans = parts
    out = Decoded()
    for part in spans:
        record = _span(part, resources, scopes, out)
        if record is not None:
            out.spans.append(record)
    return out


# A span's parts: resource and scope indexes, trace / span / parent id bytes, name, kind, start,
# end (0: not ended), status code, status message, attributes, events as (name, time, attributes),
# links as (trace id, span id, attributes), flags.
SpanParts = tuple[int, int, bytes, bytes, bytes, str, int, int, int, int, str, dict[str, Any],
                  list[tuple[str, int, dict[str, Any]]], list[tuple[bytes, bytes, dict[str, Any]]], int]
TraceParts = tuple[list[dict[str, Any]], list[dict[str, Any]], list[SpanParts]]


def _trace_parts(request: Any) -> TraceParts:
    """The parts of a parsed request's spans: what `_otlpwire.trace_parts` reads from its bytes."""
    resources: list[dict[str, Any]] = []
    scopes: list[dict[str, Any]] = []
    spans: list[SpanParts] = []
    for rs in request.resource_spans:
        ri = len(resources)
        resources.append(attributes(rs.resource.attributes))
        for ss in rs.scope_spans:
            si = len(scopes)
            scopes.append(_scope(ss.scope))
            for span in ss.spans:
                status = span.status
                spans.append((
                    ri, si, span.trace_id, span.span_id, span.parent_span_id, span.name, span.kind,
                    span.start_time_unix_nano, span.end_time_unix_nano, status.code, status.message,
                    attributes(span.attributes),
                    [(e.name, e.time_unix_nano, attributes(e.attributes)) for e in span.events],
                    [(link.trace_id, link.span_id, attributes(link.attributes)) for link in span.links],
                    span.flags,
                ))
    return resources, scopes, spans


def _span(part: SpanParts, resources: list[dict[str, Any]], scopes: list[dict[str, Any]],
          out: Decoded) -> SpanRecord | None:
    ri, si, tid, sid, pid, name, kind_number, start, end_ns, code, message, attrs, events, links, flags = part
    if len(tid) != 16 or tid == _ZERO_TRACE:
        out.reject(f"span {name!r}: trace_id must be 16 non-zero bytes")
        return None
    if len(sid) != 8 or sid == _ZERO_SPAN:
        out.reject(f"span {name!r}: span_id must be 8 non-zero bytes")
        return None
    if pid and len(pid) != 8:
        out.reject(f"span {name!r}: parent_span_id must be empty or 8 bytes")
        return None
    if not start:
        out.reject(f"span {name!r}: start_time_unix_nano is required")
        return None
    if start > MAX_TIME_NS or end_ns > MAX_TIME_NS:
        out.reject(f"span {name!r}: times must be before the year 2262 (signed 64-bit nanoseconds)")
        return None
    event_docs = [{"name": n, "time_unix_nano": t, "attributes": _log_metadata(a) if n == "log" else a}
                  for n, t, a in events]
    kind = KINDS[kind_number] if 0 <= kind_number < len(KINDS) else "UNSPECIFIED"
    end = end_ns or None
    if code == _STATUS_CODE_ERROR:
        status = STATUS_ERROR
    else:
        status = STATUS_RUNNING if end is None else STATUS_SUCCESS
    resource = resources[ri]
    parent = pid.hex() if pid and pid != _ZERO_SPAN else None
    # Positional, as in `span_from_row`: keywords cost a third more, for every span.
    record = SpanRecord(
        tid.hex(), sid.hex(), parent, name, kind, start, end, status, message or None,
        semconv.map_span(name, kind, attrs, resource, event_docs), attrs, resource, scopes[si], event_docs,
        [{"trace_id": t.hex(), "span_id": s.hex(), "attributes": a} for t, s, a in links],
    )
    if parent is not None and flags & _PARENT_IS_REMOTE == _PARENT_IS_REMOTE:
        record.parent_remote = True
    # A code the spec does not define (the wire holds any int32) is none of the three: not kept.
    record.status_code = code if 0 <= code <= _STATUS_CODE_ERROR else None
    return record


def _log_metadata(attrs: dict[str, Any]) -> dict[str, Any]:
    """A `log` span event's attributes with its `metadata` JSON object text decoded: our SDK's
    `log_event()` sends the app's metadata map as text, since an OTel attribute cannot hold a map."""
    text = attrs.get("metadata")
    if not isinstance(text, str) or not text.startswith("{") or len(text) > semconv.MAX_PARSE_CHARS:
        return attrs
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return attrs  # a cut value (…[truncated]) or not JSON at all: kept as sent
    return {**attrs, "metadata": value} if isinstance(value, dict) else attrs


def decode_logs(body: bytes, content: str = "protobuf") -> Decoded:
    request = _parse(ExportLogsServiceRequest(), body, content, _fix_log_ids)
    out = Decoded()
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            scope = _scope(sl.scope)
            for log in sl.log_records:
                tid, sid = log.trace_id, log.span_id
                if (tid and len(tid) != 16) or (sid and len(sid) != 8):
                    out.reject("log record: trace_id must be 16 bytes and span_id 8 bytes")
                    continue
                time_ns = log.time_unix_nano or log.observed_time_unix_nano
                if time_ns > MAX_TIME_NS:
                    out.reject("log record: times must be before the year 2262 (signed 64-bit nanoseconds)")
                    continue
                attrs = attributes(log.attributes)
                body_value = any_value(log.body) if log.HasField("body") else None
                name = log.event_name or str(attrs.get("event.name") or "") or "log"
                input_text, output_text = semconv.map_log(name, body_value, attrs)
                payload: dict[str, Any] = {"body": body_value, "attributes": attrs,
                                           "severity_text": log.severity_text,
                                           "severity_number": log.severity_number,
                                           "resource": resource, "scope": scope}
                out.events.append(EventRecord(
                    trace_id=tid.hex() if tid and tid != _ZERO_TRACE else None,
                    span_id=sid.hex() if sid and sid != _ZERO_SPAN else None,
                    event_type="LOG",
                    name=name,
                    time_ns=time_ns,  # GenAI content events often set only the observed time
                    payload=payload,
                    input_text=input_text,
                    output_text=output_text,
                ))
    return out

