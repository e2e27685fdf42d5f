"""The trace page (`/traces/{trace_id}`) through a real server: traces sent by the real OTel SDK
exporter and OTLP, a decision by the seed's default policy; in Chromium the tree, groups of
repeated siblings, the span panel, jumps to errors and judges, the deep link and a 10,000-span
trace; over plain HTTP on both databases the page, the panel fragment, escaping and errors."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1.trace_pb2 import Status as OtlpStatus
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from conftest import BACKENDS, Project, ServerProcess, browser_session, own_project, ui_client
from otlp_helpers import make_span, request_of
from tracehub.api.traces import tree_and_timeline
from tracehub.seed import DEFAULT_POLICY
from tracehub.ui.trace import layout

EMAIL = "kim.minsu@example.com"
HOSTILE = "<img src=x onerror=\"window.__xss=1\">"
HOSTILE_NAME = "</script><script>window.__xss=2</script><!--"
RETRIEVES = 6


@pytest.fixture(scope="module", params=BACKENDS)
def trace_server(request: pytest.FixtureRequest, server_factory: Any) -> ServerProcess:
    return server_factory(request.param)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def project(trace_server: ServerProcess) -> Iterator[Project]:
    with own_project(trace_server, "ui-trace", auto_decide=False) as p:
        r = p.client.post("/api/v1/policies", json=DEFAULT_POLICY)
        assert r.status_code in (200, 201), r.text
        yield p


def _wait(p: Project, trace_id: str, spans: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = p.client.get(f"/api/v1/traces/{trace_id}/spans", params={"page_size": 1})
        if r.status_code == 200 and r.json()["total"] >= spans:
            return dict(p.client.get(f"/api/v1/traces/{trace_id}").json()) if spans < 1000 else {}
        time.sleep(0.1)
    raise AssertionError(f"trace {trace_id} did not reach {spans} spans")


@pytest.fixture(scope="module")
def agent(trace_server: ServerProcess, project: Project) -> dict[str, Any]:
    """An agent's trace from the OTel SDK: an LLM call, six retrievals, a failing lookup, a nested
    plan; then decided by the default-safety policy (PII: ESCALATE, a judge span in the tree)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "ui-trace-test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=trace_server.url + "/v1/traces", headers={"x-api-key": project.key})))
    tracer = provider.get_tracer("ui.test")
    with tracer.start_as_current_span("agent.request", attributes={
            "user.id": "user-7", "session.id": "sess-7", "input.value": f"My e-mail is {EMAIL}, call me",
            "deployment.environment": "staging"}) as root:
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 5,
                "custom.flag": True, HOSTILE: HOSTILE, "nested.json": json.dumps({"a": [1, 2]}),
                "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [
                    {"type": "text", "content": "Where is my refund?"}]}]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "stop", "parts": [
                    {"type": "text", "content": "It is on its way."}]}])}):
            pass
        for i in range(RETRIEVES):
            with tracer.start_as_current_span("retrieve", attributes={"doc.index": i}):
                pass
        with tracer.start_as_current_span("lookup") as failing:
            failing.set_status(Status(StatusCode.ERROR, "tool timed out"))
        # The Vercel AI SDK's tool span: its name says only `ai.toolCall`, its tool (untrusted text) more.
        with tracer.start_as_current_span("ai.toolCall", attributes={
                "ai.operationId": "ai.toolCall", "ai.toolCall.name": HOSTILE}):
            pass
        with tracer.start_as_current_span(HOSTILE_NAME):
            pass
        with tracer.start_as_current_span("plan"):
            with tracer.start_as_current_span("think"):
                time.sleep(0.01)
        root.set_attribute("output.value", "Noted, we will call you.")
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    detail = _wait(project, trace_id, 6 + RETRIEVES + 1)
    decided = project.client.post("/api/v1/decide", json={"trace_id": trace_id})
    assert decided.status_code == 201, decided.text
    detail = project.client.get(f"/api/v1/traces/{trace_id}").json()
    spans = {s["name"]: s for s in detail["spans"]}
    return {"trace_id": trace_id, "detail": detail, "spans": spans, "decision": decided.json()}


