"""When a trace is complete, and the one view of it: remote parents (OTLP span flags), parents that
never come (the grace period), parent cycles, 10,000-deep chains, AMENDMENTs in every view, and
LangGraph runs sent without times."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Callable

import httpx
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from conftest import BACKENDS, ServerProcess
from otlp_helpers import NS, post

GRACE_S = 2


def _detail(server: ServerProcess, trace_id: str) -> dict[str, Any]:
    r = server.client.get(f"/api/v1/traces/{trace_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _listed(server: ServerProcess, **params: Any) -> list[str]:
    r = server.client.get("/api/v1/traces", params=params)
    assert r.status_code == 200, r.text
    return [t["trace_id"] for t in r.json()["items"]]


def _send(server: ServerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    r = server.client.post(path, json=body)
    assert r.status_code == 200, r.text
    return r


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


# -- remote parents ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport, root_fails", [("grpc", False), ("http", True)])
def test_a_service_that_continues_a_callers_trace_is_complete(server: ServerProcess, transport: str,
                                                              root_fails: bool) -> None:
    headers = {"x-api-key": server.api_key}
    exporter = (GrpcExporter(endpoint=server.otlp_grpc, insecure=True, headers=headers) if transport == "grpc"
                else HttpExporter(endpoint=server.otlp_http + "/v1/traces", headers=headers))
    env = "svc-" + secrets.token_hex(4)
    provider = TracerProvider(resource=Resource.create({"deployment.environment.name": env}))
    # One export per span, child first: the shape that left the trace named after the child.
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("service")
    caller = SpanContext(trace_id=secrets.randbits(128), span_id=secrets.randbits(64), is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with tracer.start_as_current_span("POST /chat", otel_trace.set_span_in_context(NonRecordingSpan(caller)),
                                      kind=otel_trace.SpanKind.SERVER) as root:
        with tracer.start_as_current_span("chat gpt-4o", attributes={"gen_ai.operation.name": "chat"}):
            pass
        if root_fails:
            root.set_status(Status(StatusCode.ERROR, "upstream model failed"))
    provider.shutdown()
    trace_id, root_id = format(caller.trace_id, "032x"), format(root.get_span_context().span_id, "016x")

    got = server.wait_trace(trace_id, 2)
    t = got["trace"]
    assert (t["name"], t["root_span_id"], t["status"]) == ("POST /chat", root_id, "error" if root_fails else "success")
    assert (t["has_open_spans"], t["open_span_count"], t["completion_rate"]) == (False, 0, 1.0)
    spans = {s["name"]: s for s in got["spans"]}
    assert spans["POST /chat"]["parent_remote"] is True and spans["chat gpt-4o"]["parent_remote"] is False
    assert [(n["name"], n.get("parent_remote")) for n in got["tree"]] == [("POST /chat", True)]
    assert [c["name"] for c in got["tree"][0]["children"]] == ["chat gpt-4o"]
    assert _listed(server, environment=env, has_open_spans="false") == [trace_id]
    assert _listed(server, environment=env, status="running") == []


def test_otlp_json_flags_mark_a_remote_parent(server: ServerProcess) -> None:
    trace_id, root_id, child_id = secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8)
    common = {"traceId": trace_id, "kind": 2, "startTimeUnixNano": str(NS), "endTimeUnixNano": str(NS + 9)}
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {**common, "spanId": child_id, "parentSpanId": root_id, "name": "SELECT", "flags": 0x100},
        {**common, "spanId": root_id, "parentSpanId": secrets.token_hex(8), "name": "GET /orders", "flags": 0x300},
    ]}]}]}
    r = httpx.post(server.otlp_http + "/v1/traces", content=json.dumps(body),
                   headers={"content-type": "application/json", "x-api-key": server.api_key})
    assert r.status_code == 200, r.text
    t = _detail(server, trace_id)["trace"]
    assert (t["name"], t["root_span_id"], t["status"], t["has_open_spans"]) == ("GET /orders", root_id,
                                                                                "success", False)


# -- parents that never come ---------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def graced(request: pytest.FixtureRequest, server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    """A server that waits GRACE_S for a parent."""
    return server_factory(request.param, env={"TRACEHUB_MISSING_PARENT_GRACE_S": str(GRACE_S)})


def test_a_parent_that_never_comes_is_given_up_after_the_grace(graced: ServerProcess) -> None:
    env = "grace-" + secrets.token_hex(4)
    gone, late = secrets.token_hex(16), secrets.token_hex(16)
    caller = secrets.token_hex(8)  # the parent named but never sent (no flags in the JSON API)
    for trace_id, child_end in ((gone, "2026-03-01T00:00:02Z"), (late, None)):
        root, child = secrets.token_hex(8), secrets.token_hex(8)
        _send(graced, "/api/v1/ingest/traces", {
            "trace": {"trace_id": trace_id, "environment": env}, "allow_missing_parent": True, "spans": [
                {"span_id": child, "parent_span_id": root, "name": "chat gpt-4o", "span_type": "llm",
                 "start_time": "2026-03-01T00:00:01Z",
                 **({"end_time": child_end, "status": "success"} if child_end else {"status": "running"})},
                {"span_id": root, "parent_span_id": caller, "name": "POST /chat",
                 "start_time": "2026-03-01T00:00:00Z", "end_time": "2026-03-01T00:00:03Z", "status": "success"},
            ]})
    t = _detail(graced, gone)["trace"]
    assert (t["status"], t["has_open_spans"], t["open_span_count"], t["parents_not_received"]) == (
        "running", True, 1, 0)
    assert t["name"] == "POST /chat"  # the top span, not the child stored before it
    assert sorted(_listed(graced, environment=env, status="running")) == sorted([gone, late])

    deadline = time.monotonic() + 10
    while _detail(graced, gone)["trace"]["status"] == "running":
        assert time.monotonic() < deadline, "the missing parent was never given up"
        time.sleep(0.1)
    got = _detail(graced, gone)
    t = got["trace"]
    assert (t["status"], t["has_open_spans"], t["open_span_count"], t["completion_rate"]) == (
        "success", False, 0, 1.0)
    assert (t["parents_not_received"], t["name"], t["root_span_id"]) == (1, "POST /chat", None)
    assert [(n["name"], n.get("parent_not_received")) for n in got["tree"]] == [("POST /chat", True)]
    # The list's filters say the same as the trace: a running span is never given up.
    assert _listed(graced, environment=env, status="running") == [late]
    assert _listed(graced, environment=env, status="success") == [gone]
    assert _listed(graced, environment=env, has_open_spans="false") == [gone]
    assert _listed(graced, environment=env, has_open_spans="true") == [late]
    assert _detail(graced, late)["trace"]["open_span_count"] == 2

    # The parent arriving after all still fits in: it becomes the root.
    _send(graced, "/api/v1/ingest/traces", {"trace": {"trace_id": gone}, "spans": [
        {"span_id": caller, "name": "gateway", "start_time": "2026-03-01T00:00:00Z",
         "end_time": "2026-03-01T00:00:04Z", "status": "success"}]})
    got = _detail(graced, gone)
    t = got["trace"]
    assert (t["name"], t["root_span_id"], t["parents_not_received"], t["span_count"]) == ("gateway", caller, 0, 3)
    assert [n["name"] for n in got["tree"]] == ["gateway"] and "parent_not_received" not in got["tree"][0]


def test_the_stats_give_a_parent_up_as_the_list_does(graced: ServerProcess) -> None:
    """The dashboard's open traces, completion rate and latency follow the same grace rule."""
    now = time.time_ns()
    trace_id, root = secrets.token_hex(16), secrets.token_hex(8)
    _send(graced, "/api/v1/ingest/traces", {
        "trace": {"trace_id": trace_id}, "allow_missing_parent": True, "spans": [
            {"span_id": root, "parent_span_id": secrets.token_hex(8), "name": "POST /chat",
             "start_time": _iso(now - 2 * 10**9), "end_time": _iso(now - 10**9), "status": "success"}]})

    def overview() -> dict[str, Any]:
        r = graced.client.get("/api/v1/traces/stats/overview", params={"last_hours": 1})
        assert r.status_code == 200, r.text
        return dict(r.json())

    # Other tests on this server send traces of March 2026, outside the window.
    stats = overview()
    assert (stats["trace_count"], stats["open_traces"], stats["latency_ms"]["p50"]) == (1, 1, 0.0)
    assert stats["completion_rate"] == 0.5
    deadline = time.monotonic() + 10
    while _detail(graced, trace_id)["trace"]["has_open_spans"]:
        assert time.monotonic() < deadline, "the missing parent was never given up"
        time.sleep(0.1)
    stats = overview()
    assert (stats["open_traces"], stats["completion_rate"]) == (0, 1.0)
    assert stats["latency_ms"]["p50"] == pytest.approx(1000.0, abs=1)


