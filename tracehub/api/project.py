"""`/api/v1/project`: the caller's project and its settings (automatic decisions on or off).

A key belongs to one project, so the route needs no id: it reads and changes the key's own project.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from jsonschema import Draft202012Validator
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from tracehub.api.auth import project_of
from tracehub.api.cases import json_body
from tracehub.api.params import only_params
from tracehub.api.responses import JSONResponse
from tracehub.hub import Hub
from tracehub.store.schema import projects

PROJECT_PATCH = {
    "type": "object",
    "properties": {"auto_decide": {
        "type": "boolean",
        "description": "Decide each completed trace by the project's active policy (default true)."}},
    "required": ["auto_decide"],
    "additionalProperties": False,
}
PATCH_VALIDATOR = Draft202012Validator(PROJECT_PATCH)


def _view(conn: sa.Connection, project_id: int) -> dict[str, Any]:
    row = conn.execute(sa.select(projects.c.name, projects.c.auto_decide, projects.c.trace_count)
                       .where(projects.c.id == project_id)).one()
    return {"name": row.name, "auto_decide": bool(row.auto_decide), "trace_count": int(row.trace_count)}


class ProjectRoutes:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def routes(self) -> list[Route]:
        return [Route("/api/v1/project", self.endpoint, methods=["GET", "PATCH"])]

    async def endpoint(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        only_params(request.query_params, frozenset())
        if request.method == "GET":
            def read() -> JSONResponse:
                with self.hub.reads.connect() as conn:
                    return JSONResponse(_view(conn, project_id))

            return await run_in_threadpool(read)
        body = await json_body(request, PATCH_VALIDATOR)

        def write() -> JSONResponse:
            with self.hub.engine.begin() as conn:
                conn.execute(projects.update().where(projects.c.id == project_id)
                             .values(auto_decide=body["auto_decide"]))
                return JSONResponse(_view(conn, project_id))

        return await run_in_threadpool(write)
