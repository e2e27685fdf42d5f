"""The spec's JSON ingestion API: `/api/v1/ingest/traces`, `/ingest/spans`, `/ingest/langgraph-runs`
and `/api/v1/evals`. Bodies become the same records as OTLP data and go through the same pipeline.

Each item of a batch is validated and answered on its own: a bad item is reported with its field path
and status, and nothing else in the request is lost (207 when some items failed). Items carrying an
idempotency_key are written once; a retry answers the first result.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from tracehub.api import answers
from tracehub.api.auth import project_of
from tracehub.api.errors import ProblemError, field_error, problem
from tracehub.api.operation import WRITE_ERRORS, Operation, json_answer, request_body
from tracehub.api.params import normalize_id, parse_time_ns
from tracehub.api.responses import JSONResponse
from tracehub.api.schemas import validation_errors
from tracehub.collector import semconv
from tracehub.collector.admission import Reservation
from tracehub.collector.errors import IngestError
from tracehub.hub import Hub
from tracehub.records import (
    STATUS_ERROR,
    STATUS_RUNNING,
    STATUS_SUCCESS,
    Batch,
    EvalRecord,
    EventRecord,
    Idem,
    SpanRecord,
    TraceRecord,
    WriteResult,
)
from tracehub.requests import declared_length, read_body
from tracehub.store import queries

MAX_BODY_BYTES = 8 * 1024 * 1024

# -- Operations ---------------------------------------------------------------------------------------

BODY_LIMIT = f"At most {MAX_BODY_BYTES // 2**20} MiB after decompression (gzip is read), else 413."
_AS_SENT = {**answers.ANY, "description": "As sent."}


def _ingest(path: str, summary: str, body: str, head: dict[str, answers.Schema], item: answers.Schema
            ) -> Operation:
    answer = answers.batch_answer(head, item)
    refused = {"description": "No item was stored, all for this reason (`errors`); the batch answer's fields "
                              "say which.",
               "content": {"application/problem+json": {"schema": answers.batch_refusal(head, item)}}}
    return Operation("POST", path, summary, "ingest",
                     {"200": json_answer(answer, "Every item stored (or replayed)."),
                      "207": json_answer(answer, "Some items failed; each says why."),
                      **WRITE_ERRORS, "409": refused, "422": refused},
                     body=request_body({"$ref": f"#/components/schemas/{body}"}, BODY_LIMIT), refuse_unknown=False)


TRACES = _ingest("/api/v1/ingest/traces", "A trace and a batch of its spans", "IngestTraces",
                 {"trace_id": answers.STR}, answers.item_result({"span_id": answers.STR}))
SPANS = _ingest("/api/v1/ingest/spans", "Span events: LOG, AMENDMENT, START, END, ERROR", "IngestSpans", {},
                answers.item_result({"event_type": _AS_SENT, "trace_id": answers.STR, "span_id": answers.STR},
                                    optional=["trace_id", "span_id"]))
LANGGRAPH = _ingest("/api/v1/ingest/langgraph-runs", "A LangGraph run and its nodes", "LangGraphRun",
                    {"trace_id": answers.STR, "run_id": answers.STR, "root_span_id": answers.STR},
                    answers.item_result({"node_id": _AS_SENT, "span_id": answers.STR}, optional=["span_id"]))
EVAL = Operation("POST", "/api/v1/evals", "Attach an evaluation result to a trace", "evals",
                 {"201": json_answer(answers.EVAL_ANSWER, "Stored."),
                  "200": json_answer(answers.EVAL_ANSWER, "Replayed retry: the first answer."), **WRITE_ERRORS},
                 body=request_body({"$ref": "#/components/schemas/Eval"}, BODY_LIMIT), refuse_unknown=False)
OPERATIONS = (TRACES, SPANS, LANGGRAPH, EVAL)


@dataclass
class Item:
    """One item of a request and what became of it."""

    path: str
    answer: dict[str, Any]
    idem: Idem | None = None
    span_key: tuple[str, str] | None = None
    error: dict[str, Any] | None = None

    def fail(self, status: int, message: str, path: str | None = None) -> None:
        self.error = {"status": status, "path": path or self.path, "message": message}

    def fail_from(self, exc: ProblemError) -> None:
        first = (exc.errors or [{"path": self.path, "message": exc.detail}])[0]
        self.fail(exc.status, first["message"], first["path"])


@dataclass
class Items:
    bad: set[str] = field(default_factory=set)  # paths of items the schema refused
    items: list[Item] = field(default_factory=list)

    def item(self, path: str, answer: dict[str, Any], raw: Any = None) -> Item:
        key = raw.get("idempotency_key") if isinstance(raw, dict) and path not in self.bad else None
        idem = None
        if key:
            digest = hashlib.sha256(json.dumps(raw, sort_keys=True, ensure_ascii=False,
                                               separators=(",", ":")).encode()).hexdigest()
            idem = Idem(str(key), digest, answer)  # the same dict: ids filled in later are stored
        item = Item(path, answer, idem)
        self.items.append(item)
        return item


def _hash_id(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:16]


def _get(raw: Any, key: str) -> Any:
    """A field of an item for its answer, before the item is known to be an object."""
    return raw.get(key) if isinstance(raw, dict) else None


def _time(value: Any, path: str, default: int | None) -> int | None:
    return parse_time_ns(value, path) if value else default


def _id(value: Any, hex_len: int, path: str) -> str:
    return normalize_id(str(value), hex_len, path)


def _status(value: str | None, end_ns: int | None) -> str:
    if value in (STATUS_RUNNING, STATUS_SUCCESS, STATUS_ERROR):
        return str(value)
    return STATUS_RUNNING if end_ns is None else STATUS_SUCCESS


def _state_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def span_record(raw: dict[str, Any], trace_id: str, path: str, now: int,
                trace: TraceRecord | None = None) -> SpanRecord:
    """A JSON span as the pipeline's record: explicit fields first, then the conventions."""
    attrs = dict(raw.get("attributes") or {})
    start = _time(raw.get("start_time"), f"{path}.start_time", now) or now
    end = _time(raw.get("end_time"), f"{path}.end_time", None)
    status = _status(raw.get("status"), end)
    if status == STATUS_RUNNING:
        end = None
    mapped = semconv.map_span(raw["name"], "INTERNAL", attrs, {}, [])
    if raw.get("span_type"):
        mapped.span_type = str(raw["span_type"])
        # The type stated wins, and with it whether the span names a tool.
        mapped.tool_name = semconv.tool_name(attrs.get) if mapped.span_type == "tool" else None
    plain_model = attrs.get("model") if isinstance(attrs.get("model"), str) else None
    mapped.model = raw.get("model") or plain_model or mapped.model
    for name in ("input_text", "output_text"):
        if raw.get(name) is not None:
            setattr(mapped, name, raw[name])
    for name in ("input_tokens", "output_tokens"):
        if raw.get(name) is not None:
            setattr(mapped, name, int(raw[name]))  # JSON Schema's integers include 5.0
    if mapped.input_tokens is not None or mapped.output_tokens is not None:
        mapped.total_tokens = (mapped.input_tokens or 0) + (mapped.output_tokens or 0)
    if trace is not None:
        mapped.environment = mapped.environment or trace.environment
        mapped.user_id = mapped.user_id or trace.user_id
        mapped.session_id = mapped.session_id or trace.session_id
    parent = raw.get("parent_span_id")
    return SpanRecord(
        trace_id=trace_id, span_id=_id(raw["span_id"], 16, f"{path}.span_id"),
        parent_span_id=_id(parent, 16, f"{path}.parent_span_id") if parent else None,
        name=raw["name"], kind="INTERNAL", start_ns=start, end_ns=end, status=status,
        status_message=None, mapped=mapped, attributes=attrs, cost_usd=raw.get("cost_usd"),
    )


