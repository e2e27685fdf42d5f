"""What the OTLP receivers (gRPC and HTTP) take from the running server: an `Intake`, built once by
the composition root (`tracehub.hub`) and passed to them, so that a receiver imports nothing above
the collector.

It says who sent a request (`authenticate`, through the key resolver's `project_for`), where the
request goes (`pipeline`: admission, then export), how its body is decoded (`decode_traces`,
`decode_logs`) and the largest body taken (`max_request_bytes`). Both receivers answer a stored
export with `export_answer`, its partial success naming what was rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from tracehub import metrics
from tracehub.collector.decoding import Decode
from tracehub.collector.errors import from_store, unauthenticated
from tracehub.collector.otlp import Decoded
from tracehub.collector.pipeline import Pipeline
from tracehub.requests import presented_key
from tracehub.store.faults import Fault
from tracehub.store.keys import RefusedKey

# An API key (None when the request carries none) -> its project id, None for an unknown key.
ProjectFor = Callable[[str | None], Awaitable[int | None]]


@dataclass(frozen=True)
class Intake:
    project_for: ProjectFor
    pipeline: Pipeline
    decode_traces: Decode
    decode_logs: Decode
    max_request_bytes: int

    async def authenticate(self, headers: Any) -> int:
        """The project of the key in `headers`; raises the answer for an unknown key, or while the
        database cannot be asked."""
        try:
            project_id = await self.project_for(presented_key(headers))
        except Fault as fault:
            raise from_store(fault) from None
        except RefusedKey as exc:
            raise unauthenticated(str(exc)) from None
        if project_id is None:
            raise unauthenticated()
        return project_id


def export_answer(response_type: Any, rejected_field: str, decoded: Decoded) -> Any:
    """The `response_type` message (ExportTraceServiceResponse, ExportLogsServiceResponse) that
    answers a stored export: with OTLP's partial success when `decoded` had items rejected, counted
    in its `rejected_field` (and in the metrics) and explained in its error_message."""
    answer = response_type()
    if decoded.rejected:
        metrics.SPANS_REJECTED.inc(decoded.rejected)
        setattr(answer.partial_success, rejected_field, decoded.rejected)
        answer.partial_success.error_message = decoded.error_message
    return answer
