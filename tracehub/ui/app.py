"""The web UI: a Starlette app of its own, mounted under the API's app on the main port.

`Ui` is what every page module gets: the hub (its read engine and writer), the templates, the
signed-in viewer of a request and the checks of a form. Page modules (`dashboard`, `trace`,
`cases`, `policies`, `conversations`) each give their routes; the pages read through the store's
queries and read model, as the API does.

Every answer carries a strict Content-Security-Policy (scripts and styles only from this origin,
no inline script, no framing); every state-changing form is a POST carrying the session's CSRF
token, from this origin.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracehub.api.errors import ProblemError
from tracehub.hub import Hub
from tracehub.store import faults
from tracehub.store.completion import cutoff
from tracehub.store.keys import RefusedKey
from tracehub.ui.render import LANG_COOKIE, LOCALES, N_, Templates, negotiate
from tracehub.ui.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    Attempts,
    Sessions,
    Viewer,
)

log = logging.getLogger(__name__)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
       " font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
# Paths of the API's app: the UI leaves them alone, so a method the API does not serve there stays
# its 405 and an unknown API path its problem+json 404.
API_PATHS = ("/api/", "/v1/", "/healthz", "/readyz", "/metrics")


class SignInRequired(Exception):
    pass


class UiMount(Mount):
    """The UI's app under every path but the API's."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"].startswith(API_PATHS):
            return Match.NONE, {}
        return super().matches(scope)


class SecurityHeaders:
    """Adds the CSP and framing headers to every answer of the UI app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", ())) + list(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def safe_next(target: str | None) -> str:
    """A redirect target of this site only: a path, never `//host` or a scheme."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


