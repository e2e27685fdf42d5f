"""The ingest benchmarks' workload: realistic LLM agent traces as ready-to-send OTLP request bodies.

A trace is 10 spans of a LangGraph-style agent (an agent root, graph node spans, 2-3 `chat <model>`
spans with gen_ai.* messages and usage, a retriever, a tool, an embedding), with ~1 KB inputs and
outputs of English and Korean text. Traces overlap as in a busy service and their spans are cut
into requests in end order, as the OTel batch span processor exports them, so traces at request
boundaries arrive split, children before their root. Everything is built before a benchmark's
clock starts; a seed makes the content repeatable (the times follow the clock).
"""

from __future__ import annotations

import gzip as gzip_mod
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))  # otlp_helpers, shared with the tests
from otlp_helpers import key_values  # noqa: E402

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
    return bytes(Resource(attributes=key_values(attrs)).SerializeToString())


def messages_in(pool: TextPool, question: str, rng: random.Random) -> str:
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


def messages_out(pool: TextPool, rng: random.Random, tool_call: bool) -> str:
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
                     attributes=key_values(attrs))
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
                "gen_ai.input.messages": messages_in(pool, question, rng),
                "gen_ai.output.messages": messages_out(pool, rng, tool_call),
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
                     end_time_unix_nano=end, attributes=key_values(attrs))
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
                  start_time_unix_nano=r_start, end_time_unix_nano=r_end, attributes=key_values({
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
            ev = [Span.Event(name="exception", time_unix_nano=e + 30_000_000, attributes=key_values({
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
                    end_time_unix_nano=root_end, attributes=key_values(root_attrs))
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

