"""Overload answers backpressure (never unbounded memory, never 500); acknowledged spans survive
SIGTERM and kill -9."""

from __future__ import annotations

import secrets
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2

from conftest import ServerProcess
from otlp_helpers import EXPORT_PATH, make_span, new_trace_id, post, request_of


def _wait_queued(server: ServerProcess, expected: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if httpx.get(server.url + "/readyz").json()["queued_spans"] >= expected:
            return
        time.sleep(0.02)
    raise AssertionError("the writer never queued the request")


@pytest.mark.parametrize("limit", [{"TRACEHUB_QUEUE_MAX_SPANS": "1"},
                                   {"TRACEHUB_MAX_INFLIGHT_BYTES": "64"}], ids=["queue", "bytes"])
def test_overload_answers_429_and_resource_exhausted(
        server_factory: Callable[..., ServerProcess], limit: dict[str, str]) -> None:
    server = server_factory("sqlite", env=limit)
    path = server.database_url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # hold the write lock: the writer stalls, the queue fills
    first_tid = new_trace_id()
    results: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: results.update(
        first=post(server, request_of(make_span(first_tid, b"\x31" * 8)))))
    try:
        thread.start()
        _wait_queued(server, 1)
        r = post(server, request_of(make_span(new_trace_id(), b"\x32" * 8)))
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert status_pb2.Status.FromString(r.content).code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        # The JSON API shares the budget and the queue, and answers in problem+json.
        r = server.client.post("/api/v1/ingest/traces", json={"trace": {"trace_id": new_trace_id().hex()}})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
        assert r.headers["content-type"] == "application/problem+json" and r.json()["status"] == 429
        if "TRACEHUB_QUEUE_MAX_SPANS" in limit:
            assert httpx.get(server.url + "/readyz").status_code == 503
        assert httpx.get(server.url + "/healthz").status_code == 200

        channel = grpc.insecure_channel(server.otlp_grpc)
        with pytest.raises(grpc.RpcError) as exc:
            channel.unary_unary(EXPORT_PATH)(request_of(make_span(new_trace_id(), b"\x33" * 8)),
                                             metadata=[("x-api-key", server.api_key)])
        channel.close()
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = dict(exc.value.trailing_metadata())["grpc-status-details-bin"]
        retry = error_details_pb2.RetryInfo()
        assert status_pb2.Status.FromString(details).details[0].Unpack(retry)
        assert retry.retry_delay.seconds >= 1
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        thread.join(30)
    assert results["first"].status_code == 200  # the queued request is written once unblocked
    assert len(server.wait_trace(first_tid.hex(), 1)["spans"]) == 1


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_a_request_without_room_waits_a_moment_before_it_is_refused(
        server_factory: Callable[..., ServerProcess], transport: str) -> None:
    """Room that frees within ADMIT_WAIT_S takes the request: the sender need not come back a second
    later, while the writer has nothing to do."""
    server = server_factory("sqlite", env={"TRACEHUB_QUEUE_MAX_SPANS": "1"})
    blocker = sqlite3.connect(server.database_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    first_tid, second_tid = new_trace_id(), new_trace_id()
    results: dict[str, Any] = {}
    first = threading.Thread(target=lambda: results.update(
        first=post(server, request_of(make_span(first_tid, b"\x31" * 8)))))
    second_body = request_of(make_span(second_tid, b"\x32" * 8))
    sent = threading.Event()
    channel = grpc.insecure_channel(server.otlp_grpc)
    export = channel.unary_unary(EXPORT_PATH)

    def body() -> Iterator[bytes]:
        yield second_body
        sent.set()  # httpx asks for more once the head and this are written

    def send_second() -> None:
        headers = {"content-type": "application/x-protobuf", "content-length": str(len(second_body)),
                   "x-api-key": server.api_key}
        results["second"] = httpx.post(server.otlp_http + "/v1/traces", content=body(), headers=headers,
                                       timeout=30).status_code

    second = threading.Thread(target=send_second)
    try:
        first.start()
        _wait_queued(server, 1)
        # A request the server refuses at once (no key), sent after the second: the server takes
        # requests in as they come, so by this answer the second has found no room and waits.
        if transport == "http":
            second.start()
            assert sent.wait(10)
            probe = httpx.post(server.otlp_http + "/v1/traces", content=b"",
                               headers={"content-type": "application/x-protobuf"}, timeout=30)
            assert probe.status_code == 401 and "second" not in results
        else:
            grpc.channel_ready_future(channel).result(timeout=10)  # calls then go out in order
            waiting = export.future(second_body, metadata=[("x-api-key", server.api_key)])
            with pytest.raises(grpc.RpcError) as probe_error:  # on the same connection, behind it
                export(b"")
            assert probe_error.value.code() == grpc.StatusCode.UNAUTHENTICATED and not waiting.done()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    first.join(30)
    if transport == "http":
        second.join(30)
    else:
        waiting.result(timeout=30)
        results["second"] = 200
    channel.close()
    assert results["first"].status_code == 200 and results["second"] == 200
    assert len(server.wait_trace(second_tid.hex(), 1)["spans"]) == 1


def _send_until(server: ServerProcess, stop: threading.Event, acked: list[str], lock: threading.Lock,
                sender: int) -> None:
    client = httpx.Client(timeout=30)
    n = 0
    while not stop.is_set():
        tid = new_trace_id()
        spans = [make_span(tid, bytes([sender, n % 256, i, 1, 1, 1, 1, 1]), name=f"s{i}")
                 for i in range(50)]
        n += 1
        try:
            r = client.post(server.otlp_http + "/v1/traces", content=request_of(*spans),
                            headers={"content-type": "application/x-protobuf",
                                     "x-api-key": server.api_key})
        except httpx.HTTPError:
            break
        if r.status_code == 200:
            with lock:
                acked.append(tid.hex())
        elif r.status_code not in (429, 503):
            raise AssertionError(f"unexpected answer under shutdown: {r.status_code}")
    client.close()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_acknowledged_spans_survive_shutdown(server_factory: Callable[..., ServerProcess],
                                             backend: str, sig: int) -> None:
    server = server_factory(backend)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(_send_until, server, stop, acked, lock, i) for i in range(4)]
        deadline = time.monotonic() + 20
        while len(acked) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop(sig)
        stop.set()
        for f in futures:
            f.result()
    if sig == signal.SIGTERM:
        assert server.proc is not None and server.proc.returncode == 0, server.log_text()
    assert len(acked) >= 40
    restarted = server_factory(backend, database_url=server.database_url)
    for trace_id in acked:
        got = restarted.client.get(f"/api/v1/traces/{trace_id}")
        assert got.status_code == 200, f"acknowledged trace {trace_id} lost after {sig!r}"
        assert got.json()["trace"]["span_count"] == 50


