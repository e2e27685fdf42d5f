"""`/sessions` through a real server: sessions grouped with their totals, and one session as a
conversation in turn order, in Chromium; both pages over plain HTTP on both databases."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from test_ui_dashboard import Sent, send, wait_stored

from conftest import Project, ServerProcess, browser_session, own_project, ui_sign_in

TURNS = [("What is your refund policy?", "Refunds within 14 days."),
         ("And for <b>digital</b> goods?", "Digital goods are refunded only if unused."),
         ("Thanks, open a ticket", "Ticket T-1 opened.")]


def conversation(p: Project, session: str, user: str = "mina") -> list[Sent]:
    """The turns sent newest first, so the page's order comes from their start times."""
    sent = [send(p, f"turn-{i}", minutes_ago=30 - 10 * i, session=session, user=user, input_text=q, output_text=a,
                 tokens=(10 * (i + 1), 5), cost=0.001, status="error" if i == 1 else "success")
            for i, (q, a) in reversed(list(enumerate(TURNS)))]
    return list(reversed(sent))


@pytest.fixture(scope="module")
def ui_server(server_factory: Any) -> ServerProcess:
    return server_factory("sqlite")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def loaded(ui_server: ServerProcess) -> Iterator[tuple[Project, str, list[Sent]]]:
    with own_project(ui_server, "ui-sessions", auto_decide=False) as p:
        session = f"chat/{secrets.token_hex(4)}"  # a slash too: ids are free text
        turns = conversation(p, session)
        send(p, "other", minutes_ago=60, session="older-session", user="joon")
        send(p, "no-session", minutes_ago=2)
        wait_stored(p, 5)
        yield p, session, turns


def test_sessions_list_and_a_conversation_in_order(chromium: Any, ui_server: ServerProcess,
                                                   loaded: tuple[Project, str, list[Sent]]) -> None:
    p, session, turns = loaded
    with browser_session(chromium, ui_server, p.key) as ui:
        ui.goto("/sessions")
        rows = ui.page.locator("tr[data-session-id]")
        assert rows.evaluate_all("rs => rs.map(r => r.dataset.sessionId)") == [session, "older-session"]
        first = rows.first.locator("td").all_inner_texts()
        assert first[1] == "3" and first[4] == "75" and first[6] == "1" and first[7] == "mina"  # traces, tokens, errors

        rows.first.locator("a").click()
        ui.page.wait_for_selector("ol.conversation")
        assert ui.page.locator("[data-trace-count]").inner_text() == "3"
        items = ui.page.locator("ol.conversation > li")
        assert items.evaluate_all("ls => ls.map(l => l.dataset.traceId)") == [t.trace_id for t in turns]
        for i, (question, answer) in enumerate(TURNS):
            turn = items.nth(i)
            assert turn.locator("[data-role=user] pre").inner_text() == question
            assert turn.locator("[data-role=assistant] pre").inner_text() == answer
        assert items.nth(1).locator(".badge.error").count() == 1
        ui.shot("sessions")
        assert items.nth(2).locator(".turn-meta a").get_attribute("href") == f"/traces/{turns[2].trace_id}"


def test_sessions_render_on_both_databases(server: ServerProcess) -> None:
    with own_project(server, "ui-sessions-http", auto_decide=False) as p:
        turns = conversation(p, "s-1")
        wait_stored(p, 3)
        client, _ = ui_sign_in(server, p.key)
        listing = client.get("/sessions")
        assert listing.status_code == 200
        assert re.findall(r'data-session-id="([^"]+)"', listing.text) == ["s-1"]
        page = client.get("/sessions/s-1")
        assert page.status_code == 200
        assert re.findall(r'data-trace-id="([0-9a-f]{32})"', page.text) == [t.trace_id for t in turns]
        assert "And for &lt;b&gt;digital&lt;/b&gt; goods?" in page.text
        opened = client.get("/sessions", params={"session_id": "s-1"})
        assert opened.status_code == 303 and opened.headers["location"] == "/sessions/s-1"
        assert client.get("/sessions/no-such-session").status_code == 404
        assert client.get("/sessions", params={"last_hours": "x"}).status_code == 400