# -- parent cycles -------------------------------------------------------------------------------


def test_parent_cycles_and_self_parents_are_shown_and_complete(server: ServerProcess) -> None:
    looped, selfish = secrets.token_hex(16), secrets.token_hex(16)
    a, b, c, s = (secrets.token_hex(8) for _ in range(4))

    def span(span_id: str, parent: str, second: int) -> dict[str, Any]:
        return {"span_id": span_id, "parent_span_id": parent, "name": f"span-{span_id[:4]}",
                "start_time": f"2026-03-01T00:00:0{second}Z", "end_time": "2026-03-01T00:00:09Z",
                "status": "success"}

    _send(server, "/api/v1/ingest/traces", {"trace": {"trace_id": looped},
                                            "spans": [span(a, b, 0), span(b, a, 1), span(c, a, 2)]})
    _send(server, "/api/v1/ingest/traces", {"trace": {"trace_id": selfish}, "spans": [span(s, s, 0)]})

    got = _detail(server, looped)
    assert (got["trace"]["status"], got["trace"]["has_open_spans"]) == ("success", False)
    [top] = got["tree"]
    assert (top["span_id"], top["cycle"], top["depth"]) == (a, True, 0)
    assert [(n["span_id"], n["depth"]) for n in top["children"]] == [(b, 1), (c, 1)]
    assert {e["span_id"]: e["depth"] for e in got["timeline"]} == {a: 0, b: 1, c: 1}

    got = _detail(server, selfish)
    assert (got["trace"]["status"], got["trace"]["root_span_id"], got["trace"]["name"]) == (
        "success", s, f"span-{s[:4]}")
    assert [(n["span_id"], n["cycle"]) for n in got["tree"]] == [(s, True)]


