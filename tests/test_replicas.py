"""Three `tracehub serve` processes started at once on one new PostgreSQL database, fed by the real
OpenTelemetry SDK exporters: the spans of each trace are spread over the processes and every span
is sent again to all of them at the same time, so processes race to store a trace's first row, its
spans and their duplicates. Nothing may be lost, refused or stored twice; each trace row must hold
exactly what its spans say; each trace is decided once by the active policy, each escalation makes
one case and each of its notifications is delivered once. Keyed JSON API items sent to every
process at once are stored once.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from conftest import Project, ServerProcess, Servers, own_project
from test_auto_decisions import _start_all
from test_cases import SERVER_ENV, Receiver
from tracehub.seed import DEFAULT_POLICY

pytestmark = pytest.mark.postgres

REPLICAS = 3
TRACES = 600
TRACES_PER_REQUEST = 8
KEYED = 40  # keyed events and evals, each sent to every process at once
RACE_ROUNDS = 50
PII = "Please reset my password, my e-mail is jane.doe@example.com"


def _make_traces(n: int) -> dict[str, list[ReadableSpan]]:
    """`n` agent traces made by the SDK (root, retrieval, two model calls with tokens, a tool that
    fails in every fifth, a grandchild), by trace id; every third asks with an e-mail address."""
    finished = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "replica-test"}))
    provider.add_span_processor(SimpleSpanProcessor(finished))
    tracer = provider.get_tracer("test.replicas")
    for i in range(n):
        question = PII if i % 3 == 0 else f"question {i} about the refund policy"
        with tracer.start_as_current_span("agent.request", attributes={"input.value": question}) as root:
            with tracer.start_as_current_span("retrieve"):
                with tracer.start_as_current_span("embed"):
                    pass
            for call in range(2):
                with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
                        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.usage.input_tokens": 100 + i, "gen_ai.usage.output_tokens": 10 + call}):
                    pass
            with tracer.start_as_current_span("tool order_lookup") as tool:
                if i % 5 == 0:
                    tool.set_status(Status(StatusCode.ERROR, "tool timed out"))
            root.set_attribute("output.value", "I sent you a reset link.")
    provider.shutdown()
    traces: dict[str, list[ReadableSpan]] = defaultdict(list)
    for span in finished.get_finished_spans():
        traces[format(span.context.trace_id, "032x")].append(span)
    return dict(traces)


def _expected(spans: list[ReadableSpan]) -> tuple[Any, ...]:
    """What the trace row of `spans` must hold: span and error counts, tokens, start and end,
    status, root span, no open span and no awaited parent."""
    attributes = [dict(s.attributes or {}) for s in spans]
    errors = sum(1 for s in spans if s.status.status_code is StatusCode.ERROR)
    root = next(s for s in spans if s.parent is None)
    return (len(spans), errors, sum(int(str(a.get("gen_ai.usage.input_tokens", 0))) for a in attributes),
            sum(int(str(a.get("gen_ai.usage.output_tokens", 0))) for a in attributes),
            min(s.start_time or 0 for s in spans), max(s.end_time or 0 for s in spans),
            "error" if errors else "success", format(root.context.span_id, "016x"), 0, 0)


def _requests(traces: dict[str, list[ReadableSpan]], pick: Callable[[ReadableSpan], bool]) -> list[list[ReadableSpan]]:
    """The spans `pick` takes, TRACES_PER_REQUEST traces a request, in the traces' order: every
    sender walks the traces alike, so the processes meet on the same traces at the same time."""
    ids = list(traces)
    out = []
    for i in range(0, len(ids), TRACES_PER_REQUEST):
        spans = [s for t in ids[i:i + TRACES_PER_REQUEST] for s in traces[t] if pick(s)]
        if spans:
            out.append(spans)
    return out


def _exporter(server: ServerProcess, key: str, grpc: bool) -> Any:
    headers = {"x-api-key": key}
    if grpc:
        return GrpcExporter(endpoint=server.otlp_grpc, insecure=True, headers=headers)
    return HttpExporter(endpoint=server.otlp_http + "/v1/traces", headers=headers)


def _metric(server: ServerProcess, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", server.client.get("/metrics").text, re.M)
    assert found, name
    return float(found.group(1))


def _refusals(server: ServerProcess) -> dict[str, float]:
    """The server's ingest answers other than success, from its /metrics."""
    found = re.findall(r'^tracehub_ingest_requests_total\{(.*)\} (\S+)$', server.client.get("/metrics").text, re.M)
    answers = {labels: float(n) for labels, n in found}
    return {labels: n for labels, n in answers.items()
            if n and not re.search(r'outcome="(200|OK)"', labels)}


