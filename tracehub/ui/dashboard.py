"""The dashboard and the trace list (`/`).

- `/`: the trace list with its filters, all in the query string (a GET form: any view is a link),
  one list query and one count (`queries.list_traces`), plus the newest traces' models and
  environments for the filters' suggestions. The KPI cards and hourly charts come in a fragment of
  their own (`/ui/dashboard/overview?hours=N`) that the page loads once it is shown: the overview
  aggregates every trace of its window, which must not hold the list back.
- `/ui/traces/list`: the list alone (count, rows, pager) with the same filters; page 1 polls it
  every few seconds for the live tail, which dashboard.js pauses.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from babel import numbers
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracehub.api.params import bool_param, int_param, str_param, time_param
from tracehub.api.schemas import STATUSES
from tracehub.api.traces import trace_view
from tracehub.store import queries, stats
from tracehub.store.completion import completion
from tracehub.ui.charts import Chart, Series
from tracehub.ui.render import N_

if TYPE_CHECKING:
    from tracehub.ui.app import Ui

HOUR_NS = 3_600_000_000_000
OVERVIEW_HOURS = (1, 24, 168)
DEFAULT_OVERVIEW_HOURS = 24
LIST_HOURS = (1, 24, 168, 720)
PAGE_SIZES = (25, 50, 100, 200)
LIVE_SECONDS = 3
# Query parameters of the list, as the JSON API names them (a view's link reads the same there).
STR_FILTERS = ("status", "model", "environment", "user_id", "session_id", "decision", "search", "eval_name")
BOOL_FILTERS = ("has_open_spans", "passed", "user_review_passed")
FILTER_PARAMS = STR_FILTERS + BOOL_FILTERS + ("start_after", "start_before", "last_hours")
LIST_PARAMS = frozenset(FILTER_PARAMS + ("page_size", "page", "hours"))


@dataclass(frozen=True)
class ListView:
    """What a list request asks for: its filter, page and the moment it was asked."""

    filter: queries.TraceFilter
    page: int
    page_size: int
    last_hours: int | None
    filtered: bool


def parse_list(q: QueryParams, now_ns: int) -> ListView:
    """The list's query string; a bad value is a 400 page saying which (`Ui.bad_request`)."""
    strs = {name: str_param(q, name, STATUSES if name == "status" else ()) for name in STR_FILTERS}
    bools = {name: bool_param(q, name) for name in BOOL_FILTERS}
    after, before = time_param(q, "start_after"), time_param(q, "start_before")
    last_hours = int_param(q, "last_hours", 0, 0, 24 * 366) or None
    page = int_param(q, "page", 1, 1, 1_000_000)
    page_size = int_param(q, "page_size", 50, 1, max(PAGE_SIZES))
    if last_hours is not None:
        since = now_ns - last_hours * HOUR_NS
        after = since if after is None else max(after, since)
    f = queries.TraceFilter(
        status=strs["status"], model=strs["model"], environment=strs["environment"],
        user_id=strs["user_id"], session_id=strs["session_id"], decision=strs["decision"],
        search=strs["search"], eval_name=strs["eval_name"], eval_passed=bools["passed"],
        has_open_spans=bools["has_open_spans"], user_review_passed=bools["user_review_passed"],
        start_after_ns=after, start_before_ns=before)
    filtered = any(getattr(f, field.name) is not None for field in fields(f))
    return ListView(f, page, page_size, last_hours, filtered)


def row_view(row: dict[str, Any]) -> dict[str, Any]:
    view = trace_view(row)
    view["start_ns"] = row["start_ns"]
    return view


