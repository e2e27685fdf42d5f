"""The spec's JSON API examples, sent verbatim (docs/SPEC.ko.md, header x-api-key: dev-key), land in
the same model as OTLP data; idempotency, per-item errors and validation paths."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ServerProcess

SPEC = (Path(__file__).parents[1] / "docs" / "SPEC.ko.md").read_text()
EXAMPLES = {m.group(1): m.group(2) for m in re.finditer(
    r"curl -X POST http://localhost:8000(\S+) \\\n.*?-d '(.*?)'\n", SPEC, re.S)}
TRACE_1 = "11111111111111111111111111111111"
SPAN_2 = "22222222222222222222222222222222"


@pytest.fixture(scope="module")
def hub(module_server: ServerProcess) -> ServerProcess:
    """A server of its own: the spec's examples use fixed ids."""
    return module_server


def send(hub: ServerProcess, path: str, body: str | None = None, **kw: Any) -> httpx.Response:
    return hub.client.post(path, content=(body if body is not None else EXAMPLES[path]).encode(),
                           headers={"content-type": "application/json"}, **kw)


def test_1_trace_and_spans_verbatim(hub: ServerProcess) -> None:
    r = send(hub, "/api/v1/ingest/traces")
    assert r.status_code == 200, r.text
    assert r.json()["trace_id"] == TRACE_1
    assert r.json()["results"] == [{"index": 0, "span_id": SPAN_2, "status": "created"}]
    got = hub.client.get("/api/v1/traces/11111111-1111-1111-1111-111111111111").json()
    t = got["trace"]
    assert (t["status"], t["model"], t["environment"], t["user_id"], t["session_id"]) == (
        "running", "gpt-4.1-mini", "prod", "u-1", "s-1")
    assert (t["input_text"], t["output_text"], t["attributes"]) == ("질문", "답변", {"team": "search"})
    assert t["user_review_passed"] is True and t["start_time"] == "2026-02-07T10:00:00.000000Z"
    assert t["has_open_spans"] is True and t["open_span_count"] == 1 and t["completion_rate"] == 0.0
    (span,) = got["spans"]
    assert (span["span_id"], span["name"], span["span_type"], span["status"]) == (SPAN_2, "root", "llm", "running")
    assert span["model"] == "gpt-4.1-mini" and span["end_time"] is None


def test_1_retry_is_a_no_op_that_answers_the_first_result(hub: ServerProcess) -> None:
    first = send(hub, "/api/v1/ingest/traces")
    again = send(hub, "/api/v1/ingest/traces")
    assert again.status_code == 200
    assert again.json()["results"][0] == {"index": 0, "span_id": SPAN_2, "status": "created", "replayed": True}
    assert first.json()["results"][0]["status"] == "created"
    assert len(hub.client.get(f"/api/v1/traces/{TRACE_1}").json()["spans"]) == 1


def test_same_key_other_body_is_409(hub: ServerProcess) -> None:
    body = json.loads(EXAMPLES["/api/v1/ingest/traces"])
    body["spans"][0]["name"] = "renamed"
    r = send(hub, "/api/v1/ingest/traces", json.dumps(body))
    assert r.status_code == 409
    err = r.json()["results"][0]["error"]
    assert err["status"] == 409 and "trace-111-root-start" in err["message"]
    assert hub.client.get(f"/api/v1/traces/{TRACE_1}").json()["spans"][0]["name"] == "root"


def test_2_span_events_verbatim_with_amendment_merged(hub: ServerProcess) -> None:
    send(hub, "/api/v1/ingest/traces")
    r = send(hub, "/api/v1/ingest/spans")
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["created", "created"]
    assert send(hub, "/api/v1/ingest/spans").json()["summary"]["replayed"] == 2
    span = hub.client.get(f"/api/v1/traces/{TRACE_1}").json()["spans"][0]
    logs = [e for e in span["events"] if e["event_type"] == "LOG"]
    assert len(logs) == 1 and logs[0]["attributes"] == {"message": "tool started"}
    assert logs[0]["time"] == "2026-02-07T10:00:05.000000Z"
    assert span["attributes"] == {"model": "gpt-4.1-mini", "retry": 1}  # merged read view
    assert span["amendments"] == [{"time": "2026-02-07T10:00:10.000000Z",
                                   "patch": {"attributes": {"retry": 1}}}]
    assert len([e for e in span["events"] if e["event_type"] == "AMENDMENT"]) == 1  # history kept


