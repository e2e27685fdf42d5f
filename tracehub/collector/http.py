"""OTLP/HTTP receiver: `/v1/traces` and `/v1/logs`, protobuf or JSON, gzip or not.

It only authenticates, reads a bounded body, picks the codec from the content type and hands the
bytes to the shared decode path (`tracehub.collector.otlp`). Answers follow the OTLP/HTTP spec: the
response message (with partial_success when spans were rejected) in the request's encoding; errors
as a google.rpc.Status; 429/503 with Retry-After under overload.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable

from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracehub import metrics
from tracehub.collector.admission import Reservation
from tracehub.collector.decoding import Decode
from tracehub.collector.errors import IngestError, from_store, invalid, too_large, unsupported_media_type
from tracehub.collector.errors import unauthenticated
from tracehub.hub import Hub
from tracehub.records import Batch
from tracehub.store.faults import Fault
from tracehub.store.keys import RefusedKey

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def presented_key(headers: Any) -> str | None:
    """The API key from `x-api-key` or `Authorization: Bearer` (OTLP exporters can send either)."""
    key = headers.get("x-api-key")
    if key:
        return str(key)
    auth = headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return str(auth[7:].strip())
    return None


async def authenticate(hub: Hub, headers: Any) -> int:
    """The project of the key in `headers`; raises the answer for an unknown key, or while the
    database cannot be asked."""
    try:
        project_id = await hub.keys.project_for(presented_key(headers))
    except Fault as fault:
        raise from_store(fault) from None
    except RefusedKey as exc:
        raise unauthenticated(str(exc)) from None
    if project_id is None:
        raise unauthenticated()
    return project_id


def _codec(request: Request) -> str:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == PROTOBUF:
        return "protobuf"
    if ctype == JSON:
        return "json"
    raise unsupported_media_type(ctype)


def declared_length(request: Request) -> int:
    """The body size the client declares (Content-Length), 0 if it declares none."""
    declared = request.headers.get("content-length", "")
    return int(declared) if declared.isdigit() else 0


async def read_body(request: Request, limit: int, reservation: Reservation | None = None) -> bytes:
    """The request body, decompressed, never holding more than `limit` bytes of it; the bytes held
    are reserved from the pipeline's budget as they arrive."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        inflater: Any = zlib.decompressobj(wbits=31)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    elif encoding in ("identity", ""):
        inflater = None
    else:
        raise IngestError(f"unsupported content-encoding {encoding!r}: use gzip or none", 415)
    if declared_length(request) > limit:
        raise too_large(limit)
    out = bytearray()
    raw = 0
    async for chunk in request.stream():
        raw += len(chunk)
        if raw > limit:
            raise too_large(limit)
        if inflater is None:
            out += chunk
        else:
            try:
                # max_length bounds the output of a small body that inflates hugely.
                out += inflater.decompress(chunk, limit + 1 - len(out))
            except zlib.error as exc:
                raise invalid(f"cannot decompress body: {exc}") from None
            if inflater.unconsumed_tail:
                raise too_large(limit)
        if len(out) > limit:
            raise too_large(limit)
        if reservation is not None:
            reservation.resize(len(out))
    if inflater is not None and not inflater.eof and out:
        raise invalid("compressed body is truncated")
    return bytes(out)


def _encode(message: Any, codec: str) -> bytes:
    if codec == "json":
        return str(json_format.MessageToJson(message, indent=None)).encode()
    return bytes(message.SerializeToString())


def error_response(err: IngestError, codec: str = "protobuf") -> Response:
    status = status_pb2.Status(code=err.grpc_code.value[0], message=err.message)
    return Response(_encode(status, codec), err.http_status, headers=err.retry_headers(),
                    media_type=JSON if codec == "json" else PROTOBUF)


class OtlpHttp:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def routes(self) -> list[Route]:
        return [
            Route("/v1/traces", self._handler(self.hub.decoder.decode_traces,
                                              ExportTraceServiceResponse, "rejected_spans"),
                  methods=["POST"]),
            Route("/v1/logs", self._handler(self.hub.decoder.decode_logs, ExportLogsServiceResponse,
                                            "rejected_log_records"), methods=["POST"]),
        ]

    def _handler(self, decode: Decode, response_type: Any,
                 rejected_field: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            codec = "protobuf"
            try:
                codec = _codec(request)
                project_id = await authenticate(self.hub, request.headers)
                with await self.hub.pipeline.admit_waiting(declared_length(request)) as held:
                    body = await read_body(request, self.hub.settings.max_request_bytes, held)
                    decoded = await decode(body, codec, project_id)
                    del body
                    await self.hub.pipeline.export(Batch(project_id, decoded.spans, decoded.events,
                                                         resources=decoded.resources))
            except IngestError as err:
                metrics.INGEST_REQUESTS.labels("http", str(err.http_status)).inc()
                return error_response(err, codec)
            metrics.INGEST_REQUESTS.labels("http", "200").inc()
            answer = response_type()
            if decoded.rejected:
                metrics.SPANS_REJECTED.inc(decoded.rejected)
                setattr(answer.partial_success, rejected_field, decoded.rejected)
                answer.partial_success.error_message = decoded.error_message
            return Response(_encode(answer, codec), 200,
                            media_type=JSON if codec == "json" else PROTOBUF)

        return endpoint