# -- deep chains ---------------------------------------------------------------------------------


def test_a_10000_deep_chain_reads_back(server: ServerProcess) -> None:
    n = 10_000
    trace_id = secrets.token_bytes(16)
    ids = [i.to_bytes(8, "big") for i in range(1, n + 1)]
    spans = [Span(trace_id=trace_id, span_id=ids[i], parent_span_id=ids[i - 1] if i else b"", name=f"step-{i}",
                  start_time_unix_nano=NS + i, end_time_unix_nano=NS + 2 * n - i) for i in range(n)]
    body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    assert post(server, body.SerializeToString()).status_code == 200

    got = _detail(server, trace_id.hex())
    assert got["trace"]["status"] == "success" and got["trace"]["span_count"] == n
    assert [e["depth"] for e in got["timeline"]] == list(range(n))
    tree = got["tree"]
    assert len(tree) == n // 100  # an entry per 100 levels
    node = tree[0]
    for level in range(100):  # nested as usual down to the cut
        assert (node["name"], node["depth"]) == (f"step-{level}", level)
        if level < 99:
            [node] = node["children"]
    assert node["children"] == []
    for k, entry in enumerate(tree[1:], 1):
        assert (entry["depth"], entry["continued_from"]) == (100 * k, ids[100 * k - 1].hex())


# -- amendments ----------------------------------------------------------------------------------


