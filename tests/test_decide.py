"""`POST /api/v1/decide` through the real server on both databases: the spec's body, the spec's
default-safety policy escalating PII, the judge span in the trace's tree, the decision log in the
trace detail, `traces.decision` and the list filter, the judge cache, idempotency, masking, the
case an ESCALATE opens, the stats and the metrics."""

from __future__ import annotations

import functools
import json
import secrets
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import sqlalchemy as sa

from conftest import Project, ServerProcess, own_project
from tracehub.records import Batch, TraceRecord
from tracehub.seed import DEFAULT_POLICY
from tracehub.store import db
from tracehub.store.schema import cases, judge_cache, notifications, traces, webhook_endpoints
from tracehub.store.writer import QueueFull, Transaction, Writer

EMAIL = "kim.minsu@example.com"
DEFAULT_SAFETY = DEFAULT_POLICY  # the spec's example 6 (test_policies checks it is)
# The spec's example 7, as written.
SPEC_DECIDE: dict[str, Any] = {
    "trace_id": "11111111-1111-1111-1111-111111111111",
    "request_payload": {"safety": {"content_filter": "ok"}},
    "response_payload": {"tokens": 512, "latency_ms": 900, "model": "gpt-4.1-mini"},
    "idempotency_key": "decide-1",
}


@pytest.fixture
def project(server: ServerProcess) -> Iterator[Project]:
    """A project of its own, so its policy and counts are the test's alone; decided by /decide only."""
    with own_project(server, "decide", auto_decide=False) as made:
        yield made


def _activate_default_safety(p: Project) -> None:
    r = p.client.post("/api/v1/policies", json=DEFAULT_SAFETY)
    assert r.status_code in (200, 201), r.text


def _ingest_trace(p: Project, input_text: str, output_text: str = "Sure, noted.") -> tuple[str, str]:
    trace_id, root = secrets.token_hex(16), secrets.token_hex(8)
    start = time.time() - 60
    t = {ms: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start)) + f".{ms:03d}Z" for ms in (0, 100, 800, 900)}
    r = p.client.post("/api/v1/ingest/traces", json={
        "trace": {"trace_id": trace_id, "name": "chat-request", "input_text": input_text,
                  "output_text": output_text, "model": "gpt-4.1-mini", "start_time": t[0], "end_time": t[900]},
        "spans": [{"span_id": root, "name": "chat-request", "span_type": "chain",
                   "start_time": t[0], "end_time": t[900],
                   "status": "success"},
                  {"span_id": secrets.token_hex(8), "parent_span_id": root, "name": "llm", "span_type": "llm",
                   "start_time": t[100], "end_time": t[800],
                   "status": "success", "input_tokens": 40, "output_tokens": 12}]})
    assert r.status_code == 200, r.text
    return trace_id, root


def _all_nodes(tree: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str | None]]:
    stack: list[tuple[dict[str, Any], str | None]] = [(n, None) for n in tree]
    while stack:
        node, parent = stack.pop()
        yield node, parent
        stack.extend((c, node["span_id"]) for c in node["children"])


def test_spec_body_as_written_without_a_policy(project: Project) -> None:
    r = project.client.post("/api/v1/decide", json=SPEC_DECIDE)
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["trace_id"] == "11111111111111111111111111111111"
    assert (d["action"], d["reason_code"], d["severity"]) == ("ALLOW_ANSWER", "NO_ACTIVE_POLICY", "low")
    assert d["policy_name"] is None and d["policy_version"] is None and d["rule"] is None
    assert d["judge"] == "heuristic" and d["judge_model"] is None and d["cached"] is False
    assert len(d["decision_id"]) == 32 and len(d["input_hash"]) == 64 and d["latency_ms"] >= 0
    assert d["trace_found"] is False and d["signals"]["pii"] is False and d["created_at"].endswith("Z")
    # A trace that was not stored gets a row whose root is the judge span, so it is found.
    detail = project.client.get(f"/api/v1/traces/{SPEC_DECIDE['trace_id']}").json()
    assert detail["trace"]["decision"] == "ALLOW_ANSWER"
    assert [s["span_type"] for s in detail["spans"]] == ["judge"]
    assert detail["trace"]["root_span_id"] == d["judge_span_id"]
    assert [x["decision_id"] for x in detail["decisions"]] == [d["decision_id"]]


