"""`/api/v1/cases` (the cases ESCALATE opens, and their acknowledgement and resolution) and
`/api/v1/webhooks` (the endpoints their notifications are sent to).

A case moves open -> acknowledged -> resolved, or open -> resolved; any other move is 409 saying
the status it has. Writes are single short statements off the event loop (`tracehub.store.cases`).
A webhook endpoint's secret is shown once, in the answer that creates it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from jsonschema import Draft202012Validator, ValidationError
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from tracehub.api import answers
from tracehub.api.auth import project_of
from tracehub.api.errors import ProblemError
from tracehub.api.operation import (
    BODY_ERRORS,
    NOT_FOUND,
    PROBLEM_ANSWER,
    READ_ERRORS,
    Operation,
    json_answer,
    request_body,
)
from tracehub.api.params import PAGE, PAGE_SIZE, Param, iso, page_body, path_id, query_text
from tracehub.api.responses import JSONResponse
from tracehub.api.schemas import json_path, limit_errors
from tracehub.api.traces import decision_view
from tracehub.decision import policy
from tracehub.decision.webhooks import SECRET_PATTERN, RefusedTarget, Targets, new_secret
from tracehub.hub import Hub
from tracehub.store import cases as store

SEVERITIES = policy.SEVERITIES
MAX_BODY_BYTES = 64 * 1024
MAX_NOTE = 10_000  # characters of a resolution note
_NOTE = {"type": "string", "maxLength": MAX_NOTE, "pattern": "^[^\\x00]*$", "title": "text without NUL"}
RESOLVE_BODY = {"type": "object", "additionalProperties": False, "properties": {"note": _NOTE}}
WEBHOOK_BODY = {
    "type": "object", "additionalProperties": False, "required": ["url"],
    "properties": {
        "url": {"type": "string", "maxLength": 2048, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#\\x00]+[^\\x00]*$",
                "title": "an http(s) URL with a host",
                "description": "An http(s) URL whose host resolves, to no loopback, private, link-local,"
                               " multicast or reserved address unless TRACEHUB_WEBHOOK_ALLOW allows it."},
        "secret": {"type": "string", "pattern": SECRET_PATTERN, "title": "whsec_ and 32 to 88 base64 characters",
                   "description": "whsec_ and 32 to 88 base64 characters; generated when left out."},
    },
}
RESOLVE_VALIDATOR = Draft202012Validator(RESOLVE_BODY)
WEBHOOK_VALIDATOR = Draft202012Validator(WEBHOOK_BODY)


async def json_body(request: Request, validator: Draft202012Validator, optional: bool = False
                    ) -> dict[str, Any]:
    """A small JSON body checked by `validator` (422 with each field's path); an empty body is
    `{}` when `optional`."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ProblemError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip() and optional:
        return {}
    if ctype not in ("application/json", ""):
        raise ProblemError(415, f"unsupported content type {ctype!r}: send application/json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(400, f"body is not valid JSON: {exc}") from None
    errors = [{"path": json_path(list(e.absolute_path)), "message": _message(e)}
              for e in validator.iter_errors(body)]
    errors += [{"path": e["path"], "message": e["message"]} for e in limit_errors(body)]
    if errors:
        errors.sort(key=lambda e: str(e["path"]))
        raise ProblemError(422, f"{errors[0]['path']}: {errors[0]['message']}", errors)
    return dict(body)


def _message(error: ValidationError) -> str:
    # What a pattern stands for, and never the value: it may be a secret.
    if error.validator == "pattern" and isinstance(error.schema, dict) and "title" in error.schema:
        return f"expected {error.schema['title']}"
    return str(error.message)


def case_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "case_id": row["case_id"],
        "trace_id": row["trace_id"],
        "decision_id": row["decision_id"],
        "status": row["status"],
        "severity": row["severity"],
        "reason_code": row["reason_code"],
        "title": row["title"],
        "note": row["note"],
        "created_at": iso(row["created_ns"]),
        "updated_at": iso(row["updated_ns"]),
        "acknowledged_at": iso(row["acked_ns"]),
        "resolved_at": iso(row["resolved_ns"]),
        "trace_url": f"/api/v1/traces/{row['trace_id']}",
    }


def notification_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "notification_id": row["id"], "endpoint_id": row["endpoint_id"], "event_type": row["event_type"],
        "message_id": row["message_id"], "status": row["status"], "attempts": row["attempts"],
        "next_attempt_at": iso(row["next_attempt_ns"]) if row["status"] == "pending" else None,
        "last_error": row["last_error"], "created_at": iso(row["created_ns"]),
        "delivered_at": iso(row["delivered_ns"]),
        "delivery_attempts": [{"attempt": a["attempt"], "started_at": iso(a["started_ns"]),
                               "status_code": a["status_code"], "error": a["error"],
                               "latency_ms": a["latency_ms"]} for a in row["attempts_log"]],
    }


