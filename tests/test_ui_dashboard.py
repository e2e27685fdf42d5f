"""The `/` dashboard and trace list through a real server: KPI cards against what was ingested,
filters and search kept in a shareable URL, pagination and the pausable live tail in Chromium;
the page, its fragments and its errors over plain HTTP on both databases."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import Project, ServerProcess, browser_session, own_project, ui_sign_in

MS = 1_000_000
MINUTE = 60_000 * MS


def rfc3339(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class Sent:
    trace_id: str
    name: str
    model: str
    status: str
    tokens: tuple[int, int]
    cost: float


def send(p: Project, name: str, *, minutes_ago: float, model: str = "gpt-4o-mini", status: str = "success",
         tokens: tuple[int, int] = (100, 20), cost: float = 0.001, session: str | None = None,
         user: str = "ana", environment: str = "prod", input_text: str = "", output_text: str = "",
         running: bool = False) -> Sent:
    """One trace and its LLM span through the JSON ingest API."""
    trace_id = secrets.token_hex(16)
    start = time.time_ns() - int(minutes_ago * MINUTE)
    end = start + 800 * MS
    trace: dict[str, Any] = {"trace_id": trace_id, "name": name, "status": status, "start_time": rfc3339(start),
                             "model": model, "environment": environment, "user_id": user,
                             "input_text": input_text or f"question for {name}", "output_text": output_text}
    span: dict[str, Any] = {"span_id": secrets.token_hex(8), "name": "llm", "span_type": "llm",
                            "start_time": rfc3339(start), "model": model, "input_tokens": tokens[0],
                            "output_tokens": tokens[1], "cost_usd": cost}
    if session:
        trace["session_id"] = session
    if not running:
        trace["end_time"] = span["end_time"] = rfc3339(end)
    r = p.client.post("/api/v1/ingest/traces", json={"trace": trace, "spans": [span]})
    assert r.status_code in (200, 201, 202), r.text
    return Sent(trace_id, name, model, status, tokens, cost)


def wait_stored(p: Project, count: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if p.client.get("/api/v1/traces", params={"page_size": 1}).json()["total"] >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} traces stored")


@pytest.fixture(scope="module")
def ui_server(server_factory: Any) -> ServerProcess:
    return server_factory("sqlite")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def loaded(ui_server: ServerProcess) -> Iterator[tuple[Project, list[Sent], list[str]]]:
    """Seven traces of the last hour: two errors, one still running, two models; two decided."""
    with own_project(ui_server, "ui-dash", auto_decide=False) as p:
        sent = [
            send(p, "checkout-flow", minutes_ago=50, tokens=(120, 30), cost=0.0012),
            send(p, "refund-agent", minutes_ago=45, status="error", model="claude-3-5-haiku", tokens=(80, 0),
                 cost=0.0004),
            send(p, "refund-agent", minutes_ago=40, model="claude-3-5-haiku", tokens=(200, 90), cost=0.002),
            send(p, "search-docs", minutes_ago=30, tokens=(50, 25), cost=0.0003,
                 input_text="where is the invoice <script>alert(1)</script>"),
            send(p, "search-docs", minutes_ago=20, status="error", tokens=(60, 0), cost=0.0002),
            send(p, "checkout-flow", minutes_ago=10, tokens=(300, 120), cost=0.004),
            send(p, "long-task", minutes_ago=5, status="running", tokens=(10, 0), cost=0.0, running=True),
        ]
        wait_stored(p, len(sent))
        actions = []
        for s in sent[:2]:
            r = p.client.post("/api/v1/decide", json={"trace_id": s.trace_id})
            assert r.status_code == 201, r.text
            actions.append(r.json()["action"])
        yield p, sent, actions


def row_ids(page: Any) -> list[str]:
    return list(page.locator("#trace-list tr[data-trace-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.traceId)"))


def newest_first(sent: list[Sent]) -> list[str]:
    return [s.trace_id for s in reversed(sent)]


def test_kpis_filters_search_shared_link_and_pages(chromium: Any, ui_server: ServerProcess,
                                                  loaded: tuple[Project, list[Sent], list[str]]) -> None:
    p, sent, actions = loaded
    with browser_session(chromium, ui_server, p.key) as ui:
        ui.goto("/")
        page = ui.page
        page.wait_for_selector("#overview [data-kpi=traces]")
        kpi = {k: page.locator(f"[data-kpi={k}] .value").inner_text()
               for k in ("traces", "error_rate", "open_traces", "tokens", "cost")}
        tokens = sum(a + b for s in sent for a, b in [s.tokens])
        assert kpi["traces"] == "7" and kpi["error_rate"] == "28.6%" and kpi["open_traces"] == "1"
        assert kpi["tokens"] == f"{tokens:,}"
        assert kpi["cost"] == f"${sum(s.cost for s in sent):.4f}"
        for action in set(actions):
            assert page.locator(f"[data-action={action}]").inner_text() == str(actions.count(action))
        assert page.locator("svg.chart").count() == 4
        assert row_ids(page) == newest_first(sent)
        # Untrusted text is shown as text.
        assert "<script>alert(1)</script>" in page.locator("#trace-list").inner_text()
        ui.shot("dashboard")

        page.select_option("select[name=status]", "error")  # applied on change
        page.wait_for_url(re.compile(r"status=error"))
        assert row_ids(page) == newest_first([s for s in sent if s.status == "error"])
        page.fill("input[name=model]", "claude-3-5-haiku")
        page.fill("[data-search]", "refund")
        page.press("[data-search]", "Enter")
        page.wait_for_url(re.compile(r"search=refund"))
        query = parse_qs(urlsplit(page.url).query)
        assert query == {"status": ["error"], "model": ["claude-3-5-haiku"], "search": ["refund"]}
        expected = [sent[1].trace_id]
        assert row_ids(page) == expected
        assert page.locator("[data-total]").inner_text() == "1"
        shared = page.url.removeprefix(ui_server.url)

    # The link opens the same view for anyone signed in to the project.
    with browser_session(chromium, ui_server, p.key) as other:
        other.goto(shared)
        assert row_ids(other.page) == expected
        assert other.page.locator("select[name=status]").input_value() == "error"

        other.goto("/?page_size=3")
        first = row_ids(other.page)
        other.page.click("nav.pager a[rel=next]")
        other.page.wait_for_url(re.compile(r"page=2"))
        second = row_ids(other.page)
        other.page.click("nav.pager a[rel=next]")
        other.page.wait_for_url(re.compile(r"page=3"))
        third = row_ids(other.page)
        assert first + second + third == newest_first(sent)
        assert [len(first), len(second), len(third)] == [3, 3, 1]
        assert other.page.locator("[data-live]").count() == 0  # the tail runs on page 1 only


def test_live_tail_shows_new_traces_unless_paused(chromium: Any, ui_server: ServerProcess) -> None:
    with own_project(ui_server, "ui-live", auto_decide=False) as p, browser_session(chromium, ui_server, p.key) as ui:
        ui.goto("/")
        assert ui.page.locator("#trace-list tr[data-trace-id]").count() == 0
        assert ui.page.get_by_text("No traces yet").first.is_visible()  # how to send traces
        first = send(p, "arrives-live", minutes_ago=0)
        ui.page.wait_for_selector(f"tr[data-trace-id='{first.trace_id}']", timeout=10_000)

        toggle = ui.page.locator("[data-live-toggle]")
        toggle.click()
        assert toggle.get_attribute("aria-pressed") == "true"
        polls: list[str] = []
        ui.page.on("request", lambda request: polls.append(request.url) if "/ui/traces/list" in request.url else None)
        held = send(p, "arrives-paused", minutes_ago=0)
        wait_stored(p, 2)
        ui.page.wait_for_timeout(4000)  # more than a polling period
        assert polls == [] and row_ids(ui.page) == [first.trace_id]
        toggle.click()
        ui.page.wait_for_selector(f"tr[data-trace-id='{held.trace_id}']", timeout=10_000)
        assert row_ids(ui.page) == [held.trace_id, first.trace_id]


def test_pages_render_on_both_databases(server: ServerProcess) -> None:
    with own_project(server, "ui-dash-http", auto_decide=False) as p:
        a = send(p, "render-a", minutes_ago=30, status="error", input_text="refund <b>now</b>")
        b = send(p, "render-b", minutes_ago=10, model="other-model")
        wait_stored(p, 2)
        client, _ = ui_sign_in(server, p.key)
        for path, wanted in (("/", [b, a]), ("/?status=error&search=refund&page_size=2", [a]),
                             ("/ui/traces/list?model=gpt-4o-mini", [a]), ("/?model=none", [])):
            r = client.get(path)
            assert r.status_code == 200, r.text
            assert "<b>now</b>" not in r.text
            assert re.findall(r'data-trace-id="([0-9a-f]{32})"', r.text) == [s.trace_id for s in wanted], path
        overview = client.get("/ui/dashboard/overview", params={"hours": 168})
        assert overview.status_code == 200
        assert re.search(r'data-kpi="traces">.*?<div class="value">2</div>', overview.text)
        assert overview.text.count('<svg class="chart"') == 4
        for bad in ("/?status=bogus", "/?page=0", "/?start_after=yesterday", "/ui/dashboard/overview?hours=5"):
            assert client.get(bad).status_code == 400, bad


def test_a_common_search_shows_its_capped_total_and_pages_on(server: ServerProcess) -> None:
    from otlp_helpers import make_span, post, request_of

    from tracehub.store.search import SEARCH_CAP

    with own_project(server, "ui-dash-cap", auto_decide=False) as p:
        now = time.time_ns()
        for first in range(0, SEARCH_CAP + 50, 350):
            spans = [make_span(secrets.token_bytes(16), secrets.token_bytes(8), name=f"ask {i}",
                               start=now - (i + 1) * MS, end=now - i * MS, input__value="where is my parcel?")
                     for i in range(first, min(first + 350, SEARCH_CAP + 50))]
            assert post(server, request_of(*spans), x_api_key=p.key).status_code == 200
        wait_stored(p, SEARCH_CAP + 50)
        client, _ = ui_sign_in(server, p.key)
        last = SEARCH_CAP // 50
        page = client.get("/", params={"search": "my parcel", "page": last})
        assert page.status_code == 200, page.text
        assert re.search(r"<strong data-total>1,000\+</strong>", page.text), page.text
        assert f"of {last}+" in page.text and 'rel="next"' in page.text  # the cap is no last page
        beyond = client.get("/", params={"search": "my parcel", "page": last + 1})
        assert len(re.findall(r'data-trace-id="([0-9a-f]{32})"', beyond.text)) == 50