def island(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="spans">(.*?)</script>', page, re.S)
    assert found, page[:2000]
    return dict(json.loads(found.group(1)))


def test_page_panel_and_errors_over_http(trace_server: ServerProcess, project: Project,
                                         agent: dict[str, Any]) -> None:
    client = ui_client(trace_server, project.key)
    trace_id, spans = agent["trace_id"], agent["spans"]
    r = client.get(f"/traces/{trace_id}")
    assert r.status_code == 200, r.text
    page = r.text
    assert "agent.request" in page and "ESCALATE" in page and "PII_DETECTED" in page and "default-safety" in page
    assert 'href="/sessions?session_id=sess-7"' in page and "user-7" in page and "gpt-4o-mini" in page
    assert EMAIL not in page  # signals are masked; texts are only in a span's panel
    assert HOSTILE_NAME not in page  # the data island ends only where the page ends it
    rows = island(page)["rows"]
    assert HOSTILE_NAME in [row[1] for row in rows]
    ids = [row[0] for row in rows if row[0]]
    assert sorted(ids) == sorted(s["span_id"] for s in agent["detail"]["spans"])  # every span, once
    [group] = [row for row in rows if row[8] & 256]
    assert (group[1], group[10], group[9] - rows.index(group) - 1) == ("retrieve", RETRIEVES, RETRIEVES)
    assert next(row for row in rows if row[1] == "lookup")[8] & 1  # error flag
    assert HOSTILE not in page and next(row for row in rows if row[0] == spans["ai.toolCall"]["span_id"])[1] == (
        "ai.toolCall · " + HOSTILE)
    assert next(row for row in rows if row[2] == "judge")[8] & 4  # judge flag
    critical = [row[1] for row in rows if row[8] & 8 and not row[8] & 256]
    assert critical[0] == "agent.request" and len(critical) >= 2

    # The span's panel: its own fragment for htmx, escaped; the page with it open for a deep link.
    llm = spans["chat gpt-4o-mini"]["span_id"]
    fragment = client.get(f"/traces/{trace_id}/spans/{llm}", headers={"hx-request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert "custom.flag" in fragment.text and "&lt;img src=x onerror=" in fragment.text and HOSTILE not in fragment.text
    plain = client.get(f"/traces/{trace_id}/spans/{llm}")
    assert plain.status_code == 303 and plain.headers["location"] == f"/traces/{trace_id}?span={llm}"
    tool = client.get(f"/traces/{trace_id}/spans/{spans['ai.toolCall']['span_id']}", headers={"hx-request": "true"})
    assert tool.status_code == 200 and HOSTILE not in tool.text
    assert '<h2 class="span-title">ai.toolCall <span class="muted tool-name">· &lt;img src=x onerror=' in tool.text
    deep = client.get(f"/traces/{trace_id.upper()}?span={llm}")
    assert deep.status_code == 200 and 'data-span-id="' + llm in deep.text and f'data-selected="{llm}"' in deep.text

    assert client.get(f"/traces/{secrets.token_hex(16)}").status_code == 404
    assert client.get("/traces/not-an-id").status_code == 400
    assert client.get(f"/traces/{trace_id}?span=zz").status_code == 400
    missing = client.get(f"/traces/{trace_id}/spans/{secrets.token_hex(8)}", headers={"hx-request": "true"})
    assert missing.status_code == 404
    # Another project's session does not see the trace.
    with own_project(trace_server, "ui-trace-other") as other:
        assert ui_client(trace_server, other.key).get(f"/traces/{trace_id}").status_code == 404


def _sqlite_only(server: ServerProcess) -> None:
    if "sqlite" not in server.database_url:
        pytest.skip("the browser walk runs once, on SQLite")


def _rows(ui: Any) -> list[str]:
    return list(ui.page.eval_on_selector_all(".tt-row:not([hidden]) .tt-label", "els => els.map(e => e.textContent)"))


def test_tree_panel_jumps_and_decision_in_a_browser(chromium: Any, trace_server: ServerProcess, project: Project,
                                                    agent: dict[str, Any]) -> None:
    _sqlite_only(trace_server)
    trace_id, spans = agent["trace_id"], agent["spans"]
    with browser_session(chromium, trace_server, project.key) as ui:
        ui.goto(f"/traces/{trace_id}")
        ui.page.wait_for_selector("#tt[data-ready]")
        shown = _rows(ui)
        assert shown[0] == "agent.request" and f"retrieve ×{RETRIEVES}" in shown and "retrieve" not in shown
        assert "think" in shown and ui.page.inner_text("#tt-count") == str(len(shown))
        assert HOSTILE_NAME in shown and ui.page.evaluate("window.__xss") is None
        assert "ai.toolCall · " + HOSTILE in shown  # as text
        # The group of repeated siblings opens; the root collapses and expands.
        ui.page.click(f".tt-row.group:has-text('retrieve ×{RETRIEVES}')")
        assert _rows(ui).count("retrieve") == RETRIEVES
        ui.page.click(".tt-row[aria-level='1'] .tt-tog")
        assert [r for r in _rows(ui) if r != "judge default-safety"] == ["agent.request"]
        ui.page.click(".tt-row[aria-level='1'] .tt-tog")
        assert "think" in _rows(ui)
        # A span's panel.
        ui.page.click(".tt-row:has-text('chat gpt-4o-mini') .tt-label")
        ui.page.wait_for_selector("#span-panel .span-title:has-text('chat gpt-4o-mini')")
        panel = ui.page.inner_text("#span-panel")
        assert "custom.flag" in panel and "gen_ai.request.model" in panel and HOSTILE in panel  # as text
        assert ui.page.locator("#span-panel .msg:has-text('Where is my refund?')").count() == 1  # as chat
        assert ui.page.evaluate("window.__xss") is None
        assert f"span={spans['chat gpt-4o-mini']['span_id']}" in ui.page.url
        ui.shot("trace-span")
        # Next error: the button, then the key; the judge span by its key.
        ui.page.click("button[data-tt=error]")
        ui.page.wait_for_selector("#span-panel .span-title:has-text('lookup')")
        assert ui.page.inner_text(".tt-row.sel .tt-label") == "lookup"
        assert "tool timed out" in ui.page.inner_text("#span-panel")
        ui.page.keyboard.press("g")
        ui.page.wait_for_selector("#span-panel .span-title:has-text('judge default-safety')")
        assert "judge" in ui.page.get_attribute(".tt-row.sel", "class")
        ui.page.keyboard.press("k")
        ui.page.keyboard.press("Enter")
        selected = ui.page.inner_text(".tt-row.sel .tt-label")
        ui.page.wait_for_selector(f"#span-panel .span-title:has-text('{selected}')")
        # The decision panel, and its link to the judge span in the tree.
        decisions = ui.page.inner_text("#decisions")
        assert "ESCALATE" in decisions and "PII_DETECTED" in decisions and "default-safety" in decisions
        assert EMAIL not in decisions
        ui.page.click(f"#decisions a[data-span='{agent['decision']['judge_span_id']}']")
        ui.page.wait_for_selector("#span-panel .span-title:has-text('judge default-safety')")
        ui.shot("trace")

        # The deep link opens the span, its row selected in view.
        retrieve = next(s for s in agent["detail"]["spans"] if s["name"] == "retrieve")["span_id"]
        ui.goto(f"/traces/{trace_id}?span={retrieve}")
        ui.page.wait_for_selector("#tt[data-ready]")
        assert ui.page.inner_text("#span-panel .span-title") == "retrieve"
        assert ui.page.get_attribute(".tt-row.sel", "data-span-id") == retrieve  # its group opened


def test_ten_thousand_spans_in_a_browser(chromium: Any, trace_server: ServerProcess, project: Project) -> None:
    """Root, 99 steps, 100 tools under each (names all different: no groups); one tool fails."""
    _sqlite_only(trace_server)
    tid, root = secrets.token_bytes(16), secrets.token_bytes(8)
    t0 = time.time_ns() - 60_000_000_000
    spans = [make_span(tid, root, name="big.root", start=t0, end=t0 + 20_000_000_000)]
    for i in range(99):
        step = secrets.token_bytes(8)
        spans.append(make_span(tid, step, root, name=f"step-{i}", start=t0 + i * 100_000_000,
                               end=t0 + (i + 1) * 100_000_000))
        for j in range(100):
            start = t0 + i * 100_000_000 + j * 1_000_000
            spans.append(make_span(tid, secrets.token_bytes(8), step, name=f"tool-{i}-{j}", start=start,
                                   end=start + 900_000))
    spans[-50].status.code = OtlpStatus.STATUS_CODE_ERROR
    for at in range(0, len(spans), 2500):
        r = httpx.post(trace_server.url + "/v1/traces", content=request_of(*spans[at:at + 2500]), timeout=60,
                       headers={"content-type": "application/x-protobuf", "x-api-key": project.key})
        assert r.status_code == 200, r.text
    trace_id = tid.hex()
    _wait(project, trace_id, 10_000)
    assert len(spans) == 10_000
    with browser_session(chromium, trace_server, project.key) as ui:
        ui.goto(f"/traces/{trace_id}")
        ui.page.wait_for_selector("#tt[data-ready]")
        assert ui.page.inner_text("[data-tt-total]") == "10,000"
        assert ui.page.inner_text("#tt-count") == "10,000"  # every span a row to scroll to
        assert ui.page.locator(".tt-row").count() < 200  # but only the rows in view are drawn
        ui.page.eval_on_selector("#tt-viewport", "el => { el.scrollTop = el.scrollHeight; }")
        ui.page.wait_for_selector(".tt-row:not([hidden]) .tt-label:text-is('tool-98-99')")
        ui.page.click("button[data-tt=error]")
        ui.page.wait_for_selector("#span-panel .span-title:has-text('tool-98-50')")
        ui.page.click("button[data-tt=collapse]")
        assert ui.page.inner_text("#tt-count") == "1"
        ui.page.click("button[data-tt=expand]")
        assert ui.page.inner_text("#tt-count") == "10,000"


def _tree_nodes(tree: list[dict[str, Any]]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """Each node of the API's tree: (its parent's span id, the node)."""
    found: dict[str, tuple[str | None, dict[str, Any]]] = {}
    stack: list[tuple[dict[str, Any], str | None]] = [(n, n.get("continued_from")) for n in tree]
    while stack:
        node, parent = stack.pop()
        found[node["span_id"]] = (parent, node)
        stack.extend((c, node["span_id"]) for c in node["children"])
    return found


def test_layout_is_the_apis_tree() -> None:
    """The page's flattened tree has the API's tops, parents, depths and marks (cycles, remote and
    missing parents, the nesting cut), every span once; repeated siblings become a group row."""
    rows: list[dict[str, Any]] = []

    def span(span_id: str, parent: str | None, name: str = "op", remote: bool = False, end: bool = True,
             tool: str | None = None) -> None:
        start = 1_000 + len(rows)
        rows.append({"span_id": span_id, "parent_span_id": parent, "parent_remote": remote, "name": name,
                     "span_type": "tool" if tool else "span", "tool_name": tool, "status": "success",
                     "start_ns": start, "end_ns": start + 5 if end else None, "total_tokens": None})

    span("root", None)
    for i in range(250):  # a chain: cut at 100 and 200 levels
        span(f"c{i}", "root" if i == 0 else f"c{i - 1}")
    for i in range(7):  # one group a tool: five calls of one, one of another
        span(f"t{i}", "root", name="ai.toolCall", tool="search" if i == 3 else "getWeather")
    span("t7", "root", name="get_weather", tool="get_weather")  # the name says it
    for i in range(7):
        span(f"r{i}", "root", name="retrieve")
    span("a", "b")  # a two-span cycle, with a child
    span("b", "a")
    span("a1", "a")
    span("self", "self")
    span("remote", "ffff", remote=True)
    span("missing", "eeee", end=False)
    trace = {"start_ns": 1_000, "end_ns": 2_000, "root_span_id": "root"}
    tree, _ = tree_and_timeline(rows, 1_000)
    expected = _tree_nodes(tree)
    out = layout(rows, trace)["rows"]
    spans_out = [r for r in out if r[0]]
    assert sorted(r[0] for r in spans_out) == sorted(r["span_id"] for r in rows)

    def span_parent(at: int) -> int:
        at = out[at][11]
        while at >= 0 and not out[at][0]:
            at = out[at][11]
        return at

    def depth(at: int) -> int:
        d = 0
        while (at := span_parent(at)) >= 0:
            d += 1
        return d

    marks = {"parent_remote": 16, "parent_not_received": 32, "cycle": 64, "continued_from": 128}
    for at, row in enumerate(out):
        if not row[0]:
            continue
        parent, node = expected[row[0]]
        up = span_parent(at)
        assert (out[up][0] if up >= 0 else None) == parent, row[0]
        assert depth(at) == node["depth"], row[0]
        for mark, bit in marks.items():
            assert bool(row[8] & bit) == bool(node.get(mark)), (row[0], mark)
        assert out[row[9] - 1] is row or row[9] > at  # a subtree ends after its row
    tools, group = [r for r in out if r[8] & 256]
    assert (tools[1], tools[10]) == ("ai.toolCall · getWeather", 6)
    assert [r[1] for r in out if r[0] in ("t3", "t7")] == ["ai.toolCall · search", "get_weather"]
    assert (group[1], group[10]) == ("retrieve", 7)
    assert all(out[out.index(group) + 1 + i][1] == "retrieve" for i in range(7))
    [still_open] = [r for r in out if r[0] == "missing"]
    assert still_open[8] & 2 and still_open[6] is None
    # The critical path: the root, then the child that ends last (the last retrieval).
    assert [r[0] for r in out if r[8] & 8 and r[0]] == ["root", "r6"]
