"""The policies pages through a real server: versions with their active, in-force and shadow
markers, a version's YAML and rules, a pasted version refused in place with each error's path (and
nothing stored), activation and shadow, and a backtest's transitions with sample traces, the same
as the API's; over plain HTTP on both databases, and in Chromium."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import BACKENDS, Project, ServerProcess, browser_session, csrf_of, own_project, ui_client
from tracehub.seed import DEFAULT_POLICY

BUDGET = 100
# The spec's default-safety rule, and a BLOCK over a token budget after it.
BUDGET_DEFINITION = """# a token budget after the safety rule
rules:
  - priority: 10
    when:
      any:
        - {field: signals.pii, op: eq, value: true}
    then: {action: ESCALATE, reason_code: PII_DETECTED, severity: high}
  - id: token-budget
    priority: 20
    when: {field: trace.total_tokens, op: gt, value: @BUDGET@}
    then: {action: BLOCK, reason_code: TOKEN_BUDGET, severity: medium}
    metadata: {owner: "<b>platform</b>"}
""".replace("@BUDGET@", str(BUDGET))
BAD_DEFINITION = """rules:
  - priority: 10
    when:
      any:
        - {field: signals.pii, op: eq, value: true}
        - {field: signals.pii, op: equals, value: 1}
    then: {action: ESCALATE, reason_code: PII_DETECTED, severity: high}
