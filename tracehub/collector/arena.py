"""Memory shared by the server and its forked decode workers, carved into regions per request.

Through the process pool's pipes, a request's body (~2 KB a span) and the rows it decodes to (~3.5 KB
as pickled) were copied by the kernel in 64 KiB pieces: 29% of the server's CPU under load was
kernel time, and the thread receiving rows spent more of its time reading than unpickling. Here the
server writes the body into a region, the worker parses it in place and writes its encoded rows
behind it (`decoding.decode_shared`), and the server reads them from there. On the benchmark
(SQLite, HTTP) that took the server from ~140 to ~105 µs of CPU a span, and acknowledged spans/s
from ~12,200 to ~16,000.

The arena is an anonymous shared mapping made before the workers are forked; workers spawned later
(after one died) do not have it, and requests then go through the pipe again. Regions are only
taken and given back on the server's event loop, so there is no lock.
"""

from __future__ import annotations

import bisect
import mmap

_ALIGN = 64


def _aligned(n: int) -> int:
    return -(-max(n, 1) // _ALIGN) * _ALIGN


class Arena:
    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer = mmap.mmap(-1, size)  # MAP_SHARED: forked children see the same pages
        self.view = memoryview(self.buffer)
        # Free (offset, length) runs, sorted and never adjacent. First fit keeps the low pages in
        # use, so a light load touches (and keeps resident) little of the arena.
        self._free: list[tuple[int, int]] = [(0, size)]

    def take(self, n: int) -> int | None:
        """The offset of a region of `n` bytes, or None while the arena has no run that large."""
        n = _aligned(n)
        for i, (offset, length) in enumerate(self._free):
            if length >= n:
                if length == n:
                    del self._free[i]
                else:
                    self._free[i] = (offset + n, length - n)
                return offset
        return None

    def give_back(self, offset: int, n: int) -> None:
        n = _aligned(n)
        i = bisect.bisect(self._free, (offset, 0))
        start, end = offset, offset + n
        if i < len(self._free) and self._free[i][0] == end:  # merge with the run after
            end += self._free.pop(i)[1]
        if i > 0 and sum(self._free[i - 1]) == start:  # and with the run before
            i -= 1
            start = self._free.pop(i)[0]
        self._free.insert(i, (start, end - start))

    @property
    def free_bytes(self) -> int:
        return sum(length for _, length in self._free)
