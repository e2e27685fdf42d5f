"""OTLP trace decoding in worker processes, beside the writer.

Turning protobuf into records, mapping them, pricing them and encoding their rows holds the GIL for
~60 µs a span; in the server process it took turns with the writer thread's Python work, so ingest
used one core of two. Workers run the same `otlp.decode_traces` and `span_row` and send back only
the encoded rows, from which the server rebuilds light records (`span_from_row`: the JSON columns
stay in `row`; `attributes`, `resource`, `scope`, `events` and `links` are left empty).

Bodies and rows cross in shared memory (`tracehub.collector.arena`), not through the pool's pipes,
whenever the arena has room. With no workers (`TRACEHUB_DECODE_WORKERS=0`, or a one-core machine)
the server decodes in process. A worker that dies is replaced, and the requests it held are answered
503 (retryable).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import marshal
import multiprocessing
import os
import signal
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from typing import Any, Awaitable, Callable

import sqlalchemy as sa

from tracehub import metrics
from tracehub.collector import otlp
from tracehub.collector.arena import Arena
from tracehub.collector.errors import IngestError, invalid, unavailable
from tracehub.collector.pricing import Pricing
from tracehub.collector.rowencoding import encode_rows
from tracehub.store.spanrow import span_from_row
from tracehub.threads import name_os_thread

log = logging.getLogger(__name__)

# What the receivers call: (body, codec, project id) -> decoded records.
Decode = Callable[[bytes, str, int], Awaitable[otlp.Decoded]]

_pricing: Pricing | None = None  # set in each worker by _init
_arena: Arena | None = None  # likewise: the server's arena, shared at the fork
_nul_free = False  # likewise: `Writer.nul_free`

# Room kept for a request's encoded rows, per byte of its body: they take ~1.7x a protobuf body on
# the benchmark's spans. Rows that outgrow it come back through the pipe.
ROWS_PER_BODY_BYTE = 2
ARENA_BYTES = 32 * 1024 * 1024
_PR_SET_PDEATHSIG = 1  # prctl(2)


def _init(pricing: Pricing | None, arena: Arena | None = None, nul_free: bool = False,
          wire_reader: bool = True, nice: int = 0) -> None:
    global _pricing, _arena, _nul_free
    _pricing, _arena, _nul_free = pricing, arena, nul_free
    otlp.use_wire_reader(wire_reader)  # a spawned worker does not inherit the server's choice
    # Ctrl-C and a process-group SIGTERM are for the server, which drains and then stops workers;
    # a server killed with -9 takes its workers with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(0)  # the server died before prctl
    if nice:
        os.nice(nice)
    name_os_thread("th-decode")  # after the priority: a named worker is a set-up one
    gc.set_threshold(50_000, 20, 100)  # as in the server: decoding allocates in bulk


def _ready() -> bool:
    return True


Rows = tuple[list[tuple[Any, ...]], dict[int, bytearray], int, list[str]]


def decode_rows(body: bytes | memoryview, codec: str, project_id: int, pricing: Pricing | None,
                nul_free: bool) -> Rows | str:
    """The rows of a request's valid spans, their resources, the rejected count and messages; or
    the message of an undecodable body (exceptions do not all survive pickling)."""
    try:
        decoded = otlp.decode_traces(body, codec)
    except IngestError as err:
        return err.message
    resources: dict[int, bytearray] = {}
    rows = encode_rows(project_id, decoded.spans, pricing, resources, nul_free)
    return rows, resources, decoded.rejected, decoded.errors


def _worker_rows(body: bytes | memoryview, codec: str, project_id: int) -> Rows | str:
    """In a worker: `decode_rows` with the worker's pricing and the writer's NUL rule."""
    return decode_rows(body, codec, project_id, _pricing, _nul_free)


def received(answer: Rows) -> otlp.Decoded:
    """The server's records of a worker's `decode_rows` answer."""
    rows, resources, rejected, errors = answer
    # Resources go in by INSERT, which binds JSON as a bytearray (`JsonBytes`); marshal gave bytes.
    return otlp.Decoded(spans=[span_from_row(r) for r in rows], rejected=rejected, errors=errors,
                        resources={rid: bytearray(doc) for rid, doc in resources.items()})


def decode_shared(at: int, body_bytes: int, room: int, codec: str, project_id: int) -> int | bytes:
    """In a worker: `decode_rows` of the body at `at` in the arena. Its answer goes right behind the
    body when it fits in `room` (the answer is then its length), else back as bytes.

    Encoded with marshal, not pickle: rows are tuples of str, int, float, None and bytes, which
    marshal writes and reads in ~60% of pickle's time (4.7 -> 2.9 us a span here, 5.9 -> 3.7 in the
    server, whose thread that reads them shares the GIL with the writer). Both ends are the same
    interpreter, which marshal's format requires. It returns bytearrays as bytes (`span_from_row`)."""
    assert _arena is not None
    body = _arena.view[at:at + body_bytes]
    answer = marshal.dumps(_worker_rows(body, codec, project_id))
    if len(answer) > room:
        return answer
    out = at + body_bytes
    _arena.view[out:out + len(answer)] = answer
    return len(answer)


