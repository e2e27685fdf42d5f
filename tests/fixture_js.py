"""Read the JavaScript clients' OTLP request bodies in tests/fixtures/otlp-js as plain span dicts.

Each file is a request body exactly as the client sent it: OTLP/JSON (`*.otlp.json`, ids as hex)
or OTLP/protobuf (`*.N.bin`, one request each, numbered in the order they were sent). Tests post
the bytes as they are and compare what the hub shows with what these dicts say, read with
opentelemetry-proto, not with the hub's own decoder.

No tests live here; import `REQUESTS` and `spans_of`.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["FIXTURES", "REQUESTS", "content_type", "spans_of"]

FIXTURES = Path(__file__).parent / "fixtures" / "otlp-js"


def _order(path: Path) -> tuple[str, int]:
    numbered = re.fullmatch(r"(.*)\.(\d+)\.bin", path.name)
    return (numbered.group(1), int(numbered.group(2))) if numbered else (path.name, 0)


# Every request body, the numbered protobuf ones in the order they were sent.
REQUESTS = sorted((p for p in FIXTURES.iterdir() if p.suffix in (".json", ".bin")), key=_order)


def content_type(path: Path) -> str:
    return "application/json" if path.suffix == ".json" else "application/x-protobuf"


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return None if kind is None else getattr(v, kind)


def _request(path: Path) -> ExportTraceServiceRequest:
    message = ExportTraceServiceRequest()
    if path.suffix == ".bin":
        message.ParseFromString(path.read_bytes())
        return message
    doc = json.loads(path.read_text(encoding="utf-8"))
    for rs in doc["resourceSpans"]:  # OTLP/JSON ids are hex; protobuf's JSON mapping wants base64
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if span.get(key):
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    json_format.ParseDict(doc, message)
    return message


def spans_of(path: Path) -> list[dict[str, Any]]:
    """The spans of one request: ids as hex, attributes / resource / events as Python values."""
    out: list[dict[str, Any]] = []
    for rs in _request(path).resource_spans:
        resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({
                    "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex() or None, "name": s.name,
                    "kind": s.kind, "status_code": s.status.code, "resource": resource,
                    "attributes": {kv.key: _value(kv.value) for kv in s.attributes},
                    "events": [{"name": e.name, "time_unix_nano": e.time_unix_nano,
                                "attributes": {kv.key: _value(kv.value) for kv in e.attributes}}
                               for e in s.events],
                })
    return out
