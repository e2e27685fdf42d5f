"""LangGraph runs of one trace, for the trace page's graph panel.

`langgraph_runs(spans)` -> the trace's outermost `GraphRun`s, each with its node executions in
order (step, then start) and an SVG of the path taken; a subgraph run hangs under the node that
ran it (`Node.subgraphs`), not flattened into its parent.

Which spans are what (over read-model rows, whatever instrumentation sent them; see
collector/semconv.py for how graph_name / node_name / step are read):
- a node execution: `node_name` set and `span_type == "node"` (or its name is the node's name:
  vendors repeat the node name on every span inside a node, so only the node's own span counts);
- a run: the nearest ancestor of a node that is not a node and has `graph_name` (our
  instrumentation's and the JSON API's run span, OpenInference's graph root, Traceloop's
  `<graph>.workflow`). When another node comes first on the way up (OpenInference names no graph
  on a subgraph's span; the JSON API nests nodes under nodes), the subgraph's run is the span just
  below that node, named after it; but a node that started after its parent node ended is the
  next step of the parent's run (the JSON API's `parent_node_id` names where a node came from);
- runs without nodes are left out (Traceloop puts the workflow name on every span).

The SVG: each distinct node a box, in order of first execution, laid out in layers (nodes first run
in the same step side by side); edges follow the transitions actually taken, step group to next
step group, an edge to an earlier layer drawn as a back edge on the right; error nodes marked; a
node that ran a subgraph is a frame with the subgraph's drawing inside. Every label goes through
markupsafe.escape; styling is classes from langgraph.css, no style attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape


@dataclass
class Node:
    span_id: str
    name: str
    step: int | None
    status: str
    start_ns: int
    duration_ms: float | None
    input_text: str | None
    output_text: str | None
    status_message: str | None = None
    subgraphs: list[GraphRun] = field(default_factory=list)


@dataclass
class GraphRun:
    graph_name: str
    span_id: str
    nodes: list[Node] = field(default_factory=list)
    svg: Markup = field(default_factory=Markup)
    status: str = "success"
    duration_ms: float | None = None


def langgraph_runs(spans: list[dict[str, Any]]) -> list[GraphRun]:
    """The trace's outermost graph runs (subgraphs hang under their nodes); [] when none."""
    try:
        runs = _runs(spans)
    except Exception:  # noqa: BLE001 - odd rows must never break the trace page
        return []
    for run in runs:
        _draw_all(run)
    return runs


def _is_node(span: dict[str, Any]) -> bool:
    node = span.get("node_name")
    return bool(node) and (span.get("span_type") == "node" or span.get("name") == node)


def _follows(node: dict[str, Any], parent: dict[str, Any]) -> bool:
    """A node started once its parent node had ended: the JSON API's `parent_node_id` names the
    node a run came from (an edge of the graph), not one it ran inside."""
    start, end = node.get("start_ns"), parent.get("end_ns")
    return isinstance(start, int) and isinstance(end, int) and start >= end


def _runs(spans: list[dict[str, Any]]) -> list[GraphRun]:
    by_id = {s["span_id"]: s for s in spans if isinstance(s, dict) and s.get("span_id")}
    runs: dict[str, GraphRun] = {}
    parent_node: dict[str, str | None] = {}  # run span id -> node span id that ran it

    def nearest(span_id: str) -> tuple[str, str, str | None]:
        """(run key, the span that names the run, the node above the run) of a node span."""
        below = span_id
        current = by_id[span_id].get("parent_span_id")
        seen = {span_id}
        while current and current in by_id and current not in seen:
            seen.add(current)
            span = by_id[current]
            if _is_node(span):
                if below == span_id and _follows(by_id[below], span):  # a step after it, in its run
                    below = span_id = current
                    current = span.get("parent_span_id")
                    continue
                if below == span_id:  # nodes right under a node: that node's subgraph
                    return current + ":sub", current, current
                return below, below, current  # a subgraph whose span names no graph
            if span.get("graph_name"):
                return current, current, node_above(current)
            below = current
            current = span.get("parent_span_id")
        if below == span_id:  # no parent at all: a run of its own
            return span_id + ":run", span_id, None
        return below, below, None

    def node_above(span_id: str) -> str | None:
        current = by_id[span_id].get("parent_span_id")
        seen = {span_id}
        while current and current in by_id and current not in seen:
            seen.add(current)
            if _is_node(by_id[current]):
                return str(current)
            current = by_id[current].get("parent_span_id")
        return None

    nodes: dict[str, Node] = {}
    for span in by_id.values():
        if not _is_node(span):
            continue
        key, named_by, above = nearest(span["span_id"])
        if key not in runs:
            run_span = by_id[named_by]
            if _is_node(run_span):
                name = run_span.get("graph_name") if named_by == span["span_id"] else run_span["node_name"]
                name = name or run_span["node_name"]
                status, duration = "success", None
            else:
                name = run_span.get("graph_name") or run_span.get("name")
                status, duration = str(run_span.get("status") or "success"), _duration(run_span)
            runs[key] = GraphRun(str(name or "graph"), str(named_by), status=status, duration_ms=duration)
            parent_node[key] = above
        node = Node(str(span["span_id"]), str(span["node_name"]), _step(span.get("step")),
                    str(span.get("status") or "success"), _int(span.get("start_ns")), _duration(span),
                    span.get("input_text"), span.get("output_text"), span.get("status_message"))
        nodes[node.span_id] = node
        runs[key].nodes.append(node)
    top: list[GraphRun] = []
    for run_id, run in runs.items():
        run.nodes.sort(key=_order_key(run.nodes))
        if any(n.status == "error" for n in run.nodes):
            run.status = "error"
        above = parent_node.get(run_id)
        if above is not None and above in nodes:
            nodes[above].subgraphs.append(run)
        else:
            top.append(run)
    for node in nodes.values():
        node.subgraphs.sort(key=lambda r: min((n.start_ns for n in r.nodes), default=0))
    top.sort(key=lambda r: min((n.start_ns for n in r.nodes), default=0))
    return top


