"""The OTel resources a writer knows to be stored (`StoredResources`), so it stores each once."""

from __future__ import annotations

import time
from typing import Iterable


class StoredResources:
    """The resources a writer knows to be committed, so a request from a known process does not
    store its resource again: that statement, one round trip per request, was ~6% of PostgreSQL's
    writer thread. Ids count only once their transaction commits (`commit`). Retention deletes
    resources no span names (tracehub/store/retention.py): known ids are forgotten every MAX_AGE_S,
    far below the shortest retention, so none is taken as stored after that."""

    LIMIT = 10_000  # a bound on memory; past it, known ids are forgotten and stored again
    MAX_AGE_S = 600.0

    def __init__(self) -> None:
        self._committed: set[tuple[int, int]] = set()
        self._pending: set[tuple[int, int]] = set()
        self._since = time.monotonic()

    def __contains__(self, key: tuple[int, int]) -> bool:
        if time.monotonic() - self._since > self.MAX_AGE_S:
            self._committed.clear()
            self._since = time.monotonic()
        return key in self._committed or key in self._pending

    def written(self, pid: int, ids: Iterable[int]) -> None:
        self._pending.update((pid, rid) for rid in ids)

    def commit(self) -> None:
        if len(self._committed) + len(self._pending) > self.LIMIT:
            self._committed.clear()
        self._committed |= self._pending
        self._pending.clear()

    def rollback(self) -> None:
        self._pending.clear()
