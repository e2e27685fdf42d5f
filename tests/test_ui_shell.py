"""The web UI's shell through a real server: sign-in and sessions, CSRF, headers, assets, errors,
language; in Chromium where a browser matters, with plain HTTP where the wire is the point."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import BACKENDS, Project, ServerProcess, browser_session, csrf_of, own_project, ui_sign_in
from tracehub.store.schema import api_keys

PAGES = ["/", "/sessions", "/cases", "/policies"]


@pytest.fixture(scope="module", params=BACKENDS)
def shell_server(request: pytest.FixtureRequest, server_factory: Any) -> ServerProcess:
    return server_factory(request.param)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def project(shell_server: ServerProcess) -> Iterator[Project]:
    with own_project(shell_server, "ui-shell") as p:
        yield p


def test_pages_send_visitors_to_sign_in_and_back(shell_server: ServerProcess, project: Project) -> None:
    with httpx.Client(base_url=shell_server.url) as anonymous:
        for path in PAGES + ["/traces/" + "a" * 32, "/cases/1"]:
            r = anonymous.get(path, params={"status": "error"} if path == "/" else None)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/login?next=")
        htmx = anonymous.get("/", headers={"hx-request": "true"})
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"] == "/login?next=%2F"
    client, answer = ui_sign_in(shell_server, project.key, "/cases?status=open")
    assert answer.status_code == 303 and answer.headers["location"] == "/cases?status=open"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and project.key not in cookie
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "ui-shell-" in page.text  # the project's name in the header


def test_sign_in_refuses_bad_keys_stale_forms_and_foreign_redirects(shell_server: ServerProcess,
                                                                   project: Project) -> None:
    client, answer = ui_sign_in(shell_server, "th_not-a-key")
    assert answer.status_code == 401 and "Unknown or revoked API key" in answer.text
    assert "set-cookie" not in answer.headers or "tracehub_session" not in answer.headers["set-cookie"]
    # Without the sign-in form's own token (a cross-site form post), nothing is checked.
    forged = httpx.post(f"{shell_server.url}/login", data={"api_key": project.key, "next": "/"})
    assert forged.status_code == 403
    # `next` only ever leads within this site.
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        _, answer = ui_sign_in(shell_server, project.key, target)
        assert answer.status_code == 303 and answer.headers["location"] == "/", target


def test_failed_sign_ins_are_rate_limited(server_factory: Any) -> None:
    server = server_factory("sqlite")  # its own: the limit holds every client of the address back
    answers = [ui_sign_in(server, f"th_wrong-{i}")[1] for i in range(11)]
    assert [a.status_code for a in answers] == [401] * 10 + [429]
    assert int(answers[-1].headers["retry-after"]) > 0
    _, right_key = ui_sign_in(server, "dev-key")
    assert right_key.status_code == 429  # even the right key waits


def test_forms_need_the_sessions_csrf_token_and_sign_out_ends_the_session(shell_server: ServerProcess,
                                                                          project: Project) -> None:
    client, _ = ui_sign_in(shell_server, project.key)
    token = csrf_of(client.get("/").text)
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf_token": "x" * len(token)}).status_code == 403
    foreign = client.post("/logout", data={"csrf_token": token}, headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert client.get("/").status_code == 200
    out = client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/").status_code == 303


def test_revoking_the_key_ends_its_sessions(shell_server: ServerProcess) -> None:
    with own_project(shell_server, "ui-revoke") as p:
        client, _ = ui_sign_in(shell_server, p.key)
        assert client.get("/").status_code == 200
        with p.engine.begin() as conn:
            conn.execute(api_keys.update().where(api_keys.c.project_id == p.id).values(revoked_ns=1))
        assert client.get("/").status_code == 303


def test_every_page_is_locked_down_and_assets_are_content_addressed(shell_server: ServerProcess,
                                                                   project: Project) -> None:
    client, _ = ui_sign_in(shell_server, project.key)
    for path in PAGES + ["/login", "/no-such-page"]:
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", r.text), path  # no inline script
        assert not re.search(r"\son[a-z]+=", r.text), path  # no inline handlers
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    # The API keeps its own answers under the UI: problem+json for paths it does not know, 405 for
    # methods it does not serve.
    assert httpx.get(f"{shell_server.url}/api/v1/no-such-route").headers["content-type"] == "application/problem+json"
    for method, path in (("TRACE", "/api/v1/traces"), ("DELETE", "/healthz"), ("PUT", "/v1/traces")):
        assert httpx.request(method, f"{shell_server.url}{path}").status_code == 405, (method, path)
    page = client.get("/").text
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert any(a.endswith(".css") for a in assets) and any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert re.search(r"\.[0-9a-f]{12}\.(css|js|svg)$", asset), asset
        r = client.get(asset)
        assert r.status_code == 200 and "immutable" in r.headers["cache-control"], asset
    assert client.get("/static/app.css").status_code == 404  # only by its content's name


def test_language_follows_the_browser_and_the_switch(shell_server: ServerProcess, project: Project) -> None:
    client, _ = ui_sign_in(shell_server, project.key)
    assert ">Traces<" in client.get("/").text
    korean = client.get("/", headers={"accept-language": "ko-KR,ko;q=0.9,en;q=0.5"}).text
    assert '<html lang="ko">' in korean and ">트레이스<" in korean
    switched = client.get("/lang", params={"to": "en", "next": "/cases"})
    assert switched.status_code == 303 and switched.headers["location"] == "/cases"
    assert '<html lang="en">' in client.get("/", headers={"accept-language": "ko"}).text


def test_sign_in_and_out_in_a_browser(chromium: Any, shell_server: ServerProcess, project: Project) -> None:
    if "sqlite" not in shell_server.database_url:
        pytest.skip("the browser walk runs once, on SQLite")
    with browser_session(chromium, shell_server, "") as ui:
        ui.page.goto("/cases")
        assert ui.page.url.endswith("/login?next=%2Fcases")
        ui.page.fill("#api_key", "th_wrong")
        ui.page.click("form[action='/login'] button[type=submit]")
        assert "Unknown or revoked API key" in ui.page.inner_text("[role=alert]")
        ui.page.fill("#api_key", project.key)
        ui.page.click("form[action='/login'] button[type=submit]")
        ui.page.wait_for_url("**/cases")
        ui.shot("sign-in-landing")
        ui.page.click("header a[lang=ko]")
        ui.page.wait_for_load_state()
        assert ui.page.get_attribute("html", "lang") == "ko"
        assert ui.page.inner_text("header nav a[href='/cases']") == "케이스"
        ui.page.click("header form[action='/logout'] button")
        ui.page.wait_for_url("**/login")
        ui.page.goto("/")
        assert "/login" in ui.page.url
