"""The ingest pipeline: decoded records -> writer -> processors, one contract for every receiver.

A request is first admitted (`admit_waiting`: room in the memory budget and in the writer's queue,
`tracehub.collector.admission`), then decoded by its receiver and exported: `export()` returns only
after the records are committed; processors (the decision engine) run after the commit and never
hold up the acknowledgement of stored data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from tracehub import metrics
from tracehub.collector.admission import Admission, Reservation
from tracehub.collector.errors import from_store, overloaded, unavailable
from tracehub.collector.pricing import Pricing
from tracehub.collector.rowencoding import encode_rows
from tracehub.records import Batch, WriteResult
from tracehub.store.faults import Fault
from tracehub.store.writer import QueueFull, Writer, WriterStopped

log = logging.getLogger(__name__)


class Processor(Protocol):
    async def process(self, batch: Batch, result: WriteResult) -> None: ...


class Pipeline:
    def __init__(self, writer: Writer, processors: list[Processor] | None = None,
                 pricing: Pricing | None = None, max_inflight_bytes: int = 128 * 1024 * 1024) -> None:
        self.writer = writer
        self.processors = list(processors or [])
        self.pricing = pricing
        self.admission = Admission(writer, max_inflight_bytes)

    async def admit_waiting(self, body_bytes: int = 0) -> Reservation:
        """Room for a request of `body_bytes`, before its body is read (`Admission.admit_waiting`)."""
        return await self.admission.admit_waiting(body_bytes)

    async def export(self, batch: Batch) -> WriteResult:
        if not len(batch):
            return WriteResult()
        started = time.perf_counter()
        # Spans from a decode worker come priced and encoded. The others are encoded here: JSON
        # encoding holds the GIL, and the writer thread's time should go to the database.
        encode_rows(batch.project_id, [s for s in batch.spans if s.row is None], self.pricing, batch.resources,
                    self.writer.nul_free)
        try:
            result = await asyncio.wrap_future(self.writer.submit(batch))
        except QueueFull:
            raise overloaded(self.admission.retry_after_s()) from None
        except WriterStopped:
            raise unavailable("the server is shutting down") from None
        except Fault as fault:  # the writer's: its log has the database's own words
            raise from_store(fault) from None
        metrics.EXPORT_SECONDS.observe(time.perf_counter() - started)
        metrics.SPANS_STORED.inc(result.spans_stored)
        metrics.SPANS_DUPLICATE.inc(result.spans_duplicate)
        metrics.EVENTS_STORED.inc(result.events_stored)
        for processor in self.processors:
            try:
                await processor.process(batch, result)
            except Exception:
                log.exception("processor %r failed; the data stays stored", processor)
        return result
