"""The LLM judge against a small OpenAI-compatible server of the test's own, on loopback.

The peer answers by the first path segment of its base URL (`http://127.0.0.1:PORT/<mode>/v1`):
`ok` a valid verdict, `bad-json` text that is not JSON, `bad-schema` JSON the verdict schema refuses,
`error-500` an HTTP 500, `moved` a 308, `not-completion` a 200 that is no chat completion, `huge` a
verdict of more than 1 MiB, `deep` JSON nested past the parser's recursion limit, `slow` a valid
verdict too late; `live` as the test sets `Peer.live`. It records every request it receives.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from conftest import BACKENDS, ServerProcess, free_port
from tracehub.collector.pricing import Pricing
from tracehub.decision.judges import JudgeInput, JudgeOutcome
from tracehub.decision.llm_judge import ACTIONS, OUTPUT_SCHEMA, LlmJudge
from tracehub.decision.policy import Verdict

MODEL = "gpt-4.1-mini"  # in the genai-prices catalogue: $0.4 / $1.6 per million tokens
API_KEY = "sk-judge-test-key"
EMAIL = "kim.minsu@example.com"
CARD = "4111 1111 1111 1111"
SLOW_S = 2.0

VALID = {"action": "ESCALATE", "reason_code": "RISKY_FINANCIAL_ADVICE", "severity": "high",
         "rationale": "Promises guaranteed principal.", "confidence": 0.9}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes


@dataclass
class Peer:
    port: int
    received: list[Received] = field(default_factory=list)
    live: str = "ok"  # what `/live/v1` answers as, switched by a test


    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"


def _completion(content: str) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 1200, "completion_tokens": 80, "total_tokens": 1280}}


def _handler(peer: Peer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            peer.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                          json.loads(raw), raw))
            mode = self.path.split("/")[1]
            if mode == "live":
                mode = peer.live
            if not self.path.endswith("/v1/chat/completions"):
                return self._send(404, {"error": {"message": "not found"}})
            if mode == "error-500":
                return self._send(500, {"error": {"message": "upstream exploded"}})
            if mode == "moved":  # (no Location: a client that followed would fail differently)
                return self._send(308, {"error": {"message": "moved"}})
            if mode == "slow":
                time.sleep(SLOW_S)
            if mode == "not-completion":
                return self._send(200, {"error": {"message": "quota exceeded"}})
            content = {"ok": json.dumps(VALID), "slow": json.dumps(VALID),
                       "bad-json": "Sure! Here is my verdict: ESCALATE",
                       "bad-schema": json.dumps({**VALID, "action": "MAYBE", "extra": 1}),
                       "huge": json.dumps({**VALID, "rationale": "x" * 1_100_000}),
                       "deep": "[" * 100_000 + "]" * 100_000}[mode]
            self._send(200, _completion(content))

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the judge gave up on a slow answer

    return Handler


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    state = Peer(0)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def _item() -> JudgeInput:
    verdict = Verdict(action="ALLOW_WITH_WARNING", reason_code="PII_DETECTED", severity="medium",
                      rule={"index": 0, "priority": 10, "metadata": {}}, matched_fields=["signals.pii"])
    context = {
        "request": {"text": f"원금 보장 투자 추천해줘. Mail me at {EMAIL}, card {CARD}",
                    "safety": {"content_filter": "ok"}, "reply_to": EMAIL},
        "response": {"text": "Guaranteed 10% a year, no risk."},
        "trace": {"model": "gpt-4.1-mini", "user_id": EMAIL, "total_tokens": 512},
        "signals": {"pii": True, "pii_kinds": ["email", "card"]},
        "evals": {},
    }
    return JudgeInput(project_id=1, trace_id="ab" * 16, context=context, verdict=verdict,
                      input_hash="0" * 64, policy_name="default-safety", policy_version=3)


def _judge(base_url: str, **kwargs: Any) -> JudgeOutcome:
    async def run() -> JudgeOutcome:
        judge = LlmJudge(base_url, MODEL, Pricing.load(), api_key=API_KEY, **kwargs)
        try:
            return await judge.judge(_item())
        finally:
            await judge.aclose()
    return asyncio.run(run())


def _last(peer: Peer, mode: str) -> Received:
    return [r for r in peer.received if r.path.startswith(f"/{mode}/")][-1]


def test_valid_verdict_decides_and_is_priced(peer: Peer) -> None:
    out = _judge(peer.url("ok"))
    assert (out.status, out.error) == ("ok", None)
    assert (out.action, out.reason_code, out.severity) == ("ESCALATE", "RISKY_FINANCIAL_ADVICE", "high")
    assert (out.rationale, out.confidence) == (VALID["rationale"], 0.9)
    assert (out.judge, out.judge_model, out.output) == ("llm", MODEL, VALID)
    assert (out.input_tokens, out.output_tokens) == (1200, 80)
    assert out.cost_usd == pytest.approx((1200 * 0.4 + 80 * 1.6) / 1_000_000)
    assert 0 < out.started_ns <= out.ended_ns and out.latency_ms > 0
    # What the engine writes as the llm child span: the messages sent and the text received.
    assert out.request_messages is not None and out.request_messages[0]["role"] == "system"
    assert out.response_text == json.dumps(VALID)


def test_request_is_strict_json_schema_with_bearer_key_and_masked_text(peer: Peer) -> None:
    _judge(peer.url("ok"))
    got = _last(peer, "ok")
    assert got.path == "/ok/v1/chat/completions"
    assert got.headers["authorization"] == f"Bearer {API_KEY}"
    assert got.body["model"] == MODEL
    assert got.body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "tracehub_judge_verdict", "strict": True, "schema": OUTPUT_SCHEMA}}
    schema = got.body["response_format"]["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"action", "reason_code", "severity", "rationale", "confidence"}
    assert tuple(schema["properties"]["action"]["enum"]) == ACTIONS and len(ACTIONS) == 5
    system, user = got.body["messages"]
    assert [system["role"], user["role"]] == ["system", "user"]
    assert all(action in system["content"] for action in ACTIONS)
    sent = json.loads(user["content"])
    assert sent["policy"] == {"name": "default-safety", "version": 3}
    assert sent["policy_verdict"]["action"] == "ALLOW_WITH_WARNING"
    assert "원금 보장 투자 추천해줘" in sent["request"]["text"]
    assert sent["request"]["safety"] == {"content_filter": "ok"}
    assert sent["response"] == {"text": "Guaranteed 10% a year, no risk."}
    assert {f["kind"] for f in sent["findings"]} >= {"email", "card", "financial_risk"}
    assert sent["trace"]["total_tokens"] == 512
    # Neither the e-mail address nor the card number leaves the hub, in any form.
    raw = got.raw.decode()
    for secret in (EMAIL, CARD, CARD.replace(" ", ""), "kim.minsu"):
        assert secret not in raw


@pytest.mark.parametrize(("mode", "status", "error_part"), [
    ("bad-json", "invalid_output", "not JSON"),
    ("bad-schema", "invalid_output", "schema"),
    ("error-500", "http_error", "HTTP 500"),
    ("moved", "http_error", "HTTP 308"),
    ("not-completion", "invalid_output", "no choices[0].message"),
    ("huge", "invalid_output", "larger than 1048576 bytes"),
    ("deep", "invalid_output", "not JSON"),
])
def test_failures_fall_back_to_the_policy_verdict(peer: Peer, mode: str, status: str,
                                                  error_part: str) -> None:
    out = _judge(peer.url(mode))
    assert out.status == status and error_part in (out.error or "")
    assert (out.action, out.reason_code, out.severity) == ("ALLOW_WITH_WARNING", "PII_DETECTED", "medium")
    assert (out.rationale, out.confidence, out.judge, out.judge_model) == (None, None, "llm", MODEL)
    if mode == "bad-json":
        assert out.output == {"raw": "Sure! Here is my verdict: ESCALATE"}
    if mode == "bad-schema":  # the raw output is kept to see what the model said
        assert out.output == {**VALID, "action": "MAYBE", "extra": 1}
        assert (out.input_tokens, out.output_tokens) == (1200, 80)


def test_timeout_falls_back_to_the_configured_action(peer: Peer) -> None:
    t0 = time.monotonic()
    out = _judge(peer.url("slow"), timeout_s=0.5, fallback="BLOCK")
    assert time.monotonic() - t0 < SLOW_S
    assert out.status == "timeout" and "0.5 s" in (out.error or "")
    assert (out.action, out.reason_code, out.severity) == ("BLOCK", "LLM_JUDGE_TIMEOUT", "medium")
    assert out.output is None and out.response_text is None and out.input_tokens is None
    assert 400 < out.latency_ms < SLOW_S * 1000


def test_unreachable_endpoint_is_an_error_not_an_exception() -> None:
    out = _judge(f"http://127.0.0.1:{free_port()}/v1")
    assert out.status == "error" and "Connect" in (out.error or "")
    assert out.action == "ALLOW_WITH_WARNING"


def test_bad_fallback_or_base_url_refuses_to_start() -> None:
    with pytest.raises(SystemExit, match="LLM_JUDGE_FALLBACK"):
        LlmJudge("http://127.0.0.1:1/v1", MODEL, Pricing.load(), fallback="DENY")
    for url in ("localhost:8000/v1", "ftp://host/v1", "http:///v1", "http://[::1/v1"):
        with pytest.raises(SystemExit, match="LLM_JUDGE_BASE_URL"):
            LlmJudge(url, MODEL, Pricing.load())


def test_judge_llm_without_endpoint_refuses_to_start(tmp_path: Any) -> None:
    env = {"PATH": "/usr/bin:/bin", "TRACEHUB_JUDGE": "llm", "TRACEHUB_LLM_JUDGE_MODEL": MODEL,
           "TRACEHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    done = subprocess.run([sys.executable, "-m", "tracehub", "serve", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0
    assert "TRACEHUB_JUDGE=llm needs TRACEHUB_LLM_JUDGE_BASE_URL" in done.stderr


# -- through the server: POST /api/v1/decide with TRACEHUB_JUDGE=llm --------------------------------

SAFETY = {"name": "default-safety", "active": True, "definition": {"rules": [
    {"priority": 10, "when": {"field": "signals.pii", "op": "eq", "value": True},
     "then": {"action": "ESCALATE", "reason_code": "PII_DETECTED", "severity": "high"}}]}}


def _ingest(client: httpx.Client, input_text: str) -> tuple[str, str]:
    trace_id, root = secrets.token_hex(16), secrets.token_hex(8)
    r = client.post("/api/v1/ingest/traces", json={
        "trace": {"trace_id": trace_id, "name": "chat-request", "input_text": input_text,
                  "output_text": "Guaranteed 10% a year.", "model": "gpt-4.1-mini",
                  "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:01Z"},
        "spans": [{"span_id": root, "name": "chat-request", "span_type": "chain", "status": "success",
                   "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:01Z"}]})
    assert r.status_code == 200, r.text
    return trace_id, root


@pytest.mark.parametrize("backend", BACKENDS)
def test_decide_with_the_llm_judge_writes_its_call_under_the_judge_span(
        peer: Peer, backend: str, server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(backend, env={
        "TRACEHUB_JUDGE": "llm", "TRACEHUB_LLM_JUDGE_BASE_URL": peer.url("live"),
        "TRACEHUB_LLM_JUDGE_MODEL": MODEL, "TRACEHUB_LLM_JUDGE_API_KEY": API_KEY,
        "TRACEHUB_LLM_JUDGE_TIMEOUT_S": "5", "TRACEHUB_DECISIONS": "false"})
    client = server.client
    assert client.post("/api/v1/policies", json=SAFETY).status_code in (200, 201)

    peer.live = "ok"
    trace_id, root = _ingest(client, f"원금 보장 투자 추천해줘, reply to {EMAIL}")
    sent_before = len(peer.received)
    r = client.post("/api/v1/decide", json={"trace_id": trace_id})
    assert r.status_code == 201, r.text
    d = r.json()
    # The model decided: its reason code, not the policy's.
    assert (d["action"], d["reason_code"], d["severity"]) == ("ESCALATE", "RISKY_FINANCIAL_ADVICE", "high")
    assert (d["judge"], d["judge_model"], d["cached"]) == ("llm", MODEL, False)
    [call] = peer.received[sent_before:]
    assert call.headers["authorization"] == f"Bearer {API_KEY}" and EMAIL not in call.raw.decode()

    detail = client.get(f"/api/v1/traces/{trace_id}").json()
    [judge] = [s for s in detail["spans"] if s["span_type"] == "judge"]
    assert judge["parent_span_id"] == root and judge["span_id"] == d["judge_span_id"]
    [llm] = [s for s in detail["spans"] if s["parent_span_id"] == judge["span_id"]]
    assert (llm["span_type"], llm["model"], llm["status"]) == ("llm", MODEL, "success")
    assert (llm["input_tokens"], llm["output_tokens"]) == (1200, 80)
    assert llm["cost_usd"] == pytest.approx((1200 * 0.4 + 80 * 1.6) / 1_000_000)
    assert json.loads(llm["output_text"]) == VALID
    assert "원금 보장" in llm["input_text"] and EMAIL not in llm["input_text"]
    [run] = detail["judge_runs"]
    assert (run["judge"], run["judge_model"], run["status"], run["error"]) == ("llm", MODEL, "ok", None)
    assert (run["input_tokens"], run["output_tokens"], run["output"]) == (1200, 80, VALID)
    assert run["cost_usd"] == pytest.approx(llm["cost_usd"])

    # An answer that is no verdict: recorded, and the policy's verdict decides.
    peer.live = "bad-json"
    trace_id, _ = _ingest(client, f"my card is {CARD}")
    d = client.post("/api/v1/decide", json={"trace_id": trace_id}).json()
    assert (d["action"], d["reason_code"], d["judge"], d["judge_model"]) == (
        "ESCALATE", "PII_DETECTED", "llm", MODEL)
    detail = client.get(f"/api/v1/traces/{trace_id}").json()
    [run] = detail["judge_runs"]
    assert run["status"] == "invalid_output" and "not JSON" in run["error"]
    assert run["output"] == {"raw": "Sure! Here is my verdict: ESCALATE"}
    [judge] = [s for s in detail["spans"] if s["span_type"] == "judge"]
    [llm] = [s for s in detail["spans"] if s["parent_span_id"] == judge["span_id"]]
    assert llm["status"] == "error" and CARD not in llm["input_text"]


def test_automatic_decisions_use_the_llm_judge(peer: Peer, server_factory: Callable[..., ServerProcess]) -> None:
    """The decision worker runs on an event loop of its own, with a judge (and client) of its own."""
    server = server_factory("sqlite", env={
        "TRACEHUB_JUDGE": "llm", "TRACEHUB_LLM_JUDGE_BASE_URL": peer.url("ok"),
        "TRACEHUB_LLM_JUDGE_MODEL": MODEL, "TRACEHUB_DECISION_SETTLE_S": "0.2"})
    assert server.client.post("/api/v1/policies", json=SAFETY).status_code in (200, 201)
    trace_id, _ = _ingest(server.client, f"reply to {EMAIL}")
    deadline = time.monotonic() + 15
    while not (detail := server.client.get(f"/api/v1/traces/{trace_id}").json())["decisions"]:
        assert time.monotonic() < deadline, "not decided automatically"
        time.sleep(0.1)
    [decision] = detail["decisions"]
    assert (decision["source"], decision["judge"], decision["judge_model"]) == ("auto", "llm", MODEL)
    assert decision["reason_code"] == "RISKY_FINANCIAL_ADVICE"
    assert [r["status"] for r in detail["judge_runs"]] == ["ok"]
    assert sum(s["span_type"] == "llm" for s in detail["spans"]) == 1
