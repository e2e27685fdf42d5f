"""Database faults: a lost connection is replaced, a database that refuses connections is answered
503 / UNAVAILABLE with a retry delay (never 500, never the driver's text), a hung key lookup holds
no other request, and a request that fails the same way every time is not answered as retryable.

The PostgreSQL faults are made on the test's own database only: its backends are terminated
(`pg_terminate_backend`) and new connections refused (`ALLOW_CONNECTIONS false`); the shared
server is never stopped.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
import time
from typing import Any, Callable, Iterator

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from conftest import PG_ADMIN_URL, ServerProcess
from otlp_helpers import EXPORT_PATH, NS, make_span, new_trace_id, post, request_of

psycopg = pytest.importorskip("psycopg")

# What the driver says, which must reach the log only.
DRIVER_WORDS = ("psycopg", "FATAL", "not currently accepting", "terminating connection", "server closed",
                "sqlalchemy", "Traceback", "tracehub_test_", "Overflow", "too big", "too large")


def _database(server: ServerProcess) -> str:
    return server.database_url.rsplit("/", 1)[1]


def _terminate(admin: Any, database: str) -> None:
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                  " WHERE datname = %s AND pid <> pg_backend_pid()", [database])


@contextlib.contextmanager
def _refused(server: ServerProcess) -> Iterator[Any]:
    """The server's database refuses new connections and its open ones are gone, until the block ends."""
    database = _database(server)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            _terminate(admin, database)
            yield admin
        finally:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


def _until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `check` until it holds; the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


def _json_trace(server: ServerProcess) -> tuple[str, httpx.Response]:
    trace_id = new_trace_id().hex()
    return trace_id, server.client.post("/api/v1/ingest/traces", json={"trace": {"trace_id": trace_id}})


def _grpc_export(server: ServerProcess, body: bytes, key: str | None = None) -> grpc.RpcError | None:
    channel = grpc.insecure_channel(server.otlp_grpc)
    try:
        channel.unary_unary(EXPORT_PATH)(body, metadata=[("x-api-key", key or server.api_key)], timeout=20)
    except grpc.RpcError as exc:
        return exc
    finally:
        channel.close()
    return None


