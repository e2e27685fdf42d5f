"""API errors as application/problem+json (RFC 9457), with the field path for validation errors.

Database failures are answered here too, whichever route meets them (`handle_database`): 503 with
Retry-After while the database cannot be reached, never the driver's text.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from tracehub.api.responses import JSONResponse
from tracehub.store import faults

log = logging.getLogger(__name__)

TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
          409: "Conflict", 413: "Content Too Large", 415: "Unsupported Media Type",
          422: "Unprocessable Content", 429: "Too Many Requests", 500: "Internal Server Error",
          503: "Service Unavailable"}


class ProblemError(Exception):
    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers


def field_error(path: str, message: str) -> ProblemError:
    return ProblemError(422, f"{path}: {message}", [{"path": path, "message": message}])


def problem(status: int, detail: str, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"),
                            "status": status, "detail": detail, **(extra or {})}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status, headers=headers, media_type="application/problem+json")


async def handle_problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem(exc.status, exc.detail, exc.errors, exc.headers)


async def handle_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


def unavailable(detail: str = "the database is unavailable; retry later",
                extra: dict[str, Any] | None = None) -> JSONResponse:
    return problem(503, detail, headers={"retry-after": str(math.ceil(faults.RETRY_AFTER_S))}, extra=extra)


async def handle_database(request: Request, exc: Exception) -> JSONResponse:
    """An error of the database, its driver or the pool (`faults.database_error`): 503 if a retry
    may succeed; else the request's data is at fault (422) or, on a read, this server (500)."""
    fault = faults.fault_of(exc)
    if isinstance(fault, faults.Unavailable):
        log.warning("%s %s: the database is unavailable: %s", request.method, request.url.path, exc)
        return unavailable()
    if isinstance(exc, faults.Rejected):
        return problem(422, str(exc))
    log.error("%s %s failed in the database", request.method, request.url.path, exc_info=exc)
    return problem(500, "the database could not answer this request (the server log says why)")


async def handle_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    """A defect of this server: 500 problem+json, no internals. Starlette's outermost middleware
    sends it (and logs the exception), outside `middleware.Guard`, so it carries Guard's headers."""
    return problem(500, "the server failed to answer this request (the server log says why)",
                   headers={"x-content-type-options": "nosniff", "cache-control": "no-store"})