def test_pii_escalates_by_the_default_safety_policy(project: Project, server: ServerProcess) -> None:
    _activate_default_safety(project)
    trace_id, root = _ingest_trace(project, f"My e-mail is {EMAIL}, please call me back.")
    before = project.client.get(f"/api/v1/traces/{trace_id}").json()["trace"]

    r = project.client.post("/api/v1/decide", json={"trace_id": trace_id})
    assert r.status_code == 201, r.text
    d = r.json()
    assert (d["action"], d["reason_code"], d["severity"]) == ("ESCALATE", "PII_DETECTED", "high")
    assert d["policy_name"] == "default-safety" and d["policy_version"] == 1
    assert d["rule"]["priority"] == 10 and d["rule"]["metadata"] == {"owner": "trust-safety"}
    assert d["signals"]["pii"] is True and d["signals"]["email"] is True and d["trace_found"] is True
    [finding] = [f for f in d["signals"]["findings"] if f["kind"] == "email"]
    assert finding["where"] == "request" and finding["masked"] != EMAIL
    assert EMAIL not in r.text  # masked: never the raw address

    detail_r = project.client.get(f"/api/v1/traces/{trace_id}")
    detail = detail_r.json()
    # The judge span hangs under the trace's root, in the tree, with what explains the decision.
    [judge] = [s for s in detail["spans"] if s["span_type"] == "judge"]
    assert judge["span_id"] == d["judge_span_id"] and judge["parent_span_id"] == root
    assert judge["name"] == "judge default-safety"
    attrs = judge["attributes"]
    assert attrs["openinference.span.kind"] == "GUARDRAIL"
    assert attrs["tracehub.decision.action"] == "ESCALATE"
    assert attrs["tracehub.decision.reason_code"] == "PII_DETECTED"
    assert attrs["tracehub.decision.policy.name"] == "default-safety"
    assert attrs["tracehub.decision.policy.version"] == 1
    assert attrs["tracehub.decision.decision_id"] == d["decision_id"]
    assert attrs["tracehub.decision.cached"] is False
    [event] = [e for e in judge["events"] if e["name"] == "gen_ai.evaluation.result"]
    assert event["attributes"]["gen_ai.evaluation.score.label"] == "ESCALATE"
    assert event["attributes"]["gen_ai.evaluation.explanation"] == "PII_DETECTED"
    assert (judge["span_id"], root) in {(n["span_id"], parent) for n, parent in _all_nodes(detail["tree"])}
    assert EMAIL not in str(judge)
    # The decision log and the judge run; the trace's totals are the application's, unchanged.
    assert [x["decision_id"] for x in detail["decisions"]] == [d["decision_id"]]
    assert detail["decisions"][0]["signals"] == d["signals"]
    [run] = detail["judge_runs"]
    assert (run["status"], run["cached"], run["input_hash"]) == ("ok", False, d["input_hash"])
    assert EMAIL not in str(detail["decisions"]) + str(detail["judge_runs"])
    trace = detail["trace"]
    assert trace["decision"] == "ESCALATE"
    for name in ("span_count", "duration_ms", "total_tokens", "cost_usd", "end_time", "output_text"):
        assert trace[name] == before[name], name

    # The case and its outbox were written with the decision.
    with project.engine.connect() as conn:
        case = conn.execute(sa.select(cases).where(cases.c.decision_id == d["decision_id"])).mappings().one()
        assert case["case_id"] == d["case_id"] and case["status"] == "open"
        assert (case["trace_id"], case["reason_code"], case["severity"]) == (trace_id, "PII_DETECTED", "high")
        assert conn.execute(sa.select(sa.func.count()).select_from(notifications)
                            .where(notifications.c.case_id == case["case_id"])).scalar_one() == 0  # no endpoint
        assert conn.execute(sa.select(traces.c.decision).where(
            traces.c.project_id == project.id, traces.c.trace_id == trace_id)).scalar_one() == "ESCALATE"

    # The list filters by the latest decision; the stats count it.
    listed = project.client.get("/api/v1/traces", params={"decision": "ESCALATE"}).json()
    assert trace_id in [t["trace_id"] for t in listed["items"]]
    assert not project.client.get("/api/v1/traces", params={"decision": "BLOCK"}).json()["items"]
    # The judge span is searchable: its attributes name the reason.
    found = project.client.get("/api/v1/traces", params={"search": "PII_DETECTED"}).json()
    assert [t["trace_id"] for t in found["items"]] == [trace_id]
    stats = project.client.get("/api/v1/traces/stats/overview", params={"last_hours": 1}).json()
    assert stats["decisions_by_action"]["ESCALATE"] == 1
    metrics = httpx.get(server.url + "/metrics").text
    assert 'tracehub_decisions_total{action="ESCALATE"}' in metrics


