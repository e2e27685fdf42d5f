"""PostgreSQL only: the search index and planner statistics, kept by a thread and connection of
its own.

A step of trigram indexing (GIN inserts, trigram extraction: about a fifth of the database's CPU
during a load) takes ~0.3 s for 200 spans. Run by the writer between its commits, as on SQLite, it
held every waiting request that long once a second: p99 758 ms against 515 ms here, for the same
throughput. PostgreSQL takes concurrent writers and the steps write only the search tables, so here
they run beside the writer. SQLite has one write lock, so there the writer still indexes between
its own commits (`Writer._index`).

The pacing is the writer's (`tracehub.store.indexpacing`): while it is at work half the time or
more (`Writer.busy`), one small step a second (ingest keeps the CPU and the index catches up
afterwards) unless the index is more than INDEX_LAG_S behind, then steps without a pause; otherwise
step after step until the index is complete. (Pausing whenever the writer had committed in the last
50 ms left a steady 2,000 spans/s ~39,000 rows behind after 20 s; now ~11,000, this machine's
trigram indexing being slower than that, and a steady 1,000 spans/s keeps up.)

Between steps the thread ANALYZEs the key columns of a table the writer has doubled (`ANALYZED`).
Autovacuum looks once a minute; until then a new database had no statistics, and PostgreSQL planned
the writer's lookups of stored spans and trace rows as scans of all the project's rows (a hash join
over every stored span for each batch), so ingest slowed as the tables grew. A sample of 3,000 rows
and only these columns: a whole ANALYZE of 60,000 spans took 760 ms, this one 22 ms. Autovacuum
still analyzes every column in its time. When ingest pauses it also VACUUMs the trace table, so the
trace list's filtered totals read the index alone (`_vacuum`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import sqlalchemy as sa

from tracehub.store import search
from tracehub.store.background import Background, rollback
from tracehub.store.sql import Sql
from tracehub.store.faults import lost

log = logging.getLogger(__name__)

# The columns the writer's lookups and the trace list's filters select on; `id` for search's scan
# of the rows above the index's mark, which without it PostgreSQL estimated at a third of the table.
ANALYZED = {
    "spans": "id, project_id, trace_seq, span_id",
    "traces": "project_id, trace_id, status, start_ns, environment, session_id, user_id",
    "span_events": "id, project_id, trace_id, span_id, event_type",
    # The search's side tables: their row counts, without which the probe's planner took the index
    # on (project_id, trace_id) over the trigram index (`search._document_cost`); no `doc`, whose
    # sample would detoast thousands of documents.
    "span_search": "project_id, trace_id",
    "span_event_search": "project_id, trace_id",
}
ANALYZE_MIN_ROWS = 200
# Rows the search index may not take yet (`search.Horizon`) are looked at again this much later.
HORIZON_WAIT_S = 0.05
VACUUM_MIN_ROWS = 200
ANALYZE_STATISTICS_TARGET = 10  # sample rows = 300 x target
# A backend that goes idle reports its row counts within 10 s (PGSTAT_IDLE_INTERVAL).
STATS_LAG_S = 12.0


class SearchIndexer(Background):
    def __init__(self, engine: sa.Engine, sql: Sql, busy: Callable[[], bool], step_rows: int,
                 busy_step_rows: int, busy_every_s: float, lag_s: float, lag_step_rows: int) -> None:
        super().__init__(engine, "tracehub-indexer", "th-indexer")
        self._sql = sql
        self._busy = busy
        self._step_rows = step_rows
        self._busy_step_rows = busy_step_rows
        self._busy_every_s = busy_every_s
        self._lag_s = lag_s
        self._lag_step_rows = lag_step_rows
        self._new_rows = threading.Event()

    def rows_committed(self) -> None:
        """The writer committed rows that may need indexing."""
        self._wake()

    def _wake(self) -> None:
        self._new_rows.set()

    def _run(self, dbapi: Any) -> None:
        dbapi.autocommit = True  # explicit BEGIN / COMMIT in _step
        pending = True  # rows may be left unindexed by an earlier run
        look_again = 0.0  # until then, ANALYZE may be due once the writer's counts arrive
        while not self._stop.is_set():
            if not pending:
                wait = look_again - time.monotonic()
                if not self._new_rows.wait(wait if wait > 0 else None):
                    self._analyze(dbapi)
                    self._vacuum(dbapi)
                    look_again = 0.0
                    continue
            self._new_rows.clear()
            look_again = time.monotonic() + STATS_LAG_S
            started = time.monotonic()
            pending = self._step(dbapi)
            self._analyze(dbapi)
            if self._yields():
                self._stop.wait(max(0.0, self._busy_every_s - (time.monotonic() - started)))
                pending = True  # the writer committed meanwhile
            else:
                self._vacuum(dbapi)

    def _step(self, dbapi: Any) -> bool:
        """One bounded step in its own transaction; True if more rows may be waiting."""
        rows = (self._lag_step_rows if search.LAG.lag() > self._lag_s
                else self._busy_step_rows if self._busy() else self._step_rows)
        done = search.step_committed(dbapi, self._sql, rows)
        if done is None:
            self._stop.wait(self._busy_every_s)  # no busy retry loop
            return False
        if not done and search.HORIZON.waiting:  # rows committed out of order: final in a moment
            self._stop.wait(HORIZON_WAIT_S)
            return True
        return done > 0

    def _yields(self) -> bool:
        """Whether ingest keeps the CPU: the writer is busy and the index is less than lag_s behind."""
        return self._busy() and search.LAG.lag() <= self._lag_s

    def _vacuum(self, dbapi: Any) -> None:
        """VACUUM the trace table once ingest pauses, if half its rows are new or dead since the last
        VACUUM. Until one sets the visibility map, a filtered list's total reads each matching row
        from the table instead of the index alone (one environment of 30,000 traces: 23 ms against
        3.9), and autovacuum may come a minute or more after a load."""
        cur = dbapi.cursor()
        try:
            cur.execute(
                "SELECT 1 FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                " WHERE s.relid = 'traces'::regclass"
                " AND s.n_ins_since_vacuum + s.n_dead_tup >= greatest(%s, c.reltuples / 2)",
                [VACUUM_MIN_ROWS])
            if cur.fetchone() is not None:
                cur.execute("VACUUM traces")
        except Exception:
            rollback(dbapi)
            if lost(dbapi):
                raise  # `Background` starts again on a new connection
            log.exception("VACUUM failed; autovacuum still vacuums in time")

    def _analyze(self, dbapi: Any) -> None:
        """ANALYZE the tables holding twice the rows their statistics know (ANALYZE_MIN_ROWS at
        first). A column list leaves n_mod_since_analyze to autovacuum, so the test is reltuples."""
        cur = dbapi.cursor()
        try:
            # A partitioned table (spans on PostgreSQL) counts no rows of its own: its partitions'
            # counts say when, and ANALYZE of the table covers it and them.
            cur.execute(
                "SELECT DISTINCT coalesce(i.inhparent, s.relid)::regclass::text FROM pg_stat_user_tables s"
                " JOIN pg_class c ON c.oid = s.relid LEFT JOIN pg_inherits i ON i.inhrelid = s.relid"
                " WHERE coalesce(i.inhparent, s.relid) = ANY(%s::regclass[])"
                " AND s.n_live_tup >= greatest(%s, 2 * c.reltuples)",
                [list(ANALYZED), ANALYZE_MIN_ROWS])
            for (table,) in cur.fetchall():
                cur.execute("BEGIN")
                cur.execute(f"SET LOCAL default_statistics_target = {ANALYZE_STATISTICS_TARGET}")
                cur.execute(f"ANALYZE {table} ({ANALYZED[table]})")
                cur.execute("COMMIT")
        except Exception:
            rollback(dbapi)
            if lost(dbapi):
                raise  # `Background` starts again on a new connection
            log.exception("ANALYZE failed; autovacuum still analyzes in time")
