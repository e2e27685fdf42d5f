"""`/api/v1/traces` and `/api/v1/traces/{trace_id}`: the trace list and one trace's detail.

Rows from `tracehub.store.queries` become the API's documented field names here and nowhere else;
`tracehub.api.answers` holds the shapes these views answer, and the operations at the end of the
module the parameters the routes read, both as the OpenAPI document shows them.
"""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from tracehub.api import answers
from tracehub.api.auth import project_of
from tracehub.api.errors import ProblemError
from tracehub.api.operation import NOT_FOUND, READ_ERRORS, Operation, json_answer
from tracehub.api.params import (
    PAGE,
    PAGE_SIZE,
    iso,
    page_body,
    path_id,
    query_bool,
    query_int,
    query_text,
    query_time,
)
from tracehub.api.responses import JSONResponse
from tracehub.api.schemas import STATUSES
from tracehub.hub import Hub
from tracehub.records import OTEL_STATUS_CODES
from tracehub.store import amendment, queries
from tracehub.store import spans as span_store
from tracehub.store.completion import cutoff
from tracehub.store.readmodel import trace_read_model


def _json(value: Any) -> Any:
    # Not orjson: it reads integers beyond 64 bits (JSON clients send them) as floats.
    return json.loads(value) if isinstance(value, str) else value


def _embedded(value: Any) -> Any:
    """Stored JSON text goes into the answer as it is: parsing and re-encoding each span's
    attributes and resource was most of a 1,000-span trace's detail."""
    return orjson.Fragment(value) if isinstance(value, str) else value


def _duration_ms(start: int | None, end: int | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0, end - start) / 1e6, 3)


def trace_view(row: dict[str, Any]) -> dict[str, Any]:
    """A trace row as `queries` reads it: status and awaited parents as of the read
    (`tracehub.store.completion`); parents no longer awaited count as not received."""
    span_count = row["span_count"]
    awaited = row["awaited_parent_count"]
    open_count = row["running_span_count"] + awaited
    known = span_count + awaited
    input_tokens, output_tokens = row["input_tokens"], row["output_tokens"]
    return {
        "trace_id": row["trace_id"],
        "name": row["name"],
        "status": row["status"],
        "start_time": iso(row["start_ns"]),
        "end_time": iso(row["end_ns"]),
        "duration_ms": _duration_ms(row["start_ns"], row["end_ns"]),
        "model": row["model"],
        "environment": row["environment"],
        "user_id": row["user_id"],
        "session_id": row["session_id"],
        "input_text": row["input_text"],
        "output_text": row["output_text"],
        "attributes": _json(row["attributes"]) or {},
        "root_span_id": row["root_span_id"],
        "span_count": span_count,
        "open_span_count": open_count,
        "has_open_spans": open_count > 0,
        "completion_rate": round((known - open_count) / known, 4) if known else 0.0,
        "parents_not_received": row["missing_parent_count"] - awaited,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "cost_usd": round(row["cost_usd"], 8),
        "error_count": row["error_count"],
        "decision": row["decision"],
        "user_review_passed": row["user_review_passed"],
    }


def _event_view(event: dict[str, Any], source: str) -> dict[str, Any]:
    if source == "otel":
        return {"event_type": "OTEL", "name": event["name"], "time": iso(event["time_unix_nano"]),
                "attributes": event["attributes"]}
    return {"event_type": event["event_type"], "name": event["name"], "time": iso(event["time_ns"]),
            "attributes": event["payload"]}


def eval_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"trace_id": row["trace_id"], "span_id": row["span_id"], "eval_name": row["eval_name"],
            "eval_model": row["eval_model"], "score": row["score"], "passed": row["passed"],
            "metadata": _json(row["metadata"]), "user_review_passed": row["user_review_passed"],
            "created_at": iso(row["created_ns"])}


def decision_view(row: dict[str, Any]) -> dict[str, Any]:
    """A `trace_decisions` row: the decision log entry, signals masked as stored."""
    return {
        "decision_id": row["decision_id"], "trace_id": row["trace_id"], "action": row["action"],
        "reason_code": row["reason_code"], "severity": row["severity"], "rule": row["rule"],
        "signals": row["signals"], "policy_name": row["policy_name"], "policy_version": row["policy_version"],
        "judge": row["judge"], "judge_model": row["judge_model"], "cached": bool(row["cached"]),
        "latency_ms": row["latency_ms"], "input_hash": row["input_hash"], "shadow": bool(row["shadow"]),
        "source": row["source"], "judge_span_id": row["judge_span_id"], "created_at": iso(row["created_ns"]),
    }


