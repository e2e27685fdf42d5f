"""`POST /api/v1/decide`: decide on one trace now, by its project's active policy, and record it.

The answer is the decision log entry (`traces.decision_view`: action, reason code, severity, the
matched rule, masked signals, policy name and version, judge, judge model, cached, latency, input
hash) plus `trace_found` and `case_id` (the case an ESCALATE opened). A trace that is not stored is
decided on the payloads alone and gets a trace row with the judge span as its root.

Writes go through the writer's decision lane, which ingest backpressure does not refuse, so the
route takes no room in the ingest pipeline's budget. `idempotency_key` binds the key to the body
(the ingest routes' `idempotency_keys`): a retry answers the first decision (200,
`idempotent-replayed: true`), the same key with another body is 409.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from tracehub.api import answers
from tracehub.api.auth import project_of
from tracehub.api.errors import ProblemError
from tracehub.api.operation import WRITE_ERRORS, Operation, json_answer, request_body
from tracehub.api.params import normalize_id
from tracehub.api.responses import JSONResponse
from tracehub.api.schemas import validation_errors
from tracehub.api.traces import decision_view
from tracehub.collector.errors import IngestError
from tracehub.decision.engine import IdempotencyConflict
from tracehub.hub import Hub
from tracehub.requests import read_body
from tracehub.store import faults
from tracehub.store.writer import WriterStopped

MAX_BODY_BYTES = 1024 * 1024

DECIDE = Operation(
    "POST", "/api/v1/decide", "Decide on a trace by the active policy and record the decision", "decisions",
    {"201": json_answer(answers.DECIDE_ANSWER, "Decided and recorded."),
     "200": json_answer(answers.DECIDE_ANSWER, "Replayed retry: the first decision."),
     **{k: v for k, v in WRITE_ERRORS.items() if k != "429"}},
    body=request_body({"$ref": "#/components/schemas/Decide"},
                      f"At most {MAX_BODY_BYTES // 2**20} MiB after decompression, else 413."),
    description="Writes the decision log entry, a judge run, a `judge` span in the trace's tree and the trace's "
                "latest decision; ESCALATE opens a case and queues its webhooks. Not refused by ingest backpressure.",
    refuse_unknown=False)
OPERATIONS = (DECIDE,)


class DecideRoutes:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def routes(self) -> list[Route]:
        return [Route(DECIDE.path, self.decide, methods=[DECIDE.method])]

    async def decide(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        body = await _json_body(request)
        errors = validation_errors("Decide", body)
        if errors:
            raise ProblemError(422, f"{errors[0]['path']}: {errors[0]['message']}",
                               [{"path": e["path"], "message": e["message"]} for e in errors])
        trace_id = normalize_id(body["trace_id"], 32, "trace_id")
        key = body.get("idempotency_key")
        try:
            result = await self.hub.decisions.decide(project_id, trace_id, body.get("request_payload"),
                                                     body.get("response_payload"), "api", key)
        except IdempotencyConflict:
            raise ProblemError(409, f"idempotency_key {key!r} was already used with a different body",
                               [{"path": "idempotency_key", "message": "already used with a different body"}]
                               ) from None
        except WriterStopped:
            raise ProblemError(503, "the server is shutting down",
                               headers={"retry-after": str(math.ceil(faults.RETRY_AFTER_S))}) from None
        assert result.decision is not None  # only automatic decisions are decided_before
        answer = {**decision_view(result.decision), "trace_found": result.trace_found, "case_id": result.case_id}
        if result.status == "replayed":
            return JSONResponse(answer, 200, headers={"idempotent-replayed": "true"})
        return JSONResponse(answer, 201)


async def _json_body(request: Request) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/json", ""):
        raise ProblemError(415, f"unsupported content type {ctype!r}: send application/json")
    try:
        raw = await read_body(request, MAX_BODY_BYTES)
    except IngestError as err:
        raise ProblemError(err.http_status, err.message, headers=err.retry_headers()) from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProblemError(400, f"body is not valid JSON: {exc}") from None
