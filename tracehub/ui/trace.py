"""One trace (`/traces/{trace_id}`) and one of its spans (`/traces/{trace_id}/spans/{span_id}`).

The page reads the trace's spans light (`store.spans.light_spans`: no texts, attributes or
events), lays them out as the API's `tree_and_timeline` does (cycles cut, remote and missing
parents, the nesting cut), flattens the tree in display order and embeds it as a JSON data island
(`layout`); trace.js draws only the rows in view, so a trace of any size costs the browser the
same few dozen rows. Repeated siblings (same name and type, GROUP_MIN or more under one parent)
become one group row; the critical path (from the root, each time the child that ends last) is
marked. A span's full record comes on its own, as a panel (`_span_panel.html`), when a row is
opened or the URL names it (`?span=`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tracehub.api.errors import ProblemError
from tracehub.api.params import normalize_id
from tracehub.api.traces import decision_view, eval_view, judge_run_view, span_view, trace_view, tree_and_timeline
from tracehub.store import decisions, queries
from tracehub.store import spans as span_store
from tracehub.ui.render import N_

if TYPE_CHECKING:
    from tracehub.ui.app import Ui

GROUP_MIN = 5  # siblings of one name and type shown as a group row from this many on
NAME_CHARS = 300  # of a span's name in the data island; the panel shows it whole

# Flags of a row in the data island (trace.js reads the same bits).
ERROR, OPEN, JUDGE, CRITICAL, REMOTE, MISSING, CYCLE, CONTINUED, GROUP = (1 << i for i in range(9))
MARKS = {"parent_remote": REMOTE, "parent_not_received": MISSING, "cycle": CYCLE, "continued_from": CONTINUED}


def _flags(r: dict[str, Any]) -> int:
    return ((ERROR if r["status"] == "error" else 0) | (OPEN if r["end_ns"] is None else 0)
            | (JUDGE if r["span_type"] == "judge" else 0))


def _critical(tree: list[dict[str, Any]], by_id: dict[str, dict[str, Any]], root_id: str | None) -> set[str]:
    """The spans that decide when the trace ends: from the root, each time the child that ends last
    (an open span ends last of all; on a tie, the one that starts later)."""
    if not tree:
        return set()

    def ends(node: dict[str, Any]) -> tuple[float, int]:
        r = by_id[node["span_id"]]
        return (float("inf") if r["end_ns"] is None else r["end_ns"], r["start_ns"])

    tops = [n for n in tree if "continued_from" not in n]
    node = next((n for n in tops if n["span_id"] == root_id), None) or max(tops or tree, key=ends)
    path = {node["span_id"]}
    while node["children"]:
        node = max(node["children"], key=ends)
        path.add(node["span_id"])
    return path


def layout(rows: list[dict[str, Any]], trace: dict[str, Any]) -> dict[str, Any]:
    """The data island of trace.js: the tree flattened in display order, one list per row:
    [span id ("" for a group), name, span type, status, level, start (ms from the trace's
    start), duration (ms; None while open), total tokens, flags, end (index after its subtree),
    count (a group's members), parent (index, -1 for a top)]; and the scale."""
    by_id = {r["span_id"]: r for r in rows}
    base = min([trace["start_ns"], *(r["start_ns"] for r in rows)])
    ends = [e for e in (trace["end_ns"], *(r["end_ns"] for r in rows), *(r["start_ns"] for r in rows))
            if e is not None]
    total_ms = max(max(ends, default=base) - base, 1) / 1e6
    tree, _ = tree_and_timeline(rows, base)
    critical = _critical(tree, by_id, trace["root_span_id"])
    out: list[list[Any]] = []

    def emit(node: dict[str, Any], level: int, parent: int) -> int:
        r = by_id[node["span_id"]]
        flags = _flags(r) | (CRITICAL if r["span_id"] in critical else 0)
        for mark, bit in MARKS.items():
            if node.get(mark):
                flags |= bit
        duration = None if r["end_ns"] is None else max(0, r["end_ns"] - r["start_ns"]) / 1e6
        out.append([r["span_id"], r["name"][:NAME_CHARS], r["span_type"], r["status"], level,
                    (r["start_ns"] - base) / 1e6, duration, r["total_tokens"] or 0, flags, 0, 0, parent])
        return len(out) - 1

    # Depth first without recursion: (node, level, parent index) entries, or an index whose
    # subtree has been emitted, to close.
    stack: list[Any] = [(n, 0, -1) for n in reversed(tree)]
    while stack:
        item = stack.pop()
        if isinstance(item, int):
            out[item][9] = len(out)
            continue
        if item[0] == "group":
            _, members, level, parent = item
            first, last = by_id[members[0]["span_id"]], [by_id[m["span_id"]] for m in members]
            end = max((float("inf") if r["end_ns"] is None else r["end_ns"]) for r in last)
            flags = GROUP
            for m in last:
                flags |= _flags(m) | (CRITICAL if m["span_id"] in critical else 0)
            out.append(["", first["name"][:NAME_CHARS], first["span_type"], "error" if flags & ERROR else
                        ("running" if flags & OPEN else "success"), level, (first["start_ns"] - base) / 1e6,
                        None if end == float("inf") else (end - first["start_ns"]) / 1e6,
                        sum(m["total_tokens"] or 0 for m in last), flags, 0, len(members), parent])
            at = len(out) - 1
            stack.append(at)
            stack.extend((m, level + 1, at) for m in reversed(members))
            continue
        node, level, parent = item
        at = emit(node, level, parent)
        stack.append(at)
        kids = node["children"]
        if not kids:
            continue
        out[at][10] = len(kids)
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for kid in kids:
            groups.setdefault((kid["name"], kid["span_type"]), []).append(kid)
        entries: list[Any] = []
        for kid in kids:
            members = groups[(kid["name"], kid["span_type"])]
            if len(members) < GROUP_MIN:
                entries.append((kid, level + 1, at))
            elif members[0] is kid:  # the group stands where its first member started
                entries.append(("group", members, level + 1, at))
        stack.extend(reversed(entries))
    return {"total_ms": total_ms, "rows": out}


def _json(value: Any) -> Any:
    # Not orjson: it reads integers beyond 64 bits as floats.
    return json.loads(value) if isinstance(value, str) else value


def _ticks(total_ms: float) -> list[tuple[float, float]]:
    """The time axis: (percent, ms) at fifths of the trace."""
    return [(i * 20.0, total_ms * i / 5) for i in range(6)]


class Pages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[Route]:
        return [Route("/traces/{trace_id}", self.index, methods=["GET"]),
                Route("/traces/{trace_id}/spans/{span_id}", self.span, methods=["GET"])]

    def _ids(self, request: Request, span: str | None) -> tuple[str, str | None]:
        try:
            trace_id = normalize_id(request.path_params["trace_id"], 32, "trace_id")
            span_id = normalize_id(span, 16, "span_id") if span else None
        except ProblemError as exc:
            raise HTTPException(400, str(exc.detail)) from exc
        return trace_id, span_id

    def _span_context(self, conn: Any, project_id: int, trace_id: str, span_id: str) -> dict[str, Any] | None:
        row = span_store.one_span(conn, project_id, trace_id, span_id)
        if row is None:
            return None
        try:
            from tracehub.ui import messages
            chat = messages.chat(row)
        except ImportError:
            chat = None
        view = span_view(row)
        plain = {name: _json(row[name]) for name in ("attributes", "resource", "scope", "links")}
        events = [e for e in view["events"] if e["event_type"] != "AMENDMENT"]
        return {"span": {**view, **plain, "events": events}, "chat": chat, "trace_id": trace_id}

    async def index(self, request: Request) -> Response:
        viewer = await self.ui.viewer(request)
        trace_id, span_id = self._ids(request, request.query_params.get("span"))

        def run() -> Response:
            with self.ui.hub.reads.connect() as conn:
                trace = queries.get_trace(conn, viewer.project_id, trace_id, self.ui.cutoff())
                if trace is None:
                    raise HTTPException(404, self.ui.gettext(request, N_("No such trace in this project.")))
                rows = span_store.light_spans(conn, viewer.project_id, trace_id)
                runs: list[Any] = []
                if any(r["node_name"] for r in rows):
                    full = {r["span_id"]: r for r in span_store.graph_spans(conn, viewer.project_id, trace_id)}
                    try:
                        from tracehub.ui import graph
                        runs = graph.langgraph_runs([full.get(r["span_id"], r) for r in rows])
                    except ImportError:
                        runs = []
                evals = queries.trace_evals(conn, viewer.project_id, trace_id)
                decision_rows = decisions.trace_decision_rows(conn, viewer.project_id, trace_id)
                judge_runs = decisions.trace_judge_runs(conn, viewer.project_id, trace_id)
                opened = self._span_context(conn, viewer.project_id, trace_id, span_id) if span_id else None
            island = layout(rows, trace)
            rows_flags = [row[8] for row in island["rows"]]
            return self.ui.page(request, viewer, "trace.html", {
                "trace": trace_view(trace),
                "island": island,
                "ticks": _ticks(island["total_ms"]),
                "counts": {"errors": sum(1 for f in rows_flags if f & ERROR and not f & GROUP),
                           "judges": sum(1 for f in rows_flags if f & JUDGE and not f & GROUP),
                           "open": sum(1 for f in rows_flags if f & OPEN and not f & GROUP)},
                "runs": runs,
                "evals": [eval_view(e) for e in evals],
                "decisions": [decision_view(d) for d in decision_rows],
                "judge_runs": [judge_run_view(j) for j in judge_runs],
                "opened": opened,
                "selected": span_id if opened else "",
            })

        return await run_in_threadpool(run)

    async def span(self, request: Request) -> Response:
        """The span panel: a fragment for htmx, else the trace's page with the span open."""
        viewer = await self.ui.viewer(request)
        trace_id, span_id = self._ids(request, request.path_params["span_id"])
        assert span_id is not None
        if not request.headers.get("hx-request"):
            return RedirectResponse(f"/traces/{trace_id}?span={span_id}", 303)

        def run() -> Response:
            with self.ui.hub.reads.connect() as conn:
                context = self._span_context(conn, viewer.project_id, trace_id, span_id)
            if context is None:
                raise HTTPException(404, self.ui.gettext(request, N_("No such span in this trace.")))
            return self.ui.page(request, viewer, "_span_panel.html", context)

        return await run_in_threadpool(run)
