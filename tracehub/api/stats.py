"""`GET /api/v1/traces/stats/overview?last_hours=N`: the dashboard's numbers for the caller's project.

The route parses and authenticates, runs `tracehub.store.stats.overview` in the thread pool and
renders its nanosecond times as ISO 8601 UTC; it must never compute a statistic itself. The app
mounts it before the trace routes, so no `/api/v1/traces/{...}` pattern can claim its path.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from tracehub.api import answers
from tracehub.api.auth import project_of
from tracehub.api.operation import READ_ERRORS, Operation, json_answer
from tracehub.api.params import iso, query_int
from tracehub.api.responses import JSONResponse
from tracehub.hub import Hub
from tracehub.store import stats
from tracehub.store.completion import completion

DEFAULT_HOURS = 24
MAX_HOURS = 720  # 30 days of hourly buckets

OVERVIEW = Operation(
    "GET", "/api/v1/traces/stats/overview", "Dashboard figures over the last hours", "traces",
    {"200": json_answer(answers.OVERVIEW, "Totals and an hourly series."), **READ_ERRORS},
    params=(query_int("last_hours", "Window in hours.", DEFAULT_HOURS, 1, MAX_HOURS),))
OPERATIONS = (OVERVIEW,)


def overview_view(found: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in found.items() if not k.endswith("_ns") and k != "series"}
    body["window_start"] = iso(found["window_start_ns"])
    body["window_end"] = iso(found["window_end_ns"])
    body["series"] = [{"start": iso(b["start_ns"]), **{k: v for k, v in b.items() if k != "start_ns"}}
                      for b in found["series"]]
    return body


class StatsRoutes:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.grace_ns = hub.settings.missing_parent_grace_s * 1_000_000_000

    def routes(self) -> list[Route]:
        return [Route(OVERVIEW.path, self.overview, methods=[OVERVIEW.method])]

    async def overview(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        last_hours = OVERVIEW.args(request)["last_hours"]
        now_ns = time.time_ns()

        def run() -> dict[str, Any]:
            with self.hub.reads.connect() as conn:
                return stats.overview(conn, project_id, last_hours, now_ns,
                                      completion(now_ns, self.grace_ns))

        return JSONResponse(overview_view(await run_in_threadpool(run)))
