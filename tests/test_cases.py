"""Cases and their webhooks, through a real server on both databases: the cases API (list, filters,
pages, detail, ack / resolve and the 409s), webhook endpoints (secrets, refused targets) and the
delivery worker (Standard Webhooks signatures verified by the receiver, retries with backoff, 410
disabling the endpoint, attempts given up, a private target refused at delivery).

Until `/api/v1/decide` writes them, cases and notifications are written the way the engine does:
the rows of `escalation_rows`, inserted into the server's database.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from standardwebhooks import Webhook

from conftest import BACKENDS, ServerProcess
from webhook_receiver import Receiver
from tracehub.decision.cases import escalation_rows
from tracehub.store import db
from tracehub.store.schema import cases, notifications, projects, trace_decisions, webhook_endpoints

SERVER_ENV = {
    "TRACEHUB_WEBHOOK_ALLOW": "127.0.0.1",  # the receiver of these tests
    "TRACEHUB_WEBHOOK_RETRY_INITIAL_S": "0.1",
    "TRACEHUB_WEBHOOK_RETRY_MAX_S": "0.5",
    "TRACEHUB_WEBHOOK_MAX_ATTEMPTS": "3",
    "TRACEHUB_WEBHOOK_TIMEOUT_S": "5",
}


@pytest.fixture(scope="module", params=BACKENDS)
def hub(request: pytest.FixtureRequest, server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(request.param, env=SERVER_ENV)


@pytest.fixture(scope="module")
def engine(hub: ServerProcess) -> Iterator[sa.Engine]:
    eng = db.create_engine(hub.database_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _project_id(engine: sa.Engine, name: str = "default") -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(projects.c.id).where(projects.c.name == name)).scalar_one())


def escalate(engine: sa.Engine, *, severity: str = "high", reason_code: str = "PII_DETECTED",
             endpoint_ids: tuple[int, ...] = (), project: str = "default") -> dict[str, Any]:
    """What an ESCALATE decision writes: its trace_decisions row, the case and its notifications."""
    project_id = _project_id(engine, project)
    trace_id, decision_id = secrets.token_hex(16), secrets.token_hex(16)
    with engine.connect() as conn:
        endpoints = [dict(r) for r in conn.execute(sa.select(webhook_endpoints).where(
            webhook_endpoints.c.id.in_(endpoint_ids))).mappings()]
    case, notes = escalation_rows(project_id, trace_id, decision_id, "ESCALATE", reason_code, severity,
                                  "default-safety", 1, endpoints, time.time_ns())
    with engine.begin() as conn:
        conn.execute(sa.insert(trace_decisions).values(
            decision_id=decision_id, project_id=project_id, trace_id=trace_id, policy_name="default-safety",
            policy_version=1, action="ESCALATE", reason_code=reason_code, severity=severity,
            rule={"index": 0, "priority": 10, "metadata": {"owner": "trust-safety"}},
            signals={"pii": True, "pii_kinds": ["email"]}, input_hash="0" * 64, judge="heuristic",
            cached=False, latency_ms=0.2, shadow=False, source="api", created_ns=case["created_ns"]))
        conn.execute(sa.insert(cases).values(**case))
        if notes:
            conn.execute(sa.insert(notifications), notes)
    return {**case, "notifications": notes}


def _register(hub: ServerProcess, url: str, **body: Any) -> dict[str, Any]:
    r = hub.client.post("/api/v1/webhooks", json={"url": url, **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _case(hub: ServerProcess, case_id: str) -> dict[str, Any]:
    r = hub.client.get(f"/api/v1/cases/{case_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _wait_case(hub: ServerProcess, case_id: str, done: Callable[[dict[str, Any]], bool],
               timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        case = _case(hub, case_id)
        if done(case):
            return case
        assert time.monotonic() < deadline, case
        time.sleep(0.05)


def _metrics(hub: ServerProcess) -> dict[str, float]:
    lines = httpx.get(hub.url + "/metrics").text.splitlines()
    return {name: float(value) for name, _, value in (line.rpartition(" ") for line in lines
                                                      if line and not line.startswith("#"))}


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    return dict(r.json())


def test_escalation_rows_make_a_case_and_one_pending_notification_per_enabled_endpoint() -> None:
    endpoints = [{"id": 4, "enabled": True}, {"id": 5, "enabled": False}, {"id": 6, "enabled": True}]
    case, notes = escalation_rows(7, "ab" * 16, "cd" * 16, "ESCALATE", "PII_DETECTED", "high",
                                  "default-safety", 2, endpoints, 1_767_225_600_000_000_000)
    assert case["title"] == f"ESCALATE PII_DETECTED (high) on trace {'ab' * 16}"
    assert (case["status"], case["project_id"], case["decision_id"]) == ("open", 7, "cd" * 16)
    assert len(case["case_id"]) == 32
    assert [n["endpoint_id"] for n in notes] == [4, 6]
    assert len({n["message_id"] for n in notes}) == 2
    for n in notes:
        assert (n["status"], n["attempts"], n["next_attempt_ns"]) == ("pending", 0, 1_767_225_600_000_000_000)
        assert n["message_id"].startswith("msg_") and n["case_id"] == case["case_id"]
        assert n["payload"] == {"type": "case.created", "timestamp": "2026-01-01T00:00:00Z", "data": {
            "case_id": case["case_id"], "trace_id": "ab" * 16, "decision_id": "cd" * 16, "action": "ESCALATE",
            "reason_code": "PII_DETECTED", "severity": "high", "policy_name": "default-safety",
            "policy_version": 2, "title": case["title"]}}


def test_list_filters_pages_newest_first_and_detail(hub: ServerProcess, engine: sa.Engine) -> None:
    reason = "R_" + secrets.token_hex(4)
    made = [escalate(engine, severity=s, reason_code=reason) for s in ("high", "low", "high", "critical")]
    r = hub.client.get("/api/v1/cases", params={"reason_code": reason, "page_size": 3})
    assert r.status_code == 200, r.text
    page = r.json()
    assert (page["total"], page["page"], page["page_size"]) == (4, 1, 3)
    assert [c["case_id"] for c in page["items"]] == [c["case_id"] for c in reversed(made)][:3]
    page2 = hub.client.get("/api/v1/cases", params={"reason_code": reason, "page_size": 3, "page": 2}).json()
    assert [c["case_id"] for c in page2["items"]] == [made[0]["case_id"]]
    high = hub.client.get("/api/v1/cases", params={"reason_code": reason, "severity": "high"}).json()
    assert sorted(c["case_id"] for c in high["items"]) == sorted(made[i]["case_id"] for i in (0, 2))
    hub.client.post(f"/api/v1/cases/{made[1]['case_id']}/ack")
    acked = hub.client.get("/api/v1/cases", params={"reason_code": reason, "status": "acknowledged"}).json()
    assert [c["case_id"] for c in acked["items"]] == [made[1]["case_id"]]
    assert hub.client.get("/api/v1/cases", params={"reason_code": reason, "status": "open"}).json()["total"] == 3

    detail = _case(hub, made[0]["case_id"])
    assert detail["title"] == f"ESCALATE {reason} (high) on trace {made[0]['trace_id']}"
    assert detail["trace_url"] == f"/api/v1/traces/{made[0]['trace_id']}"
    assert detail["status"] == "open" and detail["acknowledged_at"] is None
    assert detail["decision"]["decision_id"] == made[0]["decision_id"]
    assert detail["decision"]["action"] == "ESCALATE" and detail["decision"]["policy_version"] == 1
    assert detail["decision"]["rule"]["metadata"] == {"owner": "trust-safety"}
    assert detail["notifications"] == []

    for params, path in (({"status": "closed"}, "query.status"), ({"severity": "urgent"}, "query.severity"),
                         ({"stauts": "open"}, "query.stauts"), ({"page": "0"}, "query.page")):
        problem = _problem(hub.client.get("/api/v1/cases", params=params), 422)
        assert problem["errors"][0]["path"] == path


def test_ack_then_resolve_and_every_other_move_is_409(hub: ServerProcess, engine: sa.Engine) -> None:
    case_id = escalate(engine)["case_id"]
    r = hub.client.post(f"/api/v1/cases/{case_id}/ack")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged" and r.json()["acknowledged_at"] is not None
    problem = _problem(hub.client.post(f"/api/v1/cases/{case_id}/ack"), 409)
    assert "is acknowledged" in problem["detail"]
    r = hub.client.post(f"/api/v1/cases/{case_id}/resolve", json={"note": "false positive: test address"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolved" and r.json()["note"] == "false positive: test address"
    for move in ("ack", "resolve"):
        assert "is resolved" in _problem(hub.client.post(f"/api/v1/cases/{case_id}/{move}"), 409)["detail"]
    detail = _case(hub, case_id)
    assert detail["status"] == "resolved" and detail["resolved_at"] >= detail["acknowledged_at"]

    other = escalate(engine)["case_id"]  # open -> resolved, without a body
    r = hub.client.post(f"/api/v1/cases/{other}/resolve")
    assert r.status_code == 200 and r.json()["status"] == "resolved" and r.json()["note"] is None
    assert _problem(hub.client.post(f"/api/v1/cases/{other}/ack"), 409)["detail"].count("resolved") >= 1

    third = escalate(engine)["case_id"]
    problem = _problem(hub.client.post(f"/api/v1/cases/{third}/resolve", json={"note": 5}), 422)
    assert problem["errors"][0]["path"] == "note"
    problem = _problem(hub.client.post(f"/api/v1/cases/{third}/resolve", json={"notes": "x"}), 422)
    assert problem["errors"][0]["path"] == "body"
    assert _case(hub, third)["status"] == "open"  # a refused body moves nothing
    _problem(hub.client.post(f"/api/v1/cases/{secrets.token_hex(16)}/ack"), 404)
    _problem(hub.client.get(f"/api/v1/cases/{secrets.token_hex(16)}"), 404)
    assert _problem(hub.client.get("/api/v1/cases/not-an-id"), 422)["errors"][0]["path"] == "path.case_id"


def test_cases_and_endpoints_of_another_project_are_not_seen(hub: ServerProcess, engine: sa.Engine,
                                                            receiver: Receiver) -> None:
    made = hub.cli("keys", "create", "--project", "other-" + secrets.token_hex(3))
    assert made.returncode == 0, made.stderr
    other = httpx.Client(base_url=hub.url, headers={"x-api-key": made.stdout.strip().split()[-1]})
    try:
        case_id = escalate(engine)["case_id"]
        endpoint = _register(hub, receiver.url + "/other-project")
        assert other.get("/api/v1/cases").json()["total"] == 0
        _problem(other.get(f"/api/v1/cases/{case_id}"), 404)
        _problem(other.post(f"/api/v1/cases/{case_id}/ack"), 404)
        assert other.get("/api/v1/webhooks").json()["items"] == []
        _problem(other.delete(f"/api/v1/webhooks/{endpoint['id']}"), 404)
        assert _case(hub, case_id)["status"] == "open"
    finally:
        other.close()
        hub.client.delete(f"/api/v1/webhooks/{endpoint['id']}")


def test_webhook_registration_secrets_and_refused_targets(hub: ServerProcess, receiver: Receiver) -> None:
    made = _register(hub, receiver.url + "/registration")
    assert made["secret"].startswith("whsec_") and made["enabled"] is True
    Webhook(made["secret"])  # a secret the library signs with
    own = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert _register(hub, receiver.url + "/registration", secret=own)["secret"] == own
    listed = hub.client.get("/api/v1/webhooks").json()["items"]
    assert made["id"] in [e["id"] for e in listed]
    assert "secret" not in json.dumps(listed) and made["secret"] not in json.dumps(listed)

    for url, says in (("http://10.1.2.3/hook", "private"), ("http://169.254.169.254/latest", "link-local"),
                      ("http://127.0.0.2:9/hook", "loopback"), ("http://[::1]:9/hook", "loopback"),
                      ("http://224.0.0.1/hook", "multicast"), ("http://0.0.0.0/hook", "unspecified"),
                      ("http://[::ffff:10.0.0.1]/hook", "private"), ("ftp://127.0.0.1/hook", "http(s)"),
                      ("http://user:pw@127.0.0.1/hook", "credentials"), ("not a url", "http(s)"),
                      ("http://no-such-host.invalid/hook", "does not resolve")):
        problem = _problem(hub.client.post("/api/v1/webhooks", json={"url": url}), 422)
        assert problem["errors"][0]["path"] == "url" and says in problem["detail"], (url, problem)
    for secret in ("plain", "whsec_!!!", "whsec_" + "QUJD", "whsec_" + "QUJD" * 23):
        problem = _problem(hub.client.post("/api/v1/webhooks", json={"url": receiver.url, "secret": secret}), 422)
        assert problem["errors"][0]["path"] == "secret" and secret not in problem["detail"]
    assert _problem(hub.client.post("/api/v1/webhooks", json={}), 422)["errors"][0]["path"] == "body"

    r = hub.client.delete(f"/api/v1/webhooks/{made['id']}")
    assert r.status_code == 200 and r.json() == {"id": made["id"], "deleted": True}
    _problem(hub.client.delete(f"/api/v1/webhooks/{made['id']}"), 404)
    _problem(hub.client.post(f"/api/v1/webhooks/{made['id']}/enable"), 404)
    _problem(hub.client.delete("/api/v1/webhooks/x"), 422)


def test_signed_delivery_retried_after_a_500_with_every_attempt_recorded(
        hub: ServerProcess, engine: sa.Engine, receiver: Receiver) -> None:
    path = "/retry-" + secrets.token_hex(4)
    receiver.script[:] = [500, 200]
    endpoint = _register(hub, receiver.url + path)
    made = escalate(engine, endpoint_ids=(endpoint["id"],))
    case = _wait_case(hub, made["case_id"], lambda c: c["notifications"][0]["status"] != "pending")
    note = case["notifications"][0]
    assert note["status"] == "delivered" and note["attempts"] == 2 and note["delivered_at"] is not None
    assert [(a["attempt"], a["status_code"], a["error"]) for a in note["delivery_attempts"]] == [
        (1, 500, "HTTP 500"), (2, 200, None)]
    got = receiver.received(path)
    assert len(got) == 2
    assert {r["headers"]["webhook-id"] for r in got} == {made["notifications"][0]["message_id"]}
    for r in got:
        assert r["headers"]["webhook-signature"].startswith("v1,")
        payload = Webhook(endpoint["secret"]).verify(r["body"], r["headers"])
        assert payload["type"] == "case.created" and payload["data"]["case_id"] == made["case_id"]
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").verify(got[0]["body"], got[0]["headers"])
    metrics = _metrics(hub)
    assert metrics['tracehub_webhook_failures_total{reason="http"}'] >= 1
    assert metrics["tracehub_webhook_deliveries_total"] >= 1
    hub.client.delete(f"/api/v1/webhooks/{endpoint['id']}")


def test_attempts_are_given_up_after_the_maximum(hub: ServerProcess, engine: sa.Engine,
                                                 receiver: Receiver) -> None:
    path = "/down-" + secrets.token_hex(4)
    receiver.script[:] = [503]
    endpoint = _register(hub, receiver.url + path)
    made = escalate(engine, endpoint_ids=(endpoint["id"],))
    case = _wait_case(hub, made["case_id"], lambda c: c["notifications"][0]["status"] != "pending")
    note = case["notifications"][0]
    assert note["status"] == "failed" and note["attempts"] == 3 and note["last_error"] == "HTTP 503"
    assert [a["status_code"] for a in note["delivery_attempts"]] == [503, 503, 503]
    assert len(receiver.received(path)) == 3
    hub.client.delete(f"/api/v1/webhooks/{endpoint['id']}")


def test_410_disables_the_endpoint_and_its_pending_notifications(
        hub: ServerProcess, engine: sa.Engine, receiver: Receiver) -> None:
    path = "/gone-" + secrets.token_hex(4)
    receiver.script[:] = [410]
    endpoint = _register(hub, receiver.url + path)
    later = escalate(engine, endpoint_ids=(endpoint["id"],))
    with engine.begin() as conn:  # not due for an hour: only the 410 can end it
        conn.execute(sa.update(notifications).where(notifications.c.case_id == later["case_id"])
                     .values(next_attempt_ns=time.time_ns() + 3600 * 10**9))
    made = escalate(engine, endpoint_ids=(endpoint["id"],))
    case = _wait_case(hub, made["case_id"], lambda c: c["notifications"][0]["status"] != "pending")
    note = case["notifications"][0]
    assert note["status"] == "disabled" and note["attempts"] == 1
    assert note["delivery_attempts"][0]["status_code"] == 410
    assert _case(hub, later["case_id"])["notifications"][0]["status"] == "disabled"
    assert len(receiver.received(path)) == 1
    listed = {e["id"]: e for e in hub.client.get("/api/v1/webhooks").json()["items"]}
    assert listed[endpoint["id"]]["enabled"] is False and "410" in listed[endpoint["id"]]["disabled_reason"]

    # Disabled, it gets no notification of a new case; enabled again, it does.
    skipped = escalate(engine, endpoint_ids=(endpoint["id"],))
    assert skipped["notifications"] == []
    r = hub.client.post(f"/api/v1/webhooks/{endpoint['id']}/enable")
    assert r.status_code == 200 and r.json()["enabled"] is True and r.json()["disabled_reason"] is None
    receiver.script[:] = [204]
    again = escalate(engine, endpoint_ids=(endpoint["id"],))
    assert _wait_case(hub, again["case_id"], lambda c: c["notifications"][0]["status"] == "delivered")
    hub.client.delete(f"/api/v1/webhooks/{endpoint['id']}")


def test_a_private_target_is_refused_at_delivery(hub: ServerProcess, engine: sa.Engine) -> None:
    # Stored without the API's check (as if registered under another allow-list): the worker checks
    # again before it connects, and never connects.
    with engine.begin() as conn:
        endpoint_id = conn.execute(sa.insert(webhook_endpoints).values(
            project_id=_project_id(engine), url="http://10.255.255.1:9/hook", secret="whsec_" + "QUJD" * 8,
            enabled=True, created_ns=time.time_ns()).returning(webhook_endpoints.c.id)).scalar_one()
    made = escalate(engine, endpoint_ids=(endpoint_id,))
    case = _wait_case(hub, made["case_id"], lambda c: c["notifications"][0]["status"] != "pending")
    note = case["notifications"][0]
    assert note["status"] == "failed" and note["attempts"] == 3
    for attempt in note["delivery_attempts"]:
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("refused: 10.255.255.1 resolves to 10.255.255.1, a private address")
        assert attempt["latency_ms"] < 1000  # refused, not a connection that timed out
    assert _metrics(hub)['tracehub_webhook_failures_total{reason="refused"}'] >= 3
    hub.client.delete(f"/api/v1/webhooks/{endpoint_id}")


EMAIL = "kim.minsu@example.com"
DEFAULT_SAFETY = {  # the spec's example 6, as written
    "name": "default-safety", "description": "Safety baseline", "effective_from": "2026-01-01T00:00:00Z",
    "active": True,
    "definition": {"rules": [{
        "priority": 10,
        "when": {"any": [{"field": "signals.pii", "op": "eq", "value": True}]},
        "then": {"action": "ESCALATE", "reason_code": "PII_DETECTED", "severity": "high"},
        "metadata": {"owner": "trust-safety"}}]},
}


def test_decide_escalates_pii_to_a_case_and_a_signed_webhook(hub: ServerProcess, engine: sa.Engine,
                                                             receiver: Receiver) -> None:
    name = "e2e-" + secrets.token_hex(3)
    made = hub.cli("keys", "create", "--project", name)
    assert made.returncode == 0, made.stderr
    with engine.begin() as conn:  # decided by /decide here, not also by the automatic worker
        conn.execute(sa.update(projects).where(projects.c.name == name).values(auto_decide=False))
    client = httpx.Client(base_url=hub.url, headers={"x-api-key": made.stdout.strip().split()[-1]}, timeout=30)
    try:
        r = client.post("/api/v1/policies", json=DEFAULT_SAFETY)
        assert r.status_code == 201, r.text
        path = "/e2e-" + secrets.token_hex(4)
        receiver.script[:] = [200]
        r = client.post("/api/v1/webhooks", json={"url": receiver.url + path})
        assert r.status_code == 201, r.text
        secret = r.json()["secret"]
        trace_id, now = secrets.token_hex(16), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        r = client.post("/api/v1/ingest/traces", json={
            "trace": {"trace_id": trace_id, "name": "chat-request", "start_time": now, "end_time": now,
                      "input_text": f"My e-mail is {EMAIL}, please call me back.", "output_text": "Noted."},
            "spans": [{"span_id": secrets.token_hex(8), "name": "chat-request", "span_type": "chain",
                       "start_time": now, "end_time": now, "status": "success"}]})
        assert r.status_code == 200, r.text

        r = client.post("/api/v1/decide", json={"trace_id": trace_id})
        assert r.status_code == 201, r.text
        decision = r.json()
        assert (decision["action"], decision["reason_code"]) == ("ESCALATE", "PII_DETECTED")
        case_id = decision["case_id"]
        open_cases = client.get("/api/v1/cases", params={"status": "open"}).json()
        assert [c["case_id"] for c in open_cases["items"]] == [case_id]

        deadline = time.monotonic() + 15
        while not receiver.received(path):
            assert time.monotonic() < deadline, "no webhook"
            time.sleep(0.05)
        [got] = receiver.received(path)
        payload = Webhook(secret).verify(got["body"], got["headers"])  # raises unless signed with it
        assert payload["type"] == "case.created"
        assert payload["data"] == {
            "case_id": case_id, "trace_id": trace_id, "decision_id": decision["decision_id"],
            "action": "ESCALATE", "reason_code": "PII_DETECTED", "severity": "high",
            "policy_name": "default-safety", "policy_version": 1,
            "title": f"ESCALATE PII_DETECTED (high) on trace {trace_id}"}
        assert EMAIL.encode() not in got["body"]

        case = client.get(f"/api/v1/cases/{case_id}").json()
        deadline = time.monotonic() + 15
        while case["notifications"][0]["status"] == "pending":  # recorded just after the answer
            assert time.monotonic() < deadline, case
            time.sleep(0.05)
            case = client.get(f"/api/v1/cases/{case_id}").json()
        assert case["decision"]["decision_id"] == decision["decision_id"]
        assert case["decision"]["rule"]["metadata"] == {"owner": "trust-safety"}
        [note] = case["notifications"]
        assert note["status"] == "delivered" and note["message_id"] == got["headers"]["webhook-id"]
        assert [a["status_code"] for a in note["delivery_attempts"]] == [200]
        assert client.get(case["trace_url"]).json()["trace"]["decision"] == "ESCALATE"
        assert client.post(f"/api/v1/cases/{case_id}/ack").json()["status"] == "acknowledged"
    finally:
        client.close()


@pytest.mark.postgres
def test_two_servers_on_one_postgresql_send_each_notification_once(
        server_factory: Callable[..., ServerProcess], database_url_factory: Callable[[str], str],
        receiver: Receiver) -> None:
    url = database_url_factory("postgres")
    first = server_factory("postgres", env=SERVER_ENV, database_url=url)
    second = server_factory("postgres", env=SERVER_ENV, database_url=url)
    eng = db.create_engine(url)
    try:
        path = "/pair-" + secrets.token_hex(4)
        receiver.script[:] = [200]
        endpoint = _register(first, receiver.url + path)
        made = [escalate(eng, endpoint_ids=(endpoint["id"],)) for _ in range(40)]
        ids = {c["notifications"][0]["message_id"] for c in made}
        deadline = time.monotonic() + 20
        while len(receiver.received(path)) < 40:
            assert time.monotonic() < deadline, len(receiver.received(path))
            time.sleep(0.05)
        time.sleep(0.5)  # a second delivery of any message would come within this
        sent = [r["headers"]["webhook-id"] for r in receiver.received(path)]
        assert sorted(sent) == sorted(ids)
        counts = [_metrics(s).get("tracehub_webhook_deliveries_total", 0.0) for s in (first, second)]
        assert sum(counts) == 40
    finally:
        eng.dispose()


def test_an_idle_outbox_costs_no_write_transaction(tmp_path: Any) -> None:
    # On SQLite a write transaction takes the database's one write lock from the ingest writer.
    from tracehub.decision.webhooks import Deliveries
    from tracehub.settings import Settings

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'idle.db'}", webhook_retry_initial_s=0.05)
    eng = db.create_engine(settings.database_url)
    db.migrate(eng)
    statements: list[str] = []
    sa.event.listen(eng, "before_cursor_execute", lambda *args: statements.append(args[2].split()[0].upper()))
    worker = Deliveries(eng, settings)
    worker.start()
    try:
        time.sleep(0.5)
    finally:
        worker.stop()
        eng.dispose()
    assert statements.count("SELECT") >= 3  # it looked, every poll
    assert "UPDATE" not in statements
