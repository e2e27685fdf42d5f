"""The examples in examples/ run against a real server and do what they say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ServerProcess

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_send_trace_via_api(server: ServerProcess) -> None:
    env = {**os.environ, "TRACEHUB_URL": server.url, "TRACEHUB_API_KEY": server.api_key}
    out = subprocess.run([sys.executable, str(EXAMPLES / "send_trace_via_api.py")], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    first = out.splitlines()[0]
    assert first.endswith("2 spans, 1 eval, status success"), out
    trace_id = first.split()[1].rstrip(":")
    assert f"{server.url}/traces/{trace_id}" in out
    detail = server.client.get(f"/api/v1/traces/{trace_id}").json()
    llm = next(s for s in detail["spans"] if s["span_type"] == "llm")
    assert llm["attributes"] == {"retry": 1} and llm["total_tokens"] == 478