def test_a_case_notifies_each_enabled_webhook_endpoint(project: Project) -> None:
    _activate_default_safety(project)
    with project.engine.begin() as conn:  # (the webhooks API checks the address; not the point here)
        conn.execute(webhook_endpoints.insert(), [
            {"project_id": project.id, "url": f"https://hooks.example.com/{name}", "secret": "whsec_" + "A" * 32,
             "enabled": enabled, "created_ns": time.time_ns()} for name, enabled in (("on", True), ("off", False))])
    trace_id, _ = _ingest_trace(project, f"write to {EMAIL}")
    d = project.client.post("/api/v1/decide", json={"trace_id": trace_id}).json()
    with project.engine.connect() as conn:
        rows = conn.execute(sa.select(notifications).where(notifications.c.case_id == d["case_id"])).mappings().all()
    assert len(rows) == 1 and rows[0]["event_type"] == "case.created"
    payload = rows[0]["payload"]
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert payload["data"]["decision_id"] == d["decision_id"] and payload["data"]["action"] == "ESCALATE"


def test_the_same_inputs_hit_the_judge_cache(project: Project, server: ServerProcess) -> None:
    _activate_default_safety(project)
    trace_id, _ = _ingest_trace(project, "What are your opening hours?")
    first = project.client.post("/api/v1/decide", json={"trace_id": trace_id}).json()
    second = project.client.post("/api/v1/decide", json={"trace_id": trace_id}).json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["input_hash"] == second["input_hash"] and second["action"] == first["action"] == "ALLOW_ANSWER"
    assert second["decision_id"] != first["decision_id"]
    detail = project.client.get(f"/api/v1/traces/{trace_id}").json()
    assert [x["decision_id"] for x in detail["decisions"]] == [second["decision_id"], first["decision_id"]]
    assert [(j["status"], j["cached"]) for j in detail["judge_runs"]] == [("cached", True), ("ok", False)]
    [judge_spans] = [[s for s in detail["spans"] if s["span_type"] == "judge"]]
    assert sorted(s["attributes"]["tracehub.decision.cached"] for s in judge_spans) == [False, True]
    with project.engine.connect() as conn:
        assert conn.execute(sa.select(judge_cache.c.hit_count).where(
            judge_cache.c.project_id == project.id)).scalars().all() == [1]
    # Other inputs, another entry: a payload is part of what is decided on.
    third = project.client.post("/api/v1/decide", json={"trace_id": trace_id,
                                                        "response_payload": {"latency_ms": 900}}).json()
    assert third["cached"] is False and third["input_hash"] != first["input_hash"]
    assert "tracehub_judge_cache_hits_total" in httpx.get(server.url + "/metrics").text


def test_a_new_version_decides_at_once_and_a_shadow_version_only_records(project: Project) -> None:
    _activate_default_safety(project)
    trace_id, _ = _ingest_trace(project, f"My e-mail is {EMAIL}")
    first = project.client.post("/api/v1/decide", json={"trace_id": trace_id}).json()
    assert (first["action"], first["policy_version"]) == ("ESCALATE", 1)
    block = {**DEFAULT_SAFETY, "definition": {"rules": [{**DEFAULT_SAFETY["definition"]["rules"][0],
                                                          "then": {"action": "BLOCK", "reason_code": "PII_BLOCKED",
                                                                   "severity": "high"}}]}}
    made = project.client.post("/api/v1/policies", json=block)
    assert made.status_code == 201, made.text
    second = project.client.post("/api/v1/decide", json={"trace_id": trace_id}).json()
    assert (second["action"], second["policy_version"], second["cached"]) == ("BLOCK", 2, False)
    assert second["case_id"] is None
    shadowed = project.client.post("/api/v1/policies/default-safety/shadow", params={"version": 1})
    assert shadowed.status_code == 200, shadowed.text
    third = project.client.post("/api/v1/decide", json={"trace_id": trace_id}).json()
    assert (third["action"], third["policy_version"], third["shadow"]) == ("BLOCK", 2, False)
    detail = project.client.get(f"/api/v1/traces/{trace_id}").json()
    assert detail["trace"]["decision"] == "BLOCK"
    shadow = [d for d in detail["decisions"] if d["shadow"]]
    assert [(d["action"], d["policy_version"], d["judge_span_id"]) for d in shadow] == [("ESCALATE", 1, None)]
    assert len(detail["judge_runs"]) == 4  # three decisions and the shadow's
    assert [s["span_type"] for s in detail["spans"]].count("judge") == 3  # the shadow writes no span
    with project.engine.connect() as conn:  # only the first, acting ESCALATE opened a case
        assert conn.execute(sa.select(sa.func.count()).select_from(cases).where(
            cases.c.trace_id == trace_id)).scalar_one() == 1


