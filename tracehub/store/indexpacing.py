"""When the search index catches up with what the writer commits: the pacing the writer consults
(`IndexPacing`), and the measure of its load that decides whether ingest has the CPU (`Load`).

SQLite has one write lock, so there the writer indexes itself, in steps between its transactions
(`step`); on PostgreSQL a thread of its own does (`tracehub.store.indexer`), told of new rows and
following the same load. This module decides when and how much; it never touches the database.
"""

from __future__ import annotations

import collections
import time
from typing import Callable

from tracehub.store import search

# Indexing a span with ~2.5 KB of text costs ~0.3-0.5 ms of CPU. A writer with nothing queued for
# INDEX_IDLE_S indexes in steps of INDEX_STEP_ROWS, so a request arriving meanwhile waits ~0.1 s at
# most. Under load it indexes a step after each commit unless requests are waiting or it has been
# at work BUSY_SHARE of the last LOAD_WINDOW_S (`busy`, which PostgreSQL's indexer thread follows
# too): a steady 2,000 spans/s leaves only short gaps between requests, and waiting for idle ones
# had indexed ~140 rows a second while 2,000 came in. A busy writer still indexes
# INDEX_BUSY_STEP_ROWS every INDEX_EVERY_S, so the index moves under any load (200 rows there took
# 16% of the writer under the benchmark's load). With a window of 1 s the writer indexed through
# the first half second of a burst (SQLite's benchmark ran ~4% slower, about its noise); with 0.25 s
# no difference showed.
INDEX_IDLE_S = 0.05
INDEX_EVERY_S = 1.0
INDEX_STEP_ROWS = 200
INDEX_BUSY_STEP_ROWS = 50
# Past this lag the index no longer yields to ingest: after each commit the writer indexes as many
# rows as it committed and a step more (PostgreSQL's indexer steps of INDEX_LAG_STEP_ROWS without a
# pause), so under a load the machine cannot both ingest and index, ingest slows instead of the
# lag, and the scan of unindexed rows every search pays, growing without bound. Past a burst's
# length: at 5 s, a 100,000-span load kept pace for its second half and ran at 60% of its speed.
INDEX_LAG_S = 20.0
INDEX_LAG_STEP_ROWS = 1_000
LOAD_WINDOW_S = 0.25
BUSY_SHARE = 0.5
# PostgreSQL's indexer is told of the decision lane's judge spans once the lane has been quiet this
# long (or INDEX_EVERY_S after the first): woken after every decision, its steps, ANALYZE and VACUUM
# checks and their commits ran beside the next decisions on the same two cores and delayed them.
LANE_INDEX_WAIT_S = INDEX_IDLE_S
# An idle writer with rows left to index looks for work this often between its steps.
IDLE_STEP_WAIT_S = 0.001


class Load:
    """The share of the last `window_s` that a thread spent at work, from the spells it reports."""

    def __init__(self, window_s: float = LOAD_WINDOW_S) -> None:
        self._window_s = window_s
        self._spells: collections.deque[tuple[float, float]] = collections.deque()  # (end, seconds)

    def add(self, started: float, ended: float) -> None:
        self._spells.append((ended, ended - started))
        while self._spells[0][0] < ended - self._window_s:
            self._spells.popleft()

    def share(self) -> float:
        since = time.monotonic() - self._window_s
        return sum(seconds for ended, seconds in tuple(self._spells) if ended > since) / self._window_s


class IndexPacing:
    """The writer's loop tells it what happened (`worked`, `woke`, `idle`, `committed`,
    `lane_committed`, `tick`) and asks how long it may wait for work (`wait_s`); the pacing then
    indexes through `step(rows)` (SQLite: on the writer's thread; True if more rows may wait) or
    tells PostgreSQL's indexer thread of new rows through `tell()`. Give one of the two."""

    def __init__(self, step: Callable[[int], bool] | None = None, tell: Callable[[], None] | None = None) -> None:
        self._step = step
        self._tell = tell
        self._load = Load()  # transactions, and on SQLite the indexing steps between them
        self._pending = step is not None  # rows may be left unindexed by an earlier run
        self._idle_wait = INDEX_IDLE_S
        self._last_step = time.monotonic()
        self._lane_since = 0.0  # PostgreSQL: since when the lane committed rows the indexer was not told of

    def busy(self) -> bool:
        """Whether ingest should have the CPU before search indexing: the writer has been at work
        at least BUSY_SHARE of the last LOAD_WINDOW_S. (PostgreSQL's indexer, which runs beside the
        writer, takes a request that waits a moment as no reason to stop.)"""
        return self._load.share() >= BUSY_SHARE

    def worked(self, started: float, ended: float) -> None:
        """The writer spent this spell in a transaction."""
        self._load.add(started, ended)

    def wait_s(self) -> float | None:
        """How long the writer may wait for work before the index has a step due (None: no limit)."""
        if self._pending:
            return self._idle_wait
        return LANE_INDEX_WAIT_S if self._lane_since else None

    def woke(self) -> None:
        """Work came: the writer is no longer idle."""
        self._idle_wait = INDEX_IDLE_S

    def idle(self, connected: bool) -> None:
        """No work came within `wait_s`: catch the index up, a step at a time, looking for work in between."""
        if self._lane_since:
            self._told()
        if not connected or not self._pending:
            return
        self._index(INDEX_STEP_ROWS)
        self._idle_wait = IDLE_STEP_WAIT_S

    def lane_committed(self) -> None:
        """The decision lane committed: its judge spans are searchable rows too."""
        if self._tell is None:
            self._pending = True
        elif not self._lane_since:
            self._lane_since = time.monotonic()

    def tick(self) -> None:
        """Once a loop: the indexer is told of the lane's rows INDEX_EVERY_S after the first at the latest."""
        if self._lane_since and time.monotonic() - self._lane_since > INDEX_EVERY_S:
            self._told()

    def committed(self, spans: int, queued: int) -> None:
        """An ingest transaction of `spans` committed, with `queued` spans waiting for the writer."""
        if self._tell is not None:  # PostgreSQL: indexed beside the writer
            self._told()
            return
        self._pending = True
        if not queued and not self.busy():
            self._index(INDEX_STEP_ROWS)
        elif search.LAG.lag() > INDEX_LAG_S:
            self._index(spans + INDEX_STEP_ROWS)
        elif time.monotonic() - self._last_step > INDEX_EVERY_S:
            self._index(INDEX_BUSY_STEP_ROWS)

    def _index(self, rows: int) -> None:
        assert self._step is not None
        started = time.monotonic()
        self._pending = self._step(rows)
        self._last_step = time.monotonic()
        self._load.add(started, self._last_step)

    def _told(self) -> None:
        if self._tell is not None:
            self._tell()
        self._lane_since = 0.0