def trace_record(raw: dict[str, Any], path: str) -> TraceRecord:
    end = _time(raw.get("end_time"), f"{path}.end_time", None)
    return TraceRecord(
        trace_id=_id(raw["trace_id"], 32, f"{path}.trace_id"), name=raw.get("name"),
        status=raw.get("status"), start_ns=_time(raw.get("start_time"), f"{path}.start_time", None),
        end_ns=end, model=raw.get("model"), environment=raw.get("environment"),
        user_id=raw.get("user_id"), session_id=raw.get("session_id"),
        input_text=raw.get("input_text"), output_text=raw.get("output_text"),
        attributes=raw.get("attributes"), user_review_passed=raw.get("user_review_passed"),
        graph_name=raw.get("graph_name"),
    )


class IngestRoutes:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def routes(self) -> list[Route]:
        return [
            Route(TRACES.path, self._endpoint("IngestTraces", self._traces), methods=[TRACES.method]),
            Route(SPANS.path, self._endpoint("IngestSpans", self._spans), methods=[SPANS.method]),
            Route(LANGGRAPH.path, self._endpoint("LangGraphRun", self._langgraph), methods=[LANGGRAPH.method]),
            Route(EVAL.path, self._endpoint("Eval", self._eval, single=True), methods=[EVAL.method]),
        ]

    def _endpoint(self, schema: str, build: Callable[[dict[str, Any], Batch, Items, set[str]], dict[str, Any]],
                  single: bool = False) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            project_id = await project_of(request, self.hub)
            # Held until the answer, as for OTLP: the body, then the records it became.
            with await self._admit(request) as held:
                body = await _json_body(request, held)
                errors = validation_errors(schema, body)
                # Errors inside one item of a list fail that item; anything else fails the request.
                bad_items: dict[str, list[dict[str, Any]]] = {}
                for e in errors:
                    parts = e["parts"]
                    if len(parts) >= 2 and isinstance(parts[1], int):
                        bad_items.setdefault(f"{parts[0]}[{parts[1]}]", []).append(e)
                    else:
                        raise ProblemError(422, f"{e['path']}: {e['message']}",
                                           [{"path": x["path"], "message": x["message"]} for x in errors])
                batch = Batch(project_id)
                req = Items(set(bad_items))
                head = build(body, batch, req, set(bad_items))
                for item in req.items:
                    if item.path in bad_items and item.error is None:
                        first = bad_items[item.path][0]
                        item.fail(422, first["message"], first["path"])
                if batch.evals:
                    await self._say_if_traces_stored(project_id, batch, req)
                result = await self._export(batch)
                results = _outcomes(req, result)
                return _single_answer(results[0]) if single else _batch_answer(head, results)

        return endpoint

    async def _admit(self, request: Request) -> Reservation:
        try:
            return await self.hub.pipeline.admit_waiting(declared_length(request))
        except IngestError as err:
            raise _problem(err) from None

    async def _export(self, batch: Batch) -> WriteResult:
        if not len(batch):
            return WriteResult()
        try:
            return await self.hub.pipeline.export(batch)
        except IngestError as err:
            raise _problem(err) from None

    # -- builders: body -> records + one Item per answerable thing -----------------------------

    def _traces(self, body: dict[str, Any], batch: Batch, req: Items, bad: set[str]) -> dict[str, Any]:
        trace = trace_record(body["trace"], "trace")
        batch.traces.append(trace)
        batch.require_parents = not body.get("allow_missing_parent", False)
        now = time.time_ns()
        for i, raw in enumerate(body.get("spans") or []):
            path = f"spans[{i}]"
            item = req.item(path, {"index": i, "span_id": str(_get(raw, "span_id") or "")}, raw)
            if path in bad:
                continue
            try:
                tid = _id(raw.get("trace_id") or trace.trace_id, 32, f"{path}.trace_id")
                if tid != trace.trace_id:
                    raise field_error(f"{path}.trace_id", "differs from trace.trace_id")
                span = span_record(raw, tid, path, now, trace)
            except ProblemError as exc:
                item.fail_from(exc)
                continue
            span.idem = item.idem
            item.answer["span_id"] = span.span_id
            item.span_key = (tid, span.span_id)
            batch.spans.append(span)
        return {"trace_id": trace.trace_id}

    def _spans(self, body: dict[str, Any], batch: Batch, req: Items, bad: set[str]) -> dict[str, Any]:
        now = time.time_ns()
        for i, raw in enumerate(body["events"]):
            path = f"events[{i}]"
            item = req.item(path, {"index": i, "event_type": _get(raw, "event_type")}, raw)
            if path in bad:
                continue
            try:
                tid = _id(raw["trace_id"], 32, f"{path}.trace_id")
                sid = _id(raw["span_id"], 16, f"{path}.span_id")
                at = _time(raw.get("event_time"), f"{path}.event_time", now) or now
                payload = dict(raw.get("payload") or {})
                event_type = raw["event_type"]
                item.answer.update(trace_id=tid, span_id=sid)
                if event_type == "START":
                    start = {"span_id": sid, "name": payload.get("name") or "span",
                             "start_time": raw.get("event_time"), "status": STATUS_RUNNING,
                             **{k: payload[k] for k in ("span_type", "parent_span_id", "attributes",
                                                        "input_text", "model") if k in payload}}
                    batch.spans.append(span_record(start, tid, f"{path}.payload", at))
            except ProblemError as exc:
                item.fail_from(exc)
                continue
            event = EventRecord(trace_id=tid, span_id=sid, event_type=event_type,
                                name=str(payload.get("message") or event_type.lower())[:200],
                                time_ns=at, payload=payload, idem=item.idem)
            batch.events.append(event)
        return {}

    def _langgraph(self, body: dict[str, Any], batch: Batch, req: Items, bad: set[str]) -> dict[str, Any]:
        trace = trace_record({**body, "name": body["graph_name"]}, "body")
        trace.graph_name = body["graph_name"]
        batch.traces.append(trace)
        now = time.time_ns()
        run_span_id = _hash_id(trace.trace_id, "run", body["run_id"])
        run = span_record({
            "span_id": run_span_id, "name": body["graph_name"], "span_type": "chain",
            "status": body.get("status"), "start_time": body.get("start_time"),
            "end_time": body.get("end_time"), "model": body.get("model"),
            "input_text": body.get("input_text"), "output_text": body.get("output_text"),
            "attributes": {**(body.get("attributes") or {}), "langgraph.graph.name": body["graph_name"],
                           "langgraph.run.id": body["run_id"]},
        }, trace.trace_id, "body", now, trace)
        run.mapped.graph_name = body["graph_name"]
        batch.spans.append(run)
        for i, raw in enumerate(body.get("nodes") or []):
            path = f"nodes[{i}]"
            item = req.item(path, {"index": i, "node_id": _get(raw, "node_id")}, raw)
            if path in bad:
                continue
            node_id = str(raw["node_id"])
            parent = raw.get("parent_node_id")
            name = raw.get("node_name") or node_id
            attrs = {**(raw.get("attributes") or {}), "langgraph.graph.name": body["graph_name"],
                     "langgraph.node": name, "langgraph.node.id": node_id,
                     "langgraph.run.id": body["run_id"]}
            if raw.get("node_type"):
                attrs["langgraph.node.type"] = raw["node_type"]
            if raw.get("error"):
                attrs["error.message"] = raw["error"]
            status = raw.get("status") or (STATUS_ERROR if raw.get("error") else None)
            try:
                span = span_record({
                    "span_id": _hash_id(trace.trace_id, "node", node_id), "name": name,
                    "span_type": "node", "status": status, "start_time": raw.get("start_time"),
                    "end_time": raw.get("end_time"), "model": raw.get("model"),
                    "parent_span_id": _hash_id(trace.trace_id, "node", str(parent)) if parent else run_span_id,
                    "input_text": _state_text(raw.get("input_state")),
                    "output_text": _state_text(raw.get("output_state")),
                    "input_tokens": raw.get("input_tokens"), "output_tokens": raw.get("output_tokens"),
                    "attributes": attrs,
                }, trace.trace_id, path, now, trace)
            except ProblemError as exc:
                item.fail_from(exc)
                continue
            span.mapped.graph_name, span.mapped.node_name = body["graph_name"], name
            span.status_message = raw.get("error")
            span.idem = item.idem
            item.answer["span_id"] = span.span_id
            item.span_key = (trace.trace_id, span.span_id)
            batch.spans.append(span)
        # A run sent without its times spans its nodes: it starts with the first and, stated
        # finished, ends with the last (as it starts, without any); else it would stay open.
        nodes = [s for s in batch.spans if s is not run]
        if not body.get("start_time") and nodes:
            run.start_ns = min(s.start_ns for s in nodes)
        if run.status != STATUS_RUNNING and run.end_ns is None:
            run.end_ns = max((s.end_ns for s in nodes if s.end_ns is not None), default=run.start_ns)
        return {"trace_id": trace.trace_id, "run_id": body["run_id"], "root_span_id": run_span_id}

    def _eval(self, body: dict[str, Any], batch: Batch, req: Items, bad: set[str]) -> dict[str, Any]:
        tid = _id(body["trace_id"], 32, "trace_id")
        span_id = _id(body["span_id"], 16, "span_id") if body.get("span_id") else None
        item = req.item("body", {"trace_id": tid, "eval_name": body["eval_name"]}, body)
        batch.evals.append(EvalRecord(
            trace_id=tid, span_id=span_id, eval_name=body["eval_name"], eval_model=body.get("eval_model"),
            score=body.get("score"), passed=body.get("passed"), metadata=body.get("metadata") or {},
            user_review_passed=body.get("user_review_passed"), created_ns=time.time_ns(),
            idem=item.idem))
        return {}

    async def _say_if_traces_stored(self, project_id: int, batch: Batch, req: Items) -> None:
        """An eval's answer says whether its trace is stored. The eval is kept either way (its
        trace may still be on its way); the stats count it once the trace is there."""
        wanted = {e.trace_id for e in batch.evals}

        def stored() -> set[str]:
            with self.hub.reads.connect() as conn:
                return queries.stored_trace_ids(conn, project_id, sorted(wanted))

        found = await run_in_threadpool(stored)
        for item in req.items:
            trace_id = item.answer.get("trace_id")
            if trace_id in wanted:
                item.answer["trace_found"] = trace_id in found
                if trace_id not in found:
                    item.answer["warning"] = (f"trace {trace_id} is not stored (yet): the eval is "
                                              "kept, and counted in the stats once the trace arrives")


