"""OTLP/HTTP receiver: `/v1/traces` and `/v1/logs`, protobuf or JSON, gzip or not.

It only authenticates, reads a bounded body, picks the codec from the content type and hands the
bytes to the shared decode path (`tracehub.collector.otlp`). Answers follow the OTLP/HTTP spec: the
response message (with partial_success when spans were rejected) in the request's encoding; errors
as a google.rpc.Status; 429/503 with Retry-After under overload.
"""

from __future__ import annotations

from typing import Any, Callable

from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracehub import metrics
from tracehub.collector.decoding import Decode
from tracehub.collector.errors import IngestError, unsupported_media_type
from tracehub.collector.intake import Intake, export_answer
from tracehub.records import Batch
from tracehub.requests import declared_length, read_body

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def _codec(request: Request) -> str:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == PROTOBUF:
        return "protobuf"
    if ctype == JSON:
        return "json"
    raise unsupported_media_type(ctype)


def _encode(message: Any, codec: str) -> bytes:
    if codec == "json":
        return str(json_format.MessageToJson(message, indent=None)).encode()
    return bytes(message.SerializeToString())


def error_response(err: IngestError, codec: str = "protobuf") -> Response:
    status = status_pb2.Status(code=err.grpc_code.value[0], message=err.message)
    return Response(_encode(status, codec), err.http_status, headers=err.retry_headers(),
                    media_type=JSON if codec == "json" else PROTOBUF)


class OtlpHttp:
    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    def routes(self) -> list[Route]:
        return [
            Route("/v1/traces", self._handler(self.intake.decode_traces,
                                              ExportTraceServiceResponse, "rejected_spans"),
                  methods=["POST"]),
            Route("/v1/logs", self._handler(self.intake.decode_logs, ExportLogsServiceResponse,
                                            "rejected_log_records"), methods=["POST"]),
        ]

    def _handler(self, decode: Decode, response_type: Any,
                 rejected_field: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            codec = "protobuf"
            try:
                codec = _codec(request)
                project_id = await self.intake.authenticate(request.headers)
                with await self.intake.pipeline.admit_waiting(declared_length(request)) as held:
                    body = await read_body(request, self.intake.max_request_bytes, held)
                    decoded = await decode(body, codec, project_id)
                    del body
                    await self.intake.pipeline.export(Batch(project_id, decoded.spans, decoded.events,
                                                            resources=decoded.resources))
            except IngestError as err:
                metrics.INGEST_REQUESTS.labels("http", str(err.http_status)).inc()
                return error_response(err, codec)
            metrics.INGEST_REQUESTS.labels("http", "200").inc()
            return Response(_encode(export_answer(response_type, rejected_field, decoded), codec), 200,
                            media_type=JSON if codec == "json" else PROTOBUF)

        return endpoint
