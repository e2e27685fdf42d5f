"""LangGraph runs of one trace, for the trace page's graph panel.

`langgraph_runs(spans)` -> one `GraphRun` per graph run: its node spans in execution order
(step, then start), each with input/output state, status and duration, and an SVG of the path
taken. A subgraph run is nested under the node span that ran it, not flattened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup


@dataclass
class Node:
    span_id: str
    name: str
    step: int | None
    status: str
    duration_ms: float | None
    input_text: str | None
    output_text: str | None
    subgraphs: list[GraphRun] = field(default_factory=list)


@dataclass
class GraphRun:
    graph_name: str
    span_id: str
    nodes: list[Node] = field(default_factory=list)
    svg: Markup = field(default_factory=Markup)
    status: str = "success"


def langgraph_runs(spans: list[dict[str, Any]]) -> list[GraphRun]:
    """The trace's top-level graph runs (subgraphs hang under their nodes)."""
    runs = []
    for span in spans:
        if span.get("graph_name") and not span.get("node_name"):
            run = GraphRun(str(span["graph_name"]), str(span["span_id"]))
            for s in spans:
                if s.get("node_name") and s.get("parent_span_id") == span["span_id"]:
                    end = s.get("end_ns")
                    run.nodes.append(Node(str(s["span_id"]), str(s["node_name"]), s.get("step"),
                                          str(s.get("status")),
                                          None if end is None else (end - s["start_ns"]) / 1e6,
                                          s.get("input_text"), s.get("output_text")))
            runs.append(run)
    return runs
