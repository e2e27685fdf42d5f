"""Traces grouped by session as conversations (`/sessions`).

- `/sessions`: sessions (traces sharing a `session_id`), latest activity first, each with its trace
  count, first and last start, tokens, cost, errors and users (`queries.list_sessions`: the page's
  ids walking the newest traces, then their totals), paged by Previous / Next: counting every
  session would cost what the walk saves. `?session_id=X` opens that session.
- `/sessions/{session_id}`: the conversation turn by turn: each trace's input as the user's turn
  and its output as the assistant's, in start order, each with its trace's link, status, latency
  and decision (`queries.session_traces`, one read).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tracehub.api.params import int_param, str_param
from tracehub.store import queries
from tracehub.ui.dashboard import row_view

if TYPE_CHECKING:
    from tracehub.ui.app import Ui

HOUR_NS = 3_600_000_000_000
SESSION_HOURS = (24, 168, 720)
DEFAULT_SESSION_HOURS = 168


class Pages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[Route]:
        return [Route("/sessions", self.index, methods=["GET"]),
                Route("/sessions/{session_id:path}", self.conversation, methods=["GET"])]

    async def index(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        q = request.query_params
        wanted = str_param(q, "session_id")
        user_id = str_param(q, "user_id")
        raw_hours = q.get("last_hours")
        hours = DEFAULT_SESSION_HOURS if raw_hours is None else int_param(q, "last_hours", 0, 0, 24 * 366)
        page = int_param(q, "page", 1, 1, 1_000_000)
        page_size = int_param(q, "page_size", 50, 1, 200)
        if wanted:
            from urllib.parse import quote

            return RedirectResponse("/sessions/" + quote(wanted, safe=""), 303)
        since = time.time_ns() - hours * HOUR_NS if hours else None

        def run() -> Response:
            with self.ui.hub.reads.connect() as conn:
                rows, more = queries.list_sessions(conn, viewer.project_id, since, page, page_size, user_id)
            return self.ui.page(request, viewer, "sessions.html", {
                "sessions": rows, "more": more, "page": page, "page_size": page_size, "hours": hours,
                "session_hours": SESSION_HOURS, "user_id": user_id or "", "session": None})

        return await run_in_threadpool(run)

    async def conversation(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        session_id = request.path_params["session_id"]
        if not session_id or "\x00" in session_id:
            raise HTTPException(404, "no such session")

        def run() -> Response:
            with self.ui.hub.reads.connect() as conn:
                rows, total = queries.session_traces(conn, viewer.project_id, session_id, self.ui.cutoff())
            if not rows:
                raise HTTPException(404, "no trace has this session id")
            turns = [row_view(r) for r in rows]
            summary = {
                "trace_count": total,
                "first": turns[0]["start_time"], "last": turns[-1]["start_time"],
                "tokens": sum(t["total_tokens"] for t in turns),
                "cost_usd": sum(t["cost_usd"] for t in turns),
                "errors": sum(1 for t in turns if t["status"] == "error"),
                "users": sorted({t["user_id"] for t in turns if t["user_id"]}),
                "shown": len(turns),
            }
            return self.ui.page(request, viewer, "sessions.html", {
                "session": {"id": session_id, "turns": turns, "summary": summary}})

        return await run_in_threadpool(run)