def _order_key(nodes: list[Node]) -> Any:
    if all(n.step is not None for n in nodes):
        return lambda n: (n.step, n.start_ns)
    return lambda n: n.start_ns


def _step(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _duration(span: dict[str, Any]) -> float | None:
    start, end = span.get("start_ns"), span.get("end_ns")
    if not isinstance(start, int) or not isinstance(end, int):
        return None
    return max(0, end - start) / 1e6


# ---------------------------------------------------------------- SVG

BOX_W, BOX_H = 150, 40
GAP_X, GAP_Y = 24, 36
PAD = 12          # inside a subgraph frame
HEAD = 22         # a frame's title row
BACK_LANE = 28    # room on the right for back edges
LABEL_CHARS = 20


@dataclass
class _Box:
    """One distinct node of a run's drawing (all its executions)."""

    name: str
    layer: int
    executions: list[Node]
    x: float = 0
    y: float = 0
    w: float = BOX_W
    h: float = BOX_H
    inner: list[tuple[GraphRun, float, float, float, list[Markup]]] = field(default_factory=list)


def _draw_all(run: GraphRun) -> None:
    for node in run.nodes:
        for sub in node.subgraphs:
            _draw_all(sub)
    width, height, body = _layout(run, run.span_id)
    label = f"{run.graph_name}: " + " → ".join(n.name for n in run.nodes)
    run.svg = Markup(
        '<svg class="lg-svg" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{label}" '
        'width="{w}" height="{h}" viewBox="0 0 {w} {h}"><title>{title}</title>{defs}{body}</svg>'
    ).format(label=escape(label), title=escape(label), w=_n(width), h=_n(height), defs=_defs(run.span_id),
             body=Markup("").join(body))


def _defs(uid: str) -> Markup:
    return Markup(
        '<defs><marker id="lg-arrow-{uid}" class="lg-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/>'
        '</marker></defs>').format(uid=uid)


def _layout(run: GraphRun, uid: str) -> tuple[float, float, list[Markup]]:
    """A run drawn from (0, 0): (width, height, elements)."""
    groups = _groups(run.nodes)
    boxes: dict[str, _Box] = {}
    for layer_no, group in enumerate(groups):
        for node in group:
            box = boxes.get(node.name)
            if box is None:
                box = boxes[node.name] = _Box(node.name, layer_no, [])
            box.executions.append(node)
    layers: dict[int, list[_Box]] = {}
    for box in boxes.values():
        layers.setdefault(box.layer, []).append(box)
    # Box sizes: a node that ran subgraphs frames their drawings.
    for box in boxes.values():
        subs = [s for n in box.executions for s in n.subgraphs]
        if not subs:
            continue
        inner_y: float = HEAD
        inner_w: float = BOX_W
        for sub in subs:
            sw, sh, drawn = _layout(sub, uid)
            box.inner.append((sub, PAD, inner_y, sw, drawn))
            inner_y += sh + PAD
            inner_w = max(inner_w, sw + 2 * PAD)
        box.w, box.h = inner_w, inner_y
    y: float = GAP_Y / 2
    total_w = 0.0
    for layer_no in sorted(layers):
        row = layers[layer_no]
        x: float = PAD
        for box in row:
            box.x, box.y = x, y
            x += box.w + GAP_X
        total_w = max(total_w, x - GAP_X + PAD)
        y += max(b.h for b in row) + GAP_Y
    height = y - GAP_Y / 2
    width = total_w + BACK_LANE
    elements: list[Markup] = []
    edges = _edges(groups)
    lane = 0
    for (src, dst), count in edges.items():
        a, b = boxes[src], boxes[dst]
        between = [x for x in boxes.values() if b.layer <= x.layer <= a.layer]
        right = max((x.x + x.w for x in between), default=a.x + a.w)
        elements.append(_edge(a, b, count, uid, right, lane))
        if b.layer <= a.layer:
            lane += 1
    for box in boxes.values():
        elements.append(_box(box, uid))
    return width + lane * 6, height, elements


def _groups(nodes: list[Node]) -> list[list[Node]]:
    """Executions grouped by step (each step-less execution its own group), in order."""
    groups: list[list[Node]] = []
    for node in nodes:
        if groups and node.step is not None and groups[-1][0].step == node.step:
            groups[-1].append(node)
        else:
            groups.append([node])
    return groups


def _edges(groups: list[list[Node]]) -> dict[tuple[str, str], int]:
    edges: dict[tuple[str, str], int] = {}
    for before, after in zip(groups, groups[1:]):
        for a in dict.fromkeys(n.name for n in before):
            for b in dict.fromkeys(n.name for n in after):
                edges[(a, b)] = edges.get((a, b), 0) + 1
    return edges


def _edge(a: _Box, b: _Box, count: int, uid: str, right: float, lane: int) -> Markup:
    """`right`: the right edge of the boxes a back edge passes, which it goes around."""
    title = f"{a.name} → {b.name}" + (f" (×{count})" if count > 1 else "")
    marker = f"url(#lg-arrow-{uid})"
    if b.layer > a.layer:
        x1, y1 = a.x + a.w / 2, a.y + a.h
        x2, y2 = b.x + b.w / 2, b.y
        mid = (y1 + y2) / 2
        d = f"M{_n(x1)},{_n(y1)} C{_n(x1)},{_n(mid)} {_n(x2)},{_n(mid)} {_n(x2)},{_n(y2)}"
        cls = "lg-edge"
    elif a is b:
        x1, y1 = a.x + a.w, a.y + a.h * 0.3
        y2 = a.y + a.h * 0.7
        d = f"M{_n(x1)},{_n(y1)} C{_n(x1 + 26)},{_n(y1 - 8)} {_n(x1 + 26)},{_n(y2 + 8)} {_n(x1)},{_n(y2)}"
        cls = "lg-edge lg-back"
    else:
        # Back to an earlier node: around the right side, one lane per back edge.
        x1, y1 = a.x + a.w, a.y + a.h / 2
        x2, y2 = b.x + b.w, b.y + b.h / 2
        out = max(x1, x2, right) + 14 + lane * 6
        d = f"M{_n(x1)},{_n(y1)} C{_n(out)},{_n(y1)} {_n(out)},{_n(y2)} {_n(x2)},{_n(y2)}"
        cls = "lg-edge lg-back"
    return Markup('<path class="{cls}" d="{d}" fill="none" marker-end="{m}"><title>{t}</title></path>').format(
        cls=cls, d=d, m=marker, t=escape(title))


def _box(box: _Box, uid: str) -> Markup:
    runs = box.executions
    status = "error" if any(n.status == "error" for n in runs) else (
        "running" if any(n.status == "running" for n in runs) else "success")
    steps = ", ".join(str(n.step) for n in runs if n.step is not None)
    title = box.name + (f" — step {steps}" if steps else "") + (f" — ×{len(runs)}" if len(runs) > 1 else "")
    errors = [n.status_message for n in runs if n.status == "error" and n.status_message]
    if errors:
        title += " — " + errors[0]
    label = box.name if len(box.name) <= LABEL_CHARS else box.name[:LABEL_CHARS - 1] + "…"
    if len(runs) > 1:
        label += f" ×{len(runs)}"
    framed = bool(box.inner)
    cls = f"lg-node lg-{status}" + (" lg-frame" if framed else "")
    text_y = HEAD / 2 + 5 if framed else box.h / 2 + 5
    parts = [Markup(
        '<a href="?span={sid}" class="lg-link"><g class="{cls}" transform="translate({x},{y})">'
        '<title>{title}</title><rect width="{w}" height="{h}" rx="6"/>'
        '<text class="lg-label" x="{tx}" y="{ty}" text-anchor="middle">{label}</text></g></a>').format(
        sid=escape(runs[0].span_id), cls=cls, x=_n(box.x), y=_n(box.y), title=escape(title), w=_n(box.w), h=_n(box.h),
        tx=_n(box.w / 2), ty=_n(text_y), label=escape(label))]
    for sub, sx, sy, _sw, elements in box.inner:
        parts.append(Markup('<g class="lg-sub" transform="translate({x},{y})" aria-label="{name}">'
                            '<title>{name}</title>{body}</g>').format(
            x=_n(box.x + sx), y=_n(box.y + sy), name=escape(sub.graph_name), body=Markup("").join(elements)))
    return Markup("").join(parts)


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")
