"""Threads beside the writer, each with a database connection of its own that it drives itself
(the SQLite checkpointer, the PostgreSQL search indexer; the writer uses `OwnConnection` too).

A connection that breaks (its PostgreSQL backend was terminated, the server restarted) is replaced:
`Background` threads start again on a new one, waiting `Backoff` between attempts while the
database refuses connections, so they outlive any outage without a restart of the server.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import sqlalchemy as sa

from tracehub.store.faults import lost
from tracehub.threads import name_os_thread

log = logging.getLogger(__name__)


class OwnConnection:
    """A pooled connection that a thread drives itself, through its DB-API connection (`dbapi`, None
    while not connected). `setup` prepares each new one for its thread."""

    def __init__(self, engine: sa.Engine, setup: Callable[[Any], None] = lambda _dbapi: None) -> None:
        self._engine = engine
        self._setup = setup
        self._pooled: Any = None
        self.dbapi: Any = None

    def open(self) -> Any:
        """Connect, or raise the driver's (or the pool's) error."""
        pooled = self._engine.raw_connection()
        try:
            self._setup(pooled.driver_connection)
        except BaseException:
            pooled.invalidate()  # and returned: the pool makes a new one next time
            raise
        self._pooled, self.dbapi = pooled, pooled.driver_connection
        return self.dbapi

    def close(self) -> None:
        """Give the connection back to the pool, or have the pool drop it if it broke."""
        if self._pooled is None:
            return
        if lost(self.dbapi):
            self._pooled.invalidate()
        else:
            self._pooled.close()
        self._pooled = self.dbapi = None


class Backoff:
    """Waits between attempts to reach the database: FIRST_S, doubling up to MAX_S, so a database
    that comes back is used again within MAX_S, and one that stays away is not asked in a busy loop."""

    FIRST_S = 0.05
    MAX_S = 2.0

    def __init__(self) -> None:
        self._next = self.FIRST_S

    def next(self) -> float:
        wait, self._next = self._next, min(self._next * 2, self.MAX_S)
        return wait

    def reset(self) -> None:
        self._next = self.FIRST_S


def rollback(dbapi: Any) -> None:
    """End a failed transaction, if one is open and the connection still stands."""
    try:
        dbapi.cursor().execute("ROLLBACK")
    except Exception:  # no transaction open, or the connection is gone
        pass


class Background:
    """A daemon thread running `_run(dbapi)` until `stop()`; `_run` waits on `self._stop`."""

    def __init__(self, engine: sa.Engine, name: str, os_name: str) -> None:
        self._engine = engine
        self._os_name = os_name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(timeout)

    def _wake(self) -> None:
        """Interrupt whatever else `_run` may be waiting on."""

    def _main(self) -> None:
        name_os_thread(self._os_name)
        name = self._thread.name
        backoff = Backoff()
        outage = False  # logged once, not at every attempt
        while not self._stop.is_set():
            conn = OwnConnection(self._engine)
            started = time.monotonic()
            try:
                dbapi = conn.open()
                if outage:
                    log.info("%s: connected to the database again", name)
                    outage = False
                self._run(dbapi)
                return  # stopped
            except Exception as exc:
                if self._stop.is_set():
                    return
                if conn.dbapi is None or lost(conn.dbapi):
                    if not outage:
                        log.warning("%s: cannot reach the database (%s); trying again", name, exc)
                    outage = True
                else:
                    log.exception("%s failed; starting again", name)
                if time.monotonic() - started > Backoff.MAX_S:
                    backoff.reset()  # it had been working: this is a new failure
            finally:
                conn.close()
            self._stop.wait(backoff.next())

    def _run(self, dbapi: Any) -> None:
        raise NotImplementedError