def test_an_amendment_is_the_one_view_everywhere(server: ServerProcess) -> None:
    env = "amend-" + secrets.token_hex(4)
    trace_id, root = secrets.token_hex(16), secrets.token_hex(8)
    _send(server, "/api/v1/ingest/traces", {"trace": {"trace_id": trace_id, "environment": env}, "spans": [
        {"span_id": root, "name": "root", "span_type": "llm", "input_tokens": 0, "output_text": "first answer",
         "start_time": "2026-03-01T00:00:00Z", "end_time": "2026-03-01T00:00:01Z", "status": "success"}]})
    marker = "amended-" + secrets.token_hex(4)
    _send(server, "/api/v1/ingest/spans", {"events": [
        {"trace_id": trace_id, "span_id": root, "event_type": "AMENDMENT", "event_time": "2026-03-01T00:00:05Z",
         "payload": {"patch": {"name": "root-renamed", "input_tokens": 100, "output_text": f"{marker} answer"}}},
        {"trace_id": trace_id, "span_id": root, "event_type": "AMENDMENT", "event_time": "2026-03-01T00:00:06Z",
         "payload": {"patch": {"status": "error", "cost_usd": 0.25}}},
    ]})
    got = _detail(server, trace_id)
    t = got["trace"]
    assert (t["name"], t["input_tokens"], t["total_tokens"], t["cost_usd"]) == ("root-renamed", 100, 100, 0.25)
    assert (t["output_text"], t["status"], t["error_count"]) == (f"{marker} answer", "error", 1)
    [span] = got["spans"]
    assert (span["name"], span["input_tokens"], span["status"], len(span["amendments"])) == (
        "root-renamed", 100, "error", 2)
    assert (got["tree"][0]["name"], got["tree"][0]["status"]) == ("root-renamed", "error")
    assert (got["timeline"][0]["name"], got["timeline"][0]["status"]) == ("root-renamed", "error")
    [item] = server.client.get("/api/v1/traces", params={"environment": env}).json()["items"]
    assert (item["name"], item["input_tokens"], item["status"]) == ("root-renamed", 100, "error")
    assert _listed(server, environment=env, name="root-renamed") == [trace_id]
    assert _listed(server, environment=env, search=marker) == [trace_id]
    assert _listed(server, environment=env, status="error") == [trace_id]


def test_an_amendment_sent_before_its_span_applies_when_it_arrives(server: ServerProcess) -> None:
    trace_id, root, llm = secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8)
    _send(server, "/api/v1/ingest/spans", {"events": [
        {"trace_id": trace_id, "span_id": llm, "event_type": "AMENDMENT", "event_time": "2026-03-01T00:00:05Z",
         "payload": {"patch": {"input_tokens": 40, "output_tokens": 2, "model": "gpt-4o"}}}]})
    _send(server, "/api/v1/ingest/traces", {"trace": {"trace_id": trace_id}, "spans": [
        {"span_id": root, "name": "agent", "start_time": "2026-03-01T00:00:00Z",
         "end_time": "2026-03-01T00:00:02Z", "status": "success"},
        {"span_id": llm, "parent_span_id": root, "name": "chat", "span_type": "llm", "input_tokens": 1,
         "start_time": "2026-03-01T00:00:01Z", "end_time": "2026-03-01T00:00:02Z", "status": "success"}]})
    got = _detail(server, trace_id)
    t = got["trace"]
    assert (t["input_tokens"], t["output_tokens"], t["model"]) == (40, 2, "gpt-4o")
    spans = {s["name"]: s for s in got["spans"]}
    assert (spans["chat"]["input_tokens"], spans["chat"]["total_tokens"]) == (40, 42)


# -- LangGraph runs ------------------------------------------------------------------------------


def test_a_finished_langgraph_run_without_times_takes_them_from_its_nodes(server: ServerProcess) -> None:
    trace_id, empty = secrets.token_hex(16), secrets.token_hex(16)
    start = time.time_ns() - 10_000_000_000
    _send(server, "/api/v1/ingest/langgraph-runs", {
        "trace_id": trace_id, "run_id": "r-1", "graph_name": "router", "status": "success", "nodes": [
            {"node_id": "plan", "start_time": _iso(start), "end_time": _iso(start + 1_000_000_000)},
            {"node_id": "act", "parent_node_id": "plan", "start_time": _iso(start + 500_000_000),
             "end_time": _iso(start + 3_000_000_000)}]})
    got = _detail(server, trace_id)
    t = got["trace"]
    assert (t["status"], t["has_open_spans"], t["duration_ms"]) == ("success", False, 3000.0)
    run = next(s for s in got["spans"] if s["parent_span_id"] is None)
    assert (run["start_time"], run["end_time"]) == (t["start_time"], t["end_time"])

    _send(server, "/api/v1/ingest/langgraph-runs", {"trace_id": empty, "run_id": "r-2", "graph_name": "router",
                                                    "status": "success"})
    t = _detail(server, empty)["trace"]
    assert (t["status"], t["has_open_spans"], t["duration_ms"]) == ("success", False, 0.0)
