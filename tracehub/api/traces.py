"""`/api/v1/traces` and `/api/v1/traces/{trace_id}`: the trace list and one trace's detail.

Rows from `tracehub.store.queries` become the API's documented field names here and nowhere else.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from tracehub.api.auth import project_of
from tracehub.api.errors import ProblemError
from tracehub.api.params import (
    bool_param,
    iso,
    normalize_id,
    page_body,
    page_params,
    str_param,
    time_param,
)
from tracehub.api.responses import JSONResponse
from tracehub.hub import Hub
from tracehub.store import queries


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
    span_count = row["span_count"]
    open_count = row["running_span_count"] + row["missing_parent_count"]
    known = span_count + row["missing_parent_count"]
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


AMENDABLE = ("name", "span_type", "status", "status_message", "model", "input_text", "output_text",
             "input_tokens", "output_tokens", "total_tokens", "cost_usd")


def _amend(view: dict[str, Any], amendments: list[dict[str, Any]]) -> None:
    """The merged read view: each AMENDMENT's patch in time order; attributes merge key by key."""
    for event in amendments:
        patch = event["payload"].get("patch") or {}
        if isinstance(patch.get("attributes"), dict):
            view["attributes"] = {**view["attributes"], **patch["attributes"]}
        for key in AMENDABLE:
            if key in patch:
                view[key] = patch[key]
    view["amendments"] = [{"time": iso(e["time_ns"]), "patch": e["payload"].get("patch")}
                          for e in amendments]


def eval_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"trace_id": row["trace_id"], "span_id": row["span_id"], "eval_name": row["eval_name"],
            "eval_model": row["eval_model"], "score": row["score"], "passed": row["passed"],
            "metadata": _json(row["metadata"]), "user_review_passed": row["user_review_passed"],
            "created_at": iso(row["created_ns"])}


def span_view(row: dict[str, Any], extra_events: list[dict[str, Any]]) -> dict[str, Any]:
    """One span of a trace's detail; its JSON columns may be embedded as text (`orjson.Fragment`),
    so the view is for encoding with orjson."""
    events = [_event_view(e, "otel") for e in _json(row["events"])] if row["events"] != "[]" else []
    events += [_event_view(e, "store") for e in extra_events]
    amendments = [e for e in extra_events if e["event_type"] == "AMENDMENT"]
    merges_attributes = any(isinstance((e["payload"].get("patch") or {}).get("attributes"), dict)
                            for e in amendments)
    langgraph = None
    if row["node_name"] or row["graph_name"]:
        langgraph = {"graph_name": row["graph_name"], "node_name": row["node_name"],
                     "step": row["step"]}
    view = {
        "span_id": row["span_id"],
        "trace_id": row["trace_id"],
        "parent_span_id": row["parent_span_id"],
        "name": row["name"],
        "kind": row["kind"],
        "span_type": row["span_type"],
        "status": row["status"],
        "status_message": row["status_message"],
        "start_time": iso(row["start_ns"]),
        "end_time": iso(row["end_ns"]),
        "duration_ms": _duration_ms(row["start_ns"], row["end_ns"]),
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
        "attributes": (_json if merges_attributes else _embedded)(row["attributes"]),
        "resource": _embedded(row["resource"]),
        "scope": _embedded(row["scope"]),
        "links": _embedded(row["links"]),
        "events": events,
    }
    _amend(view, amendments)
    return view


def tree_and_timeline(rows: list[dict[str, Any]], trace_start: int | None
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The span tree (spans whose parent has not arrived sit at the top) and a flat timeline."""
    nodes = {r["span_id"]: {"span_id": r["span_id"], "name": r["name"], "span_type": r["span_type"],
                            "status": r["status"],
                            "duration_ms": _duration_ms(r["start_ns"], r["end_ns"]), "children": []}
             for r in rows}
    roots: list[dict[str, Any]] = []
    for r in rows:  # already in start order, so children come out in start order
        parent = nodes.get(r["parent_span_id"]) if r["parent_span_id"] else None
        (parent["children"] if parent else roots).append(nodes[r["span_id"]])
    depth: dict[str, int] = {}

    def walk(node: dict[str, Any], level: int) -> None:
        stack = [(node, level)]
        while stack:  # iterative: a deep agent loop must not hit the recursion limit
            current, lvl = stack.pop()
            depth[current["span_id"]] = lvl
            stack.extend((child, lvl + 1) for child in current["children"])

    for root in roots:
        walk(root, 0)
    base = trace_start if trace_start is not None else (rows[0]["start_ns"] if rows else 0)
    timeline = [{
        "span_id": r["span_id"], "parent_span_id": r["parent_span_id"], "name": r["name"],
        "span_type": r["span_type"], "status": r["status"], "depth": depth.get(r["span_id"], 0),
        "start_offset_ms": round((r["start_ns"] - base) / 1e6, 3),
        "duration_ms": _duration_ms(r["start_ns"], r["end_ns"]),
    } for r in rows]
    return roots, timeline


class TraceRoutes:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/traces", self.list, methods=["GET"]),
            Route("/api/v1/traces/{trace_id}", self.detail, methods=["GET"]),
        ]

    async def list(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        q = request.query_params
        page, page_size = page_params(q)
        f = queries.TraceFilter(
            status=str_param(q, "status"), model=str_param(q, "model"),
            environment=str_param(q, "environment"), user_id=str_param(q, "user_id"),
            session_id=str_param(q, "session_id"), name=str_param(q, "name"),
            search=str_param(q, "search"), decision=str_param(q, "decision"),
            has_open_spans=bool_param(q, "has_open_spans"), eval_name=str_param(q, "eval_name"),
            eval_passed=bool_param(q, "passed"), user_review_passed=bool_param(q, "user_review_passed"),
            start_after_ns=time_param(q, "start_after"), start_before_ns=time_param(q, "start_before"),
        )

        def run() -> JSONResponse:  # rendering too: a 200-trace page must not hold the event loop
            with self.hub.reads.connect() as conn:
                rows, total = queries.list_traces(conn, project_id, f, page, page_size)
            return JSONResponse(page_body([trace_view(r) for r in rows], page, page_size, total))

        return await run_in_threadpool(run)

    async def detail(self, request: Request) -> JSONResponse:
        project_id = await project_of(request, self.hub)
        trace_id = normalize_id(request.path_params["trace_id"], 32, "path.trace_id")

        def run() -> JSONResponse:
            with self.hub.reads.connect() as conn:
                trace = queries.get_trace(conn, project_id, trace_id)
                if trace is None:
                    raise ProblemError(404, f"trace {trace_id} not found")
                rows = queries.trace_spans(conn, project_id, trace_id)
                events = queries.trace_events(conn, project_id, trace_id)
                evals = queries.trace_evals(conn, project_id, trace_id)
            by_span: dict[str | None, list[dict[str, Any]]] = {}
            for event in events:
                by_span.setdefault(event["span_id"], []).append(event)
            tree, timeline = tree_and_timeline(rows, trace["start_ns"])
            return JSONResponse({
                "trace": trace_view(trace),
                "spans": [span_view(r, by_span.get(r["span_id"], [])) for r in rows],
                "tree": tree,
                "timeline": timeline,
                "events": [_event_view(e, "store") for e in by_span.get(None, [])],
                "evals": [eval_view(e) for e in evals],
                "decisions": [],
                "judge_runs": [],
            })

        return await run_in_threadpool(run)
