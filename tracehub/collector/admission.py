"""Admission control: whether the server takes a request in, decided before its body is read.

Memory is bounded twice: `Admission.admit()` reserves each request's memory from a budget shared by
every receiver until the request is answered (a request that does not fit is refused before its body
is read further, and before anything is decoded), and the writer's queue is bounded in spans. A
request that finds no room first waits a moment, unread, for room (`admit_waiting`). A refusal
carries a retry delay: when the writer will have written what is queued now (`retry_after_s`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from tracehub.collector.errors import IngestError, overloaded
from tracehub.store.writer import Writer

# What a request holds until it is answered, per byte of its (decompressed) protobuf body: the
# body while it is read, then the decoded records and their encoded rows, ~5.7x the body
# (tracemalloc on the benchmark's spans). Counting only the body let decoded batches grow past
# 400 MiB under overload.
FOOTPRINT = 7
# Shortest retry delay under overload: an exporter that follows the delay and counts its attempts
# would give up sooner, in a long overload, the shorter the delay.
MIN_RETRY_S = 1.0
# How long a request that finds no room waits for requests being answered to free some before it
# is refused. Refused senders come back after MIN_RETRY_S at the earliest, and meanwhile the writer,
# having emptied its queue, waited for them.
ADMIT_WAIT_S = 1.0
# Requests waiting at once; more are refused at once. A waiting gRPC stream holds its window (256 KiB)
# of the unread message.
MAX_WAITING = 16


class Reservation:
    """Memory of one request held against the admission's budget; grows as the body is read."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self.held = 0

    def resize(self, body_bytes: int) -> None:
        """Hold what a body of `body_bytes` needs: more as it is read, less once its real size is
        known to be under the guess it was admitted with."""
        total = body_bytes * FOOTPRINT
        if total > self.held:
            self._admission.reserve(total - self.held, self.held)
        else:
            self._admission.inflight_bytes -= self.held - total
        self.held = total

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._admission.inflight_bytes -= self.held
        self.held = 0
        self._admission.freed.set()


class Admission:
    """The room every receiver shares: memory held by the requests being served (at most
    `max_inflight_bytes`) and the writer's queue."""

    def __init__(self, writer: Writer, max_inflight_bytes: int = 128 * 1024 * 1024) -> None:
        self.writer = writer
        self.max_inflight_bytes = max_inflight_bytes
        self.inflight_bytes = 0  # touched only on the event loop: no lock
        # A body's size when it is admitted before being read (gRPC): the recent average.
        self.typical_body_bytes = 256 * 1024
        self.freed = asyncio.Event()  # a request was answered: its room, and the queue's, are free
        self.waiting = 0

    def note_body(self, n: int) -> None:
        self.typical_body_bytes += (n - self.typical_body_bytes) // 8

    def retry_after_s(self) -> float:
        # When the writer will have written what is queued now, at its measured pace: retries come
        # back as the queue empties. (A fixed 1 s per 5,000 queued spans, its pace once, asked for
        # up to 5 s where it now needs under one.)
        return max(MIN_RETRY_S, self.writer.drain_s())

    def admit(self, body_bytes: int = 0) -> Reservation:
        """Admission before a body is read or decoded: room in the writer's queue and in the memory
        budget for a body of `body_bytes` (as declared, when it is still to be read)."""
        if (self.writer.queued_spans >= self.writer.max_queued_spans
                or self.inflight_bytes >= self.max_inflight_bytes):
            raise overloaded(self.retry_after_s())
        reservation = Reservation(self)
        reservation.resize(body_bytes)
        return reservation

    async def admit_waiting(self, body_bytes: int = 0, wait_s: float = ADMIT_WAIT_S) -> Reservation:
        """`admit()`, waiting up to `wait_s` for room before refusing. A waiting request has not
        been read: it holds its connection and what flow control lets in (uvicorn's 64 KiB, gRPC's
        stream window)."""
        try:
            return self.admit(body_bytes)
        except IngestError:
            if self.waiting >= MAX_WAITING:
                raise
        deadline = time.monotonic() + wait_s
        self.waiting += 1
        try:
            while True:
                # No await between a refusal and this: a release cannot fall in between.
                self.freed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.freed.wait(), deadline - time.monotonic())
                try:
                    return self.admit(body_bytes)
                except IngestError:
                    if time.monotonic() >= deadline:
                        raise
        finally:
            self.waiting -= 1

    def reserve(self, n: int, own: int = 0) -> None:
        # A request alone is always let through, however large, so a big body cannot starve.
        others = self.inflight_bytes - own
        if others and self.inflight_bytes + n > self.max_inflight_bytes:
            raise overloaded(self.retry_after_s())
        self.inflight_bytes += n
