"""Automatic decisions: a trace exported with the real OTLP exporter is decided by the active policy
once it completed and settled (judge span, decision, trace list, case), exactly once per trace,
also after kill -9 and with two server processes on one PostgreSQL database."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Span, set_span_in_context

from conftest import BACKENDS, ServerProcess
from tracehub.seed import DEFAULT_POLICY

DEFAULT_SAFETY = DEFAULT_POLICY  # the spec's example 6 (test_policies checks it is)
PII_QUESTION = "Please reset my password, my e-mail is jane.doe@example.com"


def _activate(server: ServerProcess) -> None:
    r = server.client.post("/api/v1/policies", json=DEFAULT_SAFETY)
    assert r.status_code in (200, 201), r.text


def _provider(server: ServerProcess, api_key: str | None = None) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=server.otlp_http + "/v1/traces", headers={"x-api-key": api_key or server.api_key})))
    return provider


def _trace_id(span: Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def _export_pii_trace(server: ServerProcess, api_key: str | None = None) -> str:
    provider = _provider(server, api_key)
    tracer = provider.get_tracer("test.auto")
    with tracer.start_as_current_span("support.request", attributes={"input.value": PII_QUESTION}) as root:
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}):
            pass
        root.set_attribute("output.value", "I sent you a reset link.")
        trace_id = _trace_id(root)
    provider.shutdown()
    return trace_id


def _auto(detail: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in detail["decisions"] if d["source"] == "auto"]


def _wait_decided(server: ServerProcess, trace_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    detail: Any = None
    while time.monotonic() < deadline:
        r = server.client.get(f"/api/v1/traces/{trace_id}")
        if r.status_code == 200:
            detail = r.json()
            if _auto(detail):
                return dict(detail)
        time.sleep(0.05)
    raise AssertionError(f"trace {trace_id} was not decided within {timeout} s: {detail}")


def _auto_decisions(database_url: str) -> dict[str, int]:
    """Automatic decisions per trace, counted in the database (active versions, not shadow)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT trace_id, count(*) FROM trace_decisions WHERE source = 'auto' AND NOT shadow"
                " GROUP BY trace_id")).all()
    finally:
        engine.dispose()
    return {str(t): int(n) for t, n in rows}


@pytest.mark.parametrize("backend", BACKENDS)
def test_pii_trace_is_decided_after_it_settles(server_factory: Callable[..., ServerProcess], backend: str) -> None:
    server = server_factory(backend, env={"TRACEHUB_DECISION_SETTLE_S": "1.5"})
    _activate(server)
    trace_id = _export_pii_trace(server)
    exported = time.monotonic()
    server.wait_trace(trace_id, 2)
    assert not _auto(server.client.get(f"/api/v1/traces/{trace_id}").json()), "decided before it settled"

    detail = _wait_decided(server, trace_id, 1.5 + 10)
    assert time.monotonic() - exported >= 1.4
    [decision] = _auto(detail)
    assert (decision["action"], decision["reason_code"], decision["severity"]) == ("ESCALATE", "PII_DETECTED", "high")
    assert decision["policy_name"] == "default-safety" and decision["policy_version"] == 1
    judge = [s for s in detail["spans"] if s["span_type"] == "judge"]
    assert len(judge) == 1 and judge[0]["trace_id"] == trace_id
    assert detail["trace"]["decision"] == "ESCALATE"
    listed = server.client.get("/api/v1/traces", params={"decision": "ESCALATE"}).json()["items"]
    assert trace_id in [t["trace_id"] for t in listed]
    cases = server.client.get("/api/v1/cases", params={"status": "open"}).json()["items"]
    assert [c["reason_code"] for c in cases if c["trace_id"] == trace_id] == ["PII_DETECTED"]
    metrics = server.client.get("/metrics").text
    assert "tracehub_auto_decisions_total 1.0" in metrics


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_trace_that_keeps_receiving_spans_is_decided_once_after_it_completes(
        server_factory: Callable[..., ServerProcess], backend: str) -> None:
    settle = 2.0
    server = server_factory(backend, env={"TRACEHUB_DECISION_SETTLE_S": str(settle)})
    _activate(server)
    provider = _provider(server)
    tracer = provider.get_tracer("test.auto")
    root = tracer.start_span("agent.run", attributes={"input.value": PII_QUESTION})
    trace_id = _trace_id(root)
    parent = set_span_in_context(root)
    for i in range(6):  # a child every 0.5 s, longer than the settle time, while the root runs
        tracer.start_span(f"step {i}", context=parent).end()
        time.sleep(0.5)
    server.wait_trace(trace_id, 6)
    assert not _auto(server.client.get(f"/api/v1/traces/{trace_id}").json()), "decided while open"
    # The root travels in its own export: the child stored before it waits for it.
    root.end()
    completed = time.monotonic()
    time.sleep(settle / 2)
    tracer.start_span("late step", context=parent).end()  # restarts the settle time
    late = time.monotonic()
    time.sleep(max(0.0, completed + settle + 0.5 - time.monotonic()))
    assert not _auto(server.client.get(f"/api/v1/traces/{trace_id}").json()), "a later span did not restart the wait"
    detail = _wait_decided(server, trace_id, settle + 10)
    assert time.monotonic() - late >= settle - 0.1
    assert len(_auto(detail)) == 1 and len(detail["spans"]) == 1 + 6 + 1 + 1  # root, steps, late, judge
    provider.shutdown()
    time.sleep(1.0)
    assert len(_auto(server.client.get(f"/api/v1/traces/{trace_id}").json())) == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_trace_acknowledged_before_kill_9_is_decided_after_restart(
        server_factory: Callable[..., ServerProcess], database_url_factory: Callable[[str], str],
        backend: str) -> None:
    url = database_url_factory(backend)
    first = server_factory(backend, env={"TRACEHUB_DECISION_SETTLE_S": "5"}, database_url=url)
    _activate(first)
    trace_id = _export_pii_trace(first)
    first.wait_trace(trace_id, 2)
    first.stop(signal.SIGKILL)
    assert _auto_decisions(url) == {}

    second = server_factory(backend, env={"TRACEHUB_DECISION_SETTLE_S": "0.2"}, database_url=url)
    detail = _wait_decided(second, trace_id, 10)
    assert [d["action"] for d in _auto(detail)] == ["ESCALATE"]
    assert _auto_decisions(url) == {trace_id: 1}