def test_2_1_langgraph_run_verbatim(hub: ServerProcess) -> None:
    r = send(hub, "/api/v1/ingest/langgraph-runs")
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["created", "created"]
    got = hub.client.get("/api/v1/traces/33333333-3333-3333-3333-333333333333").json()
    t = got["trace"]
    assert (t["name"], t["status"], t["model"], t["environment"]) == ("agent_router", "success",
                                                                      "gpt-4.1-mini", "prod")
    assert t["duration_ms"] == 4000.0 and t["span_count"] == 3 and not t["has_open_spans"]
    spans = {s["name"]: s for s in got["spans"]}
    run, planner, retrieval = spans["agent_router"], spans["planner"], spans["retrieval"]
    assert run["parent_span_id"] is None and run["span_type"] == "chain"
    assert planner["parent_span_id"] == run["span_id"] and retrieval["parent_span_id"] == planner["span_id"]
    assert planner["span_type"] == retrieval["span_type"] == "node"
    assert planner["langgraph"] == {"graph_name": "agent_router", "node_name": "planner", "step": None}
    assert json.loads(planner["input_text"]) == {"question": "..."}
    assert json.loads(retrieval["output_text"]) == {"docs": 5}
    assert retrieval["attributes"]["langgraph.node.type"] == "tool"
    assert retrieval["duration_ms"] == 2000.0
    assert [n["name"] for n in got["tree"]] == ["agent_router"]
    assert send(hub, "/api/v1/ingest/langgraph-runs").json()["summary"]["replayed"] == 2
    assert hub.client.get("/api/v1/traces", params={"name": "agent_router"}).json()["total"] == 1


def test_3_eval_verbatim_and_list_filters(hub: ServerProcess) -> None:
    send(hub, "/api/v1/ingest/traces")
    r = send(hub, "/api/v1/evals")
    assert r.status_code == 201, r.text
    again = send(hub, "/api/v1/evals")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == r.json()
    evals = hub.client.get(f"/api/v1/traces/{TRACE_1}").json()["evals"]
    assert len(evals) == 1
    assert {k: evals[0][k] for k in ("eval_name", "eval_model", "score", "passed", "metadata",
                                      "user_review_passed")} == {
        "eval_name": "faithfulness", "eval_model": "gpt-4.1-mini", "score": 0.78, "passed": True,
        "metadata": {"prompt_version": "v2"}, "user_review_passed": True}
    listed = lambda **p: [t["trace_id"] for t in hub.client.get("/api/v1/traces", params=p).json()["items"]]  # noqa: E731
    assert TRACE_1 in listed(eval_name="faithfulness", passed="true")
    assert TRACE_1 not in listed(eval_name="faithfulness", passed="false")
    assert TRACE_1 not in listed(eval_name="toxicity")
    assert TRACE_1 in listed(user_review_passed="true")


def test_4_list_query_from_the_spec(hub: ServerProcess) -> None:
    send(hub, "/api/v1/ingest/traces")
    send(hub, "/api/v1/ingest/spans")
    r = hub.client.get("/api/v1/traces?status=running&model=gpt-4.1-mini&search=tool&page=1&page_size=20")
    assert r.status_code == 200
    body = r.json()
    assert (body["page"], body["page_size"]) == (1, 20)
    assert TRACE_1 in [t["trace_id"] for t in body["items"]]  # found through the LOG "tool started"
    assert hub.client.get("/api/v1/traces", params={"search": "질문"}).json()["total"] >= 1


