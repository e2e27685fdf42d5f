"""Send a workload's request bodies over OTLP/HTTP or OTLP/gRPC, as exporters do, and count the outcome.

Senders share one request counter, so each body goes out once. A request is retried as an OTel
exporter would: HTTP 429 / 502 / 503 / 504 after Retry-After (else exponential backoff); gRPC
UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, and RESOURCE_EXHAUSTED only with RetryInfo; connection
errors and timeouts (the same body again: the server must de-duplicate). It counts as undelivered
once its retries would pass the retry budget.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from server import MIB
from workload import Workload

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # otlp_helpers, shared with the tests
from otlp_helpers import EXPORT_PATH  # noqa: E402

# Set when the run is abandoned (a stalled server, SIGTERM / Ctrl-C): senders stop taking work and
# stop retrying.
ABORT = threading.Event()


@dataclass
class SendStats:
    latencies: list[float] = field(default_factory=list)   # accepted attempts, seconds
    acked_spans: int = 0
    rejected_spans: int = 0
    failed_requests: int = 0
    failed_spans: int = 0
    retries: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)
    retry_sleep_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    acked_requests: list[int] = field(default_factory=list)
    last_ack: float | None = None

    def merge(self, other: SendStats) -> None:
        self.latencies += other.latencies
        self.acked_spans += other.acked_spans
        self.rejected_spans += other.rejected_spans
        self.failed_requests += other.failed_requests
        self.failed_spans += other.failed_spans
        self.retries += other.retries
        for k, v in other.retry_reasons.items():
            self.retry_reasons[k] = self.retry_reasons.get(k, 0) + v
        self.retry_sleep_s += other.retry_sleep_s
        self.errors += other.errors[: max(0, 10 - len(self.errors))]
        self.acked_requests += other.acked_requests
        if other.last_ack is not None:
            self.last_ack = max(self.last_ack or 0.0, other.last_ack)


@dataclass
class Attempt:
    """What one try to export a request came to: delivered, to be retried, or failed for good."""

    response: bytes | None = None   # the ExportTraceServiceResponse's bytes: delivered
    retry: str | None = None        # why it may be sent again, after `delay` seconds
    delay: float = 0.0
    error: str | None = None        # why it is not sent again


def http_sender(target: tuple[str, int], key: str, use_gzip: bool, work: Workload,
                counter: Callable[[], int], stats: SendStats, timeout: float,
                budget: float) -> None:
    headers = {"Content-Type": "application/x-protobuf", "x-api-key": key}
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    conn = http.client.HTTPConnection(*target, timeout=timeout)

    def export(body: bytes, attempt: int) -> Attempt:
        nonlocal conn
        try:
            conn.request("POST", "/v1/traces", body, headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conn = http.client.HTTPConnection(*target, timeout=timeout)
            return Attempt(retry=f"connection: {type(exc).__name__}", delay=min(0.2 * (attempt + 1), 5.0))
        if resp.status == 200:
            return Attempt(response=data)
        if resp.status not in (429, 502, 503, 504):
            return Attempt(error=f"HTTP {resp.status} {data[:200]!r}")
        retry_after = resp.getheader("retry-after")
        try:
            delay = float(retry_after) if retry_after else min(0.25 * 2 ** attempt, 5.0)
        except ValueError:
            delay = 1.0
        return Attempt(retry=f"HTTP {resp.status}", delay=delay)

    _send_all(export, work, counter, stats, budget)
    conn.close()


def grpc_sender(target: str, key: str, use_gzip: bool, work: Workload,
                counter: Callable[[], int], stats: SendStats, timeout: float,
                budget: float) -> None:
    import grpc

    channel = grpc.insecure_channel(target, options=[
        ("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 16 * MIB),
        ("grpc.use_local_subchannel_pool", 1)])  # one connection per sender, like separate exporters
    rpc = channel.unary_unary(EXPORT_PATH, request_serializer=None, response_deserializer=None)
    metadata = (("x-api-key", key),)
    compression = grpc.Compression.Gzip if use_gzip else grpc.Compression.NoCompression
    retryable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                 grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}

    def export(body: bytes, attempt: int) -> Attempt:
        try:
            return Attempt(response=rpc(body, metadata=metadata, timeout=timeout, compression=compression))
        except grpc.RpcError as err:
            code = err.code()
            delay = _grpc_retry_delay(err)
            # OTLP: RESOURCE_EXHAUSTED is retryable only with RetryInfo.
            if code not in retryable or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is None):
                return Attempt(error=f"{code.name} {err.details()}")
            return Attempt(retry=code.name, delay=min(0.25 * 2 ** attempt, 5.0) if delay is None else delay)

    _send_all(export, work, counter, stats, budget)
    channel.close()


def warm_up_grpc(target: str, key: str) -> None:
    """Open and close one channel so the first timed request doesn't pay grpc's lazy init alone."""
    import grpc

    with grpc.insecure_channel(target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
    del key


def _send_all(export: Callable[[bytes, int], Attempt], work: Workload, counter: Callable[[], int],
              stats: SendStats, budget: float) -> None:
    """Take the next request until none is left, each tried until delivered, failed or out of budget."""
    n = len(work.bodies)
    while not ABORT.is_set():
        i = counter()
        if i >= n:
            break
        give_up = time.perf_counter() + budget
        attempt = -1
        while True:
            attempt += 1
            t = time.perf_counter()
            got = export(work.bodies[i], attempt)
            if got.response is not None:
                stats.latencies.append(time.perf_counter() - t)
                rejected = _rejected(got.response)
                stats.acked_spans += work.span_counts[i] - rejected
                stats.rejected_spans += rejected
                stats.acked_requests.append(i)
                stats.last_ack = time.perf_counter()
                break
            if got.error is not None:
                stats.failed_requests += 1
                stats.failed_spans += work.span_counts[i]
                stats.errors.append(f"request {i}: {got.error}")
                break
            if time.perf_counter() + got.delay > give_up or ABORT.is_set():
                stats.failed_requests += 1
                stats.failed_spans += work.span_counts[i]
                stats.errors.append(f"request {i}: gave up after {attempt + 1} attempts"
                                    + (" (run aborted)" if ABORT.is_set() else f" in {budget:.0f}s")
                                    + f" (last: {got.retry})")
                break
            reason = got.retry or "?"
            stats.retries += 1
            stats.retry_reasons[reason] = stats.retry_reasons.get(reason, 0) + 1
            stats.retry_sleep_s += got.delay
            ABORT.wait(got.delay)


def _rejected(payload: bytes) -> int:
    """The spans an export answer says were rejected (OTLP partial success)."""
    if not payload:
        return 0
    resp = ExportTraceServiceResponse()
    try:
        resp.ParseFromString(payload)
    except Exception:  # noqa: BLE001
        return 0
    return resp.partial_success.rejected_spans


def _grpc_retry_delay(err: Any) -> float | None:
    """RetryInfo delay from grpc-status-details-bin, None if there is none."""
    from google.rpc import error_details_pb2, status_pb2

    for k, v in err.trailing_metadata() or ():
        if k == "grpc-status-details-bin":
            st = status_pb2.Status()
            try:
                st.ParseFromString(v)
            except Exception:  # noqa: BLE001
                return None
            for d in st.details:
                if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    d.Unpack(info)
                    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None
