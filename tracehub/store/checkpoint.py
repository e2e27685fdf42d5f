"""SQLite only: copying the WAL into the database file from a thread of its own.

A checkpoint fsyncs the WAL and the database file. Left to SQLite's auto-checkpoint, it runs inside
whichever COMMIT crosses 1,000 pages, so the writer (and every request waiting on it) sat out each
fsync: 4.3 s of I/O wait per 100,000 benchmark spans, with the writer thread busy 57% of the time.
Here a second connection checkpoints PASSIVE-ly (it never blocks the writer, and copies only what
no reader still needs) every `interval_s`, and the writer's own auto-checkpoint stays as a bound on
the WAL should this thread fall behind (`WRITER_AUTOCHECKPOINT_BYTES`).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from tracehub.store.background import Background

log = logging.getLogger(__name__)

# The writer's own auto-checkpoint: only reached when the checkpointer falls behind.
WRITER_AUTOCHECKPOINT_BYTES = 64 * 1024 * 1024
# A WAL that grew while readers held old frames is cut back to this size once it is reused.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


class Checkpointer(Background):
    def __init__(self, engine: sa.Engine, interval_s: float = 0.25) -> None:
        super().__init__(engine, "tracehub-checkpoint", "th-checkpoint")
        self._interval_s = interval_s

    def _run(self, dbapi: Any) -> None:
        dbapi.isolation_level = None
        cur = dbapi.cursor()
        cur.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        failing = False
        while not self._stop.wait(self._interval_s):
            try:
                cur.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cur.fetchall()
                failing = False
            except Exception:  # e.g. an I/O error: the next round tries again
                if not failing:  # once per run of failures, not four times a second
                    log.warning("WAL checkpoint failed; retrying", exc_info=True)
                failing = True
