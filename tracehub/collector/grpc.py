"""OTLP/gRPC receiver: TraceService/Export and LogsService/Export on the shared decode path.

Handlers take the raw request bytes (no generated servicer) so gRPC and HTTP decode through the same
`tracehub.collector.otlp` functions. Overload answers RESOURCE_EXHAUSTED with a RetryInfo detail,
which OTLP exporters treat as retryable after the given delay.

Export is unary on the wire, but served as a stream-unary method: gRPC then hands over the request
message only when the handler asks for it, so an overloaded server refuses before reading it, and
HTTP/2 flow control (a fixed window, no BDP growth) keeps unread messages in the client. Served as
unary, 64 senders of 1 MiB requests held ~300 MiB in gRPC's buffers while being refused.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tracehub import metrics
from tracehub.collector.decoding import Decode
from tracehub.collector.errors import IngestError, invalid
from tracehub.collector.intake import Intake, export_answer
from tracehub.records import Batch


async def _abort(context: grpc.aio.ServicerContext, err: IngestError) -> NoReturn:
    status = status_pb2.Status(code=err.grpc_code.value[0], message=err.message)
    if err.retry_after_s:
        delay = Duration()
        delay.FromNanoseconds(round(err.retry_after_s * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    await context.abort(err.grpc_code, err.message,
                        trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),))
    raise AssertionError("abort() raises")  # grpc's stubs do not say so


def _handler(intake: Intake, decode: Decode, response_type: Any,
             rejected_field: str) -> grpc.RpcMethodHandler:
    admission = intake.pipeline.admission

    async def export(_requests: Any, context: grpc.aio.ServicerContext) -> bytes:
        try:
            project_id = await intake.authenticate(dict(context.invocation_metadata() or ()))
            with await intake.pipeline.admit_waiting(admission.typical_body_bytes) as held:
                body = await context.read()
                if body is grpc.aio.EOF:
                    raise invalid("the request has no message")
                admission.note_body(len(body))
                held.resize(len(body))
                decoded = await decode(body, "protobuf", project_id)
                del body
                await intake.pipeline.export(Batch(project_id, decoded.spans, decoded.events,
                                                   resources=decoded.resources))
        except IngestError as err:
            metrics.INGEST_REQUESTS.labels("grpc", err.grpc_code.name).inc()
            await _abort(context, err)
        metrics.INGEST_REQUESTS.labels("grpc", "OK").inc()
        return bytes(export_answer(response_type, rejected_field, decoded).SerializeToString())

    return grpc.stream_unary_rpc_method_handler(export)


def create_server(intake: Intake, max_concurrent_requests: int) -> grpc.aio.Server:
    limit = intake.max_request_bytes
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ("grpc.so_reuseport", 0),
        # The stream window stays at 256 KiB instead of growing with BDP probes: what a refused
        # or waiting request can push into the server before its handler reads it.
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", 256 * 1024),
    ], maximum_concurrent_rpcs=max_concurrent_requests)
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("opentelemetry.proto.collector.trace.v1.TraceService", {
            "Export": _handler(intake, intake.decode_traces, ExportTraceServiceResponse,
                               "rejected_spans"),
        }),
        grpc.method_handlers_generic_handler("opentelemetry.proto.collector.logs.v1.LogsService", {
            "Export": _handler(intake, intake.decode_logs, ExportLogsServiceResponse,
                               "rejected_log_records"),
        }),
    ))
    return server