"""


@pytest.fixture(scope="module", params=BACKENDS)
def policy_server(request: pytest.FixtureRequest, server_factory: Any) -> ServerProcess:
    return server_factory(request.param)  # type: ignore[no-any-return]


@pytest.fixture
def project(policy_server: ServerProcess) -> Iterator[Project]:
    """A project of its own with default-safety v1 active and two traces: one over the budget."""
    with own_project(policy_server, "ui-policies", auto_decide=False) as p:
        r = p.client.post("/api/v1/policies", json={**DEFAULT_POLICY, "description": "<script>alert(1)</script>"})
        assert r.status_code == 201, r.text
        for tokens in (BUDGET * 5, BUDGET // 2):
            _trace(p, tokens)
        yield p


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


def _trace(p: Project, tokens: int) -> str:
    trace_id, start = secrets.token_hex(16), time.time() - 120
    r = p.client.post("/api/v1/ingest/traces", json={
        "trace": {"trace_id": trace_id, "name": "chat", "input_text": "what is the capital of France?",
                  "output_text": "Paris.", "model": "gpt-4.1-mini", "start_time": _iso(start),
                  "end_time": _iso(start + 1)},
        "spans": [{"span_id": secrets.token_hex(8), "name": "chat", "span_type": "llm", "start_time": _iso(start),
                   "end_time": _iso(start + 1), "status": "success", "input_tokens": tokens - 10,
                   "output_tokens": 10}]})
    assert r.status_code == 200, r.text
    return trace_id


def _markers(html: str, version: int) -> str:
    row = re.search(f'<tr data-row tabindex="-1" data-version="{version}".*?</tr>', html, re.S)
    assert row, html
    return " ".join(re.findall(r'data-marker="([a-z-]+)"', row.group(0)))


def test_policy_pages_over_http(policy_server: ServerProcess, project: Project) -> None:
    client = ui_client(policy_server, project.key)
    listed = client.get("/policies")
    assert listed.status_code == 200
    assert "default-safety" in listed.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in listed.text
    assert "<script>alert(1)" not in listed.text
    assert _markers(listed.text, 1) == "active in-force"
    policy_id = project.client.get("/api/v1/policies/default-safety").json()["policy_id"]

    page = client.get(f"/policies/{policy_id}")
    assert page.status_code == 200
    yaml_text = re.search(r'<pre class="panel yaml" id="definition-yaml">(.*?)</pre>', page.text, re.S)
    assert yaml_text and "reason_code: PII_DETECTED" in yaml_text.group(1)
    assert yaml_text.group(1).index("priority") < yaml_text.group(1).index("when")  # reading order
    draft = re.search(r'<textarea id="definition"[^>]*>(.*?)</textarea>', page.text, re.S)
    assert draft and draft.group(1) == yaml_text.group(1)  # a new version starts as an edit of this one
    assert "signals.pii" in page.text and "ESCALATE" in page.text
    assert client.get("/policies/default-safety").status_code == 200  # by name too
    assert client.get(f"/policies/{policy_id}", params={"version": 9}).status_code == 404
    assert client.get(f"/policies/{policy_id}", params={"version": "x"}).status_code == 400
    assert client.get("/policies/no-such-policy").status_code == 404
    token = csrf_of(page.text)

    bad = client.post(f"/policies/{policy_id}/versions", data={"csrf_token": token, "definition": BAD_DEFINITION})
    assert bad.status_code == 422 and '<code class="path">rules[0].when.any[1].op</code>' in bad.text
    assert "equals" in bad.text and BAD_DEFINITION.splitlines()[5].replace("'", "&#39;") in bad.text  # kept
    broken = client.post(f"/policies/{policy_id}/versions", data={"csrf_token": token, "definition": "rules: [\n"})
    assert broken.status_code == 422 and 'role="alert"' in broken.text
    assert project.client.get("/api/v1/policies/default-safety").json()["latest_version"] == 1  # nothing stored

    made = client.post(f"/policies/{policy_id}/versions",
                       data={"csrf_token": token, "definition": BUDGET_DEFINITION, "description": "budget"})
    assert made.status_code == 303 and made.headers["location"] == f"/policies/{policy_id}?version=2"
    api_v2 = project.client.get(f"/api/v1/policies/{policy_id}/versions").json()["items"][0]
    assert (api_v2["version"], api_v2["source_format"], api_v2["description"]) == (2, "yaml", "budget")
    v2 = client.get(made.headers["location"]).text
    assert "token-budget" in v2 and "TOKEN_BUDGET" in v2 and "&lt;b&gt;platform&lt;/b&gt;" in v2
    assert _markers(v2, 1) == "active in-force" and _markers(v2, 2) == ""

    # The backtest: the same answer as the API's.
    run = client.get(f"/policies/{policy_id}/backtest", params={"version": 2, "last_hours": 1})
    assert run.status_code == 200
    from_api = project.client.post(f"/api/v1/policies/{policy_id}/backtest", params={"version": 2, "last_hours": 1})
    changed = [t for t in from_api.json()["transitions"] if t["from"] != t["to"]]
    assert [(t["from"], t["to"], t["count"]) for t in changed] == [("ALLOW_ANSWER", "BLOCK", 1)]
    row = re.search(r'<tr data-row tabindex="-1" class="changed" data-from="ALLOW_ANSWER" data-to="BLOCK">(.*?)</tr>',
                    run.text, re.S)
    assert row and '<td class="num count">1</td>' in row.group(1)
    assert f'href="/traces/{changed[0]["sample_trace_ids"][0]}"' in row.group(1)
    assert client.get(f"/policies/{policy_id}/backtest", params={"version": 2, "last_hours": 0}).status_code == 400
    korean = client.get(f"/policies/{policy_id}/backtest", params={"version": 2}, headers={"accept-language": "ko"})
    assert korean.status_code == 200 and "변경 후(이 버전)" in korean.text and "변경 예정: 1" in korean.text

    activated = client.post(f"/policies/{policy_id}/activate", data={"csrf_token": token, "version": "2"})
    assert activated.status_code == 303
    after = client.get(f"/policies/{policy_id}").text
    assert _markers(after, 2) == "active in-force" and _markers(after, 1) == ""
    assert project.client.get("/api/v1/policies/default-safety").json()["active_version"] == 2

    shadowed = client.post(f"/policies/{policy_id}/shadow", data={"csrf_token": token, "version": "1"})
    assert shadowed.status_code == 303
    assert _markers(client.get(f"/policies/{policy_id}").text, 1) == "shadow"
    assert project.client.get("/api/v1/policies/default-safety").json()["shadow_version"] == 1
    client.post(f"/policies/{policy_id}/shadow", data={"csrf_token": token, "clear": "1"})
    assert project.client.get("/api/v1/policies/default-safety").json()["shadow_version"] is None
    assert client.post(f"/policies/{policy_id}/activate", data={"version": "1"}).status_code == 403  # no token

    # A whole document on /policies makes a new policy; a bad one is refused with full paths.
    doc = '{"name": "budget-only", "definition": {"rules": [{"priority": 1, "when": {"field": "trace.total_tokens",' \
          ' "op": "gt", "value": 5}, "then": {"action": "BLOCK", "reason_code": "T", "severity": "low"}}]}}'
    new = client.post("/policies", data={"csrf_token": token, "document": doc})
    assert new.status_code == 303
    refused = client.post("/policies", data={"csrf_token": token, "document": doc.replace('"gt"', '"greater"')})
    assert refused.status_code == 422 and "definition.rules[0].when.op" in refused.text
    names = [p["name"] for p in project.client.get("/api/v1/policies").json()["items"]]
    assert names == ["budget-only", "default-safety"]


def test_versions_activation_and_backtest_in_a_browser(chromium: Any, policy_server: ServerProcess,
                                                       project: Project) -> None:
    if "sqlite" not in policy_server.database_url:
        pytest.skip("the browser walk runs once, on SQLite")
    with browser_session(chromium, policy_server, project.key) as ui:
        def marks(version: str) -> list[str]:
            found = ui.page.locator(f"tr[data-version='{version}'] td.markers [data-marker]")
            return [found.nth(i).get_attribute("data-marker") for i in range(found.count())]

        ui.goto("/policies")
        assert ui.page.locator("tbody[data-policy='default-safety'] tr[data-version]").count() == 1
        ui.page.click("tbody[data-policy='default-safety'] th a")
        ui.page.wait_for_load_state()

        ui.page.fill("#definition", BAD_DEFINITION)
        ui.page.click("#create-version")
        ui.page.wait_for_load_state()
        errors = ui.page.locator("#policy-errors li")
        assert errors.count() >= 1
        assert errors.first.locator("code.path").inner_text() == "rules[0].when.any[1].op"
        assert ui.page.input_value("#definition") == BAD_DEFINITION  # kept to fix in place
        assert ui.page.locator("table.versions tr[data-version]").count() == 1  # nothing stored

        ui.page.fill("#definition", BUDGET_DEFINITION)
        ui.page.click("#create-version")
        ui.page.wait_for_url("**?version=2")
        assert ui.page.locator("table.versions tr[data-version]").count() == 2
        assert marks("1") == ["active", "in-force"] and marks("2") == []

        ui.page.select_option("#backtest select[name=version]", "2")
        ui.page.fill("#backtest input[name=last_hours]", "2")
        ui.page.click("#run-backtest")
        ui.page.wait_for_selector("#backtest-result")
        changed = ui.page.locator("table.transitions tr.changed")
        assert changed.count() == 1
        assert changed.get_attribute("data-from") == "ALLOW_ANSWER" and changed.get_attribute("data-to") == "BLOCK"
        assert changed.locator("td.count").inner_text() == "1"
        ui.shot("policy-backtest")
        sample = changed.locator("td.samples a").first.get_attribute("href")
        assert sample and re.fullmatch(r"/traces/[0-9a-f]{32}", sample)

        ui.page.click("tr[data-version='2'] button.activate")
        ui.page.wait_for_load_state()
        assert marks("2") == ["active", "in-force"] and marks("1") == []
        assert ui.page.inner_text("tr[data-version='2'] td.markers") == "active in force"
        ui.goto("/policies")
        assert ui.page.locator("tbody[data-policy='default-safety'] tr[data-version]").count() == 2
        assert ui.page.locator("tr[data-version='2'] [data-marker=active]").count() == 1
        ui.shot("policies")