def _replayed(answer: httpx.Response) -> bool:
    """Whether an ingest answer replays the first one stored under its idempotency keys."""
    summary = answer.json().get("summary") or {}
    return answer.headers.get("idempotent-replayed") == "true" or bool(summary.get("replayed"))


def _wait(what: str, done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def replicas(database_url_factory: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory,
             started_servers: Servers) -> list[ServerProcess]:
    """REPLICAS servers started at once on a new database: their migrations at start take turns."""
    url = database_url_factory("postgres")
    env = {**SERVER_ENV, "TRACEHUB_DECISION_SETTLE_S": "1"}
    servers: list[ServerProcess] = []
    while len(servers) < REPLICAS:
        # Each picks free ports and lets them go: none may get another's, as none is bound yet.
        server = ServerProcess(url, tmp_path_factory.mktemp("replica"), env)
        ports = {server.port, server.otlp_http_port, server.grpc_port}
        if ports.isdisjoint(p for s in servers for p in (s.port, s.otlp_http_port, s.grpc_port)):
            servers.append(server)
        else:
            server.client.close()
    started_servers.extend(servers)  # stopped with the module
    _start_all(servers)
    return servers


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.script[:] = [200]
    yield r
    r.close()


def test_replicas_share_one_postgresql_without_loss_duplicates_or_second_decisions(
        replicas: list[ServerProcess], receiver: Receiver) -> None:
    with own_project(replicas[0], "replicas") as project:
        assert project.client.post("/api/v1/policies", json=DEFAULT_POLICY).status_code in (200, 201)
        r = project.client.post("/api/v1/webhooks", json={"url": receiver.url + "/hook"})
        assert r.status_code == 201, r.text
        traces = _make_traces(TRACES)
        _send_spread_and_again(replicas, project.key, traces)
        traces.update(_race_until_conflict(replicas, project.key))
        _check_rows(project, traces)
        _check_decisions(project, traces, receiver)
    assert {s.url: _refusals(s) for s in replicas} == {s.url: {} for s in replicas}


def _send_spread_and_again(replicas: list[ServerProcess], key: str, traces: dict[str, list[ReadableSpan]]) -> None:
    """Each span to one process picked at random over HTTP and, beside that, every span again to
    every process over gRPC, all senders at once."""
    rng = random.Random(21)
    home = {(s.context.trace_id, s.context.span_id): rng.randrange(len(replicas))
            for spans in traces.values() for s in spans}

    def at(k: int) -> Callable[[ReadableSpan], bool]:
        return lambda s: home[(s.context.trace_id, s.context.span_id)] == k

    senders = [(server, False, _requests(traces, at(k))) for k, server in enumerate(replicas)]
    senders += [(server, True, _requests(traces, lambda _s: True)) for server in replicas]
    start = threading.Barrier(len(senders))

    def send(server: ServerProcess, grpc: bool, requests: list[list[ReadableSpan]]) -> list[SpanExportResult]:
        exporter = _exporter(server, key, grpc)
        start.wait()
        try:
            return [exporter.export(spans) for spans in requests]
        finally:
            exporter.shutdown()

    with ThreadPoolExecutor(len(senders)) as pool:
        results = [r for done in [pool.submit(send, *s) for s in senders] for r in done.result()]
    assert Counter(results) == {SpanExportResult.SUCCESS: len(results)}


def _race_until_conflict(replicas: list[ServerProcess], key: str) -> dict[str, list[ReadableSpan]]:
    """Makes sure the race this test is for took place (a process stored a trace's first row after
    another had looked for it): the spread sending above usually meets it, and if it did not, new
    traces go whole to every process at the same moment until one does. Returns the traces sent."""
    def conflicts() -> float:
        return sum(_metric(s, "tracehub_writer_conflicts_total") for s in replicas)

    sent: dict[str, list[ReadableSpan]] = {}
    exporters = [_exporter(server, key, grpc=False) for server in replicas]
    try:
        with ThreadPoolExecutor(len(replicas)) as pool:
            for _ in range(RACE_ROUNDS):
                if conflicts():
                    return sent
                trace = _make_traces(1)
                sent.update(trace)
                (spans,) = trace.values()
                start = threading.Barrier(len(replicas))
                answers = [pool.submit(_export_at, start, e, spans) for e in exporters]
                assert {a.result() for a in answers} == {SpanExportResult.SUCCESS}
    finally:
        for exporter in exporters:
            exporter.shutdown()
    assert conflicts() > 0, f"no write conflict in {RACE_ROUNDS} rounds of one trace sent to every process at once"
    return sent


def _export_at(start: threading.Barrier, exporter: Any, spans: list[ReadableSpan]) -> SpanExportResult:
    start.wait()
    return exporter.export(spans)


def _check_rows(project: Project, traces: dict[str, list[ReadableSpan]]) -> None:
    """Every span once, under its trace's row (a span stored under another number than its trace's
    would be lost to every read), and each trace row as its spans say."""
    p = {"p": project.id}
    with project.engine.connect() as conn:
        stored = conn.execute(sa.text(
            "SELECT s.trace_id, s.span_id, s.trace_seq = t.seq, s.cost_usd FROM spans s"
            " LEFT JOIN traces t ON t.project_id = s.project_id AND t.trace_id = s.trace_id"
            " WHERE s.project_id = :p AND s.span_type IS DISTINCT FROM 'judge'"), p).all()
        rows = {r.trace_id: r for r in conn.execute(sa.text(
            "SELECT trace_id, span_count, error_count, input_tokens, output_tokens, cost_usd, start_ns, end_ns,"
            " status, root_span_id, running_span_count, missing_parent_count FROM traces WHERE project_id = :p"), p)}
        count = conn.execute(sa.text("SELECT trace_count FROM projects WHERE id = :p"), p).scalar_one()
    keys = Counter((t, s) for t, s, _, _ in stored)
    assert len(keys) == sum(len(spans) for spans in traces.values())
    assert {k: n for k, n in keys.items() if n > 1} == {}
    assert all(same for _, _, same, _ in stored)
    cost: dict[str, float] = defaultdict(float)
    for trace_id, _, _, span_cost in stored:
        cost[trace_id] += span_cost or 0.0
    assert set(rows) == set(traces) and count == len(traces)
    for trace_id, spans in traces.items():
        row = rows[trace_id]
        assert (row.span_count, row.error_count, row.input_tokens, row.output_tokens, row.start_ns, row.end_ns,
                row.status, row.root_span_id, row.running_span_count,
                row.missing_parent_count) == _expected(spans), trace_id
        assert row.cost_usd == pytest.approx(cost[trace_id]) and row.cost_usd > 0


def _check_decisions(project: Project, traces: dict[str, list[ReadableSpan]], receiver: Receiver) -> None:
    """One automatic decision a trace, one case an escalation, one delivery a notification."""
    p = {"p": project.id}
    escalated = {t for t, spans in traces.items()
                 if any((s.attributes or {}).get("input.value") == PII for s in spans)}

    def auto_decisions() -> dict[str, int]:
        with project.engine.connect() as conn:
            return {t: n for t, n in conn.execute(sa.text(
                "SELECT trace_id, count(*) FROM trace_decisions WHERE project_id = :p AND source = 'auto'"
                " AND NOT shadow GROUP BY trace_id"), p)}

    def delivered() -> int:
        with project.engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM notifications WHERE project_id = :p AND status = 'delivered'"), p).scalar_one())

    _wait("every trace decided", lambda: len(auto_decisions()) >= len(traces), 120)
    _wait("every notification delivered", lambda: delivered() >= len(escalated), 60)
    time.sleep(2.0)  # a second decision, case or delivery would come within this
    assert auto_decisions() == dict.fromkeys(traces, 1)
    with project.engine.connect() as conn:
        cases = Counter(t for (t,) in conn.execute(sa.text("SELECT trace_id FROM cases WHERE project_id = :p"), p))
        notes = conn.execute(sa.text("SELECT message_id, status FROM notifications WHERE project_id = :p"), p).all()
    assert cases == dict.fromkeys(escalated, 1)
    assert len(notes) == len(escalated) and {status for _, status in notes} == {"delivered"}
    sent = Counter(r["headers"]["webhook-id"] for r in receiver.received("/hook"))
    assert sent == dict.fromkeys((m for m, _ in notes), 1)


def test_keyed_items_sent_to_every_replica_at_once_are_stored_once(replicas: list[ServerProcess]) -> None:
    """The JSON API's idempotency keys hold across processes: the same keyed events and evals,
    posted to every process at the same moment, are stored once and answered alike."""
    with own_project(replicas[0], "replica-keys") as project:
        trace_id = uuid.uuid4().hex
        r = project.client.post("/api/v1/ingest/traces", json={"trace": {"trace_id": trace_id}, "spans": [
            {"span_id": "a" * 16, "trace_id": trace_id, "name": "root", "start_time": "2026-02-07T10:00:00Z"}]})
        assert r.status_code in (200, 201), r.text
        bodies: list[tuple[str, dict[str, Any]]] = []
        for i in range(KEYED):
            bodies.append(("/api/v1/ingest/spans", {"events": [{
                "trace_id": trace_id, "span_id": "a" * 16, "event_type": "LOG",
                "event_time": "2026-02-07T10:00:05Z", "payload": {"message": f"step {i}"},
                "idempotency_key": f"log-{i}"}]}))
            bodies.append(("/api/v1/evals", {"trace_id": trace_id, "eval_name": f"check-{i}", "score": 0.5,
                                             "idempotency_key": f"eval-{i}"}))
        clients = [httpx.Client(base_url=s.url, headers={"x-api-key": project.key}, timeout=30) for s in replicas]
        try:
            with ThreadPoolExecutor(2 * len(replicas)) as pool:
                for path, body in bodies:  # one body to every process at once, then the next
                    answers = [a.result() for a in [pool.submit(c.post, path, json=body) for c in clients]]
                    assert sorted(a.status_code for a in answers)[-1] < 300, [a.text for a in answers]
                    assert sum(not _replayed(a) for a in answers) == 1, [a.text for a in answers]
        finally:
            for c in clients:
                c.close()
        p = {"p": project.id}
        with project.engine.connect() as conn:
            events = Counter(k for (k,) in conn.execute(sa.text(
                "SELECT idempotency_key FROM span_events WHERE project_id = :p"), p))
            evals = Counter(n for (n,) in conn.execute(sa.text(
                "SELECT eval_name FROM evaluation_results WHERE project_id = :p"), p))
        assert events == {f"log-{i}": 1 for i in range(KEYED)}
        assert evals == {f"check-{i}": 1 for i in range(KEYED)}


@pytest.mark.postgres
def test_the_search_index_waits_for_a_row_another_writer_commits_later(
        database_url_factory: Callable[[str], str]) -> None:
    """Two writers: one holds an earlier span id open while the other commits a later one. The
    index's mark must not pass the open row, or search would never find it once committed."""
    import psycopg

    from tracehub.store import db, search
    from tracehub.store.sql import Sql

    url = database_url_factory("postgres")
    db.migrate(db.create_engine(url))
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    insert = ("INSERT INTO spans (project_id, trace_id, trace_seq, span_id, name, kind, span_type, status, start_ns,"
              " attributes, scope, events, links) VALUES (1, 'a', 1, %s, %s, 'INTERNAL', 'llm', 'success', 1,"
              " '{}', '{}', '[]', '[]') RETURNING id")
    with psycopg.connect(plain) as a, psycopg.connect(plain) as b, psycopg.connect(plain, autocommit=True) as ix:
        held = a.execute(insert, ["a" * 16, "held open"]).fetchone()[0]
        later = b.execute(insert, ["b" * 16, "committed first"]).fetchone()[0]
        b.commit()
        assert later > held
        for _ in range(3):  # steps while the earlier row is not committed
            search.step_committed(ix, Sql("postgresql"), 200)
        mark = ix.execute("SELECT indexed_upto FROM search_state WHERE name = 'spans'").fetchone()[0]
        assert mark < held
        a.commit()
        for _ in range(3):
            search.step_committed(ix, Sql("postgresql"), 200)
        indexed = " ".join(r[0] for r in ix.execute("SELECT doc FROM span_search"))
        assert "held open" in indexed and "committed first" in indexed
