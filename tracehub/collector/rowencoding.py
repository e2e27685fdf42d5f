"""Spans priced and encoded into their spans-table rows ahead of the writer (`encode_rows`).

Done in a decode worker (`tracehub.collector.decoding`) or, for spans that came another way, in the
receiving thread (`Pipeline.export`): JSON encoding holds the GIL, and the writer thread's time
should go to the database. The row itself is the store's (`tracehub.store.spanrow`).
"""

from __future__ import annotations

from typing import Any

from tracehub.collector.pricing import Pricing
from tracehub.records import SpanRecord
from tracehub.store.spanrow import RowEncoder, span_row


def encode_rows(project_id: int, spans: list[SpanRecord], pricing: Pricing | None,
                resources: dict[int, bytearray], nul_free: bool) -> list[tuple[Any, ...]]:
    """Price `spans` (before the writer folds their costs into traces), encode their rows into
    `span.row` and return them, their resources into `resources`; in the decode worker or in the
    receiving thread. `nul_free`: the writer's (`Writer.nul_free`)."""
    if pricing is not None and spans:
        pricing.apply(spans)
    encoder = RowEncoder(resources, nul_free)
    rows = []
    for span in spans:
        span.row = row = span_row(project_id, span, encoder)
        rows.append(row)
    return rows