def judge_run_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "decision_id": row["decision_id"], "judge": row["judge"], "judge_model": row["judge_model"],
        "status": row["status"], "cached": bool(row["cached"]), "input_hash": row["input_hash"],
        "output": row["output"], "error": row["error"], "latency_ms": row["latency_ms"],
        "input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"], "cost_usd": row["cost_usd"],
        "span_id": row["span_id"], "created_at": iso(row["created_ns"]),
    }


def _status_code(code: int | None) -> str | None:
    return None if code is None else OTEL_STATUS_CODES[code]


def span_view(row: dict[str, Any]) -> dict[str, Any]:
    """One span of the read model (`readmodel.TraceModel.spans`: amendments applied); its JSON
    columns may be embedded as text (`orjson.Fragment`), so the view is for encoding with orjson."""
    events = [_event_view(e, "otel") for e in _json(row["events"])] if row["events"] != "[]" else []
    events += [_event_view(e, "store") for e in row["span_events"]]
    langgraph = None
    if row["node_name"] or row["graph_name"]:
        langgraph = {"graph_name": row["graph_name"], "node_name": row["node_name"],
                     "step": row["step"]}
    return {
        "span_id": row["span_id"],
        "trace_id": row["trace_id"],
        "parent_span_id": row["parent_span_id"],
        "parent_remote": bool(row["parent_remote"]),
        "name": row["name"],
        "kind": row["kind"],
        "span_type": row["span_type"],
        "tool_name": row["tool_name"],
        "status": row["status"],
        "status_code": _status_code(row["status_code"]),
        "status_message": row["status_message"],
        "start_time": iso(row["start_ns"]),
        "end_time": iso(row["end_ns"]),
        "duration_ms": _duration_ms(row["start_ns"], row["end_ns"]),
        "time_to_first_token_ms": row["first_token_ms"],
        "model": row["model"],
        "input_text": row["input_text"],
        "output_text": row["output_text"],
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "total_tokens": row["total_tokens"],
        "cost_usd": row["cost_usd"],
        "user_id": row["user_id"],
        "session_id": row["session_id"],
        "environment": row["environment"],
        "langgraph": langgraph,
        "attributes": _embedded(row["attributes"]),
        "resource": _embedded(row["resource"]),
        "scope": _embedded(row["scope"]),
        "links": _embedded(row["links"]),
        "events": events,
        "amendments": [{"time": iso(e["time_ns"]), "patch": amendment.patch_of(e["payload"])}
                       for e in row["amendments"]],
    }


def light_span_view(row: dict[str, Any]) -> dict[str, Any]:
    """A row of `store.spans.light_spans`: what a tree and a waterfall draw, without texts,
    attributes or events (`span_view` has those, one span at a time)."""
    return {
        "span_id": row["span_id"], "parent_span_id": row["parent_span_id"],
        "parent_remote": bool(row["parent_remote"]), "name": row["name"], "span_type": row["span_type"],
        "tool_name": row["tool_name"], "status": row["status"], "status_code": _status_code(row["status_code"]),
        "start_time": iso(row["start_ns"]), "end_time": iso(row["end_ns"]),
        "duration_ms": _duration_ms(row["start_ns"], row["end_ns"]),
        "time_to_first_token_ms": row["first_token_ms"], "model": row["model"],
        "input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"],
        "total_tokens": row["total_tokens"], "cost_usd": row["cost_usd"],
    }


# A page of the light span listing: 1,000 of them are ~250 kB of JSON.
SPANS_PAGE_SIZE, MAX_SPANS_PAGE_SIZE = 500, 1000

# Levels of `children` in one entry of `tree`: a span deeper than that starts an entry of its own
# (`continued_from`), so no answer nests past what JSON encoders and browsers take.
TREE_NESTING = 100


