"""App factories: they only wire routes, error handlers and the hub together."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, ExceptionHandler, Receive, Scope, Send

from tracehub import metrics
from tracehub.api import openapi
from tracehub.api.cases import CaseRoutes, WebhookRoutes
from tracehub.api.decide import DecideRoutes
from tracehub.api.errors import (
    ProblemError,
    handle_database,
    handle_http,
    handle_problem,
    handle_unexpected,
    unavailable,
)
from tracehub.api.ingest import IngestRoutes
from tracehub.api.langfuse import LangfuseRoutes
from tracehub.api.middleware import NOSNIFF, OTLP_PATHS, Guard
from tracehub.api.policies import PolicyRoutes
from tracehub.api.project import ProjectRoutes
from tracehub.api.responses import JSONResponse
from tracehub.api.stats import StatsRoutes
from tracehub.api.traces import TraceRoutes
from tracehub.collector.http import OtlpHttp
from tracehub.hub import Hub
from tracehub.store import faults, search
from tracehub.ui.app import Ui

HANDLERS: dict[Any, ExceptionHandler] = {
    ProblemError: handle_problem, HTTPException: handle_http,
    **{error: handle_database for error in faults.DATABASE_ERRORS},
    Exception: handle_unexpected,
}


def _index_state(hub: Hub) -> tuple[int, float]:
    raw = hub.engine.raw_connection()
    try:
        return search.index_state(raw.cursor())
    finally:
        raw.close()


def _health_routes(hub: Hub) -> list[Route]:
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        queued = hub.writer.queued_spans
        if hub.writer.fault is not None:
            return unavailable(hub.writer.fault, {"queued_spans": queued})
        ready = queued < hub.writer.max_queued_spans
        unindexed, lag = await run_in_threadpool(_index_state, hub)
        return JSONResponse({"status": "ready" if ready else "overloaded", "queued_spans": queued,
                             "search_unindexed_rows": unindexed, "search_lag_s": round(lag, 1)},
                            200 if ready else 503)

    async def prometheus(_request: Request) -> Response:
        metrics.QUEUED_SPANS.set(hub.writer.queued_spans)
        if hub.writer.fault is None:
            unindexed, lag = await run_in_threadpool(_index_state, hub)
            metrics.SEARCH_UNINDEXED_ROWS.set(unindexed)
            metrics.SEARCH_LAG_SECONDS.set(lag)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", prometheus)]


class OtlpCors:
    """CORS for browser OTLP exporters on `/v1/traces` and `/v1/logs` only: preflights are answered
    for the allowed origins, and every answer there (429 and 503 too) carries the CORS headers, so
    an exporter can read Retry-After. Other paths never answer CORS."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        # No credentials: the key travels in a header, never in a cookie.
        self.cors = CORSMiddleware(app, allow_origins=origins, allow_methods=["POST"],
                                   allow_headers=["content-type", "content-encoding", "x-api-key", "authorization"],
                                   expose_headers=["retry-after"], max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in OTLP_PATHS:
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _cors(hub: Hub) -> list[Middleware]:
    origins = hub.settings.cors_origins
    return [Middleware(OtlpCors, origins)] if origins else []


_OPENAPI = openapi.document()


async def _openapi(_request: Request) -> JSONResponse:
    return JSONResponse(_OPENAPI)


def create_app(hub: Hub) -> Starlette:
    """The main HTTP port: REST API, OTLP/HTTP, health and, under every other path, the web UI."""
    otlp = OtlpHttp(hub.intake).routes()
    routes = (_health_routes(hub) + otlp + IngestRoutes(hub).routes()
              + StatsRoutes(hub).routes() + TraceRoutes(hub).routes() + DecideRoutes(hub).routes()
              + CaseRoutes(hub).routes() + WebhookRoutes(hub).routes() + PolicyRoutes(hub).routes()
              + ProjectRoutes(hub).routes() + LangfuseRoutes(hub, otlp).routes()
              + [Route("/api/v1/openapi.json", _openapi), Ui(hub).mount()])
    return Starlette(routes=routes, exception_handlers=HANDLERS,
                     middleware=[*_cors(hub), Middleware(Guard, hub.settings.max_concurrent_requests)])


def create_otlp_app(hub: Hub) -> Starlette:
    """The dedicated OTLP/HTTP port: only `/v1/traces`, `/v1/logs` and health."""
    return Starlette(routes=_health_routes(hub) + OtlpHttp(hub.intake).routes(),
                     exception_handlers=HANDLERS,
                     middleware=[*_cors(hub), Middleware(Guard, hub.settings.max_concurrent_requests, NOSNIFF)])
