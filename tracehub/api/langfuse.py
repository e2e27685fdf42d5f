"""Langfuse's ingest API, so that an app traced with the Langfuse SDK (v3 and later) switches to the
hub by changing LANGFUSE_HOST alone.

- `POST /api/public/otel/v1/traces`: OTLP/HTTP, which the SDK sends (protobuf, gzip). It is the
  `/v1/traces` receiver itself, behind `BasicAuth`: one decode path, the same answers.
- `POST /api/public/ingestion`: Langfuse's batch API, where SDKs 3.x and 4.x send their scores
  (`score-create` events, whose bodies are scores as below). Other events (the v2 SDK's traces and
  observations) are refused one by one: spans come over OpenTelemetry. Langfuse's answer, 207
  with `successes` and `errors` by event id.
- `POST /api/public/scores`: the SDK's scores, a JSON array (a single score object too). Each
  becomes an evaluation of its trace, and of its span when it names an `observationId`: the name,
  the value (NUMERIC as the score, BOOLEAN as the score 1 or 0 and passed, CATEGORICAL, TEXT and
  CORRECTION in the metadata) and the rest of the score as sent (id, dataType, comment,
  timestamp, metadata, ...) in the evaluation's metadata. A score id is written once: the same
  score sent again is one evaluation; the same id with other values is refused, since the hub
  never rewrites an evaluation (Langfuse would update it).

Answers are Langfuse's where the SDK reads them (202 `{"message": "Accepted"}`; 207 with accepted
and rejected counts and each rejected score's message; a single score: 200 `{"id"}`), errors
problem+json. Scores are mapped here and stored by the pipeline; spans are the receiver's.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from typing import Any, Awaitable, Callable

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tracehub.api import answers
from tracehub.api.auth import BasicAuth
from tracehub.api.errors import ProblemError
from tracehub.api.ingest import MAX_BODY_BYTES
from tracehub.api.operation import WRITE_ERRORS, Operation, json_answer, request_body
from tracehub.api.params import normalize_id
from tracehub.api.responses import JSONResponse
from tracehub.api.schemas import TRACE_ID, limit_errors
from tracehub.collector.errors import IngestError
from tracehub.hub import Hub
from tracehub.records import Batch, EvalRecord, Idem
from tracehub.requests import declared_length, read_body

TRACES_PATH = "/api/public/otel/v1/traces"
RECEIVER_PATH = "/v1/traces"  # the receiver the Langfuse path takes
DATA_TYPES = ("NUMERIC", "BOOLEAN", "CATEGORICAL", "TEXT", "CORRECTION")
_TEXT_TYPES = ("CATEGORICAL", "TEXT", "CORRECTION")
# Score fields an evaluation holds in columns; the rest of the score is its metadata.
_IN_COLUMNS = ("traceId", "observationId", "name")

_HEX = "[0-9a-fA-F]"
_UUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"


def _value_is(data_type: str | list[str], value: answers.Schema) -> answers.Schema:
    kind = {"const": data_type} if isinstance(data_type, str) else {"enum": data_type}
    return {"if": {"required": ["dataType"], "properties": {"dataType": kind}},
            "then": {"properties": {"value": value}}}


SCORE: answers.Schema = {
    "type": "object", "required": ["traceId", "name", "value"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 200,
               "description": "Langfuse's score id; sent again with the same values, the score is stored once."},
        "traceId": {**TRACE_ID, "description": "The scored trace (sessions and dataset runs alone are not kept)."},
        "observationId": {"type": "string", "pattern": f"^(?![0-]+$)({_HEX}{{16}}|{_HEX}{{32}}|{_UUID})$",
                          "description": "The scored span: 16 hex characters (OTLP's), 32, or a UUID."},
        "name": {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": "\\S"},
        "value": {"type": ["number", "string"],
                  "description": "NUMERIC: a number; BOOLEAN: 1 or 0; CATEGORICAL, TEXT, CORRECTION: text. "
                                 "Without a dataType, a number is NUMERIC and text CATEGORICAL."},
        "dataType": {"enum": list(DATA_TYPES)},
        "comment": {"type": ["string", "null"]},
        "metadata": answers.ANY,
    },
    "additionalProperties": True,
    "allOf": [_value_is("NUMERIC", {"type": "number"}), _value_is("BOOLEAN", {"enum": [0, 1]}),
              _value_is(list(_TEXT_TYPES), {"type": "string", "minLength": 1})],
}
_VALIDATOR = Draft202012Validator(SCORE)

_REJECTED = answers.closed({
    "accepted": answers.INT, "rejected": answers.INT,
    "errors": answers.array(answers.closed({"message": answers.STR, "index": answers.INT, "id": answers.NSTR}),
                            "Each rejected score: its place in the array and why.")})
SCORES = Operation(
    "POST", "/api/public/scores", "Langfuse's scores, as evaluations of their traces and spans", "langfuse",
    {"200": json_answer(answers.closed({"id": answers.STR}), "A single score stored (or stored before)."),
     "202": json_answer(answers.closed({"message": {"const": "Accepted"}}), "Every score of the array stored."),
     "207": json_answer(_REJECTED, "Some scores of the array refused, each with its reason; the others stored."),
     **WRITE_ERRORS},
    body=request_body({"anyOf": [SCORE, answers.array(SCORE)]},
                      "A score, or an array of them (the Langfuse SDK's batches). HTTP Basic is taken: the "
                      "password (Langfuse's secret key) is the API key."),
    refuse_unknown=False)
EVENT: answers.Schema = {
    "type": "object", "required": ["id", "type", "body"],
    "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 200}, "type": {"type": "string"},
                   "timestamp": {"type": "string"}, "body": {"type": "object"}},
    "additionalProperties": True,
}
_EVENT_VALIDATOR = Draft202012Validator(EVENT)
SCORE_EVENT = "score-create"
INGESTION = Operation(
    "POST", "/api/public/ingestion", "Langfuse's batch API: its score-create events, as evaluations", "langfuse",
    {"207": json_answer(answers.closed({
        "successes": answers.array(answers.closed({"id": answers.STR, "status": answers.INT}),
                                   "The events stored (or stored before), by id: status 201."),
        "errors": answers.array(answers.closed({"id": answers.NSTR, "status": answers.INT, "message": answers.STR,
                                                "error": answers.STR}),
                                "The events refused, by id, with an HTTP status and why.")}),
        "Every event's outcome, as Langfuse answers."),
     **WRITE_ERRORS},
    body=request_body({"type": "object", "required": ["batch"], "additionalProperties": True, "properties": {
                          "batch": answers.array(EVENT, "Events; a score-create event's body is a score."),
                          "metadata": answers.ANY}},
                      "Langfuse's ingestion batch, as its SDKs 3.x and 4.x send their scores. HTTP Basic is taken: "
                      "the password (Langfuse's secret key) is the API key."),
    refuse_unknown=False)
OPERATIONS = (SCORES, INGESTION)

Endpoint = Callable[[Request], Awaitable[Response]]


class Refused(Exception):
    """A score that cannot be kept; the message says why."""


def eval_of(raw: Any, now: int) -> EvalRecord:
    """One Langfuse score as the evaluation it becomes, keyed by its id."""
    if not isinstance(raw, dict):
        raise Refused("a score is a JSON object")
    limits = limit_errors(raw)  # what no stored document may hold: lone surrogates, infinities, depth
    if limits:
        raise Refused(f"{limits[0]['path']}: {limits[0]['message']}")
    error = best_match(_VALIDATOR.iter_errors(raw))
    if error is not None:
        if error.validator == "required":
            raise Refused(f"{error.message}: a score names its trace (one of a session or a dataset run"
                          " alone is not kept), its name and its value")
        where = ".".join(map(str, error.absolute_path))
        raise Refused(f"{where}: {error.message}" if where else error.message)
    score_id = raw.get("id") or uuid.uuid4().hex
    try:
        trace_id = normalize_id(raw["traceId"], 32, "traceId")
        observation = raw.get("observationId")
        span_id = normalize_id(observation, 16, "observationId") if observation is not None else None
    except ProblemError as exc:
        raise Refused(exc.detail) from None
    value = raw["value"]
    data_type = raw.get("dataType") or ("CATEGORICAL" if isinstance(value, str) else "NUMERIC")
    score = passed = None
    if data_type not in _TEXT_TYPES:
        try:
            score = float(value)
        except OverflowError:
            score = math.inf
        if not math.isfinite(score):
            raise Refused("value: not a finite number")
        passed = score == 1 if data_type == "BOOLEAN" else None
    metadata = {k: v for k, v in raw.items() if k not in _IN_COLUMNS}
    metadata.update(id=score_id, dataType=data_type)
    # The same score sent again, whenever, is a duplicate: its timestamp is left out.
    content = [trace_id, span_id, raw["name"], {k: v for k, v in metadata.items() if k != "timestamp"}]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()
    return EvalRecord(trace_id=trace_id, span_id=span_id, eval_name=raw["name"], score=score, passed=passed,
                      metadata=metadata, created_ns=now,
                      idem=Idem(f"langfuse-score:{score_id}", digest, {"id": score_id}))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class LangfuseRoutes:
    def __init__(self, hub: Hub, otlp: list[Route]) -> None:
        self.hub = hub
        self.auth = BasicAuth(hub)
        self.receiver: Endpoint = next(r.endpoint for r in otlp if r.path == RECEIVER_PATH)

    def routes(self) -> list[Route]:
        return [Route(TRACES_PATH, self._traces, methods=["POST"]),
                Route(SCORES.path, self._scores, methods=[SCORES.method]),
                Route(INGESTION.path, self._ingestion, methods=[INGESTION.method])]

    async def _traces(self, request: Request) -> Response:
        _, key = await self.auth.project_of(request)
        # The receiver reads the key checked here as it reads any: from x-api-key.
        headers = [(name, value) for name, value in request.scope["headers"]
                   if name not in (b"authorization", b"x-api-key")]
        headers.append((b"x-api-key", key.encode()))
        return await self.receiver(Request({**request.scope, "headers": headers}, request.receive))

    async def _scores(self, request: Request) -> Response:
        return await self._json(request, self._score_body)

    async def _ingestion(self, request: Request) -> Response:
        return await self._json(request, self._events)

    async def _json(self, request: Request, answer: Callable[[int, Any], Awaitable[JSONResponse]]) -> Response:
        """`answer(project, body)` for the caller's project and its JSON body, within the pipeline's
        admission of the request."""
        project_id, _ = await self.auth.project_of(request)
        try:
            reservation = await self.hub.pipeline.admit_waiting(declared_length(request))
        except IngestError as err:
            raise _problem(err) from None
        with reservation as held:
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype not in ("application/json", ""):
                raise ProblemError(415, f"unsupported content type {ctype!r}: send application/json")
            try:
                body = json.loads(await read_body(request, MAX_BODY_BYTES, held), parse_constant=_refuse_constant)
            except IngestError as err:
                raise _problem(err) from None
            except (ValueError, RecursionError) as exc:
                raise ProblemError(400, f"body is not valid JSON: {exc}") from None
            return await answer(project_id, body)

    async def _score_body(self, project_id: int, body: Any) -> JSONResponse:
        if isinstance(body, dict):
            return await self._single(project_id, body)
        if not isinstance(body, list):
            raise ProblemError(400, "send a score (a JSON object) or an array of them")
        return await self._batch(project_id, body)

    async def _events(self, project_id: int, body: Any) -> JSONResponse:
        events = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(events, list):
            raise ProblemError(400, "send Langfuse's ingestion batch: an object with a `batch` array of events")
        now = time.time_ns()
        successes: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        kept: list[tuple[str, EvalRecord]] = []
        for index, event in enumerate(events):
            event_id = event.get("id") if isinstance(event, dict) else None
            event_id = event_id if isinstance(event_id, str) else None
            error = best_match(_EVENT_VALIDATOR.iter_errors(event))
            try:
                if error is not None:
                    where = ".".join(map(str, [index, *error.absolute_path]))
                    raise Refused(f"batch.{where}: {error.message}")
                if event["type"] != SCORE_EVENT:
                    raise Refused(f"{event['type']!r} events are not kept: the hub takes Langfuse's traces and"
                                  f" observations over OpenTelemetry (/api/public/otel/v1/traces, SDK v3 and later)")
                kept.append((event["id"], eval_of(event["body"], now)))
            except Refused as exc:
                errors.append({"id": event_id, "status": 400, "message": str(exc), "error": "invalid event"})
        outcomes = await self._store(project_id, [record for _, record in kept])
        for (event_id, _), outcome in zip(kept, outcomes):
            if outcome is None:
                successes.append({"id": event_id, "status": 201})
            else:
                errors.append({"id": event_id, "status": 409, "message": outcome, "error": "conflict"})
        return JSONResponse({"successes": successes, "errors": errors}, 207)

    async def _single(self, project_id: int, raw: dict[str, Any]) -> JSONResponse:
        try:
            record = eval_of(raw, time.time_ns())
        except Refused as exc:
            raise ProblemError(400, str(exc)) from None
        outcome = (await self._store(project_id, [record]))[0]
        if outcome is not None:
            raise ProblemError(409, outcome)
        assert record.idem is not None
        return JSONResponse(record.idem.response)

    async def _batch(self, project_id: int, body: list[Any]) -> JSONResponse:
        now = time.time_ns()
        errors: list[dict[str, Any]] = []
        kept: list[tuple[int, EvalRecord]] = []
        for index, raw in enumerate(body):
            try:
                kept.append((index, eval_of(raw, now)))
            except Refused as exc:
                score_id = raw.get("id") if isinstance(raw, dict) else None
                errors.append({"message": str(exc), "index": index,
                               "id": score_id if isinstance(score_id, str) else None})
        outcomes = await self._store(project_id, [record for _, record in kept])
        for (index, record), outcome in zip(kept, outcomes):
            if outcome is not None:
                assert record.idem is not None
                errors.append({"message": outcome, "index": index, "id": record.idem.response["id"]})
        if not errors:
            return JSONResponse({"message": "Accepted"}, 202)
        errors.sort(key=lambda e: int(e["index"]))
        return JSONResponse({"accepted": len(body) - len(errors), "rejected": len(errors), "errors": errors}, 207)

    async def _store(self, project_id: int, records: list[EvalRecord]) -> list[str | None]:
        """Writes the evaluations; for each, None if it is stored (now or before), else why not."""
        if not records:
            return []
        try:
            result = await self.hub.pipeline.export(Batch(project_id, evals=records))
        except IngestError as err:
            raise _problem(err) from None
        outcomes: list[str | None] = []
        for record in records:
            assert record.idem is not None
            if result.keys.get(record.idem.key) == "conflict":
                outcomes.append(f"score {record.idem.response['id']!r} is stored with other values: a score is"
                                " kept as first sent (send a new id)")
            else:
                outcomes.append(None)
        return outcomes


def _problem(err: IngestError) -> ProblemError:
    return ProblemError(err.http_status, err.message, headers=err.retry_headers())
