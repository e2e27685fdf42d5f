"""The one writer per database: a bounded queue, group commit, idempotent bulk writes.

Receivers `submit()` a `Batch` and wait on the returned future; the writer thread takes every batch
waiting in the queue (up to `batch_spans`), writes them in one transaction and resolves each future
only after COMMIT, so an acknowledged span is a committed span. A full queue raises `QueueFull`
at once (the receivers answer 429 / RESOURCE_EXHAUSTED) instead of growing memory.

Trace-level derived fields are maintained incrementally: the writer reads the current rows of the
traces a transaction touches, folds in only the spans that were not stored before (so a re-delivered
span counts once), and upserts the rows. Being the single writer is what makes that read-modify-write
safe in one process. Server processes sharing a PostgreSQL database lock the rows FOR UPDATE; a row
none of them had, which two store first at once, fails one's transaction (a unique violation), and
that transaction is run again (`faults.conflict`): it then finds the row and locks it.

What one batch writes, and how, is `tracehub.store.batchwrite`. On SQLite a second thread
checkpoints the WAL (`tracehub.store.checkpoint`), so COMMIT does not wait for fsync. New rows are
indexed for search as `tracehub.store.indexpacing` decides, which the writer tells of its work: on
SQLite by the writer itself, in steps between its transactions (`tracehub.store.search`); on
PostgreSQL by a thread of its own beside the writer (`tracehub.store.indexer`).

A failed transaction is never acknowledged. Its requests are answered by what the failure means
(`tracehub.store.faults`): a group that fails on its data is written again one request at a time,
and only the request at fault is `Rejected` (the client must not send it again); a database that
cannot be reached makes them `Unavailable` (the client retries). A connection that breaks
(PostgreSQL's backend terminated, the server restarted) is replaced at once and its group written
once more on the new one; while the database refuses connections the writer tries again with
`Backoff`, refuses new requests at once (`fault` says why, and `/readyz` answers 503) and is
back at work within `Backoff.MAX_S` of the database.

The decision lane (`submit_decision`) carries the decision engine's writes: a callable run on this
thread with a `Transaction` (the cursor of an open transaction, and `write()` for a `Batch`), so
decisions never race the trace rows' read-modify-write nor take SQLite's write lock from another
thread. The lane is never refused for a full queue (backpressure must not drop a decision on a
stored trace); it is written before the next ingest group, in a transaction of its own, so a
decision that fails never fails ingest with it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError
from typing import Any, Callable, Iterator, Sequence, TypeVar

import sqlalchemy as sa

from tracehub import metrics
from tracehub.records import Batch, WriteResult
from tracehub.store import indexpacing, search
from tracehub.store.background import Backoff, OwnConnection, rollback
from tracehub.store.batchwrite import BatchWriter, count_new_traces
from tracehub.store.checkpoint import WRITER_AUTOCHECKPOINT_BYTES, Checkpointer
from tracehub.store.faults import Unavailable, conflict, fault_of, lost, retryable
from tracehub.store.indexer import SearchIndexer
from tracehub.store.jsoncolumns import bind_json_bytes
from tracehub.store.resources import StoredResources
from tracehub.store.sql import Sql
from tracehub.threads import name_os_thread

log = logging.getLogger(__name__)

# Spans a second the writer is assumed to commit until it has measured itself (`drain_s`).
FIRST_SPANS_PER_S = 5_000.0
# Decision-lane jobs written in one transaction at most.
LANE_GROUP = 256
# Times a transaction is run again after a conflict with another server process on the same
# PostgreSQL (`faults.conflict`). Each run reads what the others committed before it, so only a
# process that meets yet another one on a trace both store first needs the next; past these the
# requests are answered 503 for their clients to retry.
CONFLICT_RERUNS = 5

T = TypeVar("T")


class QueueFull(Exception):
    """The writer is behind: the caller should answer with backpressure."""


class WriterStopped(Exception):
    """The writer is shutting down and takes no new work."""


def _settle(future: Future[Any], result: Any = None, exception: BaseException | None = None) -> None:
    """Answer a waiting request, unless it gave up (a gRPC deadline, a client that hung up
    cancels the future): its data is committed anyway and a retry is de-duplicated."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


class _Job:
    __slots__ = ("batch", "future", "size")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.future: Future[WriteResult] = Future()
        self.size = max(1, len(batch))

    def write(self, cur: Any, sql: Sql, resources: StoredResources, new_traces: dict[int, int]) -> WriteResult:
        return BatchWriter(cur, sql, resources, new_traces).write(self.batch)


