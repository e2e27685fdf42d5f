"""Projects and API keys. Keys are stored only as SHA-256 hashes; the plain key is shown once.

A key resolves to exactly one project, and every read and write is scoped by that project's id.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

import sqlalchemy as sa

from tracehub.store.schema import api_keys, projects

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
    """Resolves a presented key to its project id, caching hits for a short while."""

    def __init__(self, engine: sa.Engine, ttl_s: float = 30.0, refuse_default_key: bool = False) -> None:
        self._engine = engine
        self._refuse_default_key = refuse_default_key
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[int | None, float]] = {}
        self._lock = threading.Lock()

    def project_for(self, key: str | None) -> int | None:
        if not key:
            return None
        if self._refuse_default_key and key == DEFAULT_KEY:
            raise RefusedKey(DEFAULT_KEY_REFUSED)
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        with self._engine.connect() as conn:
            project_id = conn.execute(
                sa.select(api_keys.c.project_id).where(
                    api_keys.c.key_hash == digest, api_keys.c.revoked_ns.is_(None)
                )
            ).scalar()
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (project_id, now + self._ttl_s)
        return project_id
