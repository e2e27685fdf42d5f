"""OTLP trace decoding in worker processes, beside the writer.

Turning protobuf into records, mapping them, pricing them and encoding their rows holds the GIL for
~60 µs a span; in the server process it took turns with the writer thread's Python work, so ingest
used one core of two. Workers run the same `otlp.decode_traces` and `span_row` and send back only
the encoded rows, from which the server rebuilds light records (`span_from_row`: the JSON columns
stay in `row`; `attributes`, `resource`, `scope`, `events` and `links` are left empty).

With no workers (`TRACEHUB_DECODE_WORKERS=0`, or a one-core machine) the server decodes in process.
A worker that dies is replaced, and the requests it held are answered 503 (retryable).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import signal
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from typing import Any, Awaitable, Callable

import sqlalchemy as sa

from tracehub.collector import otlp
from tracehub.collector.errors import IngestError, invalid, unavailable
from tracehub.collector.pipeline import encode_rows
from tracehub.collector.pricing import Pricing
from tracehub.store.batchwrite import span_from_row

log = logging.getLogger(__name__)

# What the receivers call: (body, codec, project id) -> decoded records.
Decode = Callable[[bytes, str, int], Awaitable[otlp.Decoded]]

_pricing: Pricing | None = None  # set in each worker by _init
_PR_SET_PDEATHSIG = 1  # prctl(2)


def _init(pricing: Pricing | None) -> None:
    global _pricing
    _pricing = pricing
    # Ctrl-C and a process-group SIGTERM are for the server, which drains and then stops workers;
    # a server killed with -9 takes its workers with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:
        os._exit(0)  # the server died before prctl
    gc.set_threshold(50_000, 20, 100)  # as in the server: decoding allocates in bulk


def _ready() -> bool:
    return True


def decode_rows(body: bytes, codec: str, project_id: int
                ) -> tuple[list[tuple[Any, ...]], int, list[str]] | str:
    """In a worker: the rows of a request's valid spans, the rejected count and messages; or the
    message of an undecodable body (exceptions do not all survive pickling)."""
    try:
        decoded = otlp.decode_traces(body, codec)
    except IngestError as err:
        return err.message
    return encode_rows(project_id, decoded.spans, _pricing), decoded.rejected, decoded.errors


def default_workers(database_url: str, cores: int | None = None) -> int:
    """One worker per core but the one the server's own thread and writer use; one fewer when
    PostgreSQL runs on this machine. On two cores with a local PostgreSQL, a worker took the CPU
    the database needed: 2,554 spans/s against 3,215 decoding in process (bench/README.md)."""
    cores = cores if cores is not None else os.cpu_count() or 1
    url = sa.engine.make_url(database_url)
    socket_dir = url.query.get("host")  # libpq: a directory means a Unix socket
    if isinstance(socket_dir, tuple):
        socket_dir = socket_dir[0]
    host = url.host or (None if socket_dir is None else str(socket_dir))
    local_pg = url.get_backend_name() == "postgresql" and (
        host is None or host.startswith("/") or host in ("localhost", "127.0.0.1", "::1"))
    return max(0, min(4, cores - 1 - int(local_pg)))


class DecodePool:
    def __init__(self, workers: int, pricing: Pricing | None) -> None:
        self.workers = workers
        self._pricing = pricing
        self._pool: ProcessPoolExecutor | None = None

    def start(self, method: str = "fork") -> None:
        """Start the workers. Call it before the server starts any thread: forked workers share the
        server's imported code (~40 MiB a worker less than a fresh interpreter) and start at once."""
        if self.workers > 0:
            if method == "fork":
                gc.freeze()  # the workers' collector then never touches, and so copies, these pages
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context(method),
                initializer=_init, initargs=(self._pricing,))
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
        try:
            answer = await asyncio.get_running_loop().run_in_executor(
                pool, decode_rows, body, codec, project_id)
        except BrokenExecutor:
            log.error("an OTLP decode worker died; starting new ones")
            if self._pool is pool:
                pool.shutdown(wait=False, cancel_futures=True)
                self.start("spawn")  # the server has threads now: forking could copy held locks
            raise unavailable("the decoder restarted; retry") from None
        if isinstance(answer, str):
            raise invalid(answer)
        rows, rejected, errors = answer
        return otlp.Decoded(spans=[span_from_row(r) for r in rows], rejected=rejected, errors=errors)
