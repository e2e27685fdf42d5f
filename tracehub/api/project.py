"""`/api/v1/project`: the caller's project and its settings (automatic decisions on or off, how
long its traces are kept: tracehub/store/retention.py).

A key belongs to one project, so the route needs no id: it reads and changes the key's own project.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from jsonschema import Draft202012Validator
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from tracehub.api import answers
from tracehub.api.auth import project_of
from tracehub.api.cases import json_body
from tracehub.api.operation import BODY_ERRORS, READ_ERRORS, Operation, json_answer, request_body
from tracehub.api.responses import JSONResponse
from tracehub.hub import Hub
from tracehub.store.retention import MAX_RETENTION_DAYS
from tracehub.store.schema import projects

RETENTION_DAYS = {
    "type": ["integer", "null"], "minimum": 0, "maximum": MAX_RETENTION_DAYS,
    "description": "Days a trace is kept after its last activity (the latest of its start, its end and"
                   " the server's last write to it); then it is deleted with its spans, events,"
                   " evaluations, decisions, judge runs and cases. 0 or null: kept for ever (default)."}
PROJECT_PATCH = {
    "type": "object",
    "properties": {
        "auto_decide": {
            "type": "boolean",
            "description": "Decide each completed trace by the project's active policy (default true)."},
        "retention_days": RETENTION_DAYS,
    },
    "minProperties": 1,
    "additionalProperties": False,
}
PATCH_VALIDATOR = Draft202012Validator(PROJECT_PATCH)
_PROJECT = answers.closed({
    "name": answers.STR, "auto_decide": answers.BOOL, "trace_count": answers.INT,
    "retention_days": {**RETENTION_DAYS, "minimum": 1,
                       "description": "Days a trace is kept after its last activity; null: for ever."}})
READ = Operation("GET", "/api/v1/project", "The key's project and its settings", "project",
                 {"200": json_answer(_PROJECT, "The project."), **READ_ERRORS})
CHANGE = Operation(
    "PATCH", "/api/v1/project", "Change the key's project's settings: automatic decisions, retention", "project",
    {"200": json_answer(_PROJECT, "The project."), **BODY_ERRORS, **READ_ERRORS}, body=request_body(PROJECT_PATCH),
    description="Only the fields sent change. A retention deletes the project's traces once their last activity "
                "is older, in the server's passes (TRACEHUB_RETENTION_INTERVAL_S) or `tracehub prune`.")
OPERATIONS = (READ, CHANGE)


def _view(conn: sa.Connection, project_id: int) -> dict[str, Any]:
    row = conn.execute(sa.select(projects.c.name, projects.c.auto_decide, projects.c.trace_count,
                                 projects.c.retention_days).where(projects.c.id == project_id)).one()
    return {"name": row.name, "auto_decide": bool(row.auto_decide), "trace_count": int(row.trace_count),
            "retention_days": row.retention_days or None}


class ProjectRoutes:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def routes(self) -> list[Route]:
        return [Route(READ.path, self.endpoint, methods=[READ.method, CHANGE.method])]

    async def endpoint(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        (READ if request.method == READ.method else CHANGE).args(request)
        if request.method == READ.method:
            def read() -> JSONResponse:
                with self.hub.reads.connect() as conn:
                    return JSONResponse(_view(conn, project_id))

            return await run_in_threadpool(read)
        body = await json_body(request, PATCH_VALIDATOR)
        changes = dict(body)
        if "retention_days" in changes:  # 1.0 is a JSON integer too; 0 keeps for ever, as null does
            changes["retention_days"] = int(changes["retention_days"] or 0) or None

        def write() -> JSONResponse:
            with self.hub.engine.begin() as conn:
                conn.execute(projects.update().where(projects.c.id == project_id).values(**changes))
                return JSONResponse(_view(conn, project_id))

        return await run_in_threadpool(write)