def tree_and_timeline(rows: list[dict[str, Any]], trace_start: int | None
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The span tree and a flat timeline (start order), both built without recursion.

    The tree's entries, each holding its descendants in `children` (start order): the spans
    without a parent; those whose parent is remote (`parent_remote`) or has not arrived
    (`parent_not_received`); one span of each parent cycle (`cycle`), whose parent link is cut;
    and, last, the spans TREE_NESTING levels below an entry's top (`continued_from`: the parent's
    span id). Every node carries its `depth` in the trace, as the timeline does."""
    ids = {r["span_id"] for r in rows}
    children: dict[str, list[dict[str, Any]]] = {}
    tops: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (row, node marks)
    for r in rows:  # already in start order, so children come out in start order
        parent = r["parent_span_id"]
        if parent is None:
            tops.append((r, {}))
        elif parent == r["span_id"]:
            tops.append((r, {"cycle": True}))
        elif parent not in ids:
            tops.append((r, {"parent_remote": True} if r["parent_remote"] else {"parent_not_received": True}))
        else:
            children.setdefault(parent, []).append(r)
    tree: list[dict[str, Any]] = []
    continued: list[dict[str, Any]] = []
    depth: dict[str, int] = {}

    def node(r: dict[str, Any], level: int, marks: dict[str, Any]) -> dict[str, Any]:
        depth[r["span_id"]] = level
        return {"span_id": r["span_id"], "name": r["name"], "span_type": r["span_type"], "tool_name": r["tool_name"],
                "status": r["status"], "duration_ms": _duration_ms(r["start_ns"], r["end_ns"]),
                "depth": level, **marks, "children": []}

    def grow(top: dict[str, Any], marks: dict[str, Any]) -> None:
        entry = node(top, 0, marks)
        tree.append(entry)
        stack = [(top["span_id"], entry, 0)]  # (span id, its node, its level in its entry)
        while stack:
            span_id, parent_node, level = stack.pop()
            kids = []
            for r in children.get(span_id, ()):
                if r["span_id"] in depth:  # the cut link of a cycle
                    continue
                if level + 1 < TREE_NESTING:
                    kid = node(r, parent_node["depth"] + 1, {})
                    parent_node["children"].append(kid)
                    kids.append((r["span_id"], kid, level + 1))
                else:
                    kid = node(r, parent_node["depth"] + 1, {"continued_from": span_id})
                    continued.append(kid)
                    kids.append((r["span_id"], kid, 0))
            stack.extend(reversed(kids))  # depth first, children in start order

    for top, marks in tops:
        grow(top, marks)
    if len(depth) < len(rows):  # what no top reached lies in or below a parent cycle
        by_id = {r["span_id"]: r for r in rows}
        for r in rows:
            if r["span_id"] in depth:
                continue
            seen = set()
            span_id = r["span_id"]
            while span_id not in seen:  # up to a span of the cycle; every step is unplaced
                seen.add(span_id)
                span_id = by_id[span_id]["parent_span_id"]
            grow(by_id[span_id], {"cycle": True})
    # The continued entries come last, so that the tops keep their start order; their depth
    # continues the trace's, but they enter the tree at level 0 of nesting.
    tree.extend(continued)
    base = trace_start if trace_start is not None else (rows[0]["start_ns"] if rows else 0)
    timeline = [{
        "span_id": r["span_id"], "parent_span_id": r["parent_span_id"], "name": r["name"],
        "span_type": r["span_type"], "tool_name": r["tool_name"], "status": r["status"], "depth": depth[r["span_id"]],
        "start_offset_ms": round((r["start_ns"] - base) / 1e6, 3),
        "duration_ms": _duration_ms(r["start_ns"], r["end_ns"]),
    } for r in rows]
    return tree, timeline


# -- Operations ---------------------------------------------------------------------------------------

TRACE_ID = path_id("trace_id", 32)
LIST = Operation(
    "GET", "/api/v1/traces", "List traces, newest first", "traces",
    {"200": json_answer(answers.page(answers.TRACE, total_capped={
        **answers.BOOL, "description": "a common search counts 1,000 matching traces at most: the total is that "
                                       "many or more"}), "A page."), **READ_ERRORS},
    params=(PAGE, PAGE_SIZE,
            query_text("status", "Trace status.", STATUSES),
            query_text("model", "Model name."),
            query_text("environment", "Deployment environment."),
            query_text("user_id", "End user id."),
            query_text("session_id", "Session / conversation id."),
            query_text("name", "Trace name (root span name or graph name)."),
            query_text("search", "Case-insensitive substring in names, input, output, attributes, events."),
            query_text("decision", "Latest decision action."),
            query_bool("has_open_spans", "Traces with running spans or parents not yet received."),
            query_text("eval_name", "Traces with an evaluation of this name."),
            query_bool("passed", "Traces with an evaluation (of eval_name, if given) that passed / failed."),
            query_bool("user_review_passed", "Traces a reviewer marked passed / failed."),
            query_time("start_after", "Traces starting at or after this time."),
            query_time("start_before", "Traces starting before this time.")))
LIST_PARAMS = LIST.query_names
DETAIL = Operation(
    "GET", "/api/v1/traces/{trace_id}", "One trace: spans, tree, timeline, evals, decisions, judge runs", "traces",
    {"200": json_answer(answers.TRACE_DETAIL, "The trace."), **NOT_FOUND, **READ_ERRORS},
    params=(TRACE_ID,), refuse_unknown=False)
SPANS = Operation(
    "GET", "/api/v1/traces/{trace_id}/spans",
    "A page of one trace's spans, light: ids, parent, name, type, status, times, model, tokens, cost (no texts,"
    " attributes or events), in start order", "traces",
    {"200": json_answer(answers.page(answers.LIGHT_SPAN), "A page; total is the trace's span count."),
     **NOT_FOUND, **READ_ERRORS},
    params=(TRACE_ID, PAGE, query_int("page_size", "Spans per page.", SPANS_PAGE_SIZE, 1, MAX_SPANS_PAGE_SIZE)))
SPAN = Operation(
    "GET", "/api/v1/traces/{trace_id}/spans/{span_id}",
    "One span in full, as in the trace's detail (attributes, resource, events, amendments)", "traces",
    {"200": json_answer(answers.SPAN, "The span."), **NOT_FOUND, **READ_ERRORS},
    params=(TRACE_ID, path_id("span_id", 16)), refuse_unknown=False)
OPERATIONS = (LIST, DETAIL, SPANS, SPAN)


class TraceRoutes:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.grace_ns = hub.settings.missing_parent_grace_s * 1_000_000_000

    def _cutoff(self) -> int:
        return cutoff(time.time_ns(), self.grace_ns)

    def routes(self) -> list[Route]:
        return [
            Route(LIST.path, self.list, methods=[LIST.method]),
            Route(DETAIL.path, self.detail, methods=[DETAIL.method]),
            Route(SPANS.path, self.spans, methods=[SPANS.method]),
            Route(SPAN.path, self.span, methods=[SPAN.method]),
        ]

    async def list(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        a = LIST.args(request)
        page, page_size = a["page"], a["page_size"]
        f = queries.TraceFilter(
            status=a["status"], model=a["model"], environment=a["environment"], user_id=a["user_id"],
            session_id=a["session_id"], name=a["name"], search=a["search"], decision=a["decision"],
            has_open_spans=a["has_open_spans"], eval_name=a["eval_name"], eval_passed=a["passed"],
            user_review_passed=a["user_review_passed"], start_after_ns=a["start_after"],
            start_before_ns=a["start_before"],
        )

        def run() -> JSONResponse:  # rendering too: a 200-trace page must not hold the event loop
            with self.hub.reads.connect() as conn:
                rows, total, capped = queries.list_traces(conn, project_id, f, page, page_size, self._cutoff())
            return JSONResponse({**page_body([trace_view(r) for r in rows], page, page_size, total),
                                 "total_capped": capped})

        return await run_in_threadpool(run)

    async def detail(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        trace_id = DETAIL.args(request)["trace_id"]

        def run() -> JSONResponse:
            with self.hub.reads.connect() as conn:
                model = trace_read_model(conn, project_id, trace_id, self._cutoff())
            if model is None:
                raise ProblemError(404, f"trace {trace_id} not found")
            tree, timeline = tree_and_timeline(model.spans, model.trace["start_ns"])
            return JSONResponse({
                "trace": trace_view(model.trace),
                "spans": [span_view(r) for r in model.spans],
                "tree": tree,
                "timeline": timeline,
                "events": [_event_view(e, "store") for e in model.events],
                "evals": [eval_view(e) for e in model.evals],
                "decisions": [decision_view(d) for d in model.decisions],
                "judge_runs": [judge_run_view(j) for j in model.judge_runs],
            })

        return await run_in_threadpool(run)

    async def spans(self, request: Request) -> JSONResponse:
        """A page of the trace's spans, light (`light_span_view`), in start order."""
        project_id = await project_of(request, self.hub)
        a = SPANS.args(request)
        trace_id, page, page_size = a["trace_id"], a["page"], a["page_size"]

        def run() -> JSONResponse:
            with self.hub.reads.connect() as conn:
                trace = queries.get_trace(conn, project_id, trace_id, self._cutoff())
                if trace is None:
                    raise ProblemError(404, f"trace {trace_id} not found")
                rows = span_store.light_spans(conn, project_id, trace_id, page, page_size)
            return JSONResponse(page_body([light_span_view(r) for r in rows], page, page_size, trace["span_count"]))

        return await run_in_threadpool(run)

    async def span(self, request: Request) -> JSONResponse:
        """One span in full, as in the trace's detail."""
        project_id = await project_of(request, self.hub)
        a = SPAN.args(request)
        trace_id, span_id = a["trace_id"], a["span_id"]

        def run() -> JSONResponse:
            with self.hub.reads.connect() as conn:
                row = span_store.one_span(conn, project_id, trace_id, span_id)
            if row is None:
                raise ProblemError(404, f"span {span_id} of trace {trace_id} not found")
            return JSONResponse(span_view(row))

        return await run_in_threadpool(run)