def default_workers(database_url: str, cores: int | None = None) -> int:
    """One worker per core but the one the server's own thread and writer use; one fewer when
    PostgreSQL runs on this machine, but never none on two cores or more. Through pipes, a worker
    on two cores took the CPU a local PostgreSQL needed (2,554 spans/s against 3,215 decoding in
    process); through the shared arena it gives ~8,750 against ~7,300 (bench/README.md)."""
    cores = cores if cores is not None else os.cpu_count() or 1
    url = sa.engine.make_url(database_url)
    socket_dir = url.query.get("host")  # libpq: a directory means a Unix socket
    if isinstance(socket_dir, tuple):
        socket_dir = socket_dir[0]
    host = url.host or (None if socket_dir is None else str(socket_dir))
    local_pg = url.get_backend_name() == "postgresql" and (
        host is None or host.startswith("/") or host in ("localhost", "127.0.0.1", "::1"))
    return max(min(1, cores - 1), min(4, cores - 1 - int(local_pg)))


class DecodePool:
    def __init__(self, workers: int, pricing: Pricing | None, nul_free: bool, wire_reader: bool = True,
                 arena_bytes: int = ARENA_BYTES, nice: int = 0) -> None:
        self.workers = workers
        self._nice = nice
        self._pricing = pricing
        self._nul_free = nul_free
        self._wire_reader = wire_reader
        self._arena_bytes = arena_bytes
        self._arena: Arena | None = None
        self._pool: ProcessPoolExecutor | None = None

    def start(self, method: str = "fork") -> None:
        """Start the workers. Call it before the server starts any thread: forked workers share the
        server's imported code (~40 MiB a worker less than a fresh interpreter) and start at once."""
        if self.workers > 0:
            # Spawned workers cannot share an anonymous mapping (a forked child inherits it, and the
            # fork passes `initargs` without pickling): their requests use the pipes.
            self._arena = arena = Arena(self._arena_bytes) if method == "fork" and self._arena_bytes else None
            metrics.DECODE_ARENA_FREE.set_function(lambda: arena.free_bytes if arena is not None else 0)
            if method == "fork":
                gc.freeze()  # the workers' collector then never touches, and so copies, these pages
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context(method),
                initializer=_init, initargs=(self._pricing, self._arena, self._nul_free, self._wire_reader, self._nice))
            for _ in range(self.workers):
                self._pool.submit(_ready)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def decode_logs(self, body: bytes, codec: str, _project_id: int) -> otlp.Decoded:
        # Logs are a small share of OTLP traffic: decoded in the server process.
        return otlp.decode_logs(body, codec)

    async def decode_traces(self, body: bytes, codec: str, project_id: int) -> otlp.Decoded:
        pool = self._pool
        if pool is None:
            return otlp.decode_traces(body, codec)
        arena, room = self._arena, len(body) * ROWS_PER_BODY_BYTE
        at = arena.take(len(body) + room) if arena is not None else None
        try:
            if arena is None or at is None:
                metrics.DECODE_TRANSFERS.labels("pipe").inc()
                answer = await asyncio.wrap_future(pool.submit(_worker_rows, body, codec, project_id))
            else:
                answer = await self._decode_shared(pool, arena, at, body, room, codec, project_id)
        except BrokenExecutor:
            log.error("an OTLP decode worker died; starting new ones")
            if self._pool is pool:
                pool.shutdown(wait=False, cancel_futures=True)
                self.start("spawn")  # the server has threads now: forking could copy held locks
            raise unavailable("the decoder restarted; retry") from None
        if isinstance(answer, str):
            raise invalid(answer)
        return received(answer)

    @staticmethod
    async def _decode_shared(pool: ProcessPoolExecutor, arena: Arena, at: int, body: bytes, room: int,
                             codec: str, project_id: int) -> Any:
        size = len(body) + room
        arena.view[at:at + len(body)] = body
        try:
            done = pool.submit(decode_shared, at, len(body), room, codec, project_id)
        except BaseException:  # a broken pool: no worker will touch the region
            arena.give_back(at, size)
            raise
        metrics.DECODE_TRANSFERS.labels("shared").inc()
        try:
            answer = await asyncio.wrap_future(done)
            if isinstance(answer, bytes):
                metrics.DECODE_TRANSFERS.labels("pipe_rows").inc()
                return marshal.loads(answer)
            out = at + len(body)
            return marshal.loads(arena.view[out:out + answer])
        finally:
            if done.done():
                arena.give_back(at, size)
            else:  # the caller gave up (a deadline, a hang-up): the worker still writes there
                loop = asyncio.get_running_loop()
                done.add_done_callback(lambda _: loop.call_soon_threadsafe(arena.give_back, at, size))
