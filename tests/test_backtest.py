"""`POST /api/v1/policies/{policy}/backtest` through the real server on both databases: a candidate
version replayed over the stored traces against the version in force (the spec's default-safety
policy, or none), exact transitions and samples, nothing written, and its errors."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import Project, ServerProcess, own_project
from tracehub.decision import backtest, signals
from tracehub.decision.engine import NO_POLICY
from tracehub.decision.policy import parse_policy
from tracehub.seed import DEFAULT_POLICY
from tracehub.store.completion import completion
from tracehub.store.schema import trace_decisions, traces

EMAIL = "kim.minsu@example.com"
TOKEN_BUDGET = 4000
# The spec's default-safety rule, and a BLOCK over a token budget after it.
CANDIDATE: dict[str, Any] = {
    "name": DEFAULT_POLICY["name"],
    "definition": {"rules": [
        *DEFAULT_POLICY["definition"]["rules"],
        {"priority": 20, "when": {"field": "trace.total_tokens", "op": "gt", "value": TOKEN_BUDGET},
         "then": {"action": "BLOCK", "reason_code": "TOKEN_BUDGET", "severity": "medium"}}]},
}


@pytest.fixture
def project(server: ServerProcess) -> Iterator[Project]:
    """A project of its own, decided by /decide only: the worker would add decisions while a test counts them."""
    with own_project(server, "backtest", auto_decide=False) as made:
        yield made


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns // 10**6 % 1000:03d}Z"


def _trace(p: Project, start_ns: int, *, pii: bool, tokens: int) -> str:
    trace_id = secrets.token_hex(16)
    root = secrets.token_hex(8)
    end = start_ns + 900_000_000
    text = f"my email is {EMAIL}" if pii else "what is the capital of France?"
    r = p.client.post("/api/v1/ingest/traces", json={
        "trace": {"trace_id": trace_id, "name": "chat", "input_text": text, "output_text": "Paris.",
                  "model": "gpt-4.1-mini", "start_time": _iso(start_ns), "end_time": _iso(end)},
        "spans": [{"span_id": root, "name": "chat", "span_type": "chain", "start_time": _iso(start_ns),
                   "end_time": _iso(end), "status": "success"},
                  {"span_id": secrets.token_hex(8), "parent_span_id": root, "name": "llm", "span_type": "llm",
                   "start_time": _iso(start_ns + 10**8), "end_time": _iso(end - 10**8), "status": "success",
                   "input_tokens": tokens - 10, "output_tokens": 10}]})
    assert r.status_code == 200, r.text
    return trace_id


def _written(p: Project) -> tuple[int, list[tuple[str, str | None]]]:
    """The project's decision rows and each trace's latest decision."""
    with p.engine.connect() as conn:
        count = conn.execute(sa.select(sa.func.count()).select_from(trace_decisions)
                             .where(trace_decisions.c.project_id == p.id)).scalar_one()
        rows = conn.execute(sa.select(traces.c.trace_id, traces.c.decision).where(traces.c.project_id == p.id)
                            .order_by(traces.c.trace_id)).all()
    return count, [(r[0], r[1]) for r in rows]


def _backtest(p: Project, policy: str, **params: Any) -> dict[str, Any]:
    r = p.client.post(f"/api/v1/policies/{policy}/backtest", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_token_budget_against_the_default_safety_policy(project: Project) -> None:
    now = time.time_ns()
    second = 10**9
    # In start order: clean, PII, 7 clean over the budget, PII over the budget; one clean over the
    # budget 30 hours ago.
    clean = _trace(project, now - 100 * second, pii=False, tokens=100)
    pii = _trace(project, now - 99 * second, pii=True, tokens=100)
    over = [_trace(project, now - (98 - i) * second, pii=False, tokens=TOKEN_BUDGET + 1 + i) for i in range(7)]
    pii_over = _trace(project, now - 80 * second, pii=True, tokens=9000)
    old = _trace(project, now - 30 * 3600 * second, pii=False, tokens=9000)
    at_budget = _trace(project, now - 79 * second, pii=False, tokens=TOKEN_BUDGET)  # not over it

    r = project.client.post("/api/v1/policies", json={**DEFAULT_POLICY, "active": False})
    assert r.status_code == 201, r.text
    policy_id = r.json()["policy_id"]
    # No version in force: the baseline is the default ALLOW_ANSWER.
    none = _backtest(project, "default-safety", version=1)
    assert none["baseline"] is None and none["traces"] == 11 and none["changed"] == 2
    assert none["transitions"][0] == {"from": "ALLOW_ANSWER", "to": "ESCALATE", "count": 2,
                                      "sample_trace_ids": [pii, pii_over]}
    assert none["by_action"] == {"candidate": {"ALLOW_ANSWER": 9, "ESCALATE": 2}, "baseline": {"ALLOW_ANSWER": 11}}

    assert project.client.post("/api/v1/policies/default-safety/activate", params={"version": 1}).status_code == 200
    r = project.client.post("/api/v1/policies", json=CANDIDATE)
    assert r.status_code == 201 and r.json()["version"]["version"] == 2, r.text
    # A decision on record (ALLOW_ANSWER by version 1) that the backtest must leave as it is.
    r = project.client.post("/api/v1/decide", json={"trace_id": over[0]})
    assert r.status_code == 201 and r.json()["action"] == "ALLOW_ANSWER", r.text
    before = _written(project)

    got = _backtest(project, str(policy_id), version=2)  # by id, the default 24 hours
    assert (got["policy"], got["policy_id"], got["version"]) == ("default-safety", policy_id, 2)
    assert got["baseline"] == {"policy": "default-safety", "version": 1}
    assert got["traces"] == 11 and got["changed"] == 7
    assert got["transitions"] == [
        {"from": "ALLOW_ANSWER", "to": "BLOCK", "count": 7, "sample_trace_ids": over[:5]},
        {"from": "ALLOW_ANSWER", "to": "ALLOW_ANSWER", "count": 2, "sample_trace_ids": [clean, at_budget]},
        {"from": "ESCALATE", "to": "ESCALATE", "count": 2, "sample_trace_ids": [pii, pii_over]},
    ]
    assert got["by_action"] == {"candidate": {"BLOCK": 7, "ESCALATE": 2, "ALLOW_ANSWER": 2},
                                "baseline": {"ALLOW_ANSWER": 9, "ESCALATE": 2}}
    start, end = (datetime.fromisoformat(got["window"][k]).timestamp() for k in ("start", "end"))
    assert end - start == 24 * 3600 and abs(end - now / 1e9) < 60
    assert got["elapsed_ms"] > 0

    wider = _backtest(project, "default-safety", version=2, last_hours=48)
    assert wider["traces"] == 12 and wider["changed"] == 8
    assert wider["transitions"][0]["sample_trace_ids"] == [old, *over[:4]]
    # The version in force against itself changes nothing.
    same = _backtest(project, "default-safety", version=1)
    assert same["changed"] == 0 and [t["from"] == t["to"] for t in same["transitions"]] == [True, True]

    assert _written(project) == before
    assert dict(before[1])[over[0]] == "ALLOW_ANSWER"
    assert project.client.get("/api/v1/policies/default-safety").json()["active_version"] == 1


def test_evals_and_texts_are_read_when_a_version_reads_them(project: Project) -> None:
    trace_id = _trace(project, time.time_ns() - 10**10, pii=False, tokens=10)
    body = {"name": "france", "definition": {"rules": [
        {"priority": 10, "when": {"field": "request.text", "op": "contains", "value": "France"},
         "then": {"action": "ALLOW_WITH_WARNING", "reason_code": "FRANCE", "severity": "low"}}]}}
    assert project.client.post("/api/v1/policies", json=body).status_code == 201
    got = _backtest(project, "france", version=1)
    assert got["transitions"] == [{"from": "ALLOW_ANSWER", "to": "ALLOW_WITH_WARNING", "count": 1, "sample_trace_ids": [trace_id]}]
    r = project.client.post("/api/v1/evals", json={"trace_id": trace_id, "eval_name": "faithfulness",
                                                           "score": 0.2, "passed": False})
    assert r.status_code in (200, 201), r.text
    body = {"name": "faithful", "definition": {"rules": [
        {"priority": 10, "when": {"field": "evals.faithfulness.score", "op": "lt", "value": 0.5},
         "then": {"action": "BLOCK", "reason_code": "UNFAITHFUL", "severity": "high"}}]}}
    assert project.client.post("/api/v1/policies", json=body).status_code == 201
    got = _backtest(project, "faithful", version=1)
    assert got["transitions"] == [{"from": "ALLOW_ANSWER", "to": "BLOCK", "count": 1, "sample_trace_ids": [trace_id]}]


def test_an_empty_window(project: Project) -> None:
    assert project.client.post("/api/v1/policies", json=CANDIDATE).status_code == 201
    got = _backtest(project, "default-safety", version=1, last_hours=1)
    assert (got["traces"], got["changed"], got["transitions"]) == (0, 0, [])
    assert got["by_action"] == {"candidate": {}, "baseline": {}}


BAD_PARAMETERS: list[tuple[dict[str, str], str]] = [
    ({}, "query.version"), ({"version": "0"}, "query.version"), ({"version": "x"}, "query.version"),
    ({"version": "1", "last_hours": "0"}, "query.last_hours"),
    ({"version": "1", "last_hours": "721"}, "query.last_hours"),
    ({"version": "1", "last_hours": "1.5"}, "query.last_hours"),
    ({"version": "1", "since": "1"}, "query.since"),
]


def test_bad_parameters_are_422(project: Project) -> None:
    assert project.client.post("/api/v1/policies", json=CANDIDATE).status_code == 201
    for params, path in BAD_PARAMETERS:
        r = project.client.post("/api/v1/policies/default-safety/backtest", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["path"] for e in r.json()["errors"]] == [path], params


def test_unknown_versions_and_policies_are_404(project: Project) -> None:
    assert project.client.post("/api/v1/policies", json=CANDIDATE).status_code == 201
    for path, params in (("default-safety", {"version": 2}), ("no-such-policy", {"version": 1}),
                         ("999999999", {"version": 1})):
        r = project.client.post(f"/api/v1/policies/{path}/backtest", params=params)
        assert r.status_code == 404, r.text
        assert r.headers["content-type"].startswith("application/problem+json")


def test_pages_on_the_same_start_time_lose_and_repeat_no_trace(project: Project) -> None:
    start = time.time_ns() // 10**9 * 10**9 - 10**10  # whole milliseconds, as the JSON API keeps them
    ids = sorted(_trace(project, start, pii=False, tokens=10) for _ in range(5))
    later = _trace(project, start + 10**9, pii=False, tokens=10)
    everything = parse_policy({"rules": [{"priority": 1, "when": {"field": "trace.total_tokens", "op": "gte",
                                                                  "value": 0},
                                          "then": {"action": "BLOCK", "reason_code": "ALL", "severity": "low"}}]})
    with project.engine.connect() as conn:
        for rows in (1, 2, 5, 1000):
            out = backtest.run(conn, project.id, everything, NO_POLICY, start - 10**9, time.time_ns(),
                               completion(time.time_ns(), 0), page_rows=rows)
            assert out.traces == 6 and out.transitions[("ALLOW_ANSWER", "BLOCK")].samples == ids, rows
            assert out.candidate == {"BLOCK": 6}
    assert later not in ids


def _set_signals(p: Project, trace_id: str, **changes: Any) -> None:
    with p.engine.begin() as conn:
        d = trace_decisions.c
        for decision_id, stored in conn.execute(sa.select(d.decision_id, d.signals).where(
                d.project_id == p.id, d.trace_id == trace_id)).all():
            conn.execute(trace_decisions.update().where(d.decision_id == decision_id)
                         .values(signals={**stored, **changes}))


def test_signals_stored_with_a_decision_on_the_same_inputs_are_reused(project: Project) -> None:
    now = time.time_ns()
    pii = _trace(project, now - 20 * 10**9, pii=True, tokens=100)
    clean = _trace(project, now - 19 * 10**9, pii=False, tokens=100)
    assert project.client.post("/api/v1/policies", json={**DEFAULT_POLICY, "active": False}).status_code == 201
    escalated = [{"from": "ALLOW_ANSWER", "to": "ESCALATE", "count": 1, "sample_trace_ids": [pii]},
                 {"from": "ALLOW_ANSWER", "to": "ALLOW_ANSWER", "count": 1, "sample_trace_ids": [clean]}]
    assert _backtest(project, "default-safety", version=1)["transitions"] == escalated
    for trace_id in (pii, clean):  # no version in force: decided by the default, the signals stored
        assert project.client.post("/api/v1/decide", json={"trace_id": trace_id}).status_code == 201
    assert _backtest(project, "default-safety", version=1)["transitions"] == escalated

    # What the detectors found is read back, not found again: altered, the backtest follows it.
    _set_signals(project, pii, pii=False, email=False)
    assert _backtest(project, "default-safety", version=1)["transitions"] == [
        {"from": "ALLOW_ANSWER", "to": "ALLOW_ANSWER", "count": 2, "sample_trace_ids": [pii, clean]}]
    # Signals of another revision of the detectors are not reused.
    _set_signals(project, pii, detectors=signals.REVISION + 1)
    assert _backtest(project, "default-safety", version=1)["transitions"] == escalated
    # Nor are those of other inputs: an eval since the decision changes the input hash.
    _set_signals(project, pii, detectors=signals.REVISION)
    r = project.client.post("/api/v1/evals", json={"trace_id": pii, "eval_name": "faithfulness", "score": 0.9,
                                                   "passed": True})
    assert r.status_code in (200, 201), r.text
    assert _backtest(project, "default-safety", version=1)["transitions"] == escalated
