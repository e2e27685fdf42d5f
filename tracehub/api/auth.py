"""API authentication: `x-api-key` or `Authorization: Bearer` -> the caller's project id
(`project_of`); on the routes that speak Langfuse's API, HTTP Basic as well (`BasicAuth`)."""

from __future__ import annotations

import time

import sqlalchemy as sa
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from tracehub.api.errors import ProblemError
from tracehub.hub import Hub
from tracehub.requests import basic_credentials, presented_key
from tracehub.store.keys import RefusedKey
from tracehub.store.schema import projects

BASIC_CHALLENGE = {"www-authenticate": 'Basic realm="tracehub"'}


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


class BasicAuth:
    """HTTP Basic as the Langfuse SDK sends it (public key : secret key), so that its users change
    only LANGFUSE_HOST: the secret key is the project's API key. The public key is no secret and
    needs setting nowhere; when it is a project's name it must be the key's project, else the
    request is refused (any other public key, such as Langfuse's `pk-lf-...`, is ignored).
    `x-api-key` and Bearer are taken as well.

    Only those routes take Basic: elsewhere a key has one way in, whose 401 asks for a Bearer token
    and never makes a browser prompt for a password."""

    TTL_S = 30.0  # how long a project name's id is remembered (as keys are: `KeyResolver`)
    CACHE_LIMIT = 1_000

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._named: dict[str, tuple[int | None, float]] = {}

    async def project_of(self, request: Request) -> tuple[int, str]:
        """The caller's project and the API key it presented."""
        basic = basic_credentials(request.headers)
        public, key = basic if basic is not None else (None, presented_key(request.headers))
        try:
            project_id = await self.hub.keys.project_for(key)
        except RefusedKey as exc:
            raise ProblemError(401, str(exc), headers=BASIC_CHALLENGE) from None
        if project_id is None or key is None:
            raise ProblemError(401, "missing or unknown API key: send it as HTTP Basic's password (Langfuse's"
                                    " secret key), x-api-key or Authorization: Bearer", headers=BASIC_CHALLENGE)
        if public:
            named = await self._project_named(public)
            if named is not None and named != project_id:
                raise ProblemError(401, f"the public key names project {public!r}, but the secret key is another"
                                        " project's: send that project's key, or a public key that is no other"
                                        " project's name", headers=BASIC_CHALLENGE)
        return project_id, key

    async def _project_named(self, name: str) -> int | None:
        hit = self._named.get(name)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]

        def lookup() -> int | None:
            with self.hub.reads.connect() as conn:
                found: int | None = conn.execute(sa.select(projects.c.id).where(projects.c.name == name)).scalar()
            return found

        project_id = await run_in_threadpool(lookup)
        if len(self._named) > self.CACHE_LIMIT:
            self._named.clear()
        self._named[name] = (project_id, time.monotonic() + self.TTL_S)
        return project_id
