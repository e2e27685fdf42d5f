"""Engines and migrations: the only place that knows how to open either database.

SQLite runs in WAL mode with synchronous=NORMAL: a commit is durable once it is in the WAL file, so
it survives kill -9 of the server (only an OS crash or power loss can take back the newest commits);
readers never block the writer. busy_timeout lets a second process (`tracehub keys create` while the
server runs) wait for the writer instead of failing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable, TypeVar, cast

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from tracehub.store import spanbody

SQLITE_PRAGMAS = (
    # New databases only (WAL fixes the page size once the file exists). Span rows take 2-7 KB:
    # with 4 KiB pages most overflowed onto a second page, and every page costs the writer two
    # writes to the WAL. 8 KiB pages took the writer from ~58 to ~46 µs a benchmark span; 16 KiB
    # then cost more (~51), as every random index update rewrote a larger page. Since spans are
    # keyed by trace number (migration 0011) few updates are random, and 16 KiB pages hold 2-4
    # rows where 8 KiB left a quarter of each page empty: ~23 -> ~22 µs, 13% less disk.
    "PRAGMA page_size=16384",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
    # 8 MiB page cache per connection, and at most SQLITE_POOL of them: a burst of reads once
    # grew 15 connections' caches to ~100 MiB (16 MiB each, SQLAlchemy's default pool of 5 + 10).
    "PRAGMA cache_size=-8192",
    "PRAGMA temp_store=MEMORY",
)

PG_CONNECT_TIMEOUT_S = 5

T = TypeVar("T")

# Connections for the writer (and its search indexing), the WAL checkpointer and concurrent API
# reads; more reads queue.
SQLITE_POOL = 7


def create_engine(url: str, **kwargs: Any) -> sa.Engine:
    if url.startswith("sqlite"):
        # sqlite3 binds a None only after two failed attribute lookups for an adapter (9% of the
        # writer's instructions: a span row has ~9 Nones); registered, it is one dict hit. Process
        # wide, and None still binds as NULL. ({}.get: a C callable that answers None.)
        sqlite3.register_adapter(type(None), cast(Callable[[None], None], {}.get))
        # Likewise bytes (a span's JSON from a decode worker): bytes(b) is b itself. Unregistered,
        # binding four of them cost a row ~2 us more than bytearrays.
        sqlite3.register_adapter(bytes, bytes)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False},
                                  pool_size=SQLITE_POOL, max_overflow=0, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Autocommit at the driver level so SQLAlchemy owns BEGIN; needed for PRAGMAs to apply.
            cur = dbapi_conn.cursor()
            for pragma in SQLITE_PRAGMAS:
                cur.execute(pragma)
            cur.close()
            spanbody.register(dbapi_conn)

        return engine
    return sa.create_engine(url, pool_size=8, max_overflow=4, pool_pre_ping=True, connect_args=_pg_timeout(url),
                            **kwargs)


def unpinged(engine: sa.Engine, pool_size: int = 2, max_overflow: int = 6) -> sa.Engine:
    """A PostgreSQL engine on `engine`'s database with a small pool of its own and no pre-ping, for
    reads that retry once on a lost connection instead (`retry_lost`): the ping was one more round
    trip on every checkout. Connects on first use (after the decode workers fork)."""
    url = engine.url
    return sa.create_engine(url, pool_size=pool_size, max_overflow=max_overflow, connect_args=_pg_timeout(url))


def retry_lost(engine: sa.Engine, work: Callable[[sa.Connection], T]) -> T:
    """`work` on a connection of `engine`; once more if the connection turned out lost (the server
    restarted, the backend was terminated: SQLAlchemy then drops every pooled connection as old as
    it). For reads, which may run twice."""
    try:
        with engine.connect() as conn:
            return work(conn)
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with engine.connect() as conn:
        return work(conn)


def _pg_timeout(url: str | sa.URL) -> dict[str, Any]:
    # A server that does not answer (a network partition) fails a connection attempt after this,
    # instead of holding the writer's reconnection, or a request, for the kernel's TCP timeout.
    # A URL's own connect_timeout wins.
    return {} if "connect_timeout" in sa.make_url(url).query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}


SETUP_LOCK = 0x7472_6163_6568_7562  # PostgreSQL advisory lock ("tracehub") of `take_turns`


def take_turns(conn: sa.Connection) -> None:
    """PostgreSQL: hold until the transaction ends the lock under which server processes started at
    once set a database up (migrations, the default project), so the later ones find it done
    instead of failing on what the first created."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SETUP_LOCK})


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to the newest packaged migration, or to `revision` (idempotent)."""
    _alembic(engine, command.upgrade, revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    """Take the schema back to `revision`."""
    _alembic(engine, command.downgrade, revision)


def _alembic(engine: sa.Engine, run: Callable[[Config, str], None], revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        take_turns(conn)
        cfg.attributes["connection"] = conn
        run(cfg, revision)