class Ui:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.templates = Templates()
        self.sessions = Sessions(hub.engine, hub.settings.ui_session_hours * 3600, hub.keys.refuses_default_key)
        self.attempts = Attempts()
        self.grace_ns = hub.settings.missing_parent_grace_s * 1_000_000_000

    def cutoff(self) -> int:
        return cutoff(time.time_ns(), self.grace_ns)

    # Requests ----------------------------------------------------------------------------------

    def lang(self, request: Request) -> str:
        return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))

    async def viewer(self, request: Request) -> Viewer:
        """The signed-in viewer; else `SignInRequired` (answered with the sign-in page)."""
        viewer = await run_in_threadpool(self.sessions.viewer, request.cookies.get(SESSION_COOKIE))
        if viewer is None:
            raise SignInRequired()
        return viewer

    async def form(self, request: Request, viewer: Viewer) -> FormData:
        """A POSTed form, after its CSRF token (field or header) and origin are checked."""
        form = await request.form()
        token = form.get(CSRF_FIELD)
        presented = token if isinstance(token, str) else request.headers.get(CSRF_HEADER)
        if not same_origin(request) or not viewer.csrf_ok(presented):
            raise HTTPException(403, "the form's security token is missing or stale; reload the page")
        return form

    def gettext(self, request: Request, message: str) -> str:
        return self.templates.gettext(self.lang(request), message)

    def page(self, request: Request, viewer: Viewer | None, template: str, context: dict[str, Any],
             status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
        """Render a page (or, for an htmx request, whatever fragment `template` is)."""
        lang = self.lang(request)
        html = self.templates.render(lang, template, {
            "request": request, "viewer": viewer, "path": request.url.path, "query": request.query_params,
            "full_path": full_path(request), **context})
        return HTMLResponse(html, status, headers=headers)

    # Routes ------------------------------------------------------------------------------------

    def mount(self) -> Mount:
        return UiMount("", app=self.app())

    def app(self) -> Starlette:
        from tracehub.ui import cases, conversations, dashboard, policies, trace

        routes = [
            Route("/login", self.sign_in_form, methods=["GET"]),
            Route("/login", self.sign_in, methods=["POST"]),
            Route("/logout", self.sign_out, methods=["POST"]),
            Route("/lang", self.switch_language, methods=["GET"]),
            Route("/static/{name:path}", self.static, methods=["GET"]),
        ]
        for pages in (dashboard.Pages, trace.Pages, conversations.Pages, cases.Pages, policies.Pages):
            routes += pages(self).routes()
        handlers: dict[Any, Any] = {HTTPException: self.http_error, ProblemError: self.bad_request,
                                    SignInRequired: self.to_sign_in,
                                    **{error: self.unavailable for error in faults.DATABASE_ERRORS},
                                    Exception: self.failed}
        return Starlette(routes=routes, exception_handlers=handlers, middleware=[Middleware(SecurityHeaders)])

    async def static(self, request: Request) -> Response:
        asset = self.templates.assets.get(request.path_params["name"])
        if asset is None:
            raise HTTPException(404, "no such file")
        return FileResponse(asset.path, media_type=asset.media_type,
                            headers={"cache-control": "public, max-age=31536000, immutable"})

    async def sign_in_form(self, request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        if await run_in_threadpool(self.sessions.viewer, request.cookies.get(SESSION_COOKIE)):
            return RedirectResponse(target, 303)
        return self._sign_in_page(request, target)

    def _sign_in_page(self, request: Request, target: str, error: str | None = None, status: int = 200,
                      headers: dict[str, str] | None = None) -> Response:
        token = secrets.token_urlsafe(24)
        response = self.page(request, None, "login.html", {"next": target, "error": error, "signin_token": token},
                             status, headers)
        response.set_cookie(SIGNIN_COOKIE, token, httponly=True, samesite="strict", path="/login",
                            secure=request.url.scheme == "https")
        return response

    async def sign_in(self, request: Request) -> Response:
        form = await request.form()
        target = safe_next(_text(form, "next"))
        client = request.client.host if request.client else "unknown"
        wait = self.attempts.retry_after(client)
        if wait:
            message = self.gettext(request, N_("Too many failed sign-ins; wait a minute and try again."))
            return self._sign_in_page(request, target, message, 429, {"retry-after": str(wait)})
        presented, expected = _text(form, "signin_token"), request.cookies.get(SIGNIN_COOKIE, "")
        if not same_origin(request) or not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
            self.attempts.failed(client)
            message = self.gettext(request, N_("The sign-in form expired; please try again."))
            return self._sign_in_page(request, target, message, 403)
        try:
            token = await run_in_threadpool(self.sessions.open, _text(form, "api_key").strip())
        except RefusedKey as exc:
            self.attempts.failed(client)
            return self._sign_in_page(request, target, str(exc), 401)
        if token is None:
            self.attempts.failed(client)
            return self._sign_in_page(request, target, self.gettext(request, N_("Unknown or revoked API key.")), 401)
        response = RedirectResponse(target, 303)
        response.set_cookie(SESSION_COOKIE, token, max_age=int(self.sessions.ttl_ns // 1_000_000_000),
                            httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/")
        response.delete_cookie(SIGNIN_COOKIE, path="/login")
        return response

    async def sign_out(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        await self.form(request, viewer)
        await run_in_threadpool(self.sessions.close, request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def switch_language(self, request: Request) -> Response:
        response = RedirectResponse(safe_next(request.query_params.get("next")), 303)
        lang = request.query_params.get("to")
        if lang in LOCALES:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
        return response

    # Errors ------------------------------------------------------------------------------------

    async def to_sign_in(self, request: Request, _exc: Exception) -> Response:
        target = "/login?next=" + quote(full_path(request), safe="")
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"hx-redirect": target})
        return RedirectResponse(target, 303)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self.page(request, None, "error.html", {"status": exc.status_code, "message": exc.detail},
                         exc.status_code, dict(exc.headers or {}))

    async def bad_request(self, request: Request, exc: Exception) -> Response:
        """A page's query or path refused by the API's own parsers (`api.params`): the link is at
        fault, so 400 whatever the API would answer, with the field named."""
        assert isinstance(exc, ProblemError)
        status = 400 if exc.status == 422 else exc.status
        return self.page(request, None, "error.html", {"status": status, "message": exc.detail}, status, exc.headers)

    async def failed(self, request: Request, _exc: Exception) -> Response:
        """A defect of this server (Starlette logs it)."""
        message = self.gettext(request, N_("This page failed to render (the server log says why)."))
        return self.page(request, None, "error.html", {"status": 500, "message": message}, 500)

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        log.warning("%s %s: the database failed: %s", request.method, request.url.path, exc)
        unreachable = isinstance(faults.fault_of(exc), faults.Unavailable)
        message = self.gettext(request, N_("The database is unavailable; retry in a moment.") if unreachable
                               else N_("The database could not answer this page (the server log says why)."))
        return self.page(request, None, "error.html", {"status": 503 if unreachable else 500, "message": message},
                         503 if unreachable else 500, {"retry-after": "2"} if unreachable else None)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def full_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def same_origin(request: Request) -> bool:
    """A POST from this site: its Origin (or, without one, its Referer) names this host. Browsers
    send Origin on every cross-site POST, so a missing header means a same-site or non-browser
    client, which the CSRF token still has to pass."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source is None
    parts = urlsplit(source)
    return parts.netloc == request.headers.get("host", "") and parts.scheme in ("http", "https")