def endpoint_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "url": row["url"], "enabled": bool(row["enabled"]),
            "disabled_reason": row["disabled_reason"], "created_at": iso(row["created_ns"])}


def case_detail(conn: Connection, project_id: int, case_id: str) -> dict[str, Any] | None:
    """A case with its decision and its notifications' delivery attempts (the API's detail, the
    UI's case page); None when the project has no such case."""
    case = store.get_case(conn, project_id, case_id)
    if case is None:
        return None
    decision = store.get_decision(conn, project_id, case["decision_id"])
    notes = store.case_notifications(conn, project_id, case_id)
    return {**case_view(case), "decision": decision_view(decision) if decision else None,
            "notifications": [notification_view(n) for n in notes]}


def move_case(hub: Hub, pid: int, case_id: str, to: str, note: str | None) -> dict[str, Any]:
    """Move a case to `to` (acknowledged or resolved) and answer its view: ProblemError 404 without
    the case, 409 when its status does not allow the move. Blocking: run it off the event loop."""
    with hub.engine.begin() as conn:
        moved, status = store.transition(conn, pid, case_id, to, note, time.time_ns())
    if status is None:
        raise ProblemError(404, f"case {case_id} not found")
    if not moved:
        raise ProblemError(409, f"case {case_id} is {status}; it cannot become {to}"
                                f" (open -> acknowledged -> resolved, or open -> resolved)")
    with hub.reads.connect() as conn:
        case = store.get_case(conn, pid, case_id)
    assert case is not None
    return case_view(case)


def _endpoint_id(request: Request) -> int:
    raw = request.path_params["endpoint_id"]
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2**63:
        raise ProblemError(422, f"path.endpoint_id: expected a positive integer, got {raw!r}",
                           [{"path": "path.endpoint_id", "message": "expected a positive integer"}])
    return int(raw)


# -- Operations ---------------------------------------------------------------------------------------