def test_lifecycle_events_open_and_close_spans(hub: ServerProcess) -> None:
    tid, sid, child = uuid.uuid4().hex, secrets.token_hex(8), secrets.token_hex(8)
    events = [
        {"trace_id": tid, "span_id": sid, "event_type": "START", "event_time": "2026-03-01T00:00:00Z",
         "payload": {"name": "agent", "span_type": "agent", "input_text": "hello",
                     "attributes": {"openinference.span.kind": "TOOL", "tool.name": "not this one"}}},
        {"trace_id": tid, "span_id": child, "event_type": "START", "event_time": "2026-03-01T00:00:01Z",
         "payload": {"name": "search", "span_type": "tool", "parent_span_id": sid,
                     "attributes": {"gen_ai.tool.name": "web_search"}}},
    ]
    assert send(hub, "/api/v1/ingest/spans", json.dumps({"events": events})).status_code == 200
    t = hub.client.get(f"/api/v1/traces/{tid}").json()["trace"]
    assert (t["status"], t["open_span_count"], t["span_count"]) == ("running", 2, 2)
    ends = [{"trace_id": tid, "span_id": child, "event_type": "ERROR", "event_time": "2026-03-01T00:00:02Z",
             "payload": {"message": "search backend down"}},
            {"trace_id": tid, "span_id": sid, "event_type": "END", "event_time": "2026-03-01T00:00:03Z",
             "payload": {"output_text": "bye"}}]
    assert send(hub, "/api/v1/ingest/spans", json.dumps({"events": ends})).status_code == 200
    got = hub.client.get(f"/api/v1/traces/{tid}").json()
    t = got["trace"]
    assert (t["status"], t["open_span_count"], t["error_count"], t["duration_ms"]) == ("error", 0, 1, 3000.0)
    spans = {s["name"]: s for s in got["spans"]}
    assert spans["search"]["status"] == "error" and spans["search"]["status_message"] == "search backend down"
    assert spans["agent"]["output_text"] == "bye" and t["input_text"] == "hello"
    # The type stated wins over the attributes', and the tool name goes with it.
    assert (spans["agent"]["span_type"], spans["agent"]["tool_name"]) == ("agent", None)
    assert (spans["search"]["span_type"], spans["search"]["tool_name"]) == ("tool", "web_search")


def test_end_before_start_waits_for_the_span(hub: ServerProcess) -> None:
    tid, sid = uuid.uuid4().hex, secrets.token_hex(8)
    end = {"trace_id": tid, "span_id": sid, "event_type": "END", "event_time": "2026-03-01T00:00:05Z"}
    start = {"trace_id": tid, "span_id": sid, "event_type": "START", "event_time": "2026-03-01T00:00:00Z",
             "payload": {"name": "late"}}
    send(hub, "/api/v1/ingest/spans", json.dumps({"events": [end]}))
    send(hub, "/api/v1/ingest/spans", json.dumps({"events": [start]}))
    t = hub.client.get(f"/api/v1/traces/{tid}").json()["trace"]
    assert (t["status"], t["has_open_spans"], t["duration_ms"]) == ("success", False, 5000.0)


def test_missing_parent_refused_unless_allowed(hub: ServerProcess) -> None:
    tid = uuid.uuid4().hex
    done = {"start_time": "2026-03-01T00:00:00Z", "end_time": "2026-03-01T00:00:01Z"}
    orphan = {"span_id": secrets.token_hex(8), "name": "child", "parent_span_id": secrets.token_hex(8), **done}
    ok = {"span_id": secrets.token_hex(8), "name": "fine", **done}
    body = {"trace": {"trace_id": tid}, "spans": [orphan, ok]}
    r = send(hub, "/api/v1/ingest/traces", json.dumps(body))
    assert r.status_code == 207
    first, second = r.json()["results"]
    assert first["status"] == "error" and first["error"]["path"] == "spans[0].parent_span_id"
    assert second["status"] == "created"
    assert [s["name"] for s in hub.client.get(f"/api/v1/traces/{tid}").json()["spans"]] == ["fine"]
    body["allow_missing_parent"] = True
    r = send(hub, "/api/v1/ingest/traces", json.dumps(body))
    assert [x["status"] for x in r.json()["results"]] == ["created", "duplicate"]
    t = hub.client.get(f"/api/v1/traces/{tid}").json()["trace"]
    assert t["span_count"] == 2 and t["open_span_count"] == 1  # the awaited parent


