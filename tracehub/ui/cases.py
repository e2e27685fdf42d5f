"""Cases (`/cases`, `/cases/{case_id}`): the list with its filters in the URL, a case with its
decision and webhook deliveries, and its acknowledgement and resolution as POST forms.

Reads and moves are the cases API's (`tracehub.api.cases`: case_detail, move_case, the views):
the same transitions, refused the same way; a refused move shows in place, as the API's 409.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tracehub.api import cases as api
from tracehub.api.errors import ProblemError
from tracehub.api.params import int_param, normalize_id, str_param
from tracehub.store import cases as store
from tracehub.ui.render import N_

if TYPE_CHECKING:
    from tracehub.ui.app import Ui
    from tracehub.ui.session import Viewer

PAGE_SIZE = 50
MAX_PAGE = 100_000
REASON_CODE_CHARS = 200  # the policy schema's longest reason_code: a longer filter matches nothing
REFUSED = {
    "acknowledged": N_("This case is %(status)s: it cannot be acknowledged now."),
    "resolved": N_("This case is %(status)s: it cannot be resolved again."),
}
STATUS_NAMES = {"open": N_("open"), "acknowledged": N_("acknowledged"), "resolved": N_("resolved")}


def pretty(value: Any) -> str:
    """JSON as people read it (Korean stays Korean; the template escapes it)."""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


def _filter(request: Request) -> store.CaseFilter:
    """The list's filters, parsed as the API's list parses them (a bad one: `Ui.bad_request`)."""
    q = request.query_params
    reason_code = str_param(q, "reason_code")
    if reason_code is not None and len(reason_code) > REASON_CODE_CHARS:
        raise HTTPException(400, f"reason_code: at most {REASON_CODE_CHARS} characters")
    return store.CaseFilter(status=str_param(q, "status", store.CASE_STATUSES),
                            severity=str_param(q, "severity", api.SEVERITIES), reason_code=reason_code)


def _case_id(request: Request) -> str:
    try:
        return normalize_id(request.path_params["case_id"], 32, "case_id")
    except ProblemError:
        raise HTTPException(404, "no such case") from None


class Pages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[Route]:
        return [
            Route("/cases", self.index, methods=["GET"]),
            Route("/cases/{case_id}", self.detail, methods=["GET"]),
            Route("/cases/{case_id}/ack", self.ack, methods=["POST"]),
            Route("/cases/{case_id}/resolve", self.resolve, methods=["POST"]),
        ]

    async def index(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        f = _filter(request)
        page = int_param(request.query_params, "page", 1, 1, MAX_PAGE)

        def run() -> Response:
            with self.ui.hub.reads.connect() as conn:
                rows, total = store.list_cases(conn, viewer.project_id, f, page, PAGE_SIZE)
                actions = store.decision_actions(conn, viewer.project_id, [r["decision_id"] for r in rows])
            items = [{**api.case_view(r), "action": actions.get(r["decision_id"])} for r in rows]
            return self.ui.page(request, viewer, "cases.html", {
                "cases": items, "total": total, "page": page, "pages": max(1, -(-total // PAGE_SIZE)),
                "filters": f, "statuses": store.CASE_STATUSES, "severities": api.SEVERITIES,
                "status_names": STATUS_NAMES})

        return await run_in_threadpool(run)

    async def detail(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        return await self._render(request, viewer, _case_id(request))

    async def _render(self, request: Request, viewer: Viewer, case_id: str, error: str | None = None,
                    status: int = 200, note: str = "") -> Response:
        def run() -> Response:
            with self.ui.hub.reads.connect() as conn:
                case = api.case_detail(conn, viewer.project_id, case_id)
            if case is None:
                raise HTTPException(404, "no such case")
            return self.ui.page(request, viewer, "case.html", {
                "case": case, "error": error, "note": note, "status_names": STATUS_NAMES, "pretty": pretty,
                "can_ack": case["status"] in store.TRANSITIONS["acknowledged"],
                "can_resolve": case["status"] in store.TRANSITIONS["resolved"],
                "max_note": api.MAX_NOTE}, status)

        return await run_in_threadpool(run)

    async def ack(self, request: Request) -> Response:
        return await self._move(request, "acknowledged")

    async def resolve(self, request: Request) -> Response:
        return await self._move(request, "resolved")

    async def _move(self, request: Request, to: str) -> Response:
        viewer = await self.ui.viewer(request)
        case_id = _case_id(request)
        form = await self.ui.form(request, viewer)
        raw = form.get("note")
        note = raw.strip() if isinstance(raw, str) and to == "resolved" else ""
        if note:
            bad = next(iter(api.RESOLVE_VALIDATOR.iter_errors({"note": note})), None)
            if bad is not None:
                message = self.ui.gettext(request, N_("The note is too long or holds a NUL character."))
                return await self._render(request, viewer, case_id, message, 422, note)
        try:
            await run_in_threadpool(api.move_case, self.ui.hub, viewer.project_id, case_id, to, note or None)
        except ProblemError as exc:
            if exc.status == 404:
                raise HTTPException(404, "no such case") from None
            return await self._refused(request, viewer, case_id, to, note)
        return RedirectResponse(f"/cases/{case_id}", 303)

    async def _refused(self, request: Request, viewer: Viewer, case_id: str, to: str, note: str) -> Response:
        def status_now() -> str:
            with self.ui.hub.reads.connect() as conn:
                case = store.get_case(conn, viewer.project_id, case_id)
            return case["status"] if case else "?"

        current = await run_in_threadpool(status_now)
        name = self.ui.gettext(request, STATUS_NAMES.get(current, current))
        message = self.ui.gettext(request, REFUSED[to]) % {"status": name}
        return await self._render(request, viewer, case_id, message, 409, note)
