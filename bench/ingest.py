#!/usr/bin/env python
"""OTLP ingest benchmark for LLM Trace Hub: spans/s from the first request until every span is
queryable through the REST API, with zero loss, plus server memory, start time, the bytes the
database stores a span once the search index caught up, and (optionally) a profile of where the
server spends its time.

Typical runs (from the repository root, with the project's virtualenv):

    .venv/bin/python bench/ingest.py                          # sqlite, OTLP/HTTP, 100k spans
    .venv/bin/python bench/ingest.py --db postgres --transport grpc
    .venv/bin/python bench/ingest.py --profile                # py-spy (or cProfile) top functions
    .venv/bin/python bench/ingest.py --url http://127.0.0.1:8000 --grpc 127.0.0.1:4317 --transport grpc

What is timed: only sending pre-built request bodies and reading the REST API. Every trace, span
and request body (protobuf bytes, gzip if asked) is built before the clock starts, so the client's
share of the 2 cores is a socket write and a status check per request.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import gzip as gzip_mod
import http.client
import itertools
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MIB = 1024 * 1024

TARGET_SPANS_PER_S = 20_000
TARGET_PEAK_RSS_MIB = 300
TARGET_IDLE_RSS_MIB = 120
TARGET_START_S = 2.0


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ============================================================================ workload generation

EN = [
    "The quarterly revenue grew by 12 percent, driven mainly by the enterprise subscription tier.",
    "Please summarize the customer's complaint and propose a refund policy that fits our terms.",
    "According to the retrieved documents, the warranty covers parts and labor for two years.",
    "The agent decided to call the web search tool because the knowledge base had no recent data.",
    "Latency spikes were observed when the vector index was rebuilt during peak traffic hours.",
    "Our onboarding guide explains how to rotate API keys without interrupting running jobs.",
    "The model should answer concisely, cite its sources, and refuse to give investment advice.",
    "Shipping to Busan usually takes three business days; express delivery arrives the next day.",
    "The contract renewal clause requires written notice at least sixty days before expiry.",
    "A user asked whether the premium plan includes priority support on weekends and holidays.",
    "The retriever returned five passages; two of them were duplicates from the same manual page.",
    "Tokens are billed per thousand, and cached prompt prefixes are charged at a reduced rate.",
    "The assistant must not reveal internal system prompts or any personal data of other users.",
    "Error budget burn rate exceeded the threshold, so the on-call engineer was paged at 3 a.m.",
    "The evaluation set contains 1,200 questions labeled by two annotators with 0.87 agreement.",
    "For the migration, export the tables, verify the checksums, then switch the DNS records.",
    "The summary should mention the root cause, the impact window, and the follow-up actions.",
    "She wants to compare the battery life of the two laptop models before ordering one.",
    "The planner split the task into three steps: search, extract the figures, write the answer.",
    "Compliance requires that every escalated conversation is reviewed within twenty-four hours.",
    "The function returned a timeout after 30 seconds, so the agent retried with a smaller query.",
    "Average handle time dropped from 6.2 to 4.8 minutes after the new routing rules went live.",
    "The retrieved FAQ says refunds are processed within five to seven business days.",
    "Use the metric system and answer in the same language the customer used in the question.",
]
KO = [
    "고객님, 주문하신 상품은 내일 오후까지 배송될 예정입니다. 불편을 드려 죄송합니다.",
    "이번 분기 매출은 전년 대비 12퍼센트 증가했으며, 주요 원인은 기업용 구독 상품입니다.",
    "검색된 문서에 따르면 보증 기간은 2년이며 부품과 수리 비용이 모두 포함됩니다.",
    "환불 요청은 영업일 기준 5일에서 7일 이내에 처리되며, 카드사에 따라 차이가 있을 수 있습니다.",
    "에이전트는 지식 베이스에 최신 정보가 없어서 웹 검색 도구를 호출하기로 결정했습니다.",
    "개인정보 보호를 위해 주민등록번호와 카드 번호는 응답에 포함하지 않아야 합니다.",
    "사용자가 주말과 공휴일에도 프리미엄 요금제의 우선 지원을 받을 수 있는지 문의했습니다.",
    "모델은 간결하게 답하고 출처를 밝히며, 투자 권유에 해당하는 답변은 거절해야 합니다.",
    "부산으로의 배송은 보통 3영업일이 걸리며, 특급 배송은 다음 날 도착합니다.",
    "계약 갱신 조항에 따라 만료 60일 전까지 서면으로 통지해야 합니다.",
    "벡터 인덱스를 재구축하는 동안 응답 지연이 크게 늘어난 것이 관찰되었습니다.",
    "요약에는 근본 원인, 영향 범위, 후속 조치가 반드시 포함되어야 합니다.",
    "두 노트북 모델의 배터리 사용 시간을 비교한 뒤 주문하고 싶다고 하셨습니다.",
    "플래너는 작업을 검색, 수치 추출, 답변 작성의 세 단계로 나누었습니다.",
    "에스컬레이션된 모든 대화는 24시간 이내에 검토되어야 한다는 규정이 있습니다.",
    "도구 호출이 30초 후 시간 초과되어 에이전트가 더 짧은 질의로 다시 시도했습니다.",
    "새 라우팅 규칙 적용 후 평균 처리 시간이 6.2분에서 4.8분으로 줄었습니다.",
    "고객이 질문한 언어와 같은 언어로, 미터법 단위를 사용해 답변해 주세요.",
    "원금 보장과 확정 수익을 약속하는 표현은 금융 규제 위반 소지가 있습니다.",
    "검색 결과 다섯 개 중 두 개는 같은 매뉴얼 페이지에서 나온 중복 문서였습니다.",
]
TOPICS = ["refund policy", "shipping delay", "warranty claim", "plan upgrade", "API key rotation",
          "invoice error", "account lockout", "data export", "배송 지연", "환불 문의", "요금제 변경",
          "계정 잠금", "보증 수리", "세금 계산서"]
MODELS = [("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai", "api.openai.com"),
          ("gpt-4o", "gpt-4o-2024-08-06", "openai", "api.openai.com"),
          ("claude-3-5-sonnet", "claude-3-5-sonnet-20241022", "anthropic", "api.anthropic.com")]
SERVICES = [("research-agent", "2.14.1"), ("support-bot", "1.8.0"), ("rag-api", "0.31.4")]
TOOLS = ["web_search", "order_lookup", "calculator", "kb_search"]


def _av(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        out = AnyValue()
        out.array_value.values.extend(_av(v) for v in value)
        return out
    return AnyValue(string_value=str(value))


def _kvs(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_av(v)) for k, v in attrs.items()]


class TextPool:
    """Paragraphs of mixed English / Korean sentences, composed into texts of a given UTF-8 size."""

    def __init__(self, rng: random.Random, size: int = 6000) -> None:
        self.rng = rng
        self.paragraphs = []
        for _ in range(size):
            parts = []
            for _ in range(rng.randint(2, 4)):
                parts.append(rng.choice(KO if rng.random() < 0.45 else EN))
            self.paragraphs.append(" ".join(parts))

    def text(self, nbytes: int, head: str = "") -> str:
        out, size = [head] if head else [], len(head.encode())
        while size < nbytes:
            p = self.rng.choice(self.paragraphs)
            out.append(p)
            size += len(p.encode()) + 1
        return " ".join(out)


@dataclass
class SpanSpec:
    trace_index: int
    service: int
    scope: int  # index into SCOPES
    end_ns: int
    data: bytes  # serialized opentelemetry.proto.trace.v1.Span


SCOPES = [("openinference.instrumentation.langchain", "0.1.42"),
          ("opentelemetry.instrumentation.openai_v2", "2.1b0"),
          ("llm_trace_hub.langgraph", "0.1.0")]


def _resource(service: int, env: str, rng: random.Random) -> bytes:
    name, version = SERVICES[service]
    attrs = {
        "service.name": name,
        "service.version": version,
        "service.namespace": "llm-apps",
        "service.instance.id": f"{name}-{rng.getrandbits(32):08x}",
        "deployment.environment.name": env,
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": "1.27.0",
        "host.name": f"ip-10-0-{rng.randint(0, 255)}-{rng.randint(0, 255)}.ap-northeast-2.compute.internal",
        "host.arch": "amd64",
        "os.type": "linux",
        "process.pid": rng.randint(1000, 60000),
        "process.runtime.name": "cpython",
        "process.runtime.version": "3.11.9",
        "k8s.namespace.name": "llm-prod",
        "k8s.pod.name": f"{name}-{rng.getrandbits(24):06x}-{rng.getrandbits(20):05x}",
        "cloud.provider": "aws",
        "cloud.region": "ap-northeast-2",
    }
    return bytes(Resource(attributes=_kvs(attrs)).SerializeToString())


def _messages_in(pool: TextPool, question: str, rng: random.Random) -> str:
    msgs = [
        {"role": "system", "parts": [{"type": "text", "content": pool.text(260)}]},
        {"role": "user", "parts": [{"type": "text", "content": question}]},
        {"role": "assistant", "parts": [{"type": "text", "content": pool.text(200)}]},
        {"role": "user", "parts": [{"type": "text", "content": pool.text(260)}]},
    ]
    if rng.random() < 0.3:
        msgs.append({"role": "tool", "parts": [{"type": "tool_call_response",
                                                "id": f"call_{rng.getrandbits(48):012x}",
                                                "response": pool.text(120)}]})
    return json.dumps(msgs, ensure_ascii=False)


def _messages_out(pool: TextPool, rng: random.Random, tool_call: bool) -> str:
    parts: list[dict[str, Any]] = [{"type": "text", "content": pool.text(850)}]
    if tool_call:
        parts.append({"type": "tool_call", "id": f"call_{rng.getrandbits(48):012x}",
                      "name": rng.choice(TOOLS), "arguments": {"query": pool.text(60)}})
    return json.dumps([{"role": "assistant", "parts": parts,
                        "finish_reason": "tool_call" if tool_call else "stop"}], ensure_ascii=False)


class TraceFactory:
    """One realistic LangGraph-style agent trace of 10 spans: an agent root, graph node spans,
    2-3 `chat <model>` LLM spans with gen_ai.* messages and usage, a retriever, a tool, and an
    embedding span when there are only 2 LLM calls."""

    def __init__(self, rng: random.Random, env: str) -> None:
        self.rng = rng
        self.env = env
        self.pool = TextPool(rng)

    def _id(self, nbytes: int) -> bytes:
        while True:
            b = self.rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big")
            if any(b):
                return b

    def build(self, index: int, start_ns: int) -> list[SpanSpec]:
        rng, pool = self.rng, self.pool
        trace_id = self._id(16)
        service = rng.randrange(len(SERVICES))
        user = f"user-{rng.randint(1, 5000):05d}"
        session = f"sess-{rng.getrandbits(40):010x}"
        topic = rng.choice(TOPICS)
        question = pool.text(300, head=f"[{topic}] ")
        answer = pool.text(450)
        n_llm = 3 if rng.random() < 0.6 else 2
        error = rng.random() < 0.03
        out: list[SpanSpec] = []
        clock = start_ns

        def span(name: str, parent: bytes | None, start: int, dur_ms: float, attrs: dict[str, Any],
                 kind: Any = Span.SPAN_KIND_INTERNAL, scope: int = 0, failed: bool = False,
                 events: list[Span.Event] | None = None) -> tuple[bytes, int]:
            sid = self._id(8)
            end = start + int(dur_ms * 1e6)
            s = Span(trace_id=trace_id, span_id=sid, parent_span_id=parent or b"", name=name,
                     kind=kind, start_time_unix_nano=start, end_time_unix_nano=end,
                     attributes=_kvs(attrs))
            if failed:
                s.status.code = Status.STATUS_CODE_ERROR
                s.status.message = "tool call failed: upstream timeout after 30s"
            if events:
                s.events.extend(events)
            out.append(SpanSpec(index, service, scope, end, s.SerializeToString()))
            return sid, end

        # Children are created after their parents here but ids must exist first: reserve the
        # root and node ids by building them last (their end time is known once children are).
        root_id = self._id(8)
        nodes: dict[str, bytes] = {n: self._id(8) for n in ("plan", "retrieve", "agent", "respond")}
        meta_base = {"langgraph.graph.name": "support_graph"}

        def llm(parent: bytes, start: int, step: str, tool_call: bool = False) -> int:
            req, resp, provider, host = rng.choice(MODELS)
            tin, tout = rng.randint(350, 2400), rng.randint(80, 700)
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.system": provider,
                "gen_ai.request.model": req,
                "gen_ai.response.model": resp,
                "gen_ai.request.temperature": round(rng.uniform(0, 1), 2),
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(96):024x}",
                "gen_ai.response.finish_reasons": ["tool_calls" if tool_call else "stop"],
                "gen_ai.usage.input_tokens": tin,
                "gen_ai.usage.output_tokens": tout,
                "gen_ai.input.messages": _messages_in(pool, question, rng),
                "gen_ai.output.messages": _messages_out(pool, rng, tool_call),
                "server.address": host,
                "server.port": 443,
                "langgraph.step.name": step,
            }
            _, end = span(f"chat {req}", parent, start, rng.uniform(400, 3500), attrs,
                          Span.SPAN_KIND_CLIENT, scope=1)
            return end

        def node(name: str, step: int, start: int, end: int, state_in: str, state_out: str) -> None:
            attrs = {"openinference.span.kind": "CHAIN", "langgraph.node": name,
                     "langgraph.step": step, **meta_base,
                     "input.value": json.dumps({"messages": [state_in]}, ensure_ascii=False),
                     "input.mime_type": "application/json",
                     "output.value": json.dumps({"messages": [state_out]}, ensure_ascii=False),
                     "output.mime_type": "application/json",
                     "metadata": json.dumps({"langgraph_node": name, "langgraph_step": step,
                                             "thread_id": session}, ensure_ascii=False)}
            s = Span(trace_id=trace_id, span_id=nodes[name], parent_span_id=root_id, name=name,
                     kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=start,
                     end_time_unix_nano=end, attributes=_kvs(attrs))
            out.append(SpanSpec(index, service, 2, end, s.SerializeToString()))

        # plan -> chat
        t0 = clock + int(rng.uniform(1, 5) * 1e6)
        e = llm(nodes["plan"], t0 + 1_000_000, "plan")
        node("plan", 1, t0, e + 500_000, pool.text(200), pool.text(250))
        # retrieve -> retriever (-> embeddings)
        t1 = e + 1_000_000
        r_start = t1 + 500_000
        emb_end = r_start
        retr_id = self._id(8)
        if n_llm == 2:
            _, emb_end = span("embeddings text-embedding-3-small", retr_id, r_start + 200_000,
                              rng.uniform(40, 200), {
                                  "gen_ai.operation.name": "embeddings",
                                  "gen_ai.provider.name": "openai",
                                  "gen_ai.request.model": "text-embedding-3-small",
                                  "gen_ai.usage.input_tokens": rng.randint(20, 120),
                                  "input.value": pool.text(700, head=question[:200]),
                                  "server.address": "api.openai.com",
                              }, Span.SPAN_KIND_CLIENT, scope=1)
        docs: dict[str, Any] = {}
        for i in range(3):
            docs[f"retrieval.documents.{i}.document.id"] = f"kb-{rng.randint(1, 90000)}"
            docs[f"retrieval.documents.{i}.document.score"] = round(rng.uniform(0.55, 0.95), 4)
            docs[f"retrieval.documents.{i}.document.content"] = pool.text(280)
        r_end = max(emb_end, r_start) + int(rng.uniform(20, 150) * 1e6)
        rs = Span(trace_id=trace_id, span_id=retr_id, parent_span_id=nodes["retrieve"],
                  name="VectorStoreRetriever", kind=Span.SPAN_KIND_INTERNAL,
                  start_time_unix_nano=r_start, end_time_unix_nano=r_end, attributes=_kvs({
                      "openinference.span.kind": "RETRIEVER", "input.value": question[:300],
                      **docs, "metadata": json.dumps({"ls_retriever_name": "pgvector", "k": 3})}))
        out.append(SpanSpec(index, service, 0, r_end, rs.SerializeToString()))
        node("retrieve", 2, t1, r_end + 300_000, pool.text(150), pool.text(250))
        # agent -> chat (tool call) -> tool
        t2 = r_end + 1_000_000
        e = llm(nodes["agent"], t2 + 500_000, "agent", tool_call=True)
        tool = rng.choice(TOOLS)
        ev = None
        if error:
            ev = [Span.Event(name="exception", time_unix_nano=e + 30_000_000, attributes=_kvs({
                "exception.type": "TimeoutError",
                "exception.message": "upstream did not answer within 30s",
                "exception.stacktrace": "Traceback (most recent call last):\n  File \"tools.py\", "
                                        "line 88, in run\nTimeoutError: upstream timeout"}))]
        _, tool_end = span(f"execute_tool {tool}", nodes["agent"], e + 200_000,
                           rng.uniform(50, 1200), {
                               "gen_ai.operation.name": "execute_tool",
                               "gen_ai.tool.name": tool,
                               "gen_ai.tool.call.id": f"call_{rng.getrandbits(48):012x}",
                               "openinference.span.kind": "TOOL",
                               "tool.name": tool,
                               "input.value": json.dumps({"query": pool.text(200)}, ensure_ascii=False),
                               "input.mime_type": "application/json",
                               "output.value": pool.text(700),
                           }, failed=error, events=ev)
        node("agent", 3, t2, tool_end + 400_000, pool.text(150), pool.text(250))
        # respond (-> chat)
        t3 = tool_end + 800_000
        e = llm(nodes["respond"], t3 + 300_000, "respond") if n_llm == 3 else t3 + 2_000_000
        node("respond", 4, t3, e + 300_000, pool.text(200), answer[:300])
        # root
        root_end = e + 1_500_000
        root_attrs = {
            "openinference.span.kind": "AGENT",
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support_graph",
            "user.id": user,
            "session.id": session,
            "gen_ai.conversation.id": session,
            "input.value": question,
            "input.mime_type": "text/plain",
            "output.value": answer,
            "output.mime_type": "text/plain",
            "langgraph.graph.name": "support_graph",
            "http.route": "/v1/chat",
        }
        root = Span(trace_id=trace_id, span_id=root_id, name="invoke_agent support_graph",
                    kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=clock,
                    end_time_unix_nano=root_end, attributes=_kvs(root_attrs))
        if error:
            root.status.code = Status.STATUS_CODE_ERROR
            root.status.message = "tool failure"
        out.append(SpanSpec(index, service, 0, root_end, root.SerializeToString()))
        assert len(out) == 10, len(out)
        return out


# -------------------------------------------------------------------- protobuf wire assembly
# Requests are assembled from pre-serialized Span bytes (repeated message fields concatenate), so
# no message object per request is needed; one request per run is parsed back as a check.

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


@dataclass
class Workload:
    bodies: list[bytes]            # request bodies as sent (gzip applied if asked)
    span_counts: list[int]         # spans per request
    trace_sets: list[list[int]]    # trace indexes per request
    raw_bytes: int                 # uncompressed protobuf bytes
    wire_bytes: int                # bytes on the wire (after gzip)
    traces: int
    spans: int
    split_traces: int              # traces whose spans went into more than one request
    child_first_traces: int        # traces where some child is in an earlier request than its root
    build_s: float


def build_workload(n_spans: int, batch: int, env: str, seed: int, use_gzip: bool) -> Workload:
    t = time.perf_counter()
    rng = random.Random(seed)
    factory = TraceFactory(rng, env)
    n_traces = (n_spans + 9) // 10
    # Traces overlap like in a busy service: a new one starts every ~1/8 of a trace's duration,
    # and spans are exported in end order (children end before their parents), as the OTel batch
    # span processor does. Requests cut that stream, so traces at request boundaries are split and
    # their children arrive before the root.
    base = time.time_ns() - (n_traces * 800 + 120_000) * 1_000_000
    spans: list[SpanSpec] = []
    for i in range(n_traces):
        spans.extend(factory.build(i, base + i * 800_000_000 + rng.randint(0, 300_000_000)))
    spans.sort(key=lambda s: s.end_ns)
    spans = spans[:n_spans]
    resources = [_resource(i, env, rng) for i in range(len(SERVICES))]
    scopes = [InstrumentationScope(name=n, version=v).SerializeToString() for n, v in SCOPES]
    bodies, counts, tsets = [], [], []
    raw_total = wire_total = 0
    trace_reqs: dict[int, set[int]] = {}
    root_req: dict[int, int] = {}
    first_req: dict[int, int] = {}
    for r, off in enumerate(range(0, len(spans), batch)):
        chunk = spans[off:off + batch]
        groups: dict[int, dict[int, list[bytes]]] = {}
        for s in chunk:
            groups.setdefault(s.service, {}).setdefault(s.scope, []).append(s.data)
            trace_reqs.setdefault(s.trace_index, set()).add(r)
            first_req.setdefault(s.trace_index, r)
        for s in chunk:
            # the root is the last span of its trace in end order
            root_req[s.trace_index] = r
        parts = []
        for service, by_scope in groups.items():
            rs = _field(1, resources[service])
            for scope, datas in by_scope.items():
                rs += _field(2, _field(1, scopes[scope]) + b"".join(_field(2, d) for d in datas))
            parts.append(_field(1, rs))
        body = b"".join(parts)
        raw_total += len(body)
        if use_gzip:
            body = gzip_mod.compress(body, 6)
        wire_total += len(body)
        bodies.append(body)
        counts.append(len(chunk))
        tsets.append(sorted({s.trace_index for s in chunk}))
    # sanity: the hand-assembled bytes parse as an ExportTraceServiceRequest with every span
    check = ExportTraceServiceRequest()
    check.ParseFromString(gzip_mod.decompress(bodies[0]) if use_gzip else bodies[0])
    got = sum(len(ss.spans) for rs in check.resource_spans for ss in rs.scope_spans)
    assert got == counts[0], (got, counts[0])
    split = sum(1 for reqs in trace_reqs.values() if len(reqs) > 1)
    child_first = sum(1 for t, r in root_req.items() if first_req[t] < r)
    return Workload(bodies, counts, tsets, raw_total, wire_total, len(trace_reqs), len(spans),
                    split, child_first, time.perf_counter() - t)


# ============================================================================ server process


def free_ports(n: int) -> list[int]:
    """n distinct free ports: each socket stays bound until all are chosen (one at a time, the
    kernel may hand out a port just released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def read_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / RssAnon / RssFile in bytes from /proc/<pid>/status (empty if gone).
    RssFile is file-backed pages mapped into the process, e.g. SQLite's mmap of the database."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def read_pss(pid: int) -> int:
    """Proportional set size in bytes: private pages plus a share of pages shared with other
    processes (the forked decode workers share most of their memory with the server)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def server_pids(pid: int) -> list[int]:
    """The server and its decode workers."""
    return [pid, *children_of(pid)]


def tree_cpu_seconds(pid: int) -> float | None:
    main = cpu_seconds(pid)
    if main is None:
        return None
    return main + sum(cpu_seconds(k) or 0.0 for k in children_of(pid))


def proc_stat(path: str) -> tuple[str, float] | None:
    """(command name, CPU seconds) of a process or thread from its /proc stat file."""
    try:
        with open(path) as f:
            stat = f.read()
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 1:].split()
        return name, (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds(pid: int) -> float | None:
    found = proc_stat(f"/proc/{pid}/stat")
    return found[1] if found else None


def thread_cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU seconds of the server and its decode workers by OS thread name: the server names its
    writer, checkpointer, indexer and decode workers `th-*`; the event loop and every other thread
    count together (threads that ended meanwhile are missed)."""
    out: dict[str, float] = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            found = proc_stat(f"/proc/{pid}/task/{tid}/stat")
            if found is not None:
                key = found[0] if found[0].startswith("th-") else "event loop and others"
                out[key] = out.get(key, 0.0) + found[1]
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (from /proc/stat), to see the database's and any
    other process's share next to the server's and the client's."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    busy = sum(vals[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def machine_speed_us() -> float:
    """Microseconds of one `sum(range(1000))`, best of five rounds: how fast this machine runs Python
    right now. The same code's spans/s moves with it (it took ~10 on the fastest day seen, ~28 on
    the slowest), so figures are comparable only at a similar speed."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(2_000):
            sum(range(1000))
        best = min(best, time.perf_counter() - t)
    return round(best / 2_000 * 1e6, 2)


def db_backend_cpu(dbname: str | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving `dbname` (matched on its process title)."""
    out: dict[int, float] = {}
    if not dbname:
        return out
    needle = f" {dbname} ".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                title = f.read()
        except OSError:
            continue
        if title.startswith(b"postgres:") and needle in title:
            cpu = cpu_seconds(int(entry))
            if cpu is not None:
                out[int(entry)] = cpu
    return out


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(entry))
    return kids