class _LaneState:
    """A decision-lane transaction on PostgreSQL: its BEGIN waits for the first statement (sent with
    it), and its last job may send COMMIT with its last statements: two round trips fewer."""

    __slots__ = ("begun", "committed", "last")

    def __init__(self, begun: bool) -> None:
        self.begun = begun
        self.committed = False
        self.last: object = None  # the group's last job: only it may commit


class Transaction:
    """A decision-lane job's view of the writer's open transaction: its DB-API cursor, the
    dialect's SQL helpers, `write()` for records that go in as ingest's do, and `pipeline()` for
    statements sent together. Commits only through `pipeline(commit=True)`."""

    def __init__(self, cur: Any, sql: Sql, resources: StoredResources, state: _LaneState | None = None,
                 job: object = None) -> None:
        self._cur = cur
        self.sql = sql
        self._resources = resources
        self._state = state if state is not None else _LaneState(begun=True)
        self._job = job

    @property
    def cur(self) -> Any:
        """The transaction's cursor (its BEGIN sent first, if it waits)."""
        self._begin()
        return self._cur

    def cursor(self) -> Any:
        """Another cursor of the transaction, for a result read after more statements."""
        self._begin()
        return self._cur.connection.cursor()

    def _begin(self) -> None:
        if not self._state.begun:
            if self._state.committed:
                raise RuntimeError("the decision lane's transaction is committed")
            self._state.begun = True
            self._cur.execute("BEGIN")  # in a pipeline: sent with what follows

    @contextlib.contextmanager
    def pipeline(self, commit: bool = False) -> Iterator[None]:
        """PostgreSQL: the statements inside are sent together and their results read in one round
        trip at the end (psycopg's pipeline mode: `rowcount` is unknown before a fetch, COPY is
        refused), the transaction's BEGIN first if it waits. `commit`: nothing of the job follows,
        so the group's last job sends COMMIT with them. SQLite: as they come (the writer commits)."""
        if not self.sql.pg:
            yield
            return
        with self._cur.connection.pipeline():
            self._begin()
            yield
            if commit and self._state.last is self._job:
                self._cur.execute("COMMIT")
                self._state.committed = True
                self._state.begun = False

    def write(self, batch: Batch) -> WriteResult:
        return BatchWriter(self.cur, self.sql, self._resources).write(batch)


class _LaneJob:
    __slots__ = ("work", "future")

    def __init__(self, work: Callable[[Transaction], Any]) -> None:
        self.work = work
        self.future: Future[Any] = Future()

    def write(self, cur: Any, sql: Sql, resources: StoredResources, state: _LaneState | None = None) -> Any:
        return self.work(Transaction(cur, sql, resources, state, self))


# Put in the queue after a decision-lane job, to wake a writer waiting for work.
_WAKE = _LaneJob(lambda _tx: None)


