"""One trace (`/traces/{trace_id}`) and one of its spans (`/traces/{trace_id}/spans/{span_id}`).

The page reads the trace's spans light (`store.spans.light_spans`: no texts, attributes or
events), lays them out as the API's `tree_and_timeline` does (cycles cut, remote and missing
parents, the nesting cut), flattens the tree in display order and embeds it as a JSON data island
(`layout`); trace.js draws only the rows in view, so a trace of any size costs the browser the
same few dozen rows. Repeated siblings (same name, type and tool, GROUP_MIN or more under one parent)
become one group row; the critical path (from the root, each time the child that ends last) is
marked. A span's full record comes on its own, as a panel (`_span_panel.html`), when a row is
opened or the URL names it (`?span=`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson
from markupsafe import Markup

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tracehub.api.params import normalize_id
from tracehub.api.traces import TREE_NESTING, decision_view, eval_view, judge_run_view, span_view, trace_view
from tracehub.store import decisions, queries
from tracehub.store import spans as span_store
from tracehub.ui import graph, messages
from tracehub.ui.render import N_

if TYPE_CHECKING:
    from tracehub.ui.app import Ui

GROUP_MIN = 5  # siblings of one name and type shown as a group row from this many on
NAME_CHARS = 300  # of a span's name in the data island; the panel shows it whole
# LangGraph runs of up to this many node spans load as the panel scrolls into view; longer ones on
# request, as their states would take the server and the browser from the tree.
GRAPH_AUTO_NODES = 300

# Flags of a row in the data island (trace.js reads the same bits).
ERROR, OPEN, JUDGE, CRITICAL, REMOTE, MISSING, CYCLE, CONTINUED, GROUP = (1 << i for i in range(9))


def _critical(rows: list[dict[str, Any]], kids: dict[int, list[int]], tops: list[int], root: int | None) -> set[int]:
    """The spans that decide when the trace ends: from the root, each time the child that ends last
    (an open span ends last of all; on a tie, the one that starts later)."""
    if not tops:
        return set()

    def ends(i: int) -> tuple[float, int]:
        r = rows[i]
        return (float("inf") if r["end_ns"] is None else r["end_ns"], r["start_ns"])

    at = root if root is not None and root in tops else max(tops, key=ends)
    path = {at}
    while kids.get(at):
        at = max(kids[at], key=ends)
        if at in path:  # a parent cycle
            break
        path.add(at)
    return path


def label(name: str, tool_name: str | None) -> str:
    """A span's name as the tree shows it: a tool span's followed by its tool where the name does
    not say it (the Vercel AI SDK's `ai.toolCall · getWeather`; not OpenInference's `get_weather`
    nor Traceloop's `execute_tool get_weather`)."""
    return name if tool_name is None or tool_name in name else f"{name} · {tool_name}"


def layout(rows: list[dict[str, Any]], trace: dict[str, Any]) -> dict[str, Any]:
    """The data island of trace.js: the tree flattened in display order, one list per row:
    [span id ("" for a group), name (`label`), span type, status, level, start (ms from the trace's
    start), duration (ms; None while open), total tokens, flags, end (index after its subtree),
    count (a group's members, a span's children), parent (index, -1 for a top)]; and the scale.

    The tree is the API's (`api.traces.tree_and_timeline`): the same tops (no parent, a remote or
    missing parent, one span of each parent cycle) and depths; a span TREE_NESTING levels below its
    top, which the API's answer moves to an entry of its own, stays in place here, flagged
    CONTINUED. Built in one pass, without the API's node objects: this is most of a 10,000-span
    page's server time."""
    base = min([trace["start_ns"], *(r["start_ns"] for r in rows)])
    last = max([e for e in (trace["end_ns"], *(r["end_ns"] for r in rows)) if e is not None]
               + [r["start_ns"] for r in rows] + [base])
    index = {r["span_id"]: i for i, r in enumerate(rows)}
    kids: dict[int, list[int]] = {}
    tops: list[tuple[int, int]] = []
    for i, r in enumerate(rows):  # start order, so children come out in start order
        parent = r["parent_span_id"]
        if parent is None:
            tops.append((i, 0))
        elif parent == r["span_id"]:
            tops.append((i, CYCLE))
        elif (p := index.get(parent)) is None:
            tops.append((i, REMOTE if r["parent_remote"] else MISSING))
        else:
            kids.setdefault(p, []).append(i)
    root = index.get(trace["root_span_id"]) if trace["root_span_id"] else None
    critical = _critical(rows, kids, [i for i, _ in tops], root)
    placed = bytearray(len(rows))
    out: list[list[Any]] = []

    def span_row(i: int, level: int, depth: int, parent: int, marks: int) -> list[Any]:
        r = rows[i]
        end = r["end_ns"]
        flags = (marks | (ERROR if r["status"] == "error" else 0) | (OPEN if end is None else 0)
                 | (JUDGE if r["span_type"] == "judge" else 0) | (CRITICAL if i in critical else 0)
                 | (CONTINUED if depth and depth % TREE_NESTING == 0 else 0))
        return [r["span_id"], label(r["name"], r["tool_name"])[:NAME_CHARS], r["span_type"], r["status"], level,
                round((r["start_ns"] - base) / 1e6, 3),
                None if end is None else round(max(0, end - r["start_ns"]) / 1e6, 3),
                r["total_tokens"] or 0, flags, 0, 0, parent]

    def grow(top: int, marks: int) -> None:
        # Depth first without recursion. Entries: ("span", row, level, depth, parent out index,
        # marks), ("group", rows, level, depth, parent), or an out index whose subtree is complete.
        placed[top] = 1
        stack: list[Any] = [("span", top, 0, 0, -1, marks)]
        while stack:
            item = stack.pop()
            if isinstance(item, int):
                out[item][9] = len(out)
                continue
            if item[0] == "group":
                _, members, level, depth, parent = item
                member_rows = [span_row(m, level + 1, depth, -1, 0) for m in members]
                flags = GROUP
                for m in member_rows:
                    flags |= m[8] & (ERROR | OPEN | JUDGE | CRITICAL)
                ends = [m[5] + m[6] if m[6] is not None else None for m in member_rows]
                start = member_rows[0][5]
                out.append(["", member_rows[0][1], member_rows[0][2],
                            "error" if flags & ERROR else "running" if flags & OPEN else "success", level, start,
                            None if None in ends else max(e for e in ends if e is not None) - start,
                            sum(m[7] for m in member_rows), flags, 0, len(members), parent])
                at = len(out) - 1
                stack.append(at)
                stack.extend(("span", m, level + 1, depth, at, 0) for m in reversed(members))
                continue
            _, i, level, depth, parent, marks = item
            out.append(span_row(i, level, depth, parent, marks))
            at = len(out) - 1
            stack.append(at)
            children = [k for k in kids.get(i, ()) if not placed[k]]  # a placed one: a cycle's cut link
            if not children:
                continue
            out[at][10] = len(children)
            for k in children:
                placed[k] = 1
            entries: list[Any] = []
            if len(children) < GROUP_MIN:
                entries = [("span", k, level + 1, depth + 1, at, 0) for k in children]
            else:
                # Tool calls repeat a name and type whichever tool ran: one group a tool.
                groups: dict[tuple[str, str, str | None], list[int]] = {}
                keys = {k: (rows[k]["name"], rows[k]["span_type"], rows[k]["tool_name"]) for k in children}
                for k in children:
                    groups.setdefault(keys[k], []).append(k)
                for k in children:
                    members = groups[keys[k]]
                    if len(members) < GROUP_MIN:
                        entries.append(("span", k, level + 1, depth + 1, at, 0))
                    elif members[0] == k:  # the group stands where its first member started
                        entries.append(("group", members, level + 1, depth + 1, at))
            stack.extend(reversed(entries))

    for top, marks in tops:
        grow(top, marks)
    for i in range(len(rows)):  # what no top reached lies in or below a parent cycle
        if placed[i]:
            continue
        seen = set()
        at = i
        while at not in seen:  # up to a span of the cycle; every step is unplaced
            seen.add(at)
            at = index[rows[at]["parent_span_id"]]
        grow(at, CYCLE)
    return {"total_ms": max(last - base, 1) / 1e6, "rows": out}


def _json(value: Any) -> Any:
    # Not orjson: it reads integers beyond 64 bits as floats.
    return json.loads(value) if isinstance(value, str) else value


def script_json(value: Any) -> Markup:
    """JSON for a `<script type="application/json">` data island, escaped as Jinja's `|tojson`
    escapes (no `<`, `>`, `&` or `'` left, so no text can end the element); encoded by orjson,
    as the standard encoder took ~100 ms of a 10,000-span page."""
    text = orjson.dumps(value).decode()
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
                  .replace("'", "\\u0027"))