CASE_ID = path_id("case_id", 32)
ENDPOINT_ID = Param("endpoint_id", "path", {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                    "The endpoint's id.", _endpoint_id)
_MOVE_ERRORS = {**NOT_FOUND, "409": {**PROBLEM_ANSWER, "description": "Not allowed from the case's status, which "
                                     "the detail says (open -> acknowledged -> resolved, or open -> resolved)."},
                **READ_ERRORS}
LIST = Operation(
    "GET", "/api/v1/cases", "List cases (opened by ESCALATE decisions), newest first", "cases",
    {"200": json_answer(answers.page(answers.CASE), "A page."), **READ_ERRORS},
    params=(PAGE, PAGE_SIZE, query_text("status", "Case status.", store.CASE_STATUSES),
            query_text("severity", "Severity.", SEVERITIES),
            query_text("reason_code", "Reason code, e.g. PII_DETECTED.")))
DETAIL = Operation(
    "GET", "/api/v1/cases/{case_id}",
    "One case: its decision, a link to its trace, its notifications and their delivery attempts", "cases",
    {"200": json_answer(answers.CASE_DETAIL, "The case."), **NOT_FOUND, **READ_ERRORS},
    params=(CASE_ID,), refuse_unknown=False)
ACK = Operation(
    "POST", "/api/v1/cases/{case_id}/ack", "Acknowledge an open case", "cases",
    {"200": json_answer(answers.CASE, "The case, acknowledged."), **_MOVE_ERRORS},
    params=(CASE_ID,), refuse_unknown=False)
RESOLVE = Operation(
    "POST", "/api/v1/cases/{case_id}/resolve", "Resolve an open or acknowledged case, with an optional note",
    "cases", {"200": json_answer(answers.CASE, "The case, resolved."), **BODY_ERRORS, **_MOVE_ERRORS},
    params=(CASE_ID,), body=request_body(RESOLVE_BODY, required=False), refuse_unknown=False)
CREATE_WEBHOOK = Operation(
    "POST", "/api/v1/webhooks", "Register a webhook endpoint for case notifications (Standard Webhooks)",
    "webhooks", {"201": json_answer(answers.closed({**answers.ENDPOINT_FIELDS, "secret": answers.STR}),
                                    "The endpoint with its secret, shown this once."), **BODY_ERRORS, **READ_ERRORS},
    body=request_body(WEBHOOK_BODY), refuse_unknown=False)
LIST_WEBHOOKS = Operation(
    "GET", "/api/v1/webhooks", "List webhook endpoints (without secrets)", "webhooks",
    {"200": json_answer(answers.closed({"items": answers.array(answers.ENDPOINT)}), "The endpoints."),
     **READ_ERRORS})
DELETE_WEBHOOK = Operation(
    "DELETE", "/api/v1/webhooks/{endpoint_id}", "Delete a webhook endpoint (its pending notifications are disabled)",
    "webhooks", {"200": json_answer(answers.closed({"id": answers.INT, "deleted": answers.TRUE}), "Deleted."),
                 **NOT_FOUND, **READ_ERRORS},
    params=(ENDPOINT_ID,), refuse_unknown=False)
ENABLE_WEBHOOK = Operation(
    "POST", "/api/v1/webhooks/{endpoint_id}/enable", "Enable a webhook endpoint again (after a 410 disabled it)",
    "webhooks", {"200": json_answer(answers.ENDPOINT, "The endpoint."), **NOT_FOUND, **READ_ERRORS},
    params=(ENDPOINT_ID,), refuse_unknown=False)
OPERATIONS = (LIST, DETAIL, ACK, RESOLVE, CREATE_WEBHOOK, LIST_WEBHOOKS, DELETE_WEBHOOK, ENABLE_WEBHOOK)


class CaseRoutes:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def routes(self) -> list[Route]:
        return [
            Route(LIST.path, self.list, methods=[LIST.method]),
            Route(DETAIL.path, self.detail, methods=[DETAIL.method]),
            Route(ACK.path, self.ack, methods=[ACK.method]),
            Route(RESOLVE.path, self.resolve, methods=[RESOLVE.method]),
        ]

    async def list(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        a = LIST.args(request)
        page, page_size = a["page"], a["page_size"]
        f = store.CaseFilter(status=a["status"], severity=a["severity"], reason_code=a["reason_code"])

        def run() -> JSONResponse:
            with self.hub.reads.connect() as conn:
                rows, total = store.list_cases(conn, project_id, f, page, page_size)
            return JSONResponse(page_body([case_view(r) for r in rows], page, page_size, total))

        return await run_in_threadpool(run)

    async def detail(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        case_id = DETAIL.args(request)["case_id"]

        def run() -> JSONResponse:
            with self.hub.reads.connect() as conn:
                found = case_detail(conn, project_id, case_id)
            if found is None:
                raise ProblemError(404, f"case {case_id} not found")
            return JSONResponse(found)

        return await run_in_threadpool(run)

    async def ack(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        return await self._move(project_id, ACK.args(request)["case_id"], "acknowledged", None)

    async def resolve(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        case_id = RESOLVE.args(request)["case_id"]
        body = await json_body(request, RESOLVE_VALIDATOR, optional=True)
        return await self._move(project_id, case_id, "resolved", body.get("note"))

    async def _move(self, pid: int, case_id: str, to: str, note: str | None) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(move_case, self.hub, pid, case_id, to, note))


class WebhookRoutes:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.targets = Targets(hub.settings.webhook_allow_list)

    def routes(self) -> list[Route]:
        return [
            Route(LIST_WEBHOOKS.path, self.collection, methods=[LIST_WEBHOOKS.method, CREATE_WEBHOOK.method]),
            Route(DELETE_WEBHOOK.path, self.delete, methods=[DELETE_WEBHOOK.method]),
            Route(ENABLE_WEBHOOK.path, self.enable, methods=[ENABLE_WEBHOOK.method]),
        ]

    async def collection(self, request: Request) -> JSONResponse:
        # One route for both methods, so that a 405 lists both in Allow.
        return await (self.create(request) if request.method == "POST" else self.list(request))

    async def create(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        body = await json_body(request, WEBHOOK_VALIDATOR)
        url = str(body["url"])
        secret = body.get("secret")

        def run() -> JSONResponse:
            try:
                self.targets.resolve(url)  # DNS: off the event loop
            except RefusedTarget as exc:
                raise ProblemError(422, f"url: {exc}", [{"path": "url", "message": str(exc)}]) from None
            with self.hub.engine.begin() as conn:
                row = store.create_endpoint(conn, project_id, url, secret or new_secret(), time.time_ns())
            return JSONResponse({**endpoint_view(row), "secret": row["secret"]}, 201)

        return await run_in_threadpool(run)

    async def list(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        LIST_WEBHOOKS.args(request)

        def run() -> JSONResponse:
            with self.hub.reads.connect() as conn:
                rows = store.list_endpoints(conn, project_id)
            return JSONResponse({"items": [endpoint_view(r) for r in rows]})

        return await run_in_threadpool(run)

    async def delete(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        endpoint_id = DELETE_WEBHOOK.args(request)["endpoint_id"]

        def run() -> JSONResponse:
            with self.hub.engine.begin() as conn:
                if not store.delete_endpoint(conn, project_id, endpoint_id):
                    raise ProblemError(404, f"webhook endpoint {endpoint_id} not found")
            return JSONResponse({"id": endpoint_id, "deleted": True})

        return await run_in_threadpool(run)

    async def enable(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        endpoint_id = ENABLE_WEBHOOK.args(request)["endpoint_id"]

        def run() -> JSONResponse:
            with self.hub.engine.begin() as conn:
                row = store.enable_endpoint(conn, project_id, endpoint_id)
            if row is None:
                raise ProblemError(404, f"webhook endpoint {endpoint_id} not found")
            return JSONResponse(endpoint_view(row))

        return await run_in_threadpool(run)
