"""Projects and API keys. Keys are stored only as SHA-256 hashes; the plain key is shown once.

A key resolves to exactly one project, and every read and write is scoped by that project's id.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from tracehub.store import db
from tracehub.store.faults import database_error, fault_of
from tracehub.store.schema import api_keys, projects

log = logging.getLogger(__name__)

DEFAULT_PROJECT = "default"
DEFAULT_KEY = "dev-key"
DEFAULT_KEY_REFUSED = (f"the well-known '{DEFAULT_KEY}' is refused because this server listens on a non-loopback"
                       " address; send a key made by `tracehub keys create --project NAME`")


class RefusedKey(Exception):
    """A key this server does not accept, whether or not it is stored; the message says why."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _project_id(conn: sa.Connection, name: str, create: bool) -> int | None:
    found = conn.execute(sa.select(projects.c.id).where(projects.c.name == name)).scalar()
    if found is None and create:
        found = conn.execute(
            projects.insert().values(name=name, created_ns=time.time_ns()).returning(projects.c.id)
        ).scalar_one()
    return found


def _add_key(conn: sa.Connection, project_id: int, key: str) -> None:
    conn.execute(api_keys.insert().values(
        project_id=project_id, key_hash=hash_key(key), key_prefix=key[:8], created_ns=time.time_ns()
    ))


def ensure_default_project(engine: sa.Engine) -> None:
    """On an empty database, create the `default` project with the well-known local key."""
    with engine.begin() as conn:
        db.take_turns(conn)
        if conn.execute(sa.select(sa.func.count()).select_from(projects)).scalar():
            return
        _add_key(conn, _project_id(conn, DEFAULT_PROJECT, create=True) or 0, DEFAULT_KEY)


def create_key(engine: sa.Engine, project: str) -> str:
    """Create the project if needed and return a new key for it (never stored in plain text)."""
    key = "th_" + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        _add_key(conn, _project_id(conn, project, create=True) or 0, key)
    return key


def only_default_key(engine: sa.Engine) -> bool:
    """True while the well-known dev-key is the only usable key: unsafe off loopback."""
    with engine.connect() as conn:
        hashes = conn.execute(
            sa.select(api_keys.c.key_hash).where(api_keys.c.revoked_ns.is_(None))
        ).scalars().all()
    return set(hashes) <= {hash_key(DEFAULT_KEY)}


class KeyResolver:
    """Resolves a presented key to its project id, caching answers for a short while.

    Lives on the event loop, which must never wait for the database: a hit answers at once, a miss
    is looked up on a thread of its own pool, and concurrent misses for one key share the lookup.
    A hung database then holds only the requests with uncached keys (a stopped PostgreSQL held
    every request, health checks too, for 40 s)."""

    LOOKUP_THREADS = 4
    CACHE_LIMIT = 10_000

    def __init__(self, engine: sa.Engine, ttl_s: float = 30.0, refuse_default_key: bool = False) -> None:
        self._engine = engine
        self.refuses_default_key = refuse_default_key
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[int | None, float]] = {}
        self._lookups: dict[str, asyncio.Future[int | None]] = {}
        self._threads = ThreadPoolExecutor(self.LOOKUP_THREADS, thread_name_prefix="tracehub-keys")

    async def project_for(self, key: str | None) -> int | None:
        """The key's project id, None for an unknown or revoked key; raises `faults.Unavailable`
        while the database cannot answer."""
        if not key:
            return None
        if self.refuses_default_key and key == DEFAULT_KEY:
            raise RefusedKey(DEFAULT_KEY_REFUSED)
        digest = hash_key(key)
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = self._lookups[digest] = asyncio.ensure_future(self._lookup(digest))
            lookup.add_done_callback(functools.partial(self._forget, digest))
        # A request that gives up (a client that hung up) leaves the lookup to the others.
        return await asyncio.shield(lookup)

    def _forget(self, digest: str, done: asyncio.Future[int | None]) -> None:
        del self._lookups[digest]
        if not done.cancelled():
            done.exception()  # taken here: every request waiting for it may have given up

    async def _lookup(self, digest: str) -> int | None:
        try:
            project_id = await asyncio.get_running_loop().run_in_executor(self._threads, self._query, digest)
        except Exception as exc:
            if not database_error(exc):
                raise
            log.warning("looking up an API key failed: %s", exc)
            raise fault_of(exc) from None
        if len(self._cache) > self.CACHE_LIMIT:
            self._cache.clear()
        self._cache[digest] = (project_id, time.monotonic() + self._ttl_s)
        return project_id

    def _query(self, digest: str) -> int | None:
        with self._engine.connect() as conn:
            project_id: int | None = conn.execute(
                sa.select(api_keys.c.project_id).where(
                    api_keys.c.key_hash == digest, api_keys.c.revoked_ns.is_(None)
                )
            ).scalar()
        return project_id

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