def _assert_unavailable_problem(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json", r.text
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["status"] == 503
    assert not any(word.lower() in r.text.lower() for word in DRIVER_WORDS), r.text


def _assert_unavailable_otlp(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/x-protobuf"
    assert int(r.headers["retry-after"]) >= 1
    status = status_pb2.Status.FromString(r.content)
    assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert not any(word.lower() in status.message.lower() for word in DRIVER_WORDS), status.message


def _assert_unavailable_grpc(exc: grpc.RpcError | None) -> None:
    assert exc is not None
    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
    assert not any(word.lower() in (exc.details() or "").lower() for word in DRIVER_WORDS), exc.details()
    status = status_pb2.Status.FromString(dict(exc.trailing_metadata())["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry) and retry.retry_delay.seconds >= 1


@pytest.mark.postgres
def test_ingest_goes_on_after_the_database_connections_are_terminated(
        server_factory: Callable[..., ServerProcess]) -> None:
    """The writer's connection broke while it was idle: the next request is written on a new one
    (not answered 503, and never acknowledged unwritten); the search indexer connects again too."""
    server = server_factory("postgres")
    before = new_trace_id()
    assert post(server, request_of(make_span(before, b"\x01" * 8, name="before-kill"))).status_code == 200
    assert _json_trace(server)[1].status_code == 200
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        _terminate(admin, _database(server))

    after = new_trace_id()
    r = post(server, request_of(make_span(after, b"\x02" * 8, name="after-kill")))
    assert r.status_code == 200, r.content
    trace_id, r = _json_trace(server)
    assert r.status_code == 200, r.text
    assert _grpc_export(server, request_of(make_span(new_trace_id(), b"\x03" * 8))) is None
    assert httpx.get(server.url + "/readyz").status_code == 200
    for tid in (before.hex(), after.hex()):
        assert len(server.wait_trace(tid)["spans"]) == 1
    assert server.client.get(f"/api/v1/traces/{trace_id}").status_code == 200
    # The indexer's connection died with the others: it indexes the new rows on a new one.
    _until(lambda: httpx.get(server.url + "/readyz").json()["search_unindexed_rows"] == 0, 15,
           "indexing after the connections were terminated")


@pytest.mark.postgres
def test_a_database_that_refuses_connections_is_answered_503_and_ingest_resumes(
        server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("postgres")
    acknowledged = [new_trace_id()]
    assert post(server, request_of(make_span(acknowledged[0], b"\x01" * 8))).status_code == 200
    listed = server.client.get("/api/v1/traces").json()["items"][0]["trace_id"]
    unknown_key = "th_" + secrets.token_urlsafe(16)  # never cached: its lookup needs the database
    with _refused(server):
        # Ingest: the writer finds its connection gone and cannot make another.
        _assert_unavailable_otlp(post(server, request_of(make_span(new_trace_id(), b"\x02" * 8))))
        _assert_unavailable_problem(_json_trace(server)[1])
        _assert_unavailable_grpc(_grpc_export(server, request_of(make_span(new_trace_id(), b"\x03" * 8))))
        ready = httpx.get(server.url + "/readyz")
        _assert_unavailable_problem(ready)
        # Reads and key lookups meet the refusal in the pool.
        for path in ("/api/v1/traces", f"/api/v1/traces/{listed}", "/api/v1/traces/stats/overview"):
            _assert_unavailable_problem(server.client.get(path))
        _assert_unavailable_problem(server.client.get("/api/v1/traces", headers={"x-api-key": unknown_key}))
        _assert_unavailable_otlp(post(server, request_of(make_span(new_trace_id(), b"\x04" * 8)),
                                      x_api_key=unknown_key))
        _assert_unavailable_grpc(_grpc_export(server, request_of(make_span(new_trace_id(), b"\x05" * 8)),
                                              key=unknown_key))
        assert httpx.get(server.url + "/healthz").status_code == 200  # the process is alive

    back = time.monotonic()

    def stored() -> bool:
        tid = new_trace_id()
        if post(server, request_of(make_span(tid, b"\x06" * 8))).status_code != 200:
            return False
        acknowledged.append(tid)
        return True

    _until(stored, 10, "ingest after the database came back")
    assert time.monotonic() - back < 5, "ingest took more than 5 s to come back"
    assert httpx.get(server.url + "/readyz").status_code == 200
    assert server.client.get("/api/v1/traces", headers={"x-api-key": unknown_key}).status_code == 401
    assert _json_trace(server)[1].status_code == 200
    for tid in acknowledged:
        assert len(server.wait_trace(tid.hex())["spans"]) == 1
    log = server.log_text()
    assert "not currently accepting connections" in log  # the driver's words went to the log


@pytest.mark.postgres
def test_a_hung_key_lookup_holds_only_its_own_request(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("postgres")
    unknown_key = "th_" + secrets.token_urlsafe(16)
    answers: dict[str, int] = {}

    def call(name: str, send: Callable[[], httpx.Response]) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.update({name: send().status_code}))
        thread.start()
        return thread

    url = server.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as locker:
        locker.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")  # every key lookup waits
        threads = [
            call("api", lambda: server.client.get("/api/v1/traces", headers={"x-api-key": unknown_key})),
            call("otlp", lambda: post(server, request_of(make_span(new_trace_id(), b"\x01" * 8)),
                                      x_api_key=unknown_key)),
        ]
        time.sleep(0.5)  # both are waiting for their lookup
        assert not answers
        started = time.monotonic()
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
        assert httpx.get(server.otlp_http + "/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 0.5
        locker.rollback()
    for thread in threads:
        thread.join(10)
    assert answers == {"api": 401, "otlp": 401}


def _single_span_traces(n: int) -> bytes:
    span = Span(span_id=b"\x01" * 8, name="op", start_time_unix_nano=NS, end_time_unix_nano=NS + 1000)
    spans = []
    for i in range(n):
        copy = Span()
        copy.CopyFrom(span)
        copy.trace_id = (i + 1).to_bytes(16, "big")
        spans.append(copy)
    return bytes(ExportTraceServiceRequest(resource_spans=[
        ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]).SerializeToString())


def test_redelivery_of_a_request_with_more_traces_than_sqlite_binds_is_answered_200(
        server_factory: Callable[..., ServerProcess]) -> None:
    """Looking up 130,000 stored spans at once bound 260,000 parameters, past SQLite's limit
    (250,000 on Debian's build, 32,766 on others): 503 for ever. The lookups go in chunks."""
    server = server_factory("sqlite", env={"TRACEHUB_MAX_REQUEST_BYTES": str(64 * 1024 * 1024)})
    n = 130_000
    body = _single_span_traces(n)
    for attempt in ("first", "again"):
        r = httpx.post(server.otlp_http + "/v1/traces", content=body, timeout=180,
                       headers={"content-type": "application/x-protobuf", "x-api-key": server.api_key})
        assert r.status_code == 200, (attempt, r.status_code, r.content[:300])
    total = server.client.get("/api/v1/traces", params={"page_size": 1}).json()["total"]
    assert total == n


@contextlib.contextmanager
def _writer_held(server: ServerProcess) -> Iterator[None]:
    """The writer waits for a lock the test holds (SQLite's write lock, PostgreSQL's trace table)."""
    if server.database_url.startswith("sqlite"):
        blocker = sqlite3.connect(server.database_url.removeprefix("sqlite:///"), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return
    with psycopg.connect(server.database_url.replace("postgresql+psycopg://", "postgresql://", 1)) as locker:
        locker.execute("LOCK TABLE traces IN ACCESS EXCLUSIVE MODE")
        yield
        locker.rollback()


def _queued(server: ServerProcess, spans: int) -> None:
    _until(lambda: httpx.get(server.url + "/readyz").json()["queued_spans"] >= spans, 10,
           f"{spans} spans queued")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_request_the_database_cannot_store_is_refused_not_retried_and_its_group_is_stored(
        server_factory: Callable[..., ServerProcess], backend: str) -> None:
    """Two spans of 2**62 input tokens fit their rows, but their trace's total is past BIGINT: the
    request fails the same way every time, so it is answered 400 / INVALID_ARGUMENT, not 503 (an
    exporter would send it for ever). Written in one transaction with other requests, it fails
    alone."""
    server = server_factory(backend)
    overflow = new_trace_id()
    bad = request_of(*(make_span(overflow, bytes([i]) * 8, name=f"chat {i}", gen_ai__operation__name="chat",
                                 gen_ai__request__model="gpt-4o", gen_ai__usage__input_tokens=2**62 + 1)
                       for i in (1, 2)))
    first, grouped = new_trace_id(), new_trace_id()
    answers: dict[str, httpx.Response] = {}

    def send(name: str, body: bytes) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.update({name: post(server, body)}))
        thread.start()
        return thread

    with _writer_held(server):
        threads = [send("first", request_of(make_span(first, b"\x03" * 8)))]
        _queued(server, 1)  # the writer holds it and waits for the lock; the next two wait together
        threads += [send("bad", bad), send("grouped", request_of(make_span(grouped, b"\x04" * 8)))]
        _queued(server, 4)
    for thread in threads:
        thread.join(30)
    assert answers["first"].status_code == 200 and answers["grouped"].status_code == 200
    for r in (answers["bad"], post(server, bad)):
        assert r.status_code == 400, (r.status_code, r.content)
        assert "retry-after" not in r.headers
        status = status_pb2.Status.FromString(r.content)
        assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert not any(word.lower() in status.message.lower() for word in DRIVER_WORDS), status.message
    exc = _grpc_export(server, bad)
    assert exc is not None and exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
    for tid in (first, grouped):
        assert len(server.wait_trace(tid.hex())["spans"]) == 1
    assert server.client.get(f"/api/v1/traces/{overflow.hex()}").status_code == 404
