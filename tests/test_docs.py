"""The README is tested: its two set-up commands, its settings list and its quick start."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from conftest import ServerProcess
from tracehub.settings import describe

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def _code_blocks() -> list[str]:
    return re.findall(r"```(?:bash)?\n(.*?)```", README, re.S)


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_the_second() -> None:
    first, second = (block.strip() for block in _code_blocks()[:2])
    assert first == "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/tracehub serve"
    assert second.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[test]'")
    assert second.endswith(".venv/bin/python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    extracted = subprocess.run(
        ["bash", "-c", re.search(r"command=\$\((.*)\)", ci).group(1)],  # type: ignore[union-attr]
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert extracted == second
    assert "TRACEHUB_TEST_POSTGRES=require" in ci


def test_every_setting_is_documented() -> None:
    for _name, env, _default, _help, _flag in describe():
        assert env in README, env


def test_quick_start_snippet_sends_a_trace_that_the_api_finds(server: ServerProcess) -> None:
    snippet = re.search(r"python - <<'EOF'\n(.*?)\nEOF", README, re.S).group(1)  # type: ignore[union-attr]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=server.otlp_http,
               OTEL_EXPORTER_OTLP_HEADERS=f"x-api-key={server.api_key}")
    out = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    detail = server.wait_trace(out, 2)
    assert detail["trace"]["input_text"] == "환불 규정 알려줘"
    assert detail["trace"]["output_text"] == "7일 이내 환불 가능합니다."
    assert detail["trace"]["total_tokens"] == 42 and detail["trace"]["model"] == "gpt-4.1-mini"
    found = server.client.get("/api/v1/traces", params={"search": "환불"}).json()["items"]
    assert out in {t["trace_id"] for t in found}


def test_readme_search_command_finds_the_trace_with_curl_as_typed(server: ServerProcess) -> None:
    """curl sends the UTF-8 of `?search=환불` raw in the request target, as typed in the README."""
    command = re.search(r"^curl .*\?search=.*$", README, re.M).group(0)  # type: ignore[union-attr]
    args = shlex.split(command.replace("http://127.0.0.1:8000", server.url))
    url = args[-1]
    trace_id = secrets.token_hex(16)
    span = {"traceId": trace_id, "spanId": secrets.token_hex(8), "name": "chat",
            "startTimeUnixNano": "1780000000000000000", "endTimeUnixNano": "1780000001000000000",
            "attributes": [{"key": "input.value", "value": {"stringValue": "환불 규정 알려줘"}}]}
    stored = server.client.post("/v1/traces", json={"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    assert stored.status_code == 200, stored.text
    if shutil.which("curl"):
        out = subprocess.run(args, capture_output=True, timeout=30, check=True).stdout
    else:  # what curl would send
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            target = url.removeprefix(server.url).encode()
            sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nx-api-key: dev-key\r\nConnection: close\r\n\r\n")
            out = b"".join(iter(lambda: sock.recv(65536), b"")).partition(b"\r\n\r\n")[2]
    assert trace_id in {t["trace_id"] for t in json.loads(out)["items"]}