def test_bad_items_are_reported_by_path_and_lose_nothing_else(hub: ServerProcess) -> None:
    tid = uuid.uuid4().hex
    body = {"trace": {"trace_id": tid}, "allow_missing_parent": True, "spans": [
        {"span_id": secrets.token_hex(8), "name": "good"},
        {"span_id": secrets.token_hex(8), "name": "bad-time", "start_time": "yesterday"},
        {"span_id": secrets.token_hex(8)},
        {"span_id": "zz-not-an-id", "name": "bad-id"},
        {"span_id": secrets.token_hex(8), "name": "bad-tokens", "input_tokens": -1},
    ]}
    r = send(hub, "/api/v1/ingest/traces", json.dumps(body))
    assert r.status_code == 207
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["created", "error", "error", "error", "error"]
    assert [x["error"]["path"] for x in results[1:]] == [
        "spans[1].start_time", "spans[2]", "spans[3].span_id", "spans[4].input_tokens"]
    assert "name" in results[2]["error"]["message"]
    assert [s["name"] for s in hub.client.get(f"/api/v1/traces/{tid}").json()["spans"]] == ["good"]


@pytest.mark.parametrize("path, body, field", [
    ("/api/v1/ingest/traces", {"spans": []}, "body"),
    ("/api/v1/ingest/traces", {"trace": {"trace_id": 5}}, "trace.trace_id"),
    ("/api/v1/ingest/spans", {"events": []}, "events"),
    ("/api/v1/evals", {"trace_id": TRACE_1, "eval_name": "x", "score": "high"}, "score"),
    ("/api/v1/evals", {"trace_id": TRACE_1}, "body"),
    ("/api/v1/ingest/langgraph-runs", {"trace_id": TRACE_1, "run_id": "r"}, "body"),
])
def test_invalid_bodies_are_problem_json_with_the_path(hub: ServerProcess, path: str,
                                                       body: dict[str, Any], field: str) -> None:
    r = send(hub, path, json.dumps(body))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert field in [e["path"] for e in r.json()["errors"]]


def test_unparseable_and_unauthenticated(hub: ServerProcess) -> None:
    assert send(hub, "/api/v1/ingest/traces", "{nope").status_code == 400
    r = httpx.post(hub.url + "/api/v1/evals", json={"trace_id": TRACE_1, "eval_name": "x"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


def test_gzip_bodies_and_size_limit(hub: ServerProcess) -> None:
    import gzip

    body = gzip.compress(json.dumps({"trace_id": TRACE_1, "eval_name": "gz", "score": 1}).encode())
    r = hub.client.post("/api/v1/evals", content=body,
                        headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 201, r.text
    huge = gzip.compress(b"[" + b"0," * (5 * 1024 * 1024) + b"0]")
    r = hub.client.post("/api/v1/ingest/traces", content=huge,
                        headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"


def test_integers_beyond_64_bits_read_back_exactly(hub: ServerProcess) -> None:
    tid, big = secrets.token_hex(16), 2**70 + 1
    body = {"trace": {"trace_id": tid, "attributes": {"budget": big}},
            "spans": [{"span_id": secrets.token_hex(8), "trace_id": tid, "name": "root",
                       "start_time": "2026-02-07T10:00:01Z", "attributes": {"seed": big}}]}
    r = send(hub, "/api/v1/ingest/traces", json.dumps(body))
    assert r.status_code == 200, r.text
    got = hub.client.get(f"/api/v1/traces/{tid}")
    assert got.status_code == 200, got.text
    assert got.json()["trace"]["attributes"] == {"budget": big}
    assert got.json()["spans"][0]["attributes"]["seed"] == big
    listed = hub.client.get("/api/v1/traces", params={"page_size": 200}).json()["items"]
    assert [t["attributes"] for t in listed if t["trace_id"] == tid] == [{"budget": big}]