class RssSampler(threading.Thread):
    """Peaks of the server process's RSS and of the whole server's (it and its workers) PSS and
    summed RSS (which counts shared pages once per process)."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.pid, self.interval = pid, interval
        self.peak_rss = 0
        self.hwm = 0
        self.peak_anon = 0
        self.peak_file = 0
        self.peak_pss_sum = 0
        self.peak_rss_sum = 0
        self.workers = 0
        self.samples = 0
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.sample()
            self._stop_evt.wait(self.interval)

    def sample(self) -> None:
        st = read_status(self.pid)
        self.peak_rss = max(self.peak_rss, st.get("VmRSS", 0))
        self.hwm = max(self.hwm, st.get("VmHWM", 0))
        self.peak_anon = max(self.peak_anon, st.get("RssAnon", 0))
        self.peak_file = max(self.peak_file, st.get("RssFile", 0))
        pids = server_pids(self.pid)
        self.workers = max(self.workers, len(pids) - 1)
        self.peak_rss_sum = max(self.peak_rss_sum, sum(read_status(p).get("VmRSS", 0) for p in pids))
        self.samples += 1
        if self.samples % 10 == 1:
            # smaps_rollup walks the page tables under the server's mmap lock, which its mmap /
            # munmap calls then wait for: read it once a second, not every sample.
            self.peak_pss_sum = max(self.peak_pss_sum, sum(read_pss(p) for p in pids))

    def stop(self) -> None:
        self.sample()
        self._stop_evt.set()


@dataclass
class ServerHandle:
    api_url: str
    otlp_http: tuple[str, int]
    grpc_target: str
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None            # the python server process (differs from proc under py-spy)
    workdir: str | None = None
    log_path: str | None = None
    start_s: float | None = None
    db_desc: str = ""
    profile_kind: str | None = None
    profile_path: str | None = None
    spy: str | None = None             # py-spy binary, when it attaches for the send window only
    pg_admin: str | None = None
    pg_db: str | None = None
    store_db: str | None = None        # what measure_stored() reads: SQLite path or libpq URL


def server_metrics(api_url: str, names: tuple[str, ...]) -> dict[str, float]:
    """The named samples of the server's /metrics that it exposes ({} if it does not answer)."""
    u = urllib.parse.urlsplit(api_url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return {}
    finally:
        conn.close()
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            found[name] = float(value)
    return found


def writer_counters(api_url: str) -> tuple[float, float] | None:
    """(seconds busy, transactions) of the server's writer, from its /metrics."""
    found = server_metrics(api_url, ("tracehub_writer_busy_seconds_total", "tracehub_writer_transactions_total"))
    if len(found) < 2:
        return None  # a server from before these metrics
    return found["tracehub_writer_busy_seconds_total"], found["tracehub_writer_transactions_total"]


def auto_decisions(api_url: str) -> int | None:
    """Traces the server's decision worker has decided (its /metrics), None if it does not say."""
    found = server_metrics(api_url, ("tracehub_auto_decisions_total",))
    return int(found["tracehub_auto_decisions_total"]) if found else None


def http_get_json(url: str, key: str, timeout: float = 30) -> tuple[int, Any]:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=timeout)
    try:
        path = u.path + ("?" + u.query if u.query else "")
        conn.request("GET", path, headers={"x-api-key": key, "accept": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        try:  # orjson: the check's own parsing counts in the time until queryable; keep it small
            return resp.status, orjson.loads(data) if data else None
        except ValueError:
            return resp.status, data.decode(errors="replace")
    finally:
        conn.close()


def _pg_admin_connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def start_server(args: argparse.Namespace) -> ServerHandle:
    workdir = tempfile.mkdtemp(prefix="tracehub_bench_")
    port, gport, hport = free_ports(3)
    env = dict(os.environ)
    env["TRACEHUB_LOG_LEVEL"] = args.server_log_level
    handle = ServerHandle(f"http://127.0.0.1:{port}", ("127.0.0.1", hport), f"127.0.0.1:{gport}",
                          workdir=workdir)
    if args.db == "sqlite":
        path = os.path.join(workdir, "tracehub.db")
        env["TRACEHUB_DATABASE_URL"] = f"sqlite:///{path}"
        handle.db_desc = f"sqlite {path}"
        handle.store_db = path
    else:
        name = "tracehub_bench_" + "".join(random.choices(string.ascii_lowercase + string.digits, k=10))
        with _pg_admin_connect(args.pg_admin) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        handle.pg_admin, handle.pg_db = args.pg_admin, name
        u = urllib.parse.urlsplit(args.pg_admin)
        env["TRACEHUB_DATABASE_URL"] = (f"postgresql+psycopg://{u.username or 'postgres'}"
                                        f"@{u.hostname or '127.0.0.1'}:{u.port or 5432}/{name}")
        handle.db_desc = f"postgresql {u.hostname}:{u.port or 5432}/{name}"
        handle.store_db = urllib.parse.urlunsplit(u._replace(path="/" + name))
    serve = [str(args.python), "-m", "tracehub", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--otlp-grpc-port", str(gport), "--otlp-http-port", str(hport)]
    cmd = serve
    if args.profile:
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(args.python).parent))
        if spy and not args.cprofile:
            handle.profile_kind = "py-spy"
            handle.profile_path = os.path.join(workdir, "pyspy.txt")
            if args.profile_window == "all":
                cmd = [spy, "record", "--format", "raw", "--threads", "--rate", str(args.profile_rate),
                       "--output", handle.profile_path] + (["--gil"] if args.profile_gil else []) + [
                       "--"] + serve
            else:
                handle.spy = spy  # attached by run() around the send phase
        else:
            handle.profile_kind = "cProfile"
            handle.profile_path = os.path.join(workdir, "cprofile.out")
            cmd = [str(args.python), "-m", "cProfile", "-o", handle.profile_path] + serve[1:]
    handle.log_path = os.path.join(workdir, "server.log")
    logf = open(handle.log_path, "wb")
    t0 = time.perf_counter()
    handle.proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    logf.close()
    deadline = t0 + args.start_timeout
    while True:
        if handle.proc.poll() is not None:
            raise RuntimeError(f"server exited with {handle.proc.returncode}:\n{tail(handle.log_path)}")
        try:
            status, _ = http_get_json(handle.api_url + "/healthz", args.api_key, timeout=2)
            if status == 200:
                break
        except OSError:
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError(f"server did not answer /healthz in {args.start_timeout}s:\n"
                               f"{tail(handle.log_path)}")
        time.sleep(0.01)
    handle.start_s = time.perf_counter() - t0
    handle.pid = handle.proc.pid
    if handle.profile_kind == "py-spy" and handle.spy is None:
        for _ in range(100):
            kids = children_of(handle.proc.pid)
            if kids:
                handle.pid = kids[0]
                break
            time.sleep(0.05)
    return handle


def tail(path: str | None, n: int = 40) -> str:
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        return b"".join(f.readlines()[-n:]).decode(errors="replace")


def stop_server(handle: ServerHandle, timeout: float = 60) -> float | None:
    if handle.proc is None:
        return None
    t = time.perf_counter()
    target = handle.pid or handle.proc.pid
    try:
        os.kill(target, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        handle.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log(f"server did not stop in {timeout}s; killing it")
        os.killpg(handle.proc.pid, signal.SIGKILL)
        handle.proc.wait()
        return None
    return time.perf_counter() - t


def cleanup(handle: ServerHandle, keep: bool) -> None:
    if handle.pg_db and not keep:
        try:
            with _pg_admin_connect(handle.pg_admin or "") as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{handle.pg_db}" WITH (FORCE)')
        except Exception as exc:  # noqa: BLE001 - report, never mask the results
            log(f"could not drop database {handle.pg_db}: {exc}")
    if handle.workdir and not keep:
        shutil.rmtree(handle.workdir, ignore_errors=True)


# ============================================================================ senders


@dataclass
class SendStats:
    latencies: list[float] = field(default_factory=list)   # accepted attempts, seconds
    acked_spans: int = 0
    rejected_spans: int = 0
    failed_requests: int = 0
    failed_spans: int = 0
    retries: int = 0
    retry_reasons: dict[str, int] = field(default_factory=dict)
    retry_sleep_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    acked_requests: list[int] = field(default_factory=list)
    first_send: float | None = None
    last_ack: float | None = None

    def merge(self, other: SendStats) -> None:
        self.latencies += other.latencies
        self.acked_spans += other.acked_spans
        self.rejected_spans += other.rejected_spans
        self.failed_requests += other.failed_requests
        self.failed_spans += other.failed_spans
        self.retries += other.retries
        for k, v in other.retry_reasons.items():
            self.retry_reasons[k] = self.retry_reasons.get(k, 0) + v
        self.retry_sleep_s += other.retry_sleep_s
        self.errors += other.errors[: max(0, 10 - len(self.errors))]
        self.acked_requests += other.acked_requests
        if other.last_ack is not None:
            self.last_ack = max(self.last_ack or 0.0, other.last_ack)




# Set when the run is abandoned (a stalled server, SIGTERM / Ctrl-C): senders stop taking work and
# stop retrying.
ABORT = threading.Event()


def _rejected(payload: bytes) -> int:
    if not payload:
        return 0
    resp = ExportTraceServiceResponse()
    try:
        resp.ParseFromString(payload)
    except Exception:  # noqa: BLE001
        return 0
    return resp.partial_success.rejected_spans


def http_sender(target: tuple[str, int], key: str, use_gzip: bool, work: Workload,
                counter: Callable[[], int], stats: SendStats, timeout: float,
                budget: float) -> None:
    headers = {"Content-Type": "application/x-protobuf", "x-api-key": key}
    if use_gzip:
        headers["Content-Encoding"] = "gzip"
    conn = http.client.HTTPConnection(*target, timeout=timeout)
    n = len(work.bodies)
    while not ABORT.is_set():
        i = counter()
        if i >= n:
            break
        body = work.bodies[i]
        give_up = time.perf_counter() + budget
        attempt = -1
        while True:
            attempt += 1
            t = time.perf_counter()
            try:
                conn.request("POST", "/v1/traces", body, headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(*target, timeout=timeout)
                reason, delay = f"connection: {type(exc).__name__}", min(0.2 * (attempt + 1), 5.0)
            else:
                status = resp.status
                if status == 200:
                    stats.latencies.append(time.perf_counter() - t)
                    rej = _rejected(data)
                    stats.acked_spans += work.span_counts[i] - rej
                    stats.rejected_spans += rej
                    stats.acked_requests.append(i)
                    stats.last_ack = time.perf_counter()
                    break
                if status not in (429, 502, 503, 504):
                    stats.failed_requests += 1
                    stats.failed_spans += work.span_counts[i]
                    stats.errors.append(f"request {i}: HTTP {status} {data[:200]!r}")
                    break
                reason = f"HTTP {status}"
                ra = resp.getheader("retry-after")
                try:
                    delay = float(ra) if ra else min(0.25 * 2 ** attempt, 5.0)
                except ValueError:
                    delay = 1.0
            if time.perf_counter() + delay > give_up or ABORT.is_set():
                stats.failed_requests += 1
                stats.failed_spans += work.span_counts[i]
                stats.errors.append(f"request {i}: gave up after {attempt + 1} attempts"
                                    + (" (run aborted)" if ABORT.is_set() else f" in {budget:.0f}s")
                                    + f" (last: {reason})")
                break
            stats.retries += 1
            stats.retry_reasons[reason] = stats.retry_reasons.get(reason, 0) + 1
            stats.retry_sleep_s += delay
            ABORT.wait(delay)
    conn.close()


def _grpc_retry_delay(err: Any) -> float | None:
    """RetryInfo delay from grpc-status-details-bin, None if there is none."""
    from google.rpc import error_details_pb2, status_pb2

    for k, v in err.trailing_metadata() or ():
        if k == "grpc-status-details-bin":
            st = status_pb2.Status()
            try:
                st.ParseFromString(v)
            except Exception:  # noqa: BLE001
                return None
            for d in st.details:
                if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    d.Unpack(info)
                    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


def grpc_sender(target: str, key: str, use_gzip: bool, work: Workload,
                counter: Callable[[], int], stats: SendStats, timeout: float,
                budget: float) -> None:
    import grpc

    channel = grpc.insecure_channel(target, options=[
        ("grpc.max_send_message_length", 64 * MIB), ("grpc.max_receive_message_length", 16 * MIB),
        ("grpc.use_local_subchannel_pool", 1)])  # one connection per sender, like separate exporters
    export = channel.unary_unary(EXPORT_METHOD, request_serializer=None, response_deserializer=None)
    metadata = (("x-api-key", key),)
    compression = grpc.Compression.Gzip if use_gzip else grpc.Compression.NoCompression
    retryable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                 grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
    n = len(work.bodies)
    while not ABORT.is_set():
        i = counter()
        if i >= n:
            break
        body = work.bodies[i]
        give_up = time.perf_counter() + budget
        attempt = -1
        while True:
            attempt += 1
            t = time.perf_counter()
            try:
                data = export(body, metadata=metadata, timeout=timeout, compression=compression)
            except grpc.RpcError as err:
                code = err.code()
                delay = _grpc_retry_delay(err)
                # OTLP: RESOURCE_EXHAUSTED is retryable only with RetryInfo.
                if code not in retryable or (code == grpc.StatusCode.RESOURCE_EXHAUSTED and delay is None):
                    stats.failed_requests += 1
                    stats.failed_spans += work.span_counts[i]
                    stats.errors.append(f"request {i}: {code.name} {err.details()}")
                    break
                reason = code.name
                if delay is None:
                    delay = min(0.25 * 2 ** attempt, 5.0)
            else:
                stats.latencies.append(time.perf_counter() - t)
                rej = _rejected(data)
                stats.acked_spans += work.span_counts[i] - rej
                stats.rejected_spans += rej
                stats.acked_requests.append(i)
                stats.last_ack = time.perf_counter()
                break
            if time.perf_counter() + delay > give_up or ABORT.is_set():
                stats.failed_requests += 1
                stats.failed_spans += work.span_counts[i]
                stats.errors.append(f"request {i}: gave up after {attempt + 1} attempts"
                                    + (" (run aborted)" if ABORT.is_set() else f" in {budget:.0f}s")
                                    + f" (last: {reason})")
                break
            stats.retries += 1
            stats.retry_reasons[reason] = stats.retry_reasons.get(reason, 0) + 1
            stats.retry_sleep_s += delay
            ABORT.wait(delay)
    channel.close()


def warm_up_grpc(target: str, key: str) -> None:
    """Open and close one channel so the first timed request doesn't pay grpc's lazy init alone."""
    import grpc

    with grpc.insecure_channel(target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
    del key


# ============================================================================ queryable check


def stored_spans(api_url: str, key: str, env: str, workers: int) -> tuple[int, int, float]:
    """(traces, spans) of this run's environment through GET /api/v1/traces, summing span_count
    over every page; pages after the first are fetched by `workers` threads."""
    base = f"{api_url}/api/v1/traces?page_size=200&environment={urllib.parse.quote(env)}"
    t = time.perf_counter()
    status, first = http_get_json(base + "&page=1", key)
    if status != 200:
        raise RuntimeError(f"GET /api/v1/traces answered {status}: {first}")
    total = int(first["total"])
    spans = sum(int(it["span_count"]) for it in first["items"])
    seen = len(first["items"])
    pages = (total + 199) // 200

    def page(p: int) -> tuple[int, int]:
        st, doc = http_get_json(f"{base}&page={p}", key)
        if st != 200:
            raise RuntimeError(f"GET /api/v1/traces page {p} answered {st}: {doc}")
        return len(doc["items"]), sum(int(it["span_count"]) for it in doc["items"])

    if pages > 1:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for n, s in pool.map(page, range(2, pages + 1)):
                seen += n
                spans += s
    return seen, spans, time.perf_counter() - t


def get_times(api_url: str, paths: list[str], key: str, n: int,
              timeout: float = 30, headers: dict[str, str] | None = None) -> list[float] | None:
    """Seconds of n sequential GETs cycling over `paths` (each fetched once first, untimed) on
    one keep-alive connection, with `key` or else `headers`; None if one is not answered 200."""
    u = urllib.parse.urlsplit(api_url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=timeout)
    times = []
    try:
        for k in range(n + len(paths)):
            t = time.perf_counter()
            conn.request("GET", paths[k % len(paths)], headers={"x-api-key": key} if key else headers or {})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                return None
            if k >= len(paths):
                times.append(time.perf_counter() - t)
    finally:
        conn.close()
    return times


def timed_get(url: str, key: str, n: int = 15) -> float | None:
    """Median seconds of n sequential GETs (one warm-up first) on a keep-alive connection."""
    u = urllib.parse.urlsplit(url)
    times = get_times(url, [u.path + ("?" + u.query if u.query else "")], key, n)
    return statistics.median(times) if times else None


def activate_policy(api_url: str, key: str, path: str) -> None:
    """POST /api/v1/policies with the JSON body in `path` (with "active": true, the decision engine
    then decides every trace the run sends)."""
    u = urllib.parse.urlsplit(api_url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=30)
    try:
        conn.request("POST", "/api/v1/policies", body=Path(path).read_bytes(),
                     headers={"x-api-key": key, "content-type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status not in (200, 201):
        raise RuntimeError(f"POST /api/v1/policies answered {resp.status}: {data.decode(errors='replace')}")


def trace_count(api_url: str, key: str, env: str) -> int:
    status, doc = http_get_json(
        f"{api_url}/api/v1/traces?page_size=1&environment={urllib.parse.quote(env)}", key)
    if status != 200:
        raise RuntimeError(f"GET /api/v1/traces answered {status}: {doc}")
    return int(doc["total"])


# ============================================================================ stored bytes


def wait_for_index(api_url: str, key: str, timeout: float) -> dict[str, Any]:
    """Poll GET /readyz until the search index covers every committed row (`search_unindexed_rows`
    0) or `timeout` s pass: the stored bytes are then measured with the index complete."""
    t = time.perf_counter()
    first: dict[str, Any] | None = None
    last: dict[str, Any] = {}
    polls = 0
    while True:
        polls += 1
        try:
            status, doc = http_get_json(f"{api_url}/readyz", key, timeout=30)
        except OSError as exc:
            status, doc = 0, {"error": str(exc)}
        if isinstance(doc, dict) and "search_unindexed_rows" in doc:
            last = doc
            first = first or doc
            if doc["search_unindexed_rows"] == 0:
                break
        elif status in (200, 503):
            return {"caught_up": None, "error": "GET /readyz does not report search_unindexed_rows"}
        if time.perf_counter() - t > timeout:
            break
        time.sleep(0.5)
    left = last.get("search_unindexed_rows")
    return {"caught_up": left == 0, "rows_left": left, "wait_s": round(time.perf_counter() - t, 2),
            "polls": polls, "rows_at_start": (first or {}).get("search_unindexed_rows"),
            "lag_s_at_start": (first or {}).get("search_lag_s")}


def store_group(table: str) -> str:
    """The part of the storage a table counts in, with its indexes (and TOAST on PostgreSQL):
    FTS5 tables and their shadow / vocab tables on SQLite and the *_search document tables on
    PostgreSQL are the search index; the trace rows and their hourly roll-ups are traces."""
    if table == "spans":
        return "spans"
    if "_fts" in table or table.endswith(("_vocab", "_search")):
        return "search"
    if table == "traces" or table.startswith("trace_hour"):
        return "traces"
    return "other"


def sqlite_stored(path: str) -> dict[str, Any]:
    """Bytes of the pages each table uses with its indexes (dbstat), read from a read-only
    connection beside the running server (the WAL's newer pages included), and the file sizes."""
    conn = sqlite3.connect(f"file:{urllib.parse.quote(path)}?mode=ro", uri=True, timeout=60)
    try:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        tables: dict[str, int] = {}
        btrees: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, pgsize FROM dbstat WHERE aggregate = TRUE"):
            table = owner.get(name, name)
            tables[table] = tables.get(table, 0) + int(size)
            btrees[name] = int(size)
        span_rows = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0] * page
    finally:
        conn.close()
    wal = path + "-wal"
    # the largest tables and indexes each on its own
    return {"tables": tables, "span_rows": span_rows,
            "btrees": dict(sorted(btrees.items(), key=lambda kv: -kv[1])[:12]),
            "files": {"main": os.path.getsize(path), "wal": os.path.getsize(wal) if os.path.exists(wal) else 0,
                      "free_pages": free}}


def pg_stored(dsn: str) -> dict[str, Any]:
    """pg_total_relation_size (heap, TOAST, indexes) of each table, partitions counted under
    their root, and pg_database_size (the catalogs included)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT r.relname, pg_total_relation_size(c.oid), pg_table_size(c.oid),"
            " pg_indexes_size(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_class r ON r.oid = coalesce(pg_partition_root(c.oid), c.oid)"
            " WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg_toast%'").fetchall()
        span_rows = conn.execute("SELECT count(*) FROM spans").fetchone()[0]
        db_size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    tables: dict[str, int] = {}
    split: dict[str, list[int]] = {}  # table (heap, TOAST) and its indexes
    for name, size, table_size, index_size in rows:
        tables[name] = tables.get(name, 0) + int(size)
        both = split.setdefault(name, [0, 0])
        both[0] += int(table_size)
        both[1] += int(index_size)
    largest = sorted(split.items(), key=lambda kv: -sum(kv[1]))[:6]
    return {"tables": tables, "span_rows": span_rows, "database_bytes": int(db_size),
            "table_and_indexes": {k: {"table": v[0], "indexes": v[1]} for k, v in largest}}


def measure_stored(store_db: str, otlp_bytes_per_span: float) -> dict[str, Any]:
    """What the database holds a stored span, by part, against the span's OTLP protobuf size."""
    pg = store_db.startswith(("postgresql:", "postgres:"))
    t = time.perf_counter()
    found = pg_stored(store_db) if pg else sqlite_stored(store_db)
    groups = dict.fromkeys(("spans", "search", "traces", "other"), 0)
    for table, size in found["tables"].items():
        groups[store_group(table)] += size
    total = sum(groups.values())
    n = found["span_rows"]
    found["tables"] = dict(sorted(found["tables"].items(), key=lambda kv: -kv[1]))
    return {"database": "postgresql" if pg else "sqlite", **found, "bytes": {**groups, "total": total},
            "bytes_per_span": {k: round(v / n) for k, v in {**groups, "total": total}.items()} if n else None,
            "otlp_bytes_per_span": round(otlp_bytes_per_span),
            "ratio": round(total / n / otlp_bytes_per_span, 3) if n else None,
            "measure_s": round(time.perf_counter() - t, 2)}


# ============================================================================ profile report


def pyspy_report(path: str, top: int) -> dict[str, Any]:
    self_c: dict[str, int] = {}
    self_lines: dict[str, int] = {}
    call_sites: dict[str, int] = {}
    incl_c: dict[str, int] = {}
    threads: dict[str, int] = {}
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count_s = line.rpartition(" ")
            try:
                count = int(count_s)
            except ValueError:
                continue
            frames = stack.split(";")
            thread = "?"
            if frames and frames[0].startswith("thread ("):
                thread = frames.pop(0)
                # "thread (1234): name" -> name
                thread = thread.split(": ", 1)[1] if ": " in thread else thread
                if thread.startswith("ThreadPoolExecutor") or thread.startswith("AnyIO worker"):
                    thread = thread.split("-")[0] + " (pool)"
            total += count
            threads[thread] = threads.get(thread, 0) + count
            keys = [_frame_key(fr) for fr in frames]
            if keys:
                self_c[keys[-1]] = self_c.get(keys[-1], 0) + count
                self_lines[frames[-1]] = self_lines.get(frames[-1], 0) + count
                # the leaf and the line that called it: tells which executemany / execute it was
                site = frames[-1] + (" <- " + frames[-2] if len(frames) > 1 else "")
                call_sites[site] = call_sites.get(site, 0) + count
            for k in set(keys):
                incl_c[k] = incl_c.get(k, 0) + count

    def rows(d: dict[str, int]) -> list[dict[str, Any]]:
        return [{"function": k, "samples": v, "pct": round(100 * v / total, 1) if total else 0}
                for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {"kind": "py-spy", "samples": total,
            "threads": {k: v for k, v in sorted(threads.items(), key=lambda kv: -kv[1])},
            "self": rows(self_c), "inclusive": rows(incl_c), "self_lines": rows(self_lines)[:15],
            "call_sites": rows(call_sites)[:15]}


def _frame_key(frame: str) -> str:
    # "Writer._write_spans (tracehub/store/writer.py:312)" -> "Writer._write_spans (tracehub/store/writer.py)"
    name, sep, loc = frame.partition(" (")
    if sep and ":" in loc:
        loc = loc.rsplit(":", 1)[0]
        return f"{name} ({loc})"
    return frame


def cprofile_report(path: str, top: int) -> dict[str, Any]:
    import pstats

    st = pstats.Stats(path)
    entries: list[tuple[float, float, int, str]] = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        entries.append((float(tt), float(ct), int(nc), f"{func} ({file}:{line})"))
    total = sum(e[0] for e in entries) or 1.0

    def rows(idx: int) -> list[dict[str, Any]]:
        def secs(e: tuple[float, float, int, str]) -> float:
            return e[0] if idx == 0 else e[1]

        return [{"function": e[3], "seconds": round(secs(e), 3), "calls": e[2],
                 "pct": round(100 * secs(e) / total, 1)}
                for e in sorted(entries, key=lambda e: -secs(e))[:top]]

    return {"kind": "cProfile (main thread only: the writer thread is not seen)",
            "total_s": round(total, 3), "self": rows(0), "inclusive": rows(1)}


# ============================================================================ main


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(q / 100 * (len(v) - 1)))))
    return v[k]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/ingest.py",
        description="OTLP ingest benchmark for LLM Trace Hub: spans/s until queryable, loss, "
                    "latency, server RSS and start time. Spawns its own server with a fresh "
                    "database unless --url is given.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("server")
    g.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite",
                   help="database of the spawned server: a temp SQLite file, or a new PostgreSQL "
                        "database tracehub_bench_<random> that is dropped afterwards")
    g.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/test",
                   help="libpq URL used to CREATE / DROP the benchmark database")
    g.add_argument("--url", default=None,
                   help="use an already running server: its REST base URL (e.g. http://127.0.0.1:8000);"
                        " RSS/start time are then not measured")
    g.add_argument("--otlp-url", default=None,
                   help="with --url: OTLP/HTTP base URL (default: --url, which also serves /v1/traces)")
    g.add_argument("--grpc", default=None, help="with --url: OTLP/gRPC target host:port")
    g.add_argument("--store-db", default=None, metavar="PATH_OR_URL",
                   help="with --url: that server's database, a SQLite file or a postgresql:// URL, to "
                        "measure stored bytes a span in (over every span it holds); else not measured")
    g.add_argument("--python", default=str(VENV_PYTHON if VENV_PYTHON.exists() else sys.executable),
                   help="interpreter that runs `-m tracehub serve`")
    g.add_argument("--api-key", default="dev-key", help="sent as x-api-key")
    g.add_argument("--server-log-level", default="warning", help="TRACEHUB_LOG_LEVEL of the server")
    g.add_argument("--start-timeout", type=float, default=60.0, help="seconds to wait for /healthz")
    g.add_argument("--idle-wait", type=float, default=1.0,
                   help="seconds to let the started server settle before sampling idle RSS")
    g.add_argument("--keep", action="store_true",
                   help="keep the temp directory / PostgreSQL database and print where they are")
    w = p.add_argument_group("workload")
    w.add_argument("--spans", type=int, default=100_000, help="spans to send (10 per trace)")
    w.add_argument("--batch-size", type=int, default=512, help="spans per export request")
    w.add_argument("--concurrency", type=int, default=4, help="concurrent senders")
    w.add_argument("--transport", choices=("http", "grpc"), default="http",
                   help="OTLP/HTTP protobuf on the OTLP HTTP port, or OTLP/gRPC")
    w.add_argument("--gzip", action="store_true", help="gzip bodies (pre-compressed for http; "
                                                        "grpc compresses in its C core)")
    w.add_argument("--request-timeout", type=float, default=120.0,
                   help="per-request timeout in seconds; a timed-out request is retried (the server "
                        "must de-duplicate it). OTel exporters default to 10")
    w.add_argument("--retry-budget", type=float, default=600.0,
                   help="seconds one request may spend retrying (429/503, RESOURCE_EXHAUSTED/"
                        "UNAVAILABLE, connection errors) before it counts as undelivered")
    w.add_argument("--stall-timeout", type=float, default=180.0,
                   help="abandon the send phase when no request has been acknowledged for this many "
                        "seconds (0: never); the result then says 'stalled'")
    w.add_argument("--seed", type=int, default=None, help="workload seed (default: random)")
    w.add_argument("--policy", default=None, metavar="FILE",
                   help="POST this JSON body to /api/v1/policies before the run (with \"active\": true,"
                        " ingest is measured while the decision engine decides each trace)")
    w.add_argument("--query-timeout", type=float, default=300.0,
                   help="seconds to wait after the last ack for every span to be queryable")
    w.add_argument("--index-timeout", type=float, default=300.0,
                   help="seconds to wait, once every span is queryable, for the search index to cover"
                        " every row (GET /readyz) before measuring stored bytes")
    o = p.add_argument_group("output")
    o.add_argument("--progress", type=float, default=15.0,
                   help="seconds between progress lines on stderr while sending (0: none)")
    o.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    o.add_argument("--profile", action="store_true",
                   help="run the server under `py-spy record` (cProfile if py-spy is missing) and "
                        "print the top functions; throughput is lower while profiling")
    o.add_argument("--cprofile", action="store_true",
                   help="with --profile: force cProfile (main thread only, whole server lifetime)")
    o.add_argument("--profile-window", choices=("send", "all"), default="send",
                   help="py-spy: attach from the first request to the last acknowledgement (send), "
                        "or record the server's whole life incl. start-up and the REST checks (all)")
    o.add_argument("--profile-gil", action="store_true",
                   help="py-spy --gil: sample only the thread holding the GIL (where Python CPU goes;"
                        " C code running without the GIL, e.g. SQLite, is then not seen)")
    o.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second")
    o.add_argument("--top", type=int, default=25, help="profile rows to print")
    args = p.parse_args(argv)
    if args.url is None and (args.grpc or args.otlp_url):
        p.error("--grpc / --otlp-url need --url (the REST API is how stored spans are counted)")
    if args.url and args.transport == "grpc" and not args.grpc:
        p.error("--transport grpc with --url needs --grpc HOST:PORT")
    if args.store_db and not args.url:
        p.error("--store-db is for --url (a spawned server's database is measured anyway)")
    if args.url and args.profile:
        p.error("--profile needs a spawned server (no --url)")
    if args.spans < 1 or args.batch_size < 1 or args.concurrency < 1:
        p.error("--spans, --batch-size and --concurrency must be positive")
    return args


# Whether a server started with this environment reads OTLP with the C reader: built and not turned off.
_READER_CHECK = ("from tracehub.collector import otlp; from tracehub.settings import Settings;"
                 " print(otlp.WIRE_READER and Settings.from_env().otlp_c_reader)")


def server_code_version(python: str | None) -> dict[str, Any]:
    """The commit the server code is at, whether tracehub/ differs from it (read-only git), and
    whether the server's interpreter `python` has the C reader of OTLP requests (None: unknown)."""
    out: dict[str, Any] = {"commit": None, "tracehub_modified": None, "c_reader": None}
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        diff = subprocess.run(["git", "diff", "--stat", "HEAD", "--", "tracehub"], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        out.update(commit=head or None, tracehub_modified=bool(diff))
        if python is not None:
            # Not run in the checkout, whose tracehub/ would come before PYTHONPATH's.
            python = os.path.abspath(python) if os.sep in python else python
            found = subprocess.run([python, "-c", _READER_CHECK], cwd="/", capture_output=True, text=True,
                                   timeout=30).stdout.strip()
            out["c_reader"] = {"True": True, "False": False}.get(found)
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    env = f"bench-{seed:08x}-{os.getpid()}"
    log(f"building {args.spans} spans (seed {seed}, environment {env}) ...")
    # OTLP/HTTP bodies are gzipped ahead of time; gRPC compresses in its C core when asked
    work = build_workload(args.spans, args.batch_size, env, seed, args.gzip and args.transport == "http")
    log(f"built {len(work.bodies)} requests, {work.raw_bytes / MIB:.1f} MiB protobuf"
        f" ({work.wire_bytes / MIB:.1f} MiB on the wire) in {work.build_s:.1f}s")

    handle: ServerHandle | None = None
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "server_code": server_code_version(None if args.url else str(args.python)),
        "config": {"db": None if args.url else args.db, "transport": args.transport,
                   "gzip": args.gzip, "spans": work.spans, "batch_size": args.batch_size,
                   "concurrency": args.concurrency, "profile": bool(args.profile),
                   "profile_window": args.profile_window if args.profile else None,
                   "environment": env, "seed": seed, "policy": args.policy},
        "workload": {"traces": work.traces, "requests": len(work.bodies),
                     "spans_per_trace": round(work.spans / work.traces, 2),
                     "protobuf_bytes": work.raw_bytes, "wire_bytes": work.wire_bytes,
                     "bytes_per_span": round(work.raw_bytes / work.spans),
                     "traces_split_across_requests": work.split_traces,
                     "traces_with_children_before_root": work.child_first_traces,
                     "build_s": round(work.build_s, 2)},
    }
    sampler: RssSampler | None = None
    try:
        if args.url:
            api_url = args.url.rstrip("/")
            ou = urllib.parse.urlsplit(args.otlp_url or api_url)
            otlp_http = (ou.hostname or "127.0.0.1", ou.port or 80)
            grpc_target = args.grpc or ""
            result["server"] = {"url": api_url, "spawned": False}
        else:
            log(f"starting server ({args.db}{', profiling' if args.profile else ''}) ...")
            handle = start_server(args)
            api_url, otlp_http, grpc_target = handle.api_url, handle.otlp_http, handle.grpc_target
            assert handle.pid is not None
            time.sleep(args.idle_wait)
            idle = read_status(handle.pid).get("VmRSS", 0)
            pids = server_pids(handle.pid)
            idle_pss = sum(read_pss(p) for p in pids)
            idle_rss_sum = sum(read_status(p).get("VmRSS", 0) for p in pids)
            result["server"] = {"spawned": True, "database": handle.db_desc, "pid": handle.pid,
                                "start_s": round(handle.start_s or 0, 3), "workers": len(pids) - 1,
                                "idle_rss_mib": round(idle / MIB, 1),
                                "idle_pss_sum_mib": round(idle_pss / MIB, 1),
                                "idle_rss_sum_mib": round(idle_rss_sum / MIB, 1)}
            log(f"server up in {handle.start_s:.2f}s, idle RSS {idle / MIB:.1f} MiB"
                f" ({len(pids) - 1} workers; PSS of all {idle_pss / MIB:.1f} MiB)")
            sampler = RssSampler(handle.pid)
            sampler.start()
        if args.transport == "grpc":
            warm_up_grpc(grpc_target, args.api_key)
        # also make sure the REST API answers before the clock starts
        trace_count(api_url, args.api_key, env)
        if args.policy:
            activate_policy(api_url, args.api_key, args.policy)

        counter = itertools.count().__next__  # atomic under the GIL
        per_sender = [SendStats() for _ in range(args.concurrency)]
        if args.transport == "http":
            def target_fn(st: SendStats) -> None:
                http_sender(otlp_http, args.api_key, args.gzip, work, counter, st,
                            args.request_timeout, args.retry_budget)
        else:
            def target_fn(st: SendStats) -> None:
                grpc_sender(grpc_target, args.api_key, args.gzip, work, counter, st,
                            args.request_timeout, args.retry_budget)
        threads = [threading.Thread(target=target_fn, args=(st,), name=f"sender-{k}", daemon=True)
                   for k, st in enumerate(per_sender)]
        server_cpu0 = tree_cpu_seconds(handle.pid) if handle and handle.pid else None
        client_cpu0 = sum(os.times()[:2])
        machine0 = machine_busy_seconds()
        pg_db = handle.pg_db if handle else None
        db_cpu0 = db_backend_cpu(pg_db)
        spy_proc = None
        if handle and handle.spy and handle.pid and handle.profile_path:
            spy_proc = subprocess.Popen(
                [handle.spy, "record", "--pid", str(handle.pid), "--format", "raw", "--threads",
                 "--rate", str(args.profile_rate), "--output", handle.profile_path]
                + (["--gil"] if args.profile_gil else []),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(1.0)  # let it attach before the clock starts
        result["machine"]["speed_us_before"] = machine_speed_us()
        writer0 = writer_counters(api_url)
        threads0 = thread_cpu_seconds(server_pids(handle.pid)) if handle and handle.pid else None
        log(f"sending {len(work.bodies)} requests over {args.transport} with {args.concurrency} senders ...")
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        next_progress = t0 + args.progress if args.progress > 0 else float("inf")
        last_acked, last_change = 0, t0
        stalled = False
        for th in threads:
            while th.is_alive():
                th.join(max(0.1, min(1.0, next_progress - time.perf_counter())))
                now = time.perf_counter()
                # racy reads of the senders' counters: good enough for progress and stall checks
                done = sum(st.acked_spans for st in per_sender)
                if done != last_acked:
                    last_acked, last_change = done, now
                elif args.stall_timeout > 0 and now - last_change > args.stall_timeout and not stalled:
                    stalled = True
                    log(f"no acknowledgement for {args.stall_timeout:.0f}s: the server looks stuck;"
                        " abandoning the send phase")
                    ABORT.set()
                if now >= next_progress:
                    next_progress += args.progress
                    tries = sum(st.retries for st in per_sender)
                    log(f"  {now - t0:6.0f}s: {done:,} spans acked, {tries} retries")
        t_sent = time.perf_counter()
        if spy_proc is not None:
            spy_proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            try:
                spy_proc.wait(60)
            except subprocess.TimeoutExpired:
                spy_proc.kill()
        stats = SendStats()
        for st in per_sender:
            stats.merge(st)
        client_cpu = sum(os.times()[:2]) - client_cpu0
        acked = stats.acked_spans
        t_ack = (stats.last_ack or t_sent) - t0
        writer1 = writer_counters(api_url)
        threads1 = thread_cpu_seconds(server_pids(handle.pid)) if handle and handle.pid else None
        log(f"acked {acked}/{work.spans} spans in {t_ack:.2f}s ({acked / t_ack:,.0f} spans/s);"
            f" waiting until every span is queryable ...")

        # every acked request's traces must be listed, and their span counts must add up to sent
        expected_traces = len({t for i in stats.acked_requests for t in work.trace_sets[i]})
        deadline = time.perf_counter() + args.query_timeout
        polls = 0
        stored = seen_traces = 0
        pass_s = 0.0
        t_query: float | None = None
        t_pass_start: float | None = None
        grace_until: float | None = None  # when some spans were never acked: stop a bit after
        while True:                       # every acked span is there
            polls += 1
            n = trace_count(api_url, args.api_key, env)
            if n >= expected_traces:
                start = time.perf_counter()
                seen_traces, stored, pass_s = stored_spans(api_url, args.api_key, env,
                                                           min(args.concurrency, 8))
                if stored >= work.spans:
                    t_query = time.perf_counter() - t0
                    t_pass_start = start - t0
                    break
                if stored >= acked:
                    grace_until = grace_until or time.perf_counter() + 5.0
                    if time.perf_counter() > grace_until:
                        break
                time.sleep(0.5)  # a full pass is not free: don't spin on it
            if time.perf_counter() > deadline:
                if not stored:
                    seen_traces, stored, pass_s = stored_spans(api_url, args.api_key, env,
                                                               min(args.concurrency, 8))
                break
            time.sleep(0.05)
        decided_at_query = auto_decisions(api_url) if args.policy else None
        server_cpu1 = tree_cpu_seconds(handle.pid) if handle and handle.pid else None
        server_cpu = (server_cpu1 - server_cpu0
                      if server_cpu1 is not None and server_cpu0 is not None else None)
        machine_cpu = machine_busy_seconds() - machine0
        t_window = time.perf_counter() - t0  # the CPU figures cover first request .. end of checks
        # backends that started during the run count from zero
        db_cpu = (sum(v - db_cpu0.get(k, 0.0) for k, v in db_backend_cpu(pg_db).items())
                  if pg_db else None)
        if sampler:
            sampler.stop()
        result["machine"]["speed_us_after"] = machine_speed_us()
        # one trace's detail, as a spot check that the mapping is there
        spot: dict[str, Any] = {}
        status, doc = http_get_json(
            f"{api_url}/api/v1/traces?page_size=1&environment={urllib.parse.quote(env)}", args.api_key)
        if status == 200 and doc["items"]:
            tid = doc["items"][0]["trace_id"]
            st2, det = http_get_json(f"{api_url}/api/v1/traces/{tid}", args.api_key)
            if st2 == 200:
                llm = [s for s in det["spans"] if s["span_type"] == "llm"]
                spot = {"trace_id": tid, "spans": len(det["spans"]), "llm_spans": len(llm),
                        "llm_with_model_tokens_text": sum(
                            1 for s in llm if s["model"] and s["input_tokens"] and s["input_text"]
                            and s["output_text"]),
                        "trace_tokens": det["trace"]["total_tokens"],
                        "span_types": sorted({s["span_type"] for s in det["spans"]})}
                # right after the load, with this run's spans stored: what a UI user waits for
                spot["list50_ms_p50"] = _ms(timed_get(f"{api_url}/api/v1/traces?page_size=50",
                                                      args.api_key))
                spot["detail_ms_p50"] = _ms(timed_get(f"{api_url}/api/v1/traces/{tid}", args.api_key))

        # With a policy: when the worker had decided every trace (after the checks above, which
        # ran beside it), so a faster ingest is not bought with decisions left for much later.
        decided_all_s = None
        if args.policy and decided_at_query is not None:
            until = time.perf_counter() + args.query_timeout
            while time.perf_counter() < until:
                if (auto_decisions(api_url) or 0) >= expected_traces:
                    decided_all_s = time.perf_counter() - t0
                    break
                time.sleep(0.2)

        # Stored bytes a span: measured once the search index covers every row, since it is part
        # of what a span costs on disk.
        log("waiting for the search index to catch up (GET /readyz) ...")
        index = wait_for_index(api_url, args.api_key, args.index_timeout)
        if t_query is not None:
            index["after_queryable_s"] = round(time.perf_counter() - t0 - t_query, 2)
        result["search_index"] = index
        store_db = handle.store_db if handle else args.store_db
        if store_db:
            log(f"{_index_note(index)}; measuring stored bytes ...")
            try:
                result["stored"] = measure_stored(store_db, work.raw_bytes / work.spans)
            except Exception as exc:  # noqa: BLE001 - report, never lose the run's other figures
                result["stored"] = {"error": f"{type(exc).__name__}: {exc}"}
        else:
            result["stored"] = {"error": "not measured: --url without --store-db, the database is not known"}

        lat = stats.latencies
        result["results"] = {
            "sent_spans": work.spans,
            "acked_spans": acked,
            "stored_spans": stored,
            "stored_traces": seen_traces,
            "expected_traces": expected_traces,
            # not stored although sent (the zero-loss figure), and of those the acknowledged ones
            # (a server bug if ever > 0); the rest were never acknowledged (client gave up)
            "lost_spans": max(0, work.spans - stored),
            "lost_acked_spans": max(0, acked - stored),
            "undelivered_spans": work.spans - acked - stats.rejected_spans,
            "rejected_spans": stats.rejected_spans,
            "failed_requests": stats.failed_requests,
            "stalled": stalled,
            "retries": stats.retries,
            "retry_reasons": stats.retry_reasons,
            "retry_sleep_s": round(stats.retry_sleep_s, 2),
            # the writer's share of first request .. last ack: near 1, ingest waits on it
            "writer_busy": round((writer1[0] - writer0[0]) / t_ack, 3) if writer0 and writer1 and t_ack else None,
            "writer_transactions": int(writer1[1] - writer0[1]) if writer0 and writer1 else None,
            # µs of CPU a span by server thread, first request .. last ack
            "thread_us_per_span": (dict(sorted(
                ((k, round((v - threads0.get(k, 0.0)) / acked * 1e6, 1)) for k, v in threads1.items()),
                key=lambda kv: -kv[1])) if threads0 is not None and threads1 is not None and acked else None),
            "ack_s": round(t_ack, 3),
            "acked_spans_per_s": round(acked / t_ack) if t_ack else None,
            "queryable_s": round(t_query, 3) if t_query is not None else None,
            "queryable_spans_per_s": round(work.spans / t_query) if t_query else None,
            "verify_pass_start_s": round(t_pass_start, 3) if t_pass_start is not None else None,
            "verify_pass_s": round(pass_s, 3),
            "polls": polls,
            "decided_at_queryable": decided_at_query,
            "decided_all_s": round(decided_all_s, 3) if decided_all_s is not None else None,
            "latency_ms": {"p50": _ms(pct(lat, 50)), "p90": _ms(pct(lat, 90)),
                           "p99": _ms(pct(lat, 99)), "max": _ms(max(lat) if lat else None),
                           "mean": _ms(statistics.fmean(lat) if lat else None)},
            "client_cpu_s": round(client_cpu, 2),
            "server_cpu_s": round(server_cpu, 2) if server_cpu is not None else None,
            "server_cores_used": (round(server_cpu / t_window, 2)
                                  if server_cpu is not None else None),
            "db_cpu_s": round(db_cpu, 2) if db_cpu is not None else None,
            "machine_busy_cpu_s": round(machine_cpu, 2),
            "other_cpu_s": (round(machine_cpu - (server_cpu or 0) - client_cpu - (db_cpu or 0), 2)
                            if handle else None),
            "machine_cores_busy": round(machine_cpu / t_window, 2),
            "errors": stats.errors[:10],
            "spot_check": spot,
        }
        if sampler:
            result["server"]["peak_rss_mib"] = round(max(sampler.peak_rss, sampler.hwm) / MIB, 1)
            result["server"]["peak_rss_sampled_mib"] = round(sampler.peak_rss / MIB, 1)
            result["server"]["peak_rss_anon_mib"] = round(sampler.peak_anon / MIB, 1)
            result["server"]["peak_rss_file_mib"] = round(sampler.peak_file / MIB, 1)
            result["server"]["peak_pss_sum_mib"] = round(sampler.peak_pss_sum / MIB, 1)
            result["server"]["peak_rss_sum_mib"] = round(sampler.peak_rss_sum / MIB, 1)
    finally:
        if sampler and sampler.is_alive():
            sampler.stop()
        if handle:
            log("stopping server (SIGTERM) ...")
            stop_s = stop_server(handle)
            if "server" in result:
                result["server"]["stop_s"] = round(stop_s, 2) if stop_s is not None else None
            if handle.proc and handle.proc.returncode not in (0, None):
                result.setdefault("server", {})["exit_code"] = handle.proc.returncode
                result["server"]["log_tail"] = tail(handle.log_path, 20)
            if handle.profile_kind and handle.profile_path:
                for _ in range(100):  # py-spy writes its file after the child exits
                    if os.path.exists(handle.profile_path) and os.path.getsize(handle.profile_path):
                        break
                    time.sleep(0.1)
                if os.path.exists(handle.profile_path):
                    result["profile"] = (pyspy_report(handle.profile_path, args.top)
                                         if handle.profile_kind == "py-spy"
                                         else cprofile_report(handle.profile_path, args.top))
                    result["profile"]["file"] = handle.profile_path if args.keep else None
                else:
                    result["profile"] = {"kind": handle.profile_kind, "error": "no profile written",
                                         "log_tail": tail(handle.log_path, 20)}
            if args.keep:
                log(f"kept: {handle.workdir}" + (f", database {handle.pg_db}" if handle.pg_db else ""))
            cleanup(handle, args.keep)
    return result


def _ms(v: float | None) -> float | None:
    return round(v * 1000, 1) if v is not None else None


def _mark(ok: bool | None) -> str:
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


_READERS = {True: ", C reader of OTLP", False: ", protobuf reads OTLP (C reader not built or off)", None: ""}


def _index_note(ix: dict[str, Any]) -> str:
    if ix.get("caught_up") is None:
        return f"search index: {ix.get('error', 'not checked')}"
    if not ix["caught_up"]:
        return (f"search index NOT caught up after {ix['wait_s']:.1f} s: {ix['rows_left']:,} rows left"
                f" (of {ix['rows_at_start']:,})")
    since = ix.get("after_queryable_s")
    when = f"{since:.1f} s after queryable" if since is not None else f"after {ix['wait_s']:.1f} s of waiting"
    if ix["polls"] == 1:
        return f"index had caught up by the first check, {when}"
    return f"index caught up {when} ({ix['rows_at_start']:,} rows behind at the first check)"


def _stored_lines(r: dict[str, Any]) -> list[str]:
    st, ix = r.get("stored") or {}, r.get("search_index") or {}
    if not st and not ix:
        return []
    if not st.get("bytes_per_span"):
        return [f"stored      : {st.get('error', 'not measured')}; {_index_note(ix)}"]
    b = st["bytes_per_span"]
    out = [f"stored      : {b['total']:,} B/span (spans {b['spans']:,}, search index {b['search']:,}, traces "
           f"{b['traces']:,}, other {b['other']:,}) vs {st['otlp_bytes_per_span']:,} B/span OTLP protobuf"
           f" -> {st['ratio']:.2f}x; {_index_note(ix)}"]
    if st["database"] == "sqlite":
        f = st["files"]
        out.append(f"              pages in use {st['bytes']['total'] / MIB:.1f} MiB over {st['span_rows']:,} spans;"
                   f" file {f['main'] / MIB:.1f} MiB + WAL {f['wal'] / MIB:.1f} MiB"
                   f" ({f['free_pages'] / MIB:.1f} MiB free pages)")
    else:
        out.append(f"              tables {st['bytes']['total'] / MIB:.1f} MiB over {st['span_rows']:,} spans;"
                   f" pg_database_size {st['database_bytes'] / MIB:.1f} MiB (catalogs included)")
    return out


def render(r: dict[str, Any]) -> str:
    c, w, s, res = r["config"], r["workload"], r.get("server", {}), r.get("results", {})
    prof = r.get("profile")
    prof_kind = prof.get("kind") if prof else None
    # py-spy attached for the send window only leaves the start-up unprofiled
    start_profiled = bool(c["profile"]) and (c.get("profile_window") != "send" or prof_kind != "py-spy")
    lines = ["", "=" * 78,
             f"tracehub OTLP ingest benchmark  {r['date']}  ({r['machine']['cpus']} CPUs, "
             f"Python {r['machine']['python']})",
             "=" * 78,
             f"target      : {s.get('database') or s.get('url')}   (server code "
             f"{r.get('server_code', {}).get('commit')}"
             f"{' + local changes' if r.get('server_code', {}).get('tracehub_modified') else ''}"
             f"{_READERS[r.get('server_code', {}).get('c_reader')]})",
             f"transport   : {c['transport']}{' + gzip' if c['gzip'] else ''}, concurrency "
             f"{c['concurrency']}, batch {c['batch_size']} spans{', PROFILED' if c['profile'] else ''}",
             f"workload    : {c['spans']:,} spans, {w['traces']:,} traces "
             f"({w['spans_per_trace']} spans/trace),"
             f" {w['requests']} requests, {w['bytes_per_span']} B/span protobuf,"
             f" {w['wire_bytes'] / MIB:.1f} MiB on the wire",
             f"              {w['traces_split_across_requests']:,} traces split across requests, "
             f"{w['traces_with_children_before_root']:,} with children sent before the root;"
             f" built in {w['build_s']}s (untimed)"]
    m = r["machine"]
    if "speed_us_before" in m:
        lines.append(f"machine     : sum(range(1000)) took {m['speed_us_before']} µs before the run and "
                     f"{m.get('speed_us_after', '?')} after (lower is faster; compare runs at a similar speed)")
    if not res:
        return "\n".join(lines + ["(no results: the run failed, see above)"])
    lat = res["latency_ms"]
    q_rate = res["queryable_spans_per_s"]
    lines += [
        "-" * 78,
        f"acked       : {res['acked_spans']:,} spans in {res['ack_s']:.2f}s  ->  "
        f"{res['acked_spans_per_s'] or 0:,} spans/s",
        (f"queryable   : all {res['stored_spans']:,} spans listed by GET /api/v1/traces after "
         f"{res['queryable_s']:.2f}s  ->  {q_rate:,} spans/s" if q_rate else
         f"queryable   : NOT all spans became queryable ({res['stored_spans']:,} of {res['sent_spans']:,})"),
        (f"              (verification pass started at {res['verify_pass_start_s']:.2f}s and took "
         f"{res['verify_pass_s']:.2f}s over {res['stored_traces']:,} traces; {res['polls']} polls)"
         if q_rate else ""),
        (f"decisions   : {res['decided_at_queryable']:,} of {res['expected_traces']:,} traces decided when"
         f" queryable; all " + (f"after {res['decided_all_s']:.2f}s" if res.get("decided_all_s") else "NOT in time")
         if res.get("decided_at_queryable") is not None else ""),
        f"sent/acked/stored: {res['sent_spans']:,} / {res['acked_spans']:,} / {res['stored_spans']:,}"
        f"   not stored {res['lost_spans']:,} (acked but not stored: {res.get('lost_acked_spans', '?')},"
        f" never acked: {res.get('undelivered_spans', '?')})   rejected {res['rejected_spans']}"
        f"   failed requests {res['failed_requests']}",
        f"retries     : {res['retries']} {res['retry_reasons'] or ''}"
        + (f" (slept {res['retry_sleep_s']:.1f}s)" if res["retries"] else ""),
        f"latency     : p50 {lat['p50']} ms   p90 {lat['p90']} ms   p99 {lat['p99']} ms   "
        f"max {lat['max']} ms   (per accepted request)",
        f"cpu         : server {res['server_cpu_s']} s ({res['server_cores_used']} cores), "
        f"client {res['client_cpu_s']} s" + (f", postgres backends {res['db_cpu_s']} s"
                                              if res.get("db_cpu_s") is not None else ""),
        f"              whole machine {res['machine_busy_cpu_s']} s busy ({res['machine_cores_busy']} of "
        f"{r['machine']['cpus']} cores); other processes {res.get('other_cpu_s')} s"
        f"{'  <- interference' if (res.get('other_cpu_s') or 0) > 0.1 * res['machine_busy_cpu_s'] else ''}",
    ]
    if res.get("thread_us_per_span"):
        lines.append("cpu a span  : " + ", ".join(f"{k} {v:g} µs" for k, v in res["thread_us_per_span"].items())
                     + " (server threads, first request to last ack)")
    if res.get("writer_busy") is not None:
        lines.append(f"writer      : in a transaction {res['writer_busy']:.0%} of the time from first request to last"
                     f" ack, {res['writer_transactions']} transactions"
                     f" (near 100%: ingest waits on the writer)")
    if s.get("spawned"):
        lines += [
            f"server      : start {s['start_s']:.2f}s (spawn -> /healthz 200), idle RSS "
            f"{s['idle_rss_mib']} MiB, stop {s.get('stop_s')}s after SIGTERM",
            f"peak RSS    : {s.get('peak_rss_mib')} MiB (VmHWM); of it at most "
            f"{s.get('peak_rss_anon_mib')} MiB anonymous (heap) and {s.get('peak_rss_file_mib')} MiB "
            f"file-backed (mmap of the database, libraries)",
        ]
        if s.get("workers"):
            lines.append(
                f"with {s['workers']} decode worker(s): PSS idle {s['idle_pss_sum_mib']} / peak "
                f"{s.get('peak_pss_sum_mib')} MiB (shared pages counted once); RSS summed over the "
                f"processes idle {s['idle_rss_sum_mib']} / peak {s.get('peak_rss_sum_mib')} MiB")
    spot = res.get("spot_check") or {}
    if spot:
        lines.append(f"spot check  : trace {spot['trace_id']}: {spot['spans']} spans, "
                     f"{spot['llm_with_model_tokens_text']}/{spot['llm_spans']} LLM spans with model, "
                     f"tokens, input and output; types {', '.join(spot['span_types'])}")
        if "list50_ms_p50" in spot:
            lines.append(f"reads after: GET /api/v1/traces?page_size=50 p50 {spot['list50_ms_p50']} ms, "
                         f"one trace's detail p50 {spot['detail_ms_p50']} ms")
    lines += _stored_lines(r)
    if res.get("stalled"):
        lines.append("STALLED     : the server stopped acknowledging requests; the send phase was "
                     "abandoned (see the server log with --keep)")
    for e in res["errors"]:
        lines.append(f"error       : {e}")
    lines.append("-" * 78)
    rate = q_rate or 0
    lines.append(f"target {TARGET_SPANS_PER_S:,} spans/s until queryable, zero loss : "
                 f"{_mark(rate >= TARGET_SPANS_PER_S and res['lost_spans'] == 0)}"
                 f"{'  (profiled: not comparable)' if c['profile'] else ''}")
    st = r.get("stored") or {}
    if st.get("bytes_per_span"):
        total, otlp = st["bytes_per_span"]["total"], st["otlp_bytes_per_span"]
        left = (r.get("search_index") or {}).get("rows_left")
        lines.append(f"target stored bytes <= OTLP bytes a span  : {_mark(total <= otlp)}  ({total:,} vs "
                     f"{otlp:,} B/span, search index included"
                     + (f"; the index had {left:,} rows left" if left else "") + ")")
    if s.get("spawned"):
        # The server's memory: its own RSS, or with workers their PSS together if that is more.
        peak = max(s.get("peak_rss_mib") or 0, s.get("peak_pss_sum_mib") or 0)
        idle = max(s["idle_rss_mib"], s.get("idle_pss_sum_mib") or 0)
        lines.append(f"target peak RSS <= {TARGET_PEAK_RSS_MIB} MiB             : "
                     f"{_mark(peak <= TARGET_PEAK_RSS_MIB)}  ({peak} MiB)")
        lines.append(f"target idle RSS <= {TARGET_IDLE_RSS_MIB} MiB             : "
                     f"{_mark(idle <= TARGET_IDLE_RSS_MIB)}  ({idle} MiB)")
        lines.append(f"target start < {TARGET_START_S:.0f} s                      : "
                     f"{_mark(s['start_s'] < TARGET_START_S)}"
                     + ("  (profiled: not comparable)" if start_profiled else ""))
    if prof:
        window = ("first request .. last ack" if c.get("profile_window") == "send"
                  and prof["kind"] == "py-spy" else "whole server process")
        lines += ["-" * 78, f"profile ({prof['kind']}, {window})"]
        if "error" in prof:
            lines.append(f"  {prof['error']}\n{prof.get('log_tail', '')}")
        elif prof["kind"] == "py-spy":
            lines.append(f"  {prof['samples']} samples of running (non-idle) threads; by thread: " +
                         ", ".join(f"{k} {100 * v / max(1, prof['samples']):.0f}%"
                                   for k, v in list(prof["threads"].items())[:6]))
            lines.append("  self time (the function itself, incl. C calls it makes):")
            lines += [f"  {x['pct']:5.1f}%  {x['function']}" for x in prof["self"]]
            lines.append("  self time by source line (where a C call such as executemany runs):")
            lines += [f"  {x['pct']:5.1f}%  {x['function']}" for x in prof["self_lines"]]
            lines.append("  self time by call site (leaf line <- calling line):")
            lines += [f"  {x['pct']:5.1f}%  {x['function']}" for x in prof.get("call_sites", [])]
            lines.append("  inclusive time (the function and everything it calls):")
            lines += [f"  {x['pct']:5.1f}%  {x['function']}" for x in prof["inclusive"]]
        else:
            lines.append(f"  total {prof['total_s']} s")
            lines.append("  self time:")
            lines += [f"  {x['pct']:5.1f}%  {x['seconds']:8.3f}s  {x['calls']:>9}  {x['function']}"
                      for x in prof["self"]]
            lines.append("  cumulative time:")
            lines += [f"  {x['pct']:5.1f}%  {x['seconds']:8.3f}s  {x['calls']:>9}  {x['function']}"
                      for x in prof["inclusive"]]
    lines.append("=" * 78)
    return "\n".join(x for x in lines if x != "")


def _terminate(signum: int, _frame: Any) -> None:
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the spawned server is stopped and its
    # database removed instead of being left running.
    ABORT.set()
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run(args)
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}); the spawned server was stopped and its database removed")
        return 130
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(render(result))
    res = result.get("results", {})
    ok = res and res.get("lost_spans") == 0 and res.get("queryable_s") is not None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
