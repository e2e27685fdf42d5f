"""The decision worker: decides completed traces by their project's active policy, off the request path.

The writer tells it after each COMMIT which traces that commit completed (`Writer.on_completed`);
they wait in a bounded hand-off that never blocks the writer (full: dropped, the sweep finds them).
A trace is decided once it has been quiet for `decision_settle_s`, since exporters send a trace's
spans in several batches: a later write restarts the wait (the row's `updated_ns` is when the
writer last wrote to it). It is decided through `decide` (the engine's `decide(..., source="auto")`)
if its project decides automatically (`projects.auto_decide`) and has an active policy.

A sweep, at start and every few seconds while idle, finds completed traces that have no automatic
decision for the active version: a kill -9 between a commit and its decision, a full hand-off, and
traces completed by the grace rule (`tracehub.store.completion`), which no commit reports. It walks
each project's traces newest first, a bounded page a step, over the last `SWEEP_LOOKBACK_NS` and
only those written since the version became active: activating a policy does not decide history.

Exactly once is the unique `trace_decisions.auto_key` ("<trace_id>:<policy version id>"), also
with several server processes on one database: the worker looks first only to spare the engine
the work. It takes a trace as decided when it has any decision of the version in force, also one
of POST /api/v1/decide (whose judge span may be all a trace holds): it is not decided twice under
one version, nor its `traces.decision` replaced. It never writes; the engine writes through the
writer's decision lane.

It runs in a thread with an event loop of its own: a decision's CPU (signals over a trace's text)
does not hold the server's loop, and `tracehub seed` runs it without one.

Ingest goes first. A decision costs ~1-2.5 ms of the server's CPU (its reads, the detectors, the
policy, its rows), so deciding every trace of a full-speed ingest as it completes would take more
than a core from it. While ingest keeps the writer busy (`Writer.busy` while its commits hand
traces over: its search indexing and the decisions' own writes are no ingest), and for BUSY_HOLD_S
after, so the gaps between one burst's batches do not count as quiet, decisions trickle: every
BUSY_TICK_S at most BUSY_BATCH start, fewer while the last ones still run, and the sweep's finds
join the settling traces instead of starting at once. So decisions progress under sustained
ingest, at up to BUSY_BATCH / BUSY_TICK_S a second (fewer only while each takes longer than a
tick), and the backlog goes at full speed once ingest pauses.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import threading
import time
from dataclasses import dataclass
from itertools import groupby
from typing import Awaitable, Callable

import sqlalchemy as sa

from tracehub import metrics
from tracehub.decision.engine import DecisionResult
from tracehub.store.completion import completion
from tracehub.store import policies as store_policies
from tracehub.store.schema import projects, trace_decisions, traces
from tracehub.threads import name_os_thread

log = logging.getLogger(__name__)

Key = tuple[int, str]  # (project_id, trace_id)
Decide = Callable[[int, str], Awaitable[DecisionResult]]

HANDOFF_MAX = 50_000  # traces handed over and not taken yet; ~100 bytes each
CHECK_BATCH = 400  # traces whose readiness one query checks (twice, under SQLite's smallest variable limit)
DUE_MAX = 100_000  # traces settling; past it the hand-off is dropped (the sweep finds them)
CONCURRENCY = 8  # decisions at once: an LLM judge's call waits on the network
MAX_DECIDING = 64  # decisions started and not ended; no trace is taken past it
# While ingest keeps the writer busy: at most BUSY_BATCH decisions under way, topped up every
# BUSY_TICK_S: 20 a second, ~2-5% of one core at 1-2.5 ms each (50 a second took ~15% of the
# server's CPU from a PostgreSQL ingest benchmark). One readiness check a tick, ~5 ms on a loaded
# machine: ticks of 0.2 s cost more than the decisions they started.
BUSY_BATCH = 20
BUSY_TICK_S = 1.0
BUSY_HOLD_S = 1.0  # the writer counts as busy this long after it last was
SWEEP_EVERY_S = 5.0
SWEEP_PAGE = 500  # trace rows a sweep step reads per project
SWEEP_LOOKBACK_NS = 24 * 3600 * 10**9
HOLD_NS = 60 * 10**9  # a swept trace is not swept again before this, unless its decision failed
RETRY_NS = 10**9  # a failed decision is tried again by a sweep after this, doubling up to HOLD_NS
STOP_WAIT_S = 10.0


@dataclass(frozen=True)
class Active:
    """A project's policy version in force, as automatic decisions see it."""

    version_id: int
    since_ns: int  # when it came into force: traces written before are not swept


