"""OTLP trace decoding in worker processes (TRACEHUB_DECODE_WORKERS): same data as decoding in the
server process, a dead worker is replaced without losing the server, and workers die with it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Callable

import grpc
import httpx
import pytest

from conftest import ServerProcess
from tracehub.collector import otlp
from tracehub.collector.arena import Arena
from tracehub.collector.decoding import default_workers
from fixture_otlp import capture_to_logs_request, capture_to_trace_request
from otlp_helpers import EXPORT_PATH, make_span, new_trace_id, post, request_of

CAPTURES = sorted((Path(__file__).parent / "fixtures" / "otel-captures").glob("*.json"))


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, ... (nice is [16])."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _children(pid: int) -> set[int]:
    """Live (not zombie) child processes of `pid`."""
    kids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                state, ppid = _stat(int(entry))[:2]
            except (OSError, ValueError):
                continue
            if int(ppid) == pid and state != "Z":
                kids.add(int(entry))
    return kids


def _alive(pid: int) -> bool:
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def _transfers(server: ServerProcess) -> dict[str, float]:
    """tracehub_decode_transfers_total by path, from the server's /metrics."""
    out = {}
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith("tracehub_decode_transfers_total{"):
            out[line.split('path="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out


def _arena_free(server: ServerProcess) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith("tracehub_decode_arena_free_bytes "):
            return float(line.split()[1])
    raise AssertionError("no tracehub_decode_arena_free_bytes in /metrics")


def _replay_all(server: ServerProcess) -> set[str]:
    trace_ids: set[str] = set()
    for path in CAPTURES:
        capture = json.loads(path.read_text())
        logs = capture_to_logs_request(capture)
        if logs is not None:
            assert post(server, logs.SerializeToString(), "/v1/logs").status_code == 200
        assert post(server, capture_to_trace_request(capture).SerializeToString()).status_code == 200
        trace_ids |= {s["trace_id"] for s in capture["spans"]}
    return trace_ids


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_workers_and_the_c_reader_store_what_protobuf_in_process_stores(
        server_factory: Callable[..., ServerProcess], backend: str) -> None:
    in_process = server_factory(backend, env={"TRACEHUB_DECODE_WORKERS": "0", "TRACEHUB_OTLP_C_READER": "false",
                                              "TRACEHUB_LOG_LEVEL": "info"})
    workers = server_factory(backend, env={"TRACEHUB_DECODE_WORKERS": "2", "TRACEHUB_LOG_LEVEL": "info"})
    assert "OTLP protobuf read by protobuf" in in_process.log_text()
    assert f"OTLP protobuf read by {'the C reader' if otlp.WIRE_READER else 'protobuf'}" in workers.log_text()
    assert len(_children(workers.proc.pid)) >= 2  # type: ignore[union-attr]
    assert not _children(in_process.proc.pid)  # type: ignore[union-attr]
    trace_ids = _replay_all(in_process)
    assert _replay_all(workers) == trace_ids
    for trace_id in sorted(trace_ids):
        a = in_process.client.get(f"/api/v1/traces/{trace_id}")
        b = workers.client.get(f"/api/v1/traces/{trace_id}")
        assert a.status_code == b.status_code == 200
        assert a.json() == b.json(), trace_id
        assert a.json()["spans"] and all(s["attributes"] for s in b.json()["spans"])
    # Bodies and rows crossed in shared memory, except rows outgrowing their room (tiny spans).
    assert _transfers(in_process) == {}
    moved = _transfers(workers)
    assert moved.get("shared", 0) > 0 and moved.get("pipe", 0) == 0, moved
    # One bare span: its row outgrows twice its body, so it comes back through the pipe.
    tid = new_trace_id()
    assert post(workers, request_of(make_span(tid, b"\x01" * 8))).status_code == 200
    assert _transfers(workers).get("pipe_rows", 0) == moved.get("pipe_rows", 0) + 1
    assert workers.wait_trace(tid.hex())["spans"][0]["span_id"] == "01" * 8


def test_threads_carry_names_the_os_shows(server_factory: Callable[..., ServerProcess]) -> None:
    """`top -H` and the benchmark tell the writer, its checkpointer and the decode workers apart."""
    server = server_factory("sqlite", env={"TRACEHUB_DECODE_WORKERS": "1"})
    pid = server.proc.pid  # type: ignore[union-attr]

    def names(p: int) -> set[str]:
        return {Path(f"/proc/{p}/task/{t}/comm").read_text().strip() for t in os.listdir(f"/proc/{p}/task")}

    (worker,) = _children(pid)
    deadline = time.monotonic() + 10
    while names(worker) != {"th-decode"} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert names(worker) == {"th-decode"}
    assert {"th-writer", "th-checkpoint"} <= names(pid)


def _nice(pid: int) -> int:
    return int(_stat(pid)[16])


@pytest.mark.parametrize("setting", [None, "0", "3"])
def test_workers_yield_the_cpu_to_the_server(server_factory: Callable[..., ServerProcess],
                                             setting: str | None) -> None:
    """Decode workers run at a lower priority, so a full CPU serves the writer, a local database and
    API reads first (queryable spans/s on PostgreSQL, bench/README)."""
    env = {"TRACEHUB_DECODE_WORKERS": "1"}
    if setting is not None:
        env["TRACEHUB_DECODE_WORKER_NICE"] = setting
    server = server_factory("sqlite", env=env)
    pid = server.proc.pid  # type: ignore[union-attr]
    (worker,) = _children(pid)
    deadline = time.monotonic() + 10
    while _comm(worker) != "th-decode" and time.monotonic() < deadline:
        time.sleep(0.1)  # named at the end of its set-up
    assert _nice(worker) == min(19, _nice(pid) + int(setting or 10))


def test_a_killed_worker_is_replaced(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("sqlite", env={"TRACEHUB_DECODE_WORKERS": "1"})
    pid = server.proc.pid  # type: ignore[union-attr]
    (worker,) = _children(pid)
    os.kill(worker, signal.SIGKILL)
    time.sleep(0.2)
    tid = new_trace_id()
    answers = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = post(server, request_of(make_span(tid, b"\x01" * 8)))
        answers.append(r.status_code)
        if r.status_code == 200:
            break
        # The request that met the dead worker is refused as retryable, never dropped silently.
        assert r.status_code == 503 and r.headers.get("retry-after"), r.content
        time.sleep(0.2)
    assert answers[-1] == 200, answers
    assert server.wait_trace(tid.hex())["spans"][0]["span_id"] == "01" * 8
    # A spawned worker does not share the arena: its requests go through the pipe.
    assert _transfers(server).get("pipe", 0) >= 1
    assert _alive(pid) and worker not in _children(pid) and _children(pid)
    # A spawned worker is set up as a forked one (spawning also starts a resource tracker).
    (spawned,) = {p for p in _children(pid) if _comm(p) == "th-decode"}
    assert _nice(spawned) == min(19, _nice(pid) + 10)
    assert httpx.get(server.url + "/healthz").status_code == 200


def test_a_request_given_up_during_decoding_returns_its_shared_memory(
        server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory("sqlite", env={"TRACEHUB_DECODE_WORKERS": "1"})
    (worker,) = _children(server.proc.pid)  # type: ignore[union-attr]
    full = _arena_free(server)
    tid = new_trace_id()
    before = _transfers(server).get("shared", 0)
    channel = grpc.insecure_channel(server.otlp_grpc)
    export = channel.unary_unary(EXPORT_PATH)
    os.kill(worker, signal.SIGSTOP)  # decoding waits for the test
    try:
        given_up = export.future(request_of(make_span(tid, b"\x01" * 8)), metadata=[("x-api-key", server.api_key)])
        _until(lambda: _transfers(server).get("shared", 0) == before + 1)  # it reached the worker
        assert given_up.cancel()  # as a deadline or a hang-up does
        # A request the server refuses at once (no key), on the same connection after the
        # cancellation: by its answer the server has cancelled the handler.
        with pytest.raises(grpc.RpcError) as probe:
            export(b"")
        assert probe.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _arena_free(server) < full  # the worker still holds the region
    finally:
        os.kill(worker, signal.SIGCONT)
    _until(lambda: _arena_free(server) == full)  # given back once the worker was done with it
    tid_after = new_trace_id()
    export(request_of(make_span(tid_after, b"\x02" * 8)), metadata=[("x-api-key", server.api_key)])
    channel.close()
    assert _transfers(server).get("shared", 0) == before + 2
    server.wait_trace(tid_after.hex())
    # The handler was cancelled while the worker decoded: nothing reached the writer, which has
    # written the request after it.
    assert server.client.get(f"/api/v1/traces/{tid.hex()}").status_code == 404


def _until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill", "term"])
def test_workers_stop_with_the_server(server_factory: Callable[..., ServerProcess], sig: int) -> None:
    server = server_factory("sqlite", env={"TRACEHUB_DECODE_WORKERS": "2"})
    workers = _children(server.proc.pid)  # type: ignore[union-attr]
    assert len(workers) == 2
    server.stop(sig)
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers)


@pytest.mark.parametrize(("url", "cores", "workers"), [
    ("sqlite:///./tracehub.db", 2, 1),
    ("sqlite:///./tracehub.db", 1, 0),
    ("sqlite:///./tracehub.db", 16, 4),
    ("postgresql+psycopg://u@127.0.0.1:5432/db", 2, 1),
    ("postgresql+psycopg://u@127.0.0.1:5432/db", 1, 0),
    ("postgresql+psycopg://u@localhost/db", 4, 2),
    ("postgresql+psycopg:///db?host=/var/run/postgresql", 3, 1),
    ("postgresql+psycopg:///db", 3, 1),
    ("postgresql+psycopg://u@db.internal:5432/db", 2, 1),
    ("postgresql+psycopg:///db?host=db.internal", 2, 1),
])
def test_default_workers_leave_a_core_to_a_local_postgres(url: str, cores: int, workers: int) -> None:
    assert default_workers(url, cores) == workers


def test_arena_regions_are_reused_and_merged() -> None:
    arena = Arena(1024)
    a, b, c = arena.take(100), arena.take(200), arena.take(300)
    assert (a, b, c) == (0, 128, 384)  # 64-byte aligned, first fit
    assert arena.take(400) is None and arena.free_bytes == 1024 - 128 - 256 - 320
    arena.give_back(b, 200)
    assert arena.take(250) == 128  # the freed run is taken again
    arena.give_back(128, 250)
    arena.give_back(a, 100)
    arena.give_back(c, 300)  # merges with both neighbours
    assert arena.free_bytes == 1024 and arena.take(1024) == 0
    arena.give_back(0, 1024)
    view = arena.view
    at = arena.take(4)
    assert at is not None
    view[at:at + 4] = b"span"
    assert bytes(arena.buffer[at:at + 4]) == b"span"
