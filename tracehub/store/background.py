"""Threads beside the writer, each with a database connection of its own that it drives itself
(the SQLite checkpointer, the PostgreSQL search indexer; the writer uses `driver_connection` too)."""

from __future__ import annotations

import contextlib
import ctypes
import threading
from typing import Any, Iterator

import sqlalchemy as sa

_PR_SET_NAME = 15  # prctl(2)


def name_os_thread(name: str) -> None:
    """Give the calling thread a name the OS shows (`top -H`, /proc/<pid>/task/*/comm, 15 bytes at
    most), so the CPU of the writer, its helpers and the decode workers can be told apart."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode()[:15])


@contextlib.contextmanager
def driver_connection(engine: sa.Engine) -> Iterator[Any]:
    """A pooled connection's DB-API connection, for a thread that runs its own transactions."""
    conn = engine.raw_connection()
    try:
        dbapi = conn.driver_connection
        assert dbapi is not None
        yield dbapi
    finally:
        conn.close()


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
        with driver_connection(self._engine) as dbapi:
            self._run(dbapi)

    def _run(self, dbapi: Any) -> None:
        raise NotImplementedError