def _problem(err: IngestError) -> ProblemError:
    return ProblemError(err.http_status, err.message, headers=err.retry_headers())


async def _json_body(request: Request, held: Reservation) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/json", ""):
        raise ProblemError(415, f"unsupported content type {ctype!r}: send application/json")
    try:
        raw = await read_body(request, MAX_BODY_BYTES, held)  # bounded, gzip allowed, as for OTLP
    except IngestError as err:
        raise _problem(err) from None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProblemError(400, f"body is not valid JSON: {exc}") from None


def _outcomes(req: Items, result: WriteResult) -> list[dict[str, Any]]:
    """Each item's answer: created, duplicate (a replay answers the first result) or error."""
    results = []
    for item in req.items:
        key = item.idem.key if item.idem else None
        outcome = result.keys.get(key) if key else None
        if item.error is None and outcome == "conflict":
            item.fail(409, f"idempotency_key {key!r} was already used with a different body")
        elif item.error is None and (outcome == "orphan" or item.span_key in result.orphans):
            item.fail(422, "parent span is not known; send it first or set allow_missing_parent",
                      f"{item.path}.parent_span_id")
        if item.error is not None:
            results.append({**item.answer, "status": "error", "error": item.error})
        elif outcome == "duplicate" and key in result.replayed:
            results.append({**result.replayed[key], "status": "created", "replayed": True})
        elif item.span_key is not None and item.span_key in result.duplicates:
            results.append({**item.answer, "status": "duplicate"})
        else:
            results.append({**item.answer, "status": "created"})
    return results


