"""The trace page's LangGraph panel (tracehub.ui.graph, _langgraph.html): runs, nodes in order,
nested subgraphs and the SVG of the path taken, over captured spans of real instrumentations and
over a graph run by the real LangGraph instrumentation into a real server."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from conftest import ServerProcess, browser_session, own_project, ui_client
from fixture_otlp import capture_to_trace_request
from tracehub.collector import otlp
from tracehub.store.readmodel import trace_read_model
from tracehub.ui import graph
from tracehub.ui.trace import GRAPH_AUTO_NODES
from tracehub.ui.render import Templates

FIXTURES = Path(__file__).parent / "fixtures" / "otel-captures"


def _rows(capture_name: str) -> list[dict[str, Any]]:
    capture = json.loads((FIXTURES / capture_name).read_text())
    spans = otlp.decode_traces(capture_to_trace_request(capture).SerializeToString()).spans
    return [{"span_id": s.span_id, "parent_span_id": s.parent_span_id, "name": s.name,
             "span_type": s.mapped.span_type, "status": s.status, "start_ns": s.start_ns, "end_ns": s.end_ns,
             "graph_name": s.mapped.graph_name, "node_name": s.mapped.node_name, "step": s.mapped.step,
             "attributes": json.dumps(s.attributes), "input_text": s.mapped.input_text,
             "output_text": s.mapped.output_text} for s in spans]


def _row(span_id: str, parent: str | None, name: str, *, graph_name: str | None = None,
         node: str | None = None, step: int | None = None, start: int = 0, status: str = "success") -> dict[str, Any]:
    return {"span_id": span_id, "parent_span_id": parent, "name": name,
            "span_type": "node" if node else "chain", "status": status, "start_ns": start * 1_000_000,
            "end_ns": start * 1_000_000 + 500_000, "graph_name": graph_name, "node_name": node, "step": step,
            "attributes": "{}", "input_text": '{"x": 1}', "output_text": None}


def test_openinference_react_loop() -> None:
    [run] = graph.langgraph_runs(_rows("openinference_react_agent.json"))
    assert run.graph_name == "react_agent"
    assert [(n.step, n.name) for n in run.nodes] == [(1, "agent"), (2, "tools"), (3, "agent"), (4, "tools"),
                                                      (5, "agent")]
    assert all(n.duration_ms is not None and n.duration_ms > 0 for n in run.nodes)
    assert "messages" in (run.nodes[0].input_text or "")
    svg = str(run.svg)
    assert svg.count('class="lg-node ') == 2  # agent and tools, each drawn once
    assert 'class="lg-edge lg-back"' in svg and "tools → agent (×2)" in svg


def test_traceloop_and_error_runs() -> None:
    [run] = graph.langgraph_runs(_rows("traceloop_router_rag.json"))
    assert run.graph_name == "router_rag_graph"
    assert [n.name for n in run.nodes] == ["router", "retrieve", "answer"]
    [failed] = graph.langgraph_runs(_rows("openinference_llm_error.json"))
    assert [n.status for n in failed.nodes] == ["success", "success", "error"]
    assert failed.status == "error"
    assert 'class="lg-node lg-error"' in str(failed.svg)


def test_no_graph_no_runs() -> None:
    assert graph.langgraph_runs(_rows("openai-v2_chat_span_only.json")) == []
    assert graph.langgraph_runs([{"span_id": "a", "node_name": "x", "span_type": "node", "start_ns": "bad"}])
    assert graph.langgraph_runs([{"bogus": 1}, "not a dict"]) == []  # type: ignore[list-item]


def test_svg_loop_and_nested_subgraph() -> None:
    spans = [
        _row("run", None, "outer", graph_name="outer"),
        _row("n1", "run", "plan", graph_name="outer", node="plan", step=1, start=1),
        _row("n2", "run", "research", graph_name="outer", node="research", step=2, start=2),
        _row("sub", "n2", "inner", graph_name="inner"),
        _row("s1", "sub", "search", graph_name="inner", node="search", step=1, start=3),
        _row("s2", "sub", "summarize", graph_name="inner", node="summarize", step=2, start=4, status="error"),
        _row("n3", "run", "plan", graph_name="outer", node="plan", step=3, start=5),
    ]
    [run] = graph.langgraph_runs(spans)
    assert [n.name for n in run.nodes] == ["plan", "research", "plan"]
    [sub] = run.nodes[1].subgraphs
    assert (sub.graph_name, [n.name for n in sub.nodes], sub.status) == ("inner", ["search", "summarize"], "error")
    svg = str(run.svg)
    assert svg.startswith("<svg") and 'role="img"' in svg and 'aria-label="outer: plan → research → plan"' in svg
    assert "style=" not in svg
    assert '<g class="lg-sub"' in svg and "lg-frame" in svg  # the subgraph drawn inside its node
    frame = re.search(r'<g class="lg-node lg-success lg-frame" transform="translate\(([\d.]+),([\d.]+)\)">'
                      r'<title>[^<]*</title><rect width="([\d.]+)" height="([\d.]+)"', svg)
    assert frame, svg
    inner = re.search(r'<g class="lg-sub" transform="translate\(([\d.]+),([\d.]+)\)"', svg)
    assert inner and float(inner.group(1)) > float(frame.group(1)) and float(inner.group(2)) > float(frame.group(2))
    assert float(frame.group(3)) > graph.BOX_W and float(frame.group(4)) > graph.BOX_H
    assert "research → plan" in svg and 'class="lg-edge lg-back"' in svg  # the loop back to plan
    assert 'class="lg-node lg-error"' in svg  # summarize failed


def test_rendered_panel_escapes_names() -> None:
    payload = '<script>alert(1)</script>'
    spans = [
        _row("run", None, payload, graph_name=payload),
        _row("n1", "run", payload, graph_name=payload, node=payload, step=1, start=1),
        _row("n2", "run", "b", graph_name=payload, node="b\"><img src=x onerror=alert(1)>", step=2, start=2),
    ]
    spans[1]["input_text"] = payload
    runs = graph.langgraph_runs(spans)
    assert "<script" not in str(runs[0].svg) and "<img" not in str(runs[0].svg)
    templates = Templates()
    for lang in ("en", "ko"):
        html = templates.render(lang, "_langgraph.html", {"runs": runs})
        assert "<script" not in html and "<img" not in html and "style=" not in html
        assert "&lt;script&gt;" in html and 'href="?span=n1"' in html
    assert "입력 상태" in templates.render("ko", "_langgraph.html", {"runs": runs})


class _State(TypedDict, total=False):
    log: list[str]
    loops: int


def _graph() -> Any:
    """outer: plan -> research (subgraph: search -> summarize) -> check -> plan (once) -> END."""
    from langgraph.graph import END, START, StateGraph

    inner = StateGraph(_State)
    inner.add_node("search", lambda s: {"log": [*s.get("log", []), "search"]})
    inner.add_node("summarize", lambda s: {"log": [*s.get("log", []), "summarize"]})
    inner.add_edge(START, "search")
    inner.add_edge("search", "summarize")
    inner.add_edge("summarize", END)
    research = inner.compile(name="research_graph")

    outer = StateGraph(_State)
    outer.add_node("plan", lambda s: {"loops": s.get("loops", 0) + 1})
    outer.add_node("research", research)
    outer.add_node("check", lambda s: {"log": [*s.get("log", []), "<script>check</script>"]})
    outer.add_edge(START, "plan")
    outer.add_edge("plan", "research")
    outer.add_edge("research", "check")
    outer.add_conditional_edges("check", lambda s: "plan" if s.get("loops", 0) < 2 else END)
    return outer.compile(name="outer_graph")


def test_instrumented_langgraph_run_through_a_server(server_factory: Callable[..., ServerProcess],
                                                     chromium: Any) -> None:
    from llm_trace_hub.langgraph import LangGraphInstrumentor
    from llm_trace_hub.provider import build_tracer_provider
    from llm_trace_hub.settings import HubSettings

    server = server_factory("sqlite")
    with own_project(server, "ui-lg", auto_decide=False) as project:
        provider = build_tracer_provider(HubSettings(server.url, project.key), service_name="ui-lg",
                                         shutdown_on_exit=False)
        instrumentor = LangGraphInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:
            with provider.get_tracer("ui-test").start_as_current_span("request") as marker:
                _graph().invoke({"log": [], "loops": 0})
            assert provider.force_flush(10_000)
        finally:
            instrumentor.uninstrument()
            provider.shutdown()
        trace_id = format(marker.get_span_context().trace_id, "032x")
        server.wait_trace(trace_id, 12, client=project.client)
        with project.engine.connect() as conn:
            model = trace_read_model(conn, project.id, trace_id, time.time_ns())
        # The trace page loads the panel when it scrolls into view.
        with browser_session(chromium, server, project.key) as ui:
            ui.goto(f"/traces/{trace_id}")
            ui.page.locator("[data-langgraph]").scroll_into_view_if_needed()
            ui.page.wait_for_selector("[data-langgraph] svg[role=img]")
            assert ui.page.locator("[data-langgraph] .lg-subrun").count() == 2
            ui.shot("trace-langgraph")
        # The JSON API's run (the spec's body): `parent_node_id` names the node a step came from.
        body = {"trace_id": secrets.token_hex(16), "run_id": "lg-run-001", "graph_name": "agent_router",
                "status": "success", "start_time": "2026-02-07T10:00:00Z", "end_time": "2026-02-07T10:00:04Z",
                "nodes": [{"node_id": "plan", "node_name": "planner", "node_type": "router",
                           "start_time": "2026-02-07T10:00:00Z", "end_time": "2026-02-07T10:00:01Z"},
                          {"node_id": "retrieve", "node_name": "retrieval", "node_type": "tool",
                           "parent_node_id": "plan", "start_time": "2026-02-07T10:00:01Z",
                           "end_time": "2026-02-07T10:00:03Z"},
                          {"node_id": "tool-call", "node_name": "search", "node_type": "tool",
                           "parent_node_id": "retrieve", "start_time": "2026-02-07T10:00:01.5Z",
                           "end_time": "2026-02-07T10:00:02Z"}]}
        assert project.client.post("/api/v1/ingest/langgraph-runs", json=body).status_code == 200
        with project.engine.connect() as conn:
            posted = trace_read_model(conn, project.id, body["trace_id"], time.time_ns())
        # A long run's panel waits to be asked for: its states would hold the tree back.
        long_run = {**body, "trace_id": secrets.token_hex(16), "nodes": [
            {"node_id": f"n{i}", "node_name": "agent", "start_time": f"2026-02-07T10:00:{i % 60:02d}.{i:03d}Z",
             "end_time": f"2026-02-07T10:00:{i % 60:02d}.{i + 1:03d}Z"} for i in range(GRAPH_AUTO_NODES + 1)]}
        assert project.client.post("/api/v1/ingest/langgraph-runs", json=long_run).status_code == 200
        client = ui_client(server, project.key)
        short_page = client.get(f"/traces/{body['trace_id']}").text
        long_page = client.get(f"/traces/{long_run['trace_id']}").text
        assert 'hx-trigger="revealed"' in short_page and 'hx-trigger="revealed"' not in long_page
        assert f"({GRAPH_AUTO_NODES + 1} node executions)" in long_page
        panel = client.get(f"/traces/{long_run['trace_id']}/langgraph").text
        assert panel.count('<li class="lg-step') == GRAPH_AUTO_NODES + 1
    assert posted is not None
    [steps] = graph.langgraph_runs(posted.spans)
    assert steps.graph_name == "agent_router" and [n.name for n in steps.nodes] == ["planner", "retrieval"]
    assert [r.graph_name for r in steps.nodes[1].subgraphs] == ["retrieval"]  # it ran inside retrieval
    assert [n.name for n in steps.nodes[1].subgraphs[0].nodes] == ["search"] and not steps.nodes[0].subgraphs
    assert model is not None
    [run] = graph.langgraph_runs(model.spans)
    assert run.graph_name == "outer_graph"
    assert [n.name for n in run.nodes] == ["plan", "research", "check", "plan", "research", "check"]
    assert [n.step for n in run.nodes] == sorted(n.step for n in run.nodes if n.step is not None)
    for research in (run.nodes[1], run.nodes[4]):
        [sub] = research.subgraphs
        assert sub.graph_name == "research_graph"
        assert [n.name for n in sub.nodes] == ["search", "summarize"]
    assert all(n.status == "success" and n.duration_ms is not None for n in run.nodes)
    assert "<script>check</script>" in (run.nodes[2].output_text or "")
    svg = str(run.svg)
    assert svg.count('<g class="lg-sub"') == 2 and 'class="lg-edge lg-back"' in svg and "check → plan" in svg
    html = Templates().render("en", "_langgraph.html", {"runs": [run]})
    assert "&lt;script&gt;check&lt;/script&gt;" in html and "<script>" not in html
