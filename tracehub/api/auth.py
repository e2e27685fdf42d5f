"""API authentication: `x-api-key` or `Authorization: Bearer` -> the caller's project id."""

from __future__ import annotations

from starlette.requests import Request

from tracehub.api.errors import ProblemError
from tracehub.hub import Hub
from tracehub.requests import presented_key
from tracehub.store.keys import RefusedKey


async def project_of(request: Request, hub: Hub) -> int:
    """The caller's project; `faults.Unavailable` while the database cannot be asked (the app's
    handler answers it)."""
    try:
        project_id = await hub.keys.project_for(presented_key(request.headers))
    except RefusedKey as exc:
        raise ProblemError(401, str(exc), headers={"www-authenticate": "Bearer"}) from None
    if project_id is None:
        raise ProblemError(401, "missing or unknown API key (send x-api-key or Authorization: Bearer)",
                           headers={"www-authenticate": "Bearer"})
    return project_id