class Pages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/ui/traces/list", self.list_fragment, methods=["GET"]),
            Route("/ui/dashboard/overview", self.overview, methods=["GET"]),
        ]

    def _list(self, request: Request, project_id: int) -> tuple[ListView, dict[str, Any]]:
        view = parse_list(request.query_params, time.time_ns())
        with self.ui.hub.reads.connect() as conn:
            rows, total, capped = queries.list_traces(conn, project_id, view.filter, view.page, view.page_size,
                                                      self.ui.cutoff())
        pages = max(1, -(-total // view.page_size))
        q = request.query_params
        return view, {
            "traces": [row_view(r) for r in rows], "total": total, "total_capped": capped, "page": view.page,
            "page_size": view.page_size, "pages": pages, "filtered": view.filtered,
            "live": view.page == 1,
            "list_query": urlencode([(k, v) for k, v in q.multi_items() if k in LIST_PARAMS and v]),
        }

    async def index(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        hours = _overview_hours(request.query_params)

        def run() -> Response:
            view, context = self._list(request, viewer.project_id)
            with self.ui.hub.reads.connect() as conn:
                suggestions = queries.recent_values(conn, viewer.project_id, ("model", "environment"))
            settings = self.ui.hub.settings
            host = request.url.hostname or settings.host
            context.update(
                hours=hours, overview_hours=OVERVIEW_HOURS, list_hours=LIST_HOURS, page_sizes=PAGE_SIZES,
                statuses=STATUSES, actions=stats.DECISION_ACTIONS, suggestions=suggestions,
                last_hours=view.last_hours, live_seconds=LIVE_SECONDS,
                otlp={"http": f"http://{host}:{settings.otlp_http_port}" if settings.otlp_http_port else None,
                      "main": f"{request.url.scheme}://{request.url.netloc}",
                      "grpc": f"{host}:{settings.otlp_grpc_port}" if settings.otlp_grpc_port else None},
            )
            return self.ui.page(request, viewer, "dashboard.html", context)

        return await run_in_threadpool(run)

    async def list_fragment(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)

        def run() -> Response:
            _, context = self._list(request, viewer.project_id)
            return self.ui.page(request, viewer, "_traces_list.html", context)

        return await run_in_threadpool(run)

    async def overview(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        hours = _overview_hours(request.query_params)
        now_ns = time.time_ns()
        lang = self.ui.lang(request)

        def run() -> Response:
            with self.ui.hub.reads.connect() as conn:
                found = stats.overview(conn, viewer.project_id, hours, now_ns,
                                       completion(now_ns, self.ui.grace_ns), (50, 95), hourly_decisions=True)
            charts = self._charts(request, lang, found)
            return self.ui.page(request, viewer, "_dashboard_overview.html",
                                {"o": found, "hours": hours, "charts": charts, "actions": stats.DECISION_ACTIONS})

        return await run_in_threadpool(run)

    def _charts(self, request: Request, lang: str, found: dict[str, Any]) -> dict[str, Any]:
        _ = lambda message: self.ui.gettext(request, message)  # noqa: E731
        series = found["series"]
        starts = [b["start_ns"] for b in series]

        def count(v: float) -> str:
            return numbers.format_decimal(round(v, 1), locale=lang)

        def ms(v: float) -> str:
            return f"{v / 1000:g} s" if v >= 1000 else f"{v:.0f} ms"  # fits the axis' margin

        def usd(v: float) -> str:
            return f"${v:.4f}" if 0 < v < 1 else f"${v:,.2f}"

        errors = [b["error_count"] for b in series]
        ok = [b["trace_count"] - b["error_count"] for b in series]
        active = [b["trace_count"] > 0 for b in series]
        p50 = [b["latency_p50_ms"] if a else None for b, a in zip(series, active)]
        p95 = [b["latency_p95_ms"] if a else None for b, a in zip(series, active)]
        costs = [b["cost_usd"] for b in series]
        action_css = {"ALLOW_ANSWER": "s-ok", "BLOCK": "s-bad", "ESCALATE": "s-warn",
                      "ALLOW_WITH_WARNING": "s-info", "NEED_CLARIFICATION": "s-accent"}
        decisions = [Series(a, action_css.get(a, "s-soft"), [b["decisions"].get(a, 0) for b in series])
                     for a in stats.DECISION_ACTIONS]
        volume = [Series(_(N_("Succeeded or running")), "s-accent", ok), Series(_(N_("Errors")), "s-bad", errors)]
        latency = [Series("p50", "s-accent", p50), Series("p95", "s-warn", p95)]
        summary = _(N_("%(hours)s hourly buckets")) % {"hours": len(series)}
        return {
            "volume": {"svg": Chart("chart-volume", _(N_("Traces and errors per hour")), starts, count).bars(
                volume, f"{summary}: {found['trace_count']} / {found['error_count']}"), "legend": volume},
            "latency": {"svg": Chart("chart-latency", _(N_("Latency per hour, p50 and p95")), starts, ms).lines(
                latency, f"{summary}: p50 {ms(found['latency_ms']['p50'])}, p95 {ms(found['latency_ms']['p95'])}"),
                "legend": latency},
            "cost": {"svg": Chart("chart-cost", _(N_("Cost per hour")), starts, usd).bars(
                [Series(_(N_("Cost")), "s-info", costs)], f"{summary}: {usd(found['cost_usd'])}"), "legend": []},
            "decisions": {"svg": Chart("chart-decisions", _(N_("Decisions per hour")), starts, count).bars(
                decisions, summary), "legend": decisions},
        }


def _overview_hours(q: QueryParams) -> int:
    raw = q.get("hours")
    if not raw:
        return DEFAULT_OVERVIEW_HOURS
    if raw not in {str(h) for h in OVERVIEW_HOURS}:
        raise HTTPException(400, f"hours: expected one of {', '.join(map(str, OVERVIEW_HOURS))}, got {raw!r}")
    return int(raw)
