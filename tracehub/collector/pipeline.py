"""The ingest pipeline: decoded records -> writer -> processors, one contract for every receiver.

`export()` returns only after the records are committed; processors (the decision engine) run after
the commit and never hold up the acknowledgement of stored data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from tracehub import metrics
from tracehub.collector.errors import overloaded, unavailable
from tracehub.collector.pricing import Pricing
from tracehub.records import Batch
from tracehub.store.batchwrite import WriteResult
from tracehub.store.writer import QueueFull, Writer, WriterStopped

log = logging.getLogger(__name__)


class Processor(Protocol):
    async def process(self, batch: Batch, result: WriteResult) -> None: ...


class Pipeline:
    def __init__(self, writer: Writer, processors: list[Processor] | None = None,
                 pricing: Pricing | None = None) -> None:
        self.writer = writer
        self.processors = list(processors or [])
        self.pricing = pricing

    def accepting(self) -> bool:
        """Cheap admission check before a body is read: is there room in the queue at all?"""
        return self.writer.queued_spans < self.writer.max_queued_spans

    async def export(self, batch: Batch) -> WriteResult:
        if not len(batch):
            return WriteResult()
        started = time.perf_counter()
        if self.pricing is not None and batch.spans:
            self.pricing.apply(batch.spans)  # before the writer folds span costs into the trace
        try:
            future = self.writer.submit(batch)
        except QueueFull:
            raise overloaded() from None
        except WriterStopped:
            raise unavailable("the server is shutting down") from None
        try:
            result = await asyncio.wrap_future(future)
        except Exception as exc:
            raise unavailable(f"storing the request failed: {exc}") from None
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