def _start_all(servers: list[ServerProcess]) -> None:
    errors: list[BaseException] = []

    def start(server: ServerProcess) -> None:
        try:
            server.start()
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.postgres
def test_two_servers_on_one_postgresql_decide_each_trace_once(
        server_factory: Callable[..., ServerProcess], database_url_factory: Callable[[str], str],
        tmp_path: Path) -> None:
    url = database_url_factory("postgres")
    # Stored with automatic decisions off: both servers then find them all at start, at once.
    ingest = server_factory("postgres", env={"TRACEHUB_DECISIONS": "false", "TRACEHUB_DECISION_SETTLE_S": "0"},
                            database_url=url)
    _activate(ingest)
    trace_ids = []
    provider = _provider(ingest)
    tracer = provider.get_tracer("test.auto")
    for i in range(150):
        with tracer.start_as_current_span(f"request {i}", attributes={
                "input.value": PII_QUESTION if i % 2 else f"question {i}"}) as root:
            trace_ids.append(_trace_id(root))
    provider.shutdown()
    ingest.wait_trace(trace_ids[-1])
    time.sleep(1.0)
    assert _auto_decisions(url) == {}, "TRACEHUB_DECISIONS=false decided"
    ingest.stop()

    env = {"TRACEHUB_DECISION_SETTLE_S": "0"}
    servers = [ServerProcess(url, tmp_path / name, env) for name in ("a", "b")]
    for s in servers:
        s.workdir.mkdir()
    try:
        _start_all(servers)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_auto_decisions(url)) < len(trace_ids):
            time.sleep(0.2)
        time.sleep(1.0)
        assert _auto_decisions(url) == dict.fromkeys(trace_ids, 1), [s.log_text() for s in servers]
        cases = httpx.get(servers[0].url + "/api/v1/cases", params={"status": "open", "page_size": 200},
                          headers={"x-api-key": servers[0].api_key}).json()
        assert cases["total"] == len(trace_ids) // 2
    finally:
        for s in servers:
            if s.proc is not None:
                s.stop()
            s.client.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_trace_completed_by_the_grace_rule_and_projects_without_auto_decide(
        server_factory: Callable[..., ServerProcess], backend: str) -> None:
    server = server_factory(backend, env={"TRACEHUB_DECISION_SETTLE_S": "0.2",
                                          "TRACEHUB_MISSING_PARENT_GRACE_S": "1"})
    _activate(server)
    other = server.cli("keys", "create", "--project", "no-auto").stdout.split()[0]
    other_client = httpx.Client(base_url=server.url, headers={"x-api-key": other}, timeout=30)
    assert other_client.post("/api/v1/policies", json=DEFAULT_SAFETY).status_code in (200, 201)
    r = other_client.patch("/api/v1/project", json={"auto_decide": False})
    assert r.status_code == 200 and r.json()["auto_decide"] is False and r.json()["name"] == "no-auto"
    assert server.client.get("/api/v1/project").json()["auto_decide"] is True  # the other project's
    r = other_client.patch("/api/v1/project", json={"auto_decide": "no"})
    assert r.status_code == 422 and r.json()["errors"][0]["path"] == "auto_decide"

    # Decided through the API before it was stored: its judge span is all the trace holds, and
    # the sweep must not decide it again under the same version.
    by_api = "ab" * 16
    r = server.client.post("/api/v1/decide", json={"trace_id": by_api, "request_payload": {"text": PII_QUESTION}})
    assert r.status_code == 201, r.text

    # A span whose (local) parent never comes: complete only once the grace gives the parent up,
    # which no commit reports; the sweep finds it.
    provider = _provider(server)
    tracer = provider.get_tracer("test.auto")
    root = tracer.start_span("never exported")
    child = tracer.start_span("answer", context=set_span_in_context(root),
                              attributes={"input.value": PII_QUESTION})
    child.end()
    orphan = _trace_id(child)
    skipped = _export_pii_trace(server, other)
    provider.shutdown()

    detail = _wait_decided(server, orphan, 1 + 10)
    assert [d["action"] for d in _auto(detail)] == ["ESCALATE"]
    assert detail["trace"]["status"] == "success"
    assert other_client.get(f"/api/v1/traces/{skipped}").json()["decisions"] == []
    assert [d["source"] for d in server.client.get(f"/api/v1/traces/{by_api}").json()["decisions"]] == ["api"]
    other_client.close()