class Writer:
    def __init__(self, engine: sa.Engine, max_queued_spans: int = 100_000,
                 batch_spans: int = 5_000) -> None:
        self._engine = engine
        self._sql = Sql(engine.dialect.name)
        self.max_queued_spans = max_queued_spans
        self._batch_spans = batch_spans
        self._queue: queue.SimpleQueue[_Job | _LaneJob | None] = queue.SimpleQueue()
        self._lane: collections.deque[_LaneJob] = collections.deque()
        self._queued = 0
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="tracehub-writer", daemon=True)
        self._checkpointer = None if self._sql.pg else Checkpointer(engine)
        self._indexer = SearchIndexer(
            engine, self._sql, self.busy, indexpacing.INDEX_STEP_ROWS, indexpacing.INDEX_BUSY_STEP_ROWS,
            indexpacing.INDEX_EVERY_S, indexpacing.INDEX_LAG_S, indexpacing.INDEX_LAG_STEP_ROWS,
        ) if self._sql.pg else None
        self._pacing = (indexpacing.IndexPacing(tell=self._indexer.rows_committed) if self._indexer is not None
                        else indexpacing.IndexPacing(step=self._index))
        self._spans_per_s = FIRST_SPANS_PER_S  # while at work: a moving average over transactions
        self._resources = StoredResources()
        self._db = OwnConnection(engine, self._setup)
        self._backoff = Backoff()
        self._connect_at = 0.0  # the next attempt to connect, while not connected
        self.fault: str | None = None  # why the writer cannot reach the database, while it cannot
        # Told, on the writer's thread after each COMMIT, the (project_id, trace_id) of the traces
        # it completed (`WriteResult.completed`); must not block (the decision worker's hand-off).
        self.on_completed: Callable[[list[tuple[int, str]]], None] | None = None

    @property
    def nul_free(self) -> bool:
        """Whether span rows must come encoded without NUL in their text (`RowEncoder`)."""
        return self._sql.pg

    @property
    def queued_spans(self) -> int:
        return self._queued

    def drain_s(self) -> float:
        """Seconds the writer needs for the spans queued now, at the pace of its recent transactions."""
        return self._queued / self._spans_per_s

    def busy(self) -> bool:
        """Whether ingest should have the CPU before search indexing (`IndexPacing.busy`)."""
        return self._pacing.busy()

    def start(self) -> None:
        self._thread.start()
        if self._checkpointer is not None:
            self._checkpointer.start()
        if self._indexer is not None:
            self._indexer.start()

    def submit(self, batch: Batch) -> Future[WriteResult]:
        job = _Job(batch)
        with self._lock:
            if self._stopping:
                raise WriterStopped("the writer is shutting down")
            if self.fault is not None:  # answered now, not after the next attempt to connect
                raise Unavailable()
            if self._queued + job.size > self.max_queued_spans and self._queued:
                raise QueueFull(f"{self._queued} spans are waiting to be written")
            self._queued += job.size
        self._queue.put(job)
        return job.future

    def submit_decision(self, work: Callable[[Transaction], T]) -> Future[T]:
        """Run `work` on the writer thread inside a transaction and commit; the future holds what
        it returned, or the `Fault` the transaction met (as ingest's). Ahead of queued ingest,
        and never refused for a full queue."""
        job = _LaneJob(work)
        with self._lock:
            if self._stopping:
                raise WriterStopped("the writer is shutting down")
            if self.fault is not None:
                raise Unavailable()
            self._lane.append(job)
        self._queue.put(_WAKE)
        return job.future

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking work, write everything already accepted, then return."""
        with self._lock:
            self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._indexer is not None:
            self._indexer.stop()

    def _run(self) -> None:
        name_os_thread("th-writer")
        try:
            self._loop()
        finally:
            self._db.close()

    def _setup(self, dbapi: Any) -> None:
        if self._sql.pg:
            dbapi.autocommit = True  # explicit BEGIN / COMMIT below
            bind_json_bytes(dbapi)
        else:
            dbapi.isolation_level = None
            # The checkpointer thread copies the WAL; COMMIT does only past this bound, which
            # SQLite counts in pages (4, 8 or 16 KiB, as the database was created).
            page_size = dbapi.execute("PRAGMA page_size").fetchone()[0]
            dbapi.execute(f"PRAGMA wal_autocheckpoint={WRITER_AUTOCHECKPOINT_BYTES // page_size}")
            self._sql.use_variable_limit(dbapi)

    def _connected(self) -> float | None:
        """Connect if not connected and an attempt is due: None once connected, else the seconds
        until the next attempt."""
        if self._db.dbapi is not None:
            return None
        wait = self._connect_at - time.monotonic()
        if wait > 0:
            return wait
        try:
            self._db.open()
        except Exception as exc:
            if self.fault is None:  # once per outage
                log.warning("the writer cannot reach the database (%s); trying again", exc)
            self.fault = "the writer cannot reach the database"
            wait = self._backoff.next()
            self._connect_at = time.monotonic() + wait
            return wait
        if self.fault is not None:
            log.info("the writer is connected to the database again")
        self.fault = None
        self._backoff.reset()
        return None

    def _loop(self) -> None:
        pacing = self._pacing
        while True:
            reconnect_in = self._connected()
            if self._lane:
                self._write_lane()
                pacing.lane_committed()
            pacing.tick()
            try:
                job = self._queue.get(timeout=reconnect_in if reconnect_in is not None else pacing.wait_s())
            except queue.Empty:
                pacing.idle(connected=reconnect_in is None)
                continue
            pacing.woke()
            if job is None:
                self._write_lane()
                return
            if job is _WAKE:  # the lane is written at the top of the loop
                continue
            assert isinstance(job, _Job)
            jobs, size, stop = [job], job.size, False
            while size < self._batch_spans:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if nxt is _WAKE:
                    continue
                assert isinstance(nxt, _Job)
                jobs.append(nxt)
                size += nxt.size
            started = time.monotonic()
            try:
                self._commit(jobs)
            except Exception as exc:  # the writer must outlive any one batch, or ingest wedges
                log.exception("writing %d requests failed", len(jobs))
                for failed in jobs:
                    _settle(failed.future, exception=fault_of(exc))
            finally:
                with self._lock:
                    self._queued -= size
                ended = time.monotonic()
                if size >= 1_000:  # small transactions measure their overhead, not the pace
                    self._spans_per_s += (size / max(ended - started, 1e-3) - self._spans_per_s) / 4
                pacing.worked(started, ended)
                metrics.WRITER_BUSY_SECONDS.inc(ended - started)
                metrics.WRITER_TRANSACTIONS.inc()
            if stop:
                self._write_lane()
                return
            pacing.committed(size, self._queued)

    def _write_lane(self) -> None:
        """The decision lane's waiting jobs, LANE_GROUP at most, in a transaction of their own."""
        jobs: list[_LaneJob] = []
        while self._lane and len(jobs) < LANE_GROUP:
            jobs.append(self._lane.popleft())
        started = time.monotonic()
        try:
            self._commit(jobs)
        except Exception as exc:
            log.exception("writing %d decisions failed", len(jobs))
            for failed in jobs:
                _settle(failed.future, exception=fault_of(exc))
        finally:
            ended = time.monotonic()
            self._pacing.worked(started, ended)
            metrics.WRITER_BUSY_SECONDS.inc(ended - started)
            metrics.WRITER_TRANSACTIONS.inc()

    def _index(self, rows: int) -> bool:
        """SQLite: one indexing step of up to `rows` (`IndexPacing` counts it in the writer's load);
        True if more rows may wait (not after a failure: no busy retry loop)."""
        if self._db.dbapi is None:
            return False
        return bool(search.step_committed(self._db.dbapi, self._sql, rows))

    def _commit(self, jobs: Sequence[_Job | _LaneJob], again: bool = True, reruns: int = CONFLICT_RERUNS) -> None:
        """Write `jobs` in one transaction and answer them; on a broken connection, once more on a
        new one if `again`; after a conflict with another process, again up to `reruns` times."""
        dbapi = self._db.dbapi
        if dbapi is None or not jobs:
            for job in jobs:
                _settle(job.future, exception=Unavailable())
            return
        try:
            results = self._transaction(dbapi, jobs)
        except Exception as exc:
            rollback(dbapi)
            if lost(dbapi):
                log.warning("the writer's database connection was lost (%s); connecting again", exc)
                self._db.close()
                self._connect_at = 0.0
                # Not committed, or committed as the connection broke: written again, spans are
                # found stored. Requests already answered are not.
                if again and self._connected() is None:
                    self._commit([job for job in jobs if not job.future.done()], False, reruns)
                else:
                    for job in jobs:
                        _settle(job.future, exception=Unavailable())
                return
            if reruns and conflict(exc):
                # Server processes sharing one PostgreSQL: another committed a trace's first row or
                # a span after this transaction looked for it, or locked trace rows or decision keys
                # in another order. Run again, the transaction finds them stored.
                log.info("the writer's transaction met another process's (%s); writing it again", exc)
                metrics.WRITER_CONFLICTS.inc()
                self._commit([job for job in jobs if not job.future.done()], again, reruns - 1)
                return
            if len(jobs) > 1 and not retryable(exc):
                log.warning("group commit of %d requests failed; writing them one by one", len(jobs),
                            exc_info=True)
                for job in jobs:
                    self._commit([job], again)
                return
            log.error("writing %d requests failed", len(jobs), exc_info=True)
            for job in jobs:
                _settle(job.future, exception=fault_of(exc))
            return
        for job, result in zip(jobs, results):
            _settle(job.future, result)
        if self.on_completed is not None:
            completed = [key for result in results if isinstance(result, WriteResult)
                         for key in result.completed]
            if completed:
                self.on_completed(completed)

    def _transaction(self, dbapi: Any, jobs: Sequence[_Job | _LaneJob]) -> list[Any]:
        cur = dbapi.cursor()
        if self._sql.pg and isinstance(jobs[0], _LaneJob):
            return self._lane_transaction(cur, jobs)
        self._sql.begin(cur)
        new_traces: dict[int, int] = {}  # per project: trace rows stored first, counted last
        try:
            results = [job.write(cur, self._sql, self._resources, new_traces) if isinstance(job, _Job)
                       else job.write(cur, self._sql, self._resources) for job in jobs]
            count_new_traces(cur, self._sql, new_traces)
            cur.execute("COMMIT")
        except BaseException:
            self._resources.rollback()
            raise
        self._resources.commit()
        return results

    def _lane_transaction(self, cur: Any, jobs: Sequence[_Job | _LaneJob]) -> list[Any]:
        """PostgreSQL's decision lane: BEGIN goes with the first statements and COMMIT with the last
        job's last ones (`Transaction.pipeline`); COMMIT here if that job did not send it."""
        state = _LaneState(begun=False)
        state.last = jobs[-1]
        try:
            results = []
            for job in jobs:
                assert isinstance(job, _LaneJob)
                results.append(job.write(cur, self._sql, self._resources, state))
            if state.begun:  # else committed, or nothing was sent
                cur.execute("COMMIT")
        except BaseException:
            self._resources.rollback()
            raise
        self._resources.commit()
        return results
