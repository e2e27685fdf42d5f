"""The examples in examples/ run against a real server, do what they say, and print links that work;
against a hub that is down they exit 1 with a message."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ServerProcess, free_port

EXAMPLES = Path(__file__).parents[1] / "examples"


def _run(script: str, url: str, api_key: str = "dev-key",
         **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("OTEL_", "LLM_TRACE_HUB_", "TRACEHUB_"))}
    clean.update(TRACEHUB_URL=url, TRACEHUB_API_KEY=api_key, **env)
    return subprocess.run([sys.executable, str(EXAMPLES / script), url, api_key], env=clean,
                          capture_output=True, text=True, timeout=120, check=False)


def _links_answer(server: ServerProcess, out: str, count: int) -> list[str]:
    """Every URL the example printed is an API URL of this server that answers 200."""
    links = re.findall(r"https?://\S+", out)
    assert len(links) == count, out
    for link in links:
        assert link.startswith(f"{server.url}/api/v1/traces/"), link
        assert server.client.get(link).status_code == 200, link
    return [link.rsplit("/", 1)[1] for link in links]


def test_send_trace_via_api(server: ServerProcess) -> None:
    done = _run("send_trace_via_api.py", server.url, server.api_key)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    first = out.splitlines()[0]
    assert first.endswith("2 spans, 1 eval, status success"), out
    trace_id = first.split()[1].rstrip(":")
    assert _links_answer(server, out, 2)[0] == trace_id
    detail = server.client.get(f"/api/v1/traces/{trace_id}").json()
    llm = next(s for s in detail["spans"] if s["span_type"] == "llm")
    assert llm["attributes"] == {"retry": 1} and llm["total_tokens"] == 478


def test_send_trace_via_sdk(server: ServerProcess) -> None:
    done = _run("send_trace_via_sdk.py", server.url, server.api_key)
    assert done.returncode == 0, done.stderr
    trace_id, run_id = _links_answer(server, done.stdout, 2)
    detail = server.client.get(f"/api/v1/traces/{trace_id}").json()
    assert [e["eval_name"] for e in detail["evals"]] == ["faithfulness"]
    run = server.client.get(f"/api/v1/traces/{run_id}").json()
    assert {s["name"] for s in run["spans"]} == {"agent_router", "intent_router", "policy_lookup"}


def test_langgraph_app(server: ServerProcess) -> None:
    pytest.importorskip("langgraph")
    done = _run("langgraph_app.py", server.url, server.api_key)
    assert done.returncode == 0, done.stderr
    [trace_id] = _links_answer(server, done.stdout, 1)
    names = {s["name"] for s in server.client.get(f"/api/v1/traces/{trace_id}").json()["spans"]}
    assert {"support-request", "support_graph", "assistant", "tools"} <= names


@pytest.mark.parametrize("script", ["send_trace_via_sdk.py", "send_trace_via_api.py"])
def test_an_example_exits_1_when_the_hub_is_down(script: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    done = _run(script, url, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT="1")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "error:" in done.stderr and "http://" not in done.stdout