def _ticks(total_ms: float) -> list[tuple[float, float]]:
    """The time axis: (percent, ms) at fifths of the trace."""
    return [(i * 20.0, total_ms * i / 5) for i in range(6)]


class Pages:
    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[Route]:
        return [Route("/traces/{trace_id}", self.index, methods=["GET"]),
                Route("/traces/{trace_id}/spans/{span_id}", self.span, methods=["GET"]),
                Route("/traces/{trace_id}/langgraph", self.langgraph, methods=["GET"])]

    def _ids(self, request: Request, span: str | None) -> tuple[str, str | None]:
        trace_id = normalize_id(request.path_params["trace_id"], 32, "trace_id")
        return trace_id, normalize_id(span, 16, "span_id") if span else None

    def _span_context(self, conn: Any, project_id: int, trace_id: str, span_id: str) -> dict[str, Any] | None:
        row = span_store.one_span(conn, project_id, trace_id, span_id)
        if row is None:
            return None
        chat = messages.chat(row)
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
                evals = queries.trace_evals(conn, viewer.project_id, trace_id)
                decision_rows = decisions.trace_decision_rows(conn, viewer.project_id, trace_id)
                judge_runs = decisions.trace_judge_runs(conn, viewer.project_id, trace_id)
                opened = self._span_context(conn, viewer.project_id, trace_id, span_id) if span_id else None
            island = layout(rows, trace)
            rows_flags = [row[8] for row in island["rows"]]
            return self.ui.page(request, viewer, "trace.html", {
                "trace": trace_view(trace),
                "island": script_json(island),
                "ticks": _ticks(island["total_ms"]),
                "counts": {"errors": sum(1 for f in rows_flags if f & ERROR and not f & GROUP),
                           "judges": sum(1 for f in rows_flags if f & JUDGE and not f & GROUP),
                           "open": sum(1 for f in rows_flags if f & OPEN and not f & GROUP)},
                "graph_nodes": sum(1 for r in rows if r["node_name"]),
                "graph_auto": GRAPH_AUTO_NODES,
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

    async def langgraph(self, request: Request) -> Response:
        """The LangGraph panel, a fragment the page loads when it comes into view: a long agent run's
        node states are the heaviest part of a trace and no part of its tree."""
        viewer = await self.ui.viewer(request)
        trace_id, _ = self._ids(request, None)

        def run() -> Response:
            with self.ui.hub.reads.connect() as conn:
                rows = span_store.light_spans(conn, viewer.project_id, trace_id)
                full = {r["span_id"]: r for r in span_store.graph_spans(conn, viewer.project_id, trace_id)}
            return self.ui.page(request, viewer, "_langgraph.html",
                                {"runs": graph.langgraph_runs([full.get(r["span_id"], r) for r in rows])})

        return await run_in_threadpool(run)
