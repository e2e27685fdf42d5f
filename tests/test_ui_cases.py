"""The cases pages through a real server: cases opened by real ESCALATE decisions (`/api/v1/decide`
under the spec's default-safety policy), the list and its filters, a case with its decision and
webhook delivery attempts (a loopback receiver refusing once, then taking it), and ack / resolve
as the API enforces them; over plain HTTP on both databases, and in Chromium."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import BACKENDS, Project, ServerProcess, browser_session, csrf_of, own_project, ui_client
from webhook_receiver import Receiver
from tracehub.seed import DEFAULT_POLICY

EMAIL = "kim.minsu@example.com"
SERVER_ENV = {"TRACEHUB_WEBHOOK_ALLOW": "127.0.0.1", "TRACEHUB_WEBHOOK_RETRY_INITIAL_S": "0.1",
              "TRACEHUB_WEBHOOK_RETRY_MAX_S": "0.3", "TRACEHUB_WEBHOOK_MAX_ATTEMPTS": "3"}


@pytest.fixture(scope="module", params=BACKENDS)
def cases_server(request: pytest.FixtureRequest, server_factory: Any) -> ServerProcess:
    return server_factory(request.param, env=SERVER_ENV)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def project(cases_server: ServerProcess) -> Iterator[Project]:
    with own_project(cases_server, "ui-cases", auto_decide=False) as p:
        r = p.client.post("/api/v1/policies", json=DEFAULT_POLICY)
        assert r.status_code == 201, r.text
        yield p


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


def escalated(p: Project, text: str = f"my email is {EMAIL}") -> dict[str, Any]:
    """A trace whose input holds an e-mail address, decided ESCALATE by /decide: its answer."""
    trace_id, root, start = secrets.token_hex(16), secrets.token_hex(8), time.time() - 30
    r = p.client.post("/api/v1/ingest/traces", json={
        "trace": {"trace_id": trace_id, "name": "chat", "input_text": text, "output_text": "Noted.",
                  "model": "gpt-4.1-mini", "start_time": _iso(start), "end_time": _iso(start + 1)},
        "spans": [{"span_id": root, "name": "chat", "span_type": "llm", "start_time": _iso(start),
                   "end_time": _iso(start + 1), "status": "success", "input_tokens": 20, "output_tokens": 5}]})
    assert r.status_code == 200, r.text
    d = p.client.post("/api/v1/decide", json={"trace_id": trace_id})
    assert d.status_code == 201, d.text
    answer: dict[str, Any] = d.json()
    assert answer["action"] == "ESCALATE" and answer["case_id"], answer
    return answer


def test_list_detail_ack_and_resolve_over_http(cases_server: ServerProcess, project: Project) -> None:
    receiver = Receiver(503, 204)
    try:
        hook = project.client.post("/api/v1/webhooks", json={"url": receiver.url})
        assert hook.status_code == 201, hook.text
        made = escalated(project)
        case_id, trace_id = made["case_id"], made["trace_id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the delivery worker: refused once, then delivered
            notes = project.client.get(f"/api/v1/cases/{case_id}").json()["notifications"]
            if notes and notes[0]["status"] == "delivered":
                break
            time.sleep(0.1)
        assert [a["status_code"] for a in notes[0]["delivery_attempts"]] == [503, 204]
        project.client.delete(f"/api/v1/webhooks/{hook.json()['id']}")
    finally:
        receiver.close()
    other = escalated(project)
    client = ui_client(cases_server, project.key)

    listed = client.get("/cases", params={"status": "open"})
    assert listed.status_code == 200
    assert f'href="/cases/{case_id}"' in listed.text and f'href="/cases/{other["case_id"]}"' in listed.text
    assert f'href="/traces/{trace_id}"' in listed.text and "ESCALATE" in listed.text
    assert listed.text.count("data-row") >= 2
    assert case_id not in client.get("/cases", params={"status": "resolved"}).text
    assert case_id not in client.get("/cases", params={"reason_code": "NO_SUCH_REASON"}).text
    assert case_id in client.get("/cases", params={"severity": "high", "reason_code": "PII_DETECTED"}).text
    assert client.get("/cases", params={"status": "closed"}).status_code == 400
    assert client.get("/cases", params={"page": "0"}).status_code == 400
    for bad in ({"reason_code": "a\x00b"}, {"reason_code": "x" * 201}, {"severity": "urgent"}):
        assert client.get("/cases", params=bad).status_code == 400, bad  # a NUL was PostgreSQL's 500

    page = client.get(f"/cases/{case_id}")
    assert page.status_code == 200
    html = page.text
    assert f'href="/traces/{trace_id}"' in html and "PII_DETECTED" in html
    assert 'href="/policies/default-safety?version=1"' in html and "heuristic" in html
    assert EMAIL not in html  # the decision's signals are masked
    attempts = re.findall(r'<tr class="attempt"><td class="num">(\d)</td>.*?<td class="num">(\d+|–)</td>', html, re.S)
    assert attempts == [("1", "503"), ("2", "204")], attempts
    assert f'action="/cases/{case_id}/ack"' in html and f'action="/cases/{case_id}/resolve"' in html

    token = csrf_of(html)
    assert client.post(f"/cases/{case_id}/ack").status_code == 403  # no CSRF token
    acked = client.post(f"/cases/{case_id}/ack", data={"csrf_token": token})
    assert acked.status_code == 303 and acked.headers["location"] == f"/cases/{case_id}"
    assert project.client.get(f"/api/v1/cases/{case_id}").json()["status"] == "acknowledged"
    again = client.post(f"/cases/{case_id}/ack", data={"csrf_token": token})
    assert again.status_code == 409 and "cannot be acknowledged" in again.text and 'role="alert"' in again.text

    note = "<script>alert('note')</script> 고객에게 안내함"
    resolved = client.post(f"/cases/{case_id}/resolve", data={"csrf_token": token, "note": note})
    assert resolved.status_code == 303
    body = project.client.get(f"/api/v1/cases/{case_id}").json()
    assert body["status"] == "resolved" and body["note"] == note
    shown = client.get(f"/cases/{case_id}").text
    assert "&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt; 고객에게 안내함" in shown and "<script>alert" not in shown
    twice = client.post(f"/cases/{case_id}/resolve", data={"csrf_token": token, "note": "again"})
    assert twice.status_code == 409 and "cannot be resolved again" in twice.text
    korean = client.post(f"/cases/{case_id}/resolve", data={"csrf_token": token}, headers={"accept-language": "ko"})
    assert korean.status_code == 409 and "이 케이스는 해결됨 상태라 다시 해결 처리할 수 없습니다." in korean.text
    assert project.client.get(f"/api/v1/cases/{case_id}").json()["note"] == note  # the refused move wrote nothing

    # Straight from open to resolved, as the API allows.
    assert client.post(f"/cases/{other['case_id']}/resolve", data={"csrf_token": token}).status_code == 303
    assert project.client.get(f"/api/v1/cases/{other['case_id']}").json()["status"] == "resolved"

    assert client.get("/cases/" + "ab" * 16).status_code == 404
    assert client.get("/cases/not-an-id").status_code == 404
    with own_project(cases_server, "ui-cases-other") as stranger:
        assert ui_client(cases_server, stranger.key).get(f"/cases/{case_id}").status_code == 404


def test_ack_and_resolve_in_a_browser(chromium: Any, cases_server: ServerProcess, project: Project) -> None:
    if "sqlite" not in cases_server.database_url:
        pytest.skip("the browser walk runs once, on SQLite")
    case_id = escalated(project)["case_id"]
    with browser_session(chromium, cases_server, project.key) as ui:
        ui.goto("/cases?status=open")
        row = ui.page.locator(f"tr[data-case='{case_id}']")
        assert row.count() == 1 and "open" in row.inner_text()
        ui.shot("cases")
        row.locator(f"a[href='/cases/{case_id}']").click()
        ui.page.wait_for_url(f"**/cases/{case_id}")
        stale = ui.context.new_page()  # a second tab, left on the open case
        stale.goto(f"/cases/{case_id}")

        ui.page.click("#ack")
        ui.page.wait_for_load_state()
        assert ui.page.inner_text("#case-status") == "acknowledged"
        assert ui.page.locator("#ack").count() == 0
        ui.page.fill("#note", "False positive: a test address. <img src=x onerror=alert(1)>")
        ui.page.click("#resolve")
        ui.page.wait_for_load_state()
        assert ui.page.inner_text("#case-status") == "resolved"
        assert "<img src=x onerror=alert(1)>" in ui.page.inner_text("#case-note")
        assert ui.page.locator("#case-note img").count() == 0
        assert ui.page.locator("#resolve").count() == 0
        ui.shot("case")

        stale.fill("#note", "resolved twice?")
        stale.click("#resolve")
        stale.wait_for_load_state()
        assert "cannot be resolved again" in stale.inner_text("#case-error")
        assert stale.inner_text("#case-status") == "resolved"
        assert "resolved twice?" in stale.inner_text("#case-error")  # the unsaved note is not lost
        stale.close()

        ui.goto("/cases?status=resolved")
        assert ui.page.locator(f"tr[data-case='{case_id}']").count() == 1
        ui.goto("/cases?status=open")
        assert ui.page.locator(f"tr[data-case='{case_id}']").count() == 0
