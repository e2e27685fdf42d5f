"""Whether exported spans reached the hub, for ``flush()`` to report.

The OTel SDK's ``BatchSpanProcessor.force_flush`` returns True once the queue has been handed to
the exporter, whatever the exporter answered: with the hub down, the exporter logs "Failed to
export" and returns ``SpanExportResult.FAILURE``, and the flush still says True.
:class:`DeliveryRecorder` sits between the processor and the real exporter and counts the spans
of failed exports; :class:`HubBatchSpanProcessor` is a ``BatchSpanProcessor`` whose
``force_flush`` is False when any export since the previous flush failed. Both use only the SDK's
public ``SpanExporter`` / ``BatchSpanProcessor`` interfaces.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

logger = logging.getLogger(__name__)


class DeliveryRecorder(SpanExporter):
    """Passes every batch to ``exporter`` and counts the spans of the batches that failed."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self._lock = threading.Lock()
        self._undelivered = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.exporter.export(spans)
        except BaseException:
            self._count(len(spans))
            raise
        if result is not SpanExportResult.SUCCESS:
            self._count(len(spans))
        return result

    def _count(self, n: int) -> None:
        with self._lock:
            self._undelivered += n

    def take_undelivered(self) -> int:
        """Spans of failed exports since the previous call; starts counting again from zero."""
        with self._lock:
            n, self._undelivered = self._undelivered, 0
        return n

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class HubBatchSpanProcessor(BatchSpanProcessor):
    """A ``BatchSpanProcessor`` whose ``force_flush`` also says whether the spans were delivered.

    False when the flush timed out or when an export since the previous ``force_flush`` failed
    (those spans are lost: the exporter has retried them already). ``TracerProvider.force_flush``
    is False when one of its processors' is, so a provider with this processor reports it too.
    """

    def __init__(self, exporter: SpanExporter, schedule_delay_millis: float) -> None:
        self.delivery = DeliveryRecorder(exporter)
        super().__init__(self.delivery, schedule_delay_millis=schedule_delay_millis)

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        flushed = super().force_flush(timeout_millis)
        undelivered = self.delivery.take_undelivered()
        if undelivered:
            logger.error("%d spans could not be delivered to the hub since the last flush",
                         undelivered)
        return flushed and not undelivered