def test_a_request_that_gives_up_while_queued_does_not_stop_the_writer(
        server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("sqlite")
    blocker = sqlite3.connect(server.database_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    abandoned = new_trace_id()
    channel = grpc.insecure_channel(server.otlp_grpc)
    try:
        with pytest.raises(grpc.RpcError) as exc:
            channel.unary_unary(EXPORT_PATH)(request_of(make_span(abandoned, b"\x51" * 8)),
                                             metadata=[("x-api-key", server.api_key)], timeout=0.5)
        assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        channel.close()
    later = new_trace_id()
    assert post(server, request_of(make_span(later, b"\x52" * 8))).status_code == 200
    assert len(server.wait_trace(later.hex(), 1)["spans"]) == 1
    assert len(server.wait_trace(abandoned.hex(), 1)["spans"]) == 1  # committed, just not answered


def test_the_wal_is_copied_into_the_database_beside_the_writer(
        server_factory: Callable[..., ServerProcess]) -> None:
    """The writer's own auto-checkpoint waits for 64 MiB of WAL; the checkpointer thread copies
    committed pages into the database file well before, without a COMMIT waiting on it."""
    server = server_factory("sqlite")
    path = Path(server.database_url.removeprefix("sqlite:///"))
    before = path.stat().st_size
    tid = new_trace_id()
    # Text that does not compress (span bodies are compressed): ~0.8 MB of pages to copy.
    spans = [make_span(tid, i.to_bytes(8, "big"), name=f"s{i}", payload=secrets.token_urlsafe(3000))
             for i in range(1, 201)]
    # Under SQLite's default auto-checkpoint (1,000 pages): only a checkpointer copies it now.
    assert post(server, request_of(*spans)).status_code == 200
    deadline = time.monotonic() + 10
    while path.stat().st_size < before + 800_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size >= before + 800_000
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size < 64 * 1024 * 1024
    server.wait_trace(tid.hex(), min_spans=200)