def _single_answer(answer: dict[str, Any]) -> JSONResponse:
    if answer["status"] == "error":
        err = answer["error"]
        raise ProblemError(err["status"], f"{err['path']}: {err['message']}",
                           [{"path": err["path"], "message": err["message"]}])
    replayed = answer.pop("replayed", False)
    return JSONResponse(answer, 200 if replayed else 201,
                        headers={"idempotent-replayed": "true"} if replayed else None)


def _batch_answer(head: dict[str, Any], results: list[dict[str, Any]]) -> JSONResponse:
    """200 when every item went in; 207 when some failed; the items' own status when all failed."""
    failed = [r for r in results if r["status"] == "error"]
    summary = {s: sum(1 for r in results if r["status"] == s and not r.get("replayed"))
               for s in ("created", "duplicate", "error")}
    summary["replayed"] = sum(1 for r in results if r.get("replayed"))
    body = {**head, "results": results, "summary": summary}
    if not failed:
        return JSONResponse(body, 200)
    statuses = {r["error"]["status"] for r in failed}
    if len(failed) < len(results) or len(statuses) > 1:
        return JSONResponse(body, 207)
    errors = [{"path": r["error"]["path"], "message": r["error"]["message"]} for r in failed]
    return problem(statuses.pop(), "no item of the request was stored", errors, extra=body)