def active_policies(conn: sa.Connection, now_ns: int) -> dict[int, Active]:
    """Projects that decide automatically and the policy version in force in each."""
    out: dict[int, Active] = {}
    for pid in conn.execute(sa.select(projects.c.id).where(projects.c.auto_decide)).scalars():
        version = store_policies.active_policy(conn, pid, now_ns)
        if version is not None:
            out[pid] = Active(int(version["id"]), max(int(version["activated_ns"]), int(version["effective_ns"])))
    return out


class DecisionWorker:
    def __init__(self, engine: sa.Engine, decide: Decide, settle_s: float, grace_s: float,
                 busy: Callable[[], bool] = lambda: False,
                 close: Callable[[], Awaitable[None]] | None = None) -> None:
        self._reads = engine
        self._decide = decide
        self._close = close  # run on the worker's loop as it stops (the judge's HTTP client)
        self._busy = busy  # whether ingest keeps the writer busy (`Writer.busy`)
        self._settle_ns = int(settle_s * 1e9)
        self._grace_ns = int(grace_s * 1e9)
        self._handoff: collections.deque[Key] = collections.deque()
        self._handoff_lock = threading.Lock()
        self._handoff_at = float("-inf")  # time.monotonic() of the last hand-off
        self._loop: asyncio.AbstractEventLoop | None = None  # the thread's, while it runs
        self._wake = asyncio.Event()
        self._woken = False  # a wake-up is on its way to the loop
        self._stopping = False
        self._due: dict[Key, int] = {}  # settling: when to look again (time.time_ns)
        self._heap: list[tuple[int, Key]] = []  # (due, key); stale entries skipped
        self._deciding: set[Key] = set()
        # Swept or failed lately: not swept again before this time, so a trace the engine does not
        # decide (or cannot) is not taken again at once.
        self._hold: dict[Key, int] = {}
        self._failures: dict[Key, int] = {}  # failed decisions in a row, while held
        self._cursors: dict[int, tuple[int, str]] = {}  # per project: where the sweep's walk is
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._thread = threading.Thread(target=self._run, name="tracehub-decisions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop looking for work; decisions under way finish (they write through the writer, which
        stops after this) for up to STOP_WAIT_S."""
        self._stopping = True
        self._signal()
        if self._thread.ident is not None:
            self._thread.join(STOP_WAIT_S + 5)

    def completed(self, keys: list[Key]) -> None:
        """The writer's hand-off (its thread, after COMMIT): never blocks, never raises."""
        with self._handoff_lock:
            room = HANDOFF_MAX - len(self._handoff)
            self._handoff.extend(keys[:room])
            self._handoff_at = time.monotonic()
        if len(keys) > room:
            metrics.AUTO_DECISION_DROPPED.inc(len(keys) - max(room, 0))
        self._signal()

    def _signal(self) -> None:
        loop = self._loop
        if loop is None or self._woken:  # not started: it takes the hand-off when it starts
            return
        self._woken = True
        try:
            loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop is closed: the worker has stopped
            pass

    def _run(self) -> None:
        name_os_thread("th-decisions")
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("the decision worker stopped")
        finally:
            if self._close is not None:
                try:
                    loop.run_until_complete(self._close())
                except Exception:
                    log.exception("closing the decision worker's judge failed")
            self._loop = None
            loop.close()

    async def _main(self) -> None:
        next_sweep = 0.0  # at start
        busy_at = -BUSY_HOLD_S  # when the writer was last seen busy (monotonic)
        next_tick = 0.0  # while busy: when the next few decisions may start
        tasks: set[asyncio.Task[None]] = set()
        while not self._stopping:
            self._woken = False
            self._wake.clear()
            self._take_handoff()
            tasks = {t for t in tasks if not t.done()}
            metrics.AUTO_DECISION_QUEUE.set(len(self._handoff) + len(self._due) + len(self._deciding))
            now, mono = time.time_ns(), time.monotonic()
            due_now = bool(self._heap) and self._heap[0][0] <= now
            if mono - self._handoff_at < BUSY_HOLD_S and self._busy():
                busy_at = mono
            busy = mono - busy_at < BUSY_HOLD_S
            room = BUSY_BATCH - len(self._deciding) if busy else MAX_DECIDING - len(self._deciding)
            if busy and (mono < next_tick or room <= 0):
                # Ingest goes first: the next few at the next tick, or once the writer is quiet.
                await self._sleep(max(next_tick - mono, 0.0) if room > 0 else BUSY_TICK_S)
                continue
            if due_now and room > 0:
                due = self._pop_due(now, room if busy else CHECK_BATCH)
                next_tick = mono + BUSY_TICK_S
                try:
                    ready = await asyncio.to_thread(self._check, due, now)
                except Exception:
                    log.exception("the decision worker could not read %d traces; the sweep takes them", len(due))
                    ready = []
                tasks.update(self._start(ready))
                continue
            if not self._deciding and mono >= next_sweep:
                try:
                    swept = await asyncio.to_thread(self._sweep, now)
                except Exception:
                    log.exception("the decision worker's sweep failed")
                    swept = []
                self._hold = {k: at for k, at in self._hold.items() if at > now}
                swept_set = set(swept)
                self._failures = {k: n for k, n in self._failures.items() if k in self._hold or k in swept_set}
                found = [k for k in swept if k not in self._due and k not in self._hold]
                self._hold.update(dict.fromkeys(found, now + HOLD_NS))
                if busy:  # they wait their turn with the settling traces
                    for key in found:
                        self._settle(key, now)
                    next_sweep = mono + SWEEP_EVERY_S
                    continue
                tasks.update(self._start(found))
                # More may wait behind a page that found some: the next step once these are decided.
                next_sweep = mono + (0.0 if found else SWEEP_EVERY_S)
                continue
            # Until woken (a hand-off, a decision that ended), the next due trace or the next sweep.
            timeout: float | None = None
            if self._heap and room > 0:
                timeout = max(0.0, (self._heap[0][0] - now) / 1e9)
            if not self._deciding:
                timeout = min(timeout if timeout is not None else SWEEP_EVERY_S, max(0.0, next_sweep - mono))
            await self._sleep(timeout)
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT_S)

    async def _sleep(self, timeout: float | None) -> None:
        """Until woken, or `timeout` seconds (None: until woken)."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            pass

    def _take_handoff(self) -> None:
        with self._handoff_lock:
            keys = list(self._handoff)
            self._handoff.clear()
        due = time.time_ns() + self._settle_ns
        for key in keys:
            if key in self._deciding:
                continue
            if len(self._due) >= DUE_MAX and key not in self._due:
                metrics.AUTO_DECISION_DROPPED.inc()
                continue
            self._settle(key, due)

    def _settle(self, key: Key, due: int) -> None:
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))

    def _pop_due(self, now: int, limit: int) -> list[Key]:
        out: list[Key] = []
        while self._heap and self._heap[0][0] <= now and len(out) < limit:
            due, key = heapq.heappop(self._heap)
            if self._due.get(key) == due:
                del self._due[key]
                out.append(key)
        return out

    def _check(self, keys: list[Key], now: int) -> list[Key]:
        """Of `keys`, those to decide now. One written to within the settle time waits again from
        that write; one open again, or decided, or of a project without automatic decisions, is
        dropped (the writer reports it again when it completes)."""
        ready: list[Key] = []
        t, d = traces.c, trace_decisions.c
        c = completion(now, self._grace_ns)
        with self._reads.connect() as conn:
            active = active_policies(conn, now)
            for pid, group in groupby(sorted(keys), key=lambda k: k[0]):
                policy = active.get(pid)
                if policy is None:
                    continue
                ids = [tid for _, tid in group]
                rows = conn.execute(sa.select(t.trace_id, c.completed, t.updated_ns).where(
                    t.project_id == pid, t.trace_id.in_(ids))).all()
                decided = set(conn.execute(sa.select(d.trace_id).where(
                    d.project_id == pid, d.trace_id.in_(ids), d.policy_version_id == policy.version_id,
                    ~d.shadow)).scalars())
                for trace_id, completed, updated_ns in rows:
                    if not completed or trace_id in decided:
                        continue
                    if updated_ns > now - self._settle_ns:
                        self._settle((pid, trace_id), updated_ns + self._settle_ns)
                    else:
                        ready.append((pid, trace_id))
        return ready

    def _sweep(self, now: int) -> list[Key]:
        """One step of the walk over each project's traces: the newest page, and the page where the
        walk got to. Answers the completed, quiet traces without their automatic decision."""
        found: list[Key] = []
        with self._reads.connect() as conn:
            for pid, policy in active_policies(conn, now).items():
                found += self._sweep_page(conn, pid, policy, None, now, newest=True)
                cursor = self._cursors.get(pid)
                if cursor is not None:
                    found += self._sweep_page(conn, pid, policy, cursor, now)
        return list(dict.fromkeys(found))

    def _sweep_page(self, conn: sa.Connection, pid: int, policy: Active, start: tuple[int, str] | None,
                    now: int, newest: bool = False) -> list[Key]:
        """Of the SWEEP_PAGE traces of `pid` before `start` (newest first), those to decide. The
        walk goes on after the page, unless it was the newest page and the walk is under way."""
        t, d = traces.c, trace_decisions.c
        c = completion(now, self._grace_ns)
        undecided = ~sa.exists().where(d.project_id == t.project_id, d.trace_id == t.trace_id,
                                       d.policy_version_id == policy.version_id, ~d.shadow)
        ready = sa.and_(c.completed, t.updated_ns <= now - self._settle_ns, t.updated_ns >= policy.since_ns,
                        undecided)
        query = sa.select(t.start_ns, t.trace_id, sa.case((ready, 1), else_=0)).where(
            t.project_id == pid, t.start_ns >= now - SWEEP_LOOKBACK_NS)
        if start is not None:
            query = query.where(t.start_ns <= start[0], sa.or_(t.start_ns < start[0], t.trace_id < start[1]))
        rows = conn.execute(query.order_by(t.start_ns.desc(), t.trace_id.desc()).limit(SWEEP_PAGE)).all()
        if not (newest and pid in self._cursors):
            if len(rows) == SWEEP_PAGE:
                self._cursors[pid] = (int(rows[-1][0]), str(rows[-1][1]))
            else:
                self._cursors.pop(pid, None)
        return [(pid, str(trace_id)) for _, trace_id, take in rows if take]

    def _start(self, keys: list[Key]) -> list[asyncio.Task[None]]:
        self._deciding.update(keys)
        return [asyncio.create_task(self._decide_one(key)) for key in keys]

    async def _decide_one(self, key: Key) -> None:
        try:
            async with self._slots:
                result = await self._decide(*key)
            if result.status == "created":
                metrics.AUTO_DECISIONS.inc()
            self._failures.pop(key, None)
        except Exception:
            # Often passing: a deadlock with another server's decisions, a lost connection.
            metrics.AUTO_DECISION_ERRORS.inc()
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            self._hold[key] = time.time_ns() + min(HOLD_NS, RETRY_NS << (failures - 1))
            log.exception("deciding trace %s of project %d failed; a sweep tries again", key[1], key[0])
        finally:
            self._deciding.discard(key)
            self._signal()
