"""Web UI sign-in: sessions opened with an API key, CSRF tokens, and the sign-in rate limit.

The cookie holds a random token; the database holds its SHA-256, the key it was opened with and
the session's CSRF token (`ui_sessions`, migration 0016). A session is as good as its key: a
revoked key ends it, and it sees only the key's project.
"""

from __future__ import annotations

import collections
import hmac
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from tracehub.store.keys import DEFAULT_KEY, DEFAULT_KEY_REFUSED, RefusedKey, hash_key
from tracehub.store.schema import api_keys, projects, ui_sessions

SESSION_COOKIE = "tracehub_session"
SIGNIN_COOKIE = "tracehub_signin"  # the sign-in form's own CSRF token (double submit)
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the signed-in session's project and CSRF token."""

    project_id: int
    project_name: str
    key_prefix: str
    csrf_token: str

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf_token.encode())


class Sessions:
    def __init__(self, engine: sa.Engine, ttl_s: float, refuse_default_key: bool) -> None:
        self.engine = engine
        self.ttl_ns = int(ttl_s * 1e9)
        self.refuse_default_key = refuse_default_key

    def open(self, key: str) -> str | None:
        """A new session's cookie token for `key`, None for an unknown or revoked key;
        `RefusedKey` for the well-known dev-key on a public bind."""
        if self.refuse_default_key and key == DEFAULT_KEY:
            raise RefusedKey(DEFAULT_KEY_REFUSED)
        now = time.time_ns()
        token = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(api_keys.c.id, api_keys.c.project_id).where(
                api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_ns.is_(None))).first()
            if found is None:
                return None
            conn.execute(ui_sessions.delete().where(ui_sessions.c.expires_ns < now))
            conn.execute(ui_sessions.insert().values(
                token_hash=hash_key(token), api_key_id=found.id, project_id=found.project_id,
                csrf_token=secrets.token_urlsafe(32), created_ns=now, expires_ns=now + self.ttl_ns))
        return token

    def viewer(self, token: str | None) -> Viewer | None:
        if not token:
            return None
        query = (sa.select(ui_sessions.c.project_id, projects.c.name, api_keys.c.key_prefix,
                           ui_sessions.c.csrf_token)
                 .join(api_keys, api_keys.c.id == ui_sessions.c.api_key_id)
                 .join(projects, projects.c.id == ui_sessions.c.project_id)
                 .where(ui_sessions.c.token_hash == hash_key(token), ui_sessions.c.expires_ns > time.time_ns(),
                        api_keys.c.revoked_ns.is_(None)))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        prefix = "" if row.key_prefix == DEFAULT_KEY else row.key_prefix
        return Viewer(row.project_id, row.name, prefix, row.csrf_token)

    def close(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(ui_sessions.delete().where(ui_sessions.c.token_hash == hash_key(token)))


class Attempts:
    """Failed sign-ins per client address: after `limit` in `window_s` seconds, every sign-in from
    that address waits (a guessed key would otherwise be tried at request speed)."""

    CLIENTS = 10_000

    def __init__(self, limit: int = 10, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failed: dict[str, collections.deque[float]] = {}

    def retry_after(self, client: str) -> int:
        """0 if `client` may try to sign in now, else the seconds until it may."""
        failed = self._failed.get(client)
        if not failed:
            return 0
        now = time.monotonic()
        while failed and failed[0] <= now - self.window_s:
            failed.popleft()
        if len(failed) < self.limit:
            return 0
        return max(1, int(failed[0] + self.window_s - now + 1))

    def failed(self, client: str) -> None:
        if client not in self._failed and len(self._failed) >= self.CLIENTS:
            self._failed.clear()
        self._failed.setdefault(client, collections.deque()).append(time.monotonic())