def test_idempotency_replays_the_first_decision_and_refuses_another_body(project: Project) -> None:
    _activate_default_safety(project)
    first = project.client.post("/api/v1/decide", json=SPEC_DECIDE)
    assert first.status_code == 201, first.text
    again = project.client.post("/api/v1/decide", json=SPEC_DECIDE)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    # The same decision as a UUID or as hex: the same request.
    as_hex = {**SPEC_DECIDE, "trace_id": SPEC_DECIDE["trace_id"].replace("-", "")}
    assert project.client.post("/api/v1/decide", json=as_hex).json()["decision_id"] == first.json()["decision_id"]
    other = project.client.post("/api/v1/decide", json={**SPEC_DECIDE, "request_payload": {"text": "hi"}})
    assert other.status_code == 409, other.text
    assert other.headers["content-type"].startswith("application/problem+json")
    assert other.json()["errors"][0]["path"] == "idempotency_key"
    detail = project.client.get(f"/api/v1/traces/{SPEC_DECIDE['trace_id']}").json()
    assert len(detail["decisions"]) == 1 and len(detail["judge_runs"]) == 1


def test_concurrent_retries_make_one_decision(project: Project) -> None:
    """Retries racing past the key's lookup meet in the writer's transaction: one decision."""
    body = {"trace_id": secrets.token_hex(16), "idempotency_key": "race-" + secrets.token_hex(4)}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _i: project.client.post("/api/v1/decide", json=body), range(8)))
    assert sorted(r.status_code for r in answers) == [200] * 7 + [201], [r.text for r in answers]
    assert len({r.json()["decision_id"] for r in answers}) == 1
    detail = project.client.get(f"/api/v1/traces/{body['trace_id']}").json()
    assert len(detail["decisions"]) == 1 and len(detail["spans"]) == 1


def test_payload_text_is_decided_on_and_masked(project: Project) -> None:
    _activate_default_safety(project)
    r = project.client.post("/api/v1/decide", json={
        "trace_id": secrets.token_hex(16), "request_payload": {"text": f"mail {EMAIL} now"}})
    assert r.status_code == 201, r.text
    assert r.json()["action"] == "ESCALATE" and EMAIL not in r.text


@pytest.mark.parametrize(("body", "path"), [
    ({}, "body"),  # a missing property: the object's path, as the ingest routes answer
    ({"trace_id": "0" * 32}, "trace_id"),
    ({"trace_id": "ab" * 16, "request_payload": [1]}, "request_payload"),
    ({"trace_id": "ab" * 16, "idempotency_key": ""}, "idempotency_key"),
])
def test_bad_bodies_name_the_field(project: Project, body: dict[str, Any], path: str) -> None:
    r = project.client.post("/api/v1/decide", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["path"] == path


def test_the_decision_lane_is_not_refused_and_goes_first(tmp_path: Path) -> None:
    """The writer's decision lane: with ingest's queue full (QueueFull), a decision is taken, and
    it is written before the ingest requests that were waiting."""
    engine = db.create_engine(f"sqlite:///{tmp_path / 'lane.db'}")
    db.migrate(engine)
    writer = Writer(engine, max_queued_spans=3)
    writer.start()
    done: list[str] = []
    lock = sqlite3.connect(tmp_path / "lane.db")
    try:
        lock.execute("BEGIN IMMEDIATE")  # the writer waits for SQLite's write lock meanwhile
        ingest = []
        for i in range(3):
            future = writer.submit(Batch(1, traces=[TraceRecord(secrets.token_hex(16), name=f"t{i}")]))
            future.add_done_callback(functools.partial(lambda i, _f: done.append(f"ingest{i}"), i))
            ingest.append(future)
            if i == 0:
                time.sleep(0.2)  # the first in the writer's transaction, the others in the queue
        with pytest.raises(QueueFull):
            writer.submit(Batch(1, traces=[TraceRecord(secrets.token_hex(16))]))

        def work(tx: Transaction) -> int:
            tx.cur.execute("SELECT count(*) FROM traces")
            return int(tx.cur.fetchone()[0])

        decision = writer.submit_decision(work)
        decision.add_done_callback(lambda _f: done.append("decision"))
        lock.rollback()
        assert decision.result(10) == 1  # after the first ingest request's commit
        for future in ingest:
            future.result(10)
    finally:
        lock.close()
        writer.stop()
        engine.dispose()
    assert done == ["ingest0", "decision", "ingest1", "ingest2"]
