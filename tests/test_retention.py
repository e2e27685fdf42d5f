"""Retention (tracehub/store/retention.py) through real server processes on both databases: the
setting in the API, the OpenAPI document and the CLI; `tracehub prune` deleting old traces with
their spans, events, evaluations, decisions, judge runs, cases and webhook outbox, and unused
resources, while the trace count, the search indexes and the stats roll-ups stay right; a trace
that gets a span after its old part went; the server's own passes under concurrent ingest; SQLite's
free pages given back."""

from __future__ import annotations

import json
import math
import secrets
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from conftest import BACKENDS, Project, ServerProcess, own_project
from webhook_receiver import Receiver
from tracehub.api.params import iso
from tracehub.store.rollups import bucket_of

DAY = 86_400 * 10**9
MS = 1_000_000
SERVER_ENV = {"TRACEHUB_RETENTION_INTERVAL_S": "0",  # these tests prune with the CLI
              "TRACEHUB_WEBHOOK_ALLOW": "127.0.0.1", "TRACEHUB_WEBHOOK_TIMEOUT_S": "5"}


@pytest.fixture(scope="module", params=BACKENDS)
def hub(request: pytest.FixtureRequest, server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(request.param, env=SERVER_ENV)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _tid() -> str:
    return secrets.token_hex(16)


def _sid() -> str:
    return secrets.token_hex(8)


def otlp(server: ServerProcess, key: str, service: str, spans: list[Span]) -> None:
    """Spans of one process (a resource named `service`) to the server's OTLP/HTTP port."""
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
    body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource, scope_spans=[ScopeSpans(spans=spans)])]).SerializeToString()
    r = httpx.post(server.otlp_http + "/v1/traces", content=body, timeout=30,
                   headers={"content-type": "application/x-protobuf", "x-api-key": key})
    assert r.status_code == 200, r.text


def span(trace_id: str, span_id: str, name: str, text: str, start: int, parent: str = "",
         end: int | None = None) -> Span:
    s = Span(trace_id=bytes.fromhex(trace_id), span_id=bytes.fromhex(span_id),
             parent_span_id=bytes.fromhex(parent) if parent else b"", name=name,
             start_time_unix_nano=start, end_time_unix_nano=end if end is not None else start + 40 * MS,
             kind=Span.SPAN_KIND_INTERNAL)
    for k, v in (("gen_ai.prompt", text), ("gen_ai.usage.input_tokens", 10), ("gen_ai.usage.output_tokens", 5)):
        s.attributes.append(KeyValue(key=k, value=AnyValue(string_value=v) if isinstance(v, str)
                                     else AnyValue(int_value=v)))
    return s


def agent_trace(server: ServerProcess, key: str, service: str, text: str, start: int) -> str:
    """A root and two children, each holding `text`."""
    tid, root = _tid(), _sid()
    otlp(server, key, service, [span(tid, root, "agent", text, start, end=start + 200 * MS),
                                span(tid, _sid(), "llm", text, start + MS, root),
                                span(tid, _sid(), "tool", text, start + 2 * MS, root)])
    return tid


def wait_indexed(server: ServerProcess, timeout: float = 30.0) -> None:
    """Until the search index holds every stored row (search then reads only the index)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(server.url + "/readyz", timeout=10).json()["search_unindexed_rows"] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the search index did not catch up")


def age(engine: sa.Engine, project_id: int, trace_ids: list[str], days: float, written: bool = True) -> None:
    """Move traces `days` back: their start and end, and (`written`) the server's last write."""
    shift = int(days * DAY)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE traces SET start_ns = start_ns - :d, end_ns = end_ns - :d"
            + (", updated_ns = updated_ns - :d" if written else "")
            + " WHERE project_id = :p AND trace_id IN :ids").bindparams(sa.bindparam("ids", expanding=True)),
            {"d": shift, "p": project_id, "ids": trace_ids})


def rows_of(engine: sa.Engine, project_id: int, trace_ids: list[str]) -> dict[str, int]:
    """Rows that hang off `trace_ids`, per table."""
    ids = sa.bindparam("ids", expanding=True)
    with engine.connect() as conn:
        def count(sql: str) -> int:
            return int(conn.execute(sa.text(sql).bindparams(ids), {"p": project_id, "ids": trace_ids}).scalar_one())

        of = "project_id = :p AND trace_id IN :ids"
        cases_of = f"SELECT case_id FROM cases WHERE {of}"
        notes_of = f"SELECT id FROM notifications WHERE project_id = :p AND case_id IN ({cases_of})"
        return {
            "traces": count(f"SELECT count(*) FROM traces WHERE {of}"),
            "spans": count(f"SELECT count(*) FROM spans WHERE {of}"),
            "span_events": count(f"SELECT count(*) FROM span_events WHERE {of}"),
            "evaluations": count(f"SELECT count(*) FROM evaluation_results WHERE {of}"),
            "decisions": count(f"SELECT count(*) FROM trace_decisions WHERE {of}"),
            "judge_runs": count(f"SELECT count(*) FROM judge_runs WHERE {of}"),
            "cases": count(f"SELECT count(*) FROM cases WHERE {of}"),
            "notifications": count(f"SELECT count(*) FROM notifications WHERE case_id IN ({cases_of})"),
            "attempts": count(f"SELECT count(*) FROM notification_attempts WHERE notification_id IN ({notes_of})"),
        }


def assert_counted(p: Project) -> None:
    """projects.trace_count is the number of trace rows, and the API says so."""
    with p.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM traces WHERE project_id = :p"), {"p": p.id}).scalar_one()
        counted = conn.execute(sa.text("SELECT trace_count FROM projects WHERE id = :p"), {"p": p.id}).scalar_one()
    assert counted == stored
    assert p.client.get("/api/v1/project").json()["trace_count"] == stored
    assert p.client.get("/api/v1/traces").json()["total"] == stored


def assert_rollups_match(p: Project) -> None:
    """Every hour of the roll-ups (migration 0017) equals a from-scratch aggregate of the project's
    trace rows that remain: counts, errors, tokens, cost, evaluations, durations by bucket and
    decisions. Hours left with nothing sum to zero."""
    hour_ns = 3_600_000_000_000
    with p.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT trace_id, start_ns, end_ns, status, input_tokens, output_tokens, cost_usd, decision,"
            " running_span_count FROM traces WHERE project_id = :p"), {"p": p.id}).all()
        evals = conn.execute(sa.text("SELECT trace_id, passed FROM evaluation_results WHERE project_id = :p"),
                             {"p": p.id}).all()
        sums = {r[0]: r[1:] for r in conn.execute(sa.text(
            "SELECT hour_ns, sum(trace_count), sum(error_count), sum(input_tokens), sum(output_tokens),"
            " sum(cost_usd), sum(eval_count), sum(eval_passed), sum(eval_failed) FROM trace_hours"
            " WHERE project_id = :p GROUP BY hour_ns"), {"p": p.id})}
        latency = Counter({(h, b): int(n) for h, b, n in conn.execute(sa.text(
            "SELECT hour_ns, bucket, sum(n) FROM trace_hour_latency WHERE project_id = :p GROUP BY hour_ns, bucket"),
            {"p": p.id}) if n})
        decisions = Counter({(h, a): int(n) for h, a, n in conn.execute(sa.text(
            "SELECT hour_ns, action, sum(n) FROM trace_hour_decisions WHERE project_id = :p GROUP BY hour_ns, action"),
            {"p": p.id}) if n})
    hour_of = {r.trace_id: r.start_ns - r.start_ns % hour_ns for r in rows}
    want: dict[int, list[float]] = {}
    want_latency: Counter[tuple[int, int]] = Counter()
    want_decisions: Counter[tuple[int, str]] = Counter()
    for r in rows:
        h = hour_of[r.trace_id]
        w = want.setdefault(h, [0] * 8)
        for i, v in enumerate((1, r.status == "error", r.input_tokens, r.output_tokens, r.cost_usd)):
            w[i] += v
        if r.end_ns is not None and r.running_span_count == 0:
            want_latency[(h, bucket_of(r.end_ns - r.start_ns))] += 1
        if r.decision is not None:
            want_decisions[(h, r.decision)] += 1
    for trace_id, passed in evals:
        if trace_id in hour_of:
            w = want[hour_of[trace_id]]
            w[5] += 1
            w[6] += passed is True or passed == 1
            w[7] += passed is False or passed == 0
    got = {h: [float(v) for v in s] for h, s in sums.items() if any(float(v) for v in s[:5]) or any(s[5:])}
    assert set(got) == set(want)
    for h, w in want.items():
        assert [int(v) for v in got[h][:4]] == [int(v) for v in w[:4]], h
        assert math.isclose(got[h][4], w[4], abs_tol=1e-9), h
        assert [int(v) for v in got[h][5:]] == [int(v) for v in w[5:]], h
    for h, s in sums.items():
        if h not in want:
            assert all(abs(float(v)) < 1e-9 for v in s), h
    assert latency == want_latency and decisions == want_decisions


def search_ids(p: Project, text: str) -> set[str]:
    r = p.client.get("/api/v1/traces", params={"search": text, "page_size": 200})
    assert r.status_code == 200, r.text
    return {t["trace_id"] for t in r.json()["items"]}


def assert_search_index_whole(server: ServerProcess, engine: sa.Engine) -> None:
    """SQLite: FTS5's own check of each index against its rows. PostgreSQL: no search row of a
    span or span event that is gone."""
    if server.database_url.startswith("sqlite"):
        with sqlite3.connect(server.database_url.removeprefix("sqlite:///")) as conn:
            for fts in ("spans_fts", "span_events_fts"):
                conn.execute(f"INSERT INTO {fts}({fts}) VALUES ('integrity-check')")
        return
    with engine.connect() as conn:
        for side, table in (("span_search", "spans"), ("span_event_search", "span_events")):
            assert conn.execute(sa.text(f"SELECT count(*) FROM {side} s WHERE NOT EXISTS"
                                        f" (SELECT 1 FROM {table} r WHERE r.id = s.id)")).scalar_one() == 0


def test_the_setting_in_the_api_the_openapi_document_and_the_cli(hub: ServerProcess) -> None:
    with own_project(hub, "retention-setting") as p:
        name = p.client.get("/api/v1/project").json()["name"]
        assert p.client.get("/api/v1/project").json()["retention_days"] is None
        r = p.client.patch("/api/v1/project", json={"retention_days": 30})
        assert r.status_code == 200 and r.json()["retention_days"] == 30, r.text
        assert p.client.get("/api/v1/project").json()["retention_days"] == 30
        # Only the fields sent change.
        r = p.client.patch("/api/v1/project", json={"auto_decide": False})
        assert (r.json()["auto_decide"], r.json()["retention_days"]) == (False, 30)
        for off in (0, None):
            assert p.client.patch("/api/v1/project", json={"retention_days": 30}).status_code == 200
            assert p.client.patch("/api/v1/project", json={"retention_days": off}).json()["retention_days"] is None
        for bad in (-1, 36_501, "30", True, 1.5):
            r = p.client.patch("/api/v1/project", json={"retention_days": bad})
            assert r.status_code == 422, (bad, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert [e["path"] for e in r.json()["errors"]] == ["retention_days"], r.json()
        assert p.client.patch("/api/v1/project", json={}).status_code == 422
        assert p.client.patch("/api/v1/project", json={"retention": 3}).status_code == 422
        assert p.client.get("/api/v1/project").json()["retention_days"] is None

        done = hub.cli("projects", "set-retention", name, "7")
        assert done.returncode == 0, done.stderr
        assert "deleted 7 days after their last activity" in done.stdout
        assert p.client.get("/api/v1/project").json()["retention_days"] == 7
        assert hub.cli("projects", "set-retention", name, "off").returncode == 0
        assert p.client.get("/api/v1/project").json()["retention_days"] is None
        assert hub.cli("projects", "set-retention", "no-such-project", "7").returncode == 1
        for bad in ("-1", "seven", "36501"):
            refused = hub.cli("projects", "set-retention", name, bad)
            assert refused.returncode == 2 and "DAYS" in refused.stderr, bad
        assert "keeps its traces for ever" in hub.cli("prune", "--project", name).stdout
        assert hub.cli("prune", "--project", "no-such-project").returncode == 1

    doc = hub.client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/project"]
    patch = doc["patch"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["retention_days"]
    assert (patch["type"], patch["minimum"], patch["maximum"]) == (["integer", "null"], 0, 36_500)
    shown = doc["get"]["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    assert "retention_days" in shown


def test_prune_deletes_old_traces_with_everything_that_hangs_off_them(
        hub: ServerProcess, receiver: Receiver) -> None:
    now = time.time_ns()
    mark = uuid.uuid4().hex[:8]
    old_text, kept_text = f"zqx old {mark} refund", f"kwv kept {mark} refund"
    old_svc, kept_svc = f"old-svc-{mark}", f"kept-svc-{mark}"
    with own_project(hub, "retention-prune", auto_decide=False) as p:
        name = p.client.get("/api/v1/project").json()["name"]
        old = [agent_trace(hub, p.key, old_svc, old_text, now - i * 60 * 10**9) for i in range(3)]
        old.append(agent_trace(hub, p.key, kept_svc, old_text, now))  # its resource is kept's too
        kept = agent_trace(hub, p.key, kept_svc, kept_text, now)
        started_old = agent_trace(hub, p.key, kept_svc, kept_text, now)  # old clocks, written lately
        written_old = agent_trace(hub, p.key, kept_svc, kept_text, now)  # written long ago, started lately
        # A span without an end, indexed, then ended with an output: its row changes after indexing.
        running, running_span = _tid(), _sid()
        r = p.client.post("/api/v1/ingest/traces", json={"trace": {"trace_id": running}, "spans": [{
            "trace_id": running, "span_id": running_span, "name": "slow", "span_type": "llm",
            "status": "running", "start_time": iso(now), "input_text": old_text}]})
        assert r.status_code == 200, r.text
        old.append(running)
        for tid in (*old, kept):
            p.client.get(f"/api/v1/traces/{tid}").raise_for_status()
        wait_indexed(hub)
        r = p.client.post("/api/v1/ingest/spans", json={"events": [
            {"trace_id": running, "span_id": running_span, "event_type": "END", "event_time": iso(now + 5 * MS),
             "payload": {"output_text": f"late answer {mark}"}},
            {"trace_id": old[0], "span_id": _sid(), "event_type": "LOG", "event_time": iso(now),
             "payload": {"message": f"zqx log {mark}"}}]})
        assert r.status_code == 200, r.text
        for tid, passed in ((old[0], True), (old[1], False), (kept, True)):
            r = p.client.post("/api/v1/evals", json={"trace_id": tid, "eval_name": "faithful", "score": 1.0,
                                                     "passed": passed})
            assert r.status_code in (200, 201), r.text
        # A decision that escalates: a case and its webhook notification, delivered once.
        r = p.client.post("/api/v1/policies", json={"name": "escalate-all", "active": True, "definition": {
            "rules": [], "default": {"action": "ESCALATE", "reason_code": "REVIEW", "severity": "high"}}})
        assert r.status_code == 201, r.text
        assert p.client.post("/api/v1/webhooks", json={"url": receiver.url}).status_code == 201
        for tid in (old[1], kept):
            decided = p.client.post("/api/v1/decide", json={"trace_id": tid})
            assert decided.status_code == 201 and decided.json()["case_id"], decided.text
        deadline = time.monotonic() + 20
        while rows_of(p.engine, p.id, [old[1], kept])["attempts"] < 2:
            assert time.monotonic() < deadline, "the webhooks were not delivered"
            time.sleep(0.1)
        # The newest span event is a kept trace's (SQLite keeps the trace of a table's newest row).
        r = p.client.post("/api/v1/ingest/spans", json={"events": [
            {"trace_id": kept, "span_id": _sid(), "event_type": "LOG", "event_time": iso(now),
             "payload": {"message": "kept log"}}]})
        assert r.status_code == 200, r.text
        wait_indexed(hub)

        age(p.engine, p.id, old, 10)
        age(p.engine, p.id, [started_old], 10, written=False)
        with p.engine.begin() as conn:
            conn.execute(sa.text("UPDATE traces SET updated_ns = updated_ns - :d WHERE project_id = :p AND"
                                 " trace_id = :t"), {"d": 10 * DAY, "p": p.id, "t": written_old})
        before = rows_of(p.engine, p.id, old)
        assert before["span_events"] >= 2 and before["evaluations"] == 2 and before["cases"] == 1
        assert before["attempts"] == 1 and before["decisions"] == 1
        assert_rollups_match(p)
        assert hub.cli("projects", "set-retention", name, "7").returncode == 0

        dry = hub.cli("prune", "--project", name, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"{name}: would delete 5 traces ({before['spans']} spans, {before['span_events']} span events," \
               f" 2 evaluations, 1 decisions, 1 judge runs, 1 cases)" in dry.stdout, dry.stdout
        assert rows_of(p.engine, p.id, old) == before

        done = hub.cli("prune", "--project", name)
        assert done.returncode == 0, done.stderr
        assert f"{name}: deleted 5 traces ({before['spans']} spans, {before['span_events']} span events," \
               f" 2 evaluations, 1 decisions, 1 judge runs, 1 cases, 1 notifications, 1 resources);" \
               f" retention 7 days" in done.stdout, done.stdout
        assert rows_of(p.engine, p.id, old) == dict.fromkeys(before, 0)
        for tid in old:
            assert p.client.get(f"/api/v1/traces/{tid}").status_code == 404
        for tid in (kept, started_old, written_old):
            assert len(p.client.get(f"/api/v1/traces/{tid}").json()["spans"]) >= 3
        assert rows_of(p.engine, p.id, [kept])["attempts"] == 1  # the kept trace's case stays whole
        with p.engine.connect() as conn:
            services = {json.loads(a)["service.name"] if isinstance(a, str) else a["service.name"]
                        for (a,) in conn.execute(sa.text("SELECT attributes FROM resources WHERE project_id = :p"),
                                                 {"p": p.id})}
        assert services == {kept_svc}
        assert_counted(p)
        assert_rollups_match(p)
        assert search_ids(p, "zqx") == set() and search_ids(p, f"late answer {mark}") == set()
        assert search_ids(p, f"kept {mark}") == {kept, started_old, written_old}
        assert_search_index_whole(hub, p.engine)
        if hub.database_url.startswith("sqlite"):
            with p.engine.connect() as conn:  # the old text's own trigram left the index
                assert conn.execute(sa.text("SELECT count(*) FROM spans_fts_vocab WHERE term = 'zqx'")).scalar_one() == 0
        again = hub.cli("prune", "--project", name)
        assert f"{name}: deleted 0 traces;" in again.stdout, again.stdout

        # A trace that gets a span after its old part went is a new trace; the old resource comes
        # back with the new span (a server started since holds no memory of it).
        hub.stop()
        hub.start()
        otlp(hub, p.key, old_svc, [span(old[0], _sid(), "again", f"reborn {mark}", time.time_ns())])
        detail = hub.wait_trace(old[0], client=p.client)
        assert [s["name"] for s in detail["spans"]] == ["again"]
        assert detail["spans"][0]["resource"]["service.name"] == old_svc
        assert detail["trace"]["span_count"] == 1 and detail["evals"] == [] and detail["decisions"] == []
        assert_counted(p)
        assert_rollups_match(p)
        assert search_ids(p, f"reborn {mark}") == {old[0]}
        wait_indexed(hub)
        assert search_ids(p, f"reborn {mark}") == {old[0]} and search_ids(p, "zqx") == set()
        assert_search_index_whole(hub, p.engine)


def test_the_newest_row_stays_until_a_newer_one_is_written_on_sqlite(hub: ServerProcess) -> None:
    """SQLite gives a deleted largest row id to the next row; below the search index's mark, that
    row would never be indexed. PostgreSQL's sequences never give an id twice."""
    sqlite = hub.database_url.startswith("sqlite")
    mark = uuid.uuid4().hex[:8]
    with own_project(hub, "retention-newest", auto_decide=False) as p:
        name = p.client.get("/api/v1/project").json()["name"]
        assert hub.cli("projects", "set-retention", name, "1").returncode == 0
        newest = agent_trace(hub, p.key, "svc", f"newest {mark}", time.time_ns())
        hub.wait_trace(newest, 3, client=p.client)
        wait_indexed(hub)
        age(p.engine, p.id, [newest], 3)
        first = hub.cli("prune", "--project", name)
        assert f"deleted {0 if sqlite else 1} traces" in first.stdout, first.stdout
        later = agent_trace(hub, p.key, "svc", f"later {mark}", time.time_ns())
        hub.wait_trace(later, 3, client=p.client)
        second = hub.cli("prune", "--project", name)
        assert f"deleted {1 if sqlite else 0} traces" in second.stdout, second.stdout
        assert p.client.get(f"/api/v1/traces/{newest}").status_code == 404
        fresh = agent_trace(hub, p.key, "svc", f"fresh {mark}", time.time_ns())
        hub.wait_trace(fresh, 3, client=p.client)
        wait_indexed(hub)
        assert search_ids(p, f"fresh {mark}") == {fresh} and search_ids(p, f"later {mark}") == {later}
        assert search_ids(p, f"newest {mark}") == set()
        assert_search_index_whole(hub, p.engine)
        assert_counted(p)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_server_prunes_in_chunks_while_ingest_goes_on(
        backend: str, server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(backend, env={"TRACEHUB_RETENTION_INTERVAL_S": "1"})
    now = time.time_ns()
    with own_project(server, "retention-server", auto_decide=False) as p:
        old: list[str] = []
        for batch in range(6):  # 1,200 traces: three chunks
            spans, ids = [], []
            for i in range(200):
                tid, root = _tid(), _sid()
                ids.append(tid)
                start = now - (batch * 200 + i) * 10**9
                spans += [span(tid, root, "agent", f"old {i}", start), span(tid, _sid(), "llm", "x", start, root)]
            otlp(server, p.key, "svc", spans)
            old += ids
        age(p.engine, p.id, old, 40)
        assert_rollups_match(p)
        sent: list[str] = []
        stop = threading.Event()

        def ingest() -> None:
            while not stop.is_set():
                sent.append(agent_trace(server, p.key, "svc", "fresh", time.time_ns()))

        sender = threading.Thread(target=ingest)
        sender.start()
        try:
            r = p.client.patch("/api/v1/project", json={"retention_days": 30})
            assert r.status_code == 200, r.text
            deadline = time.monotonic() + 90
            while rows_of(p.engine, p.id, old)["traces"]:
                assert time.monotonic() < deadline, "the server did not prune"
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            stop.set()
            sender.join()
        assert len(sent) > 10
        assert not any(rows_of(p.engine, p.id, old).values())
        for tid in sent[-3:]:
            server.wait_trace(tid, 3, client=p.client)
        with p.engine.connect() as conn:
            stored = set(conn.execute(sa.text("SELECT trace_id FROM traces WHERE project_id = :p"),
                                      {"p": p.id}).scalars())
        assert stored == set(sent)
        assert_counted(p)
        assert_rollups_match(p)
        assert_search_index_whole(server, p.engine)


def test_sqlite_gives_pages_back_with_incremental_auto_vacuum(
        database_url_factory: Callable[[str], str], server_factory: Callable[..., ServerProcess]) -> None:
    url = database_url_factory("sqlite")
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # made before the server: auto_vacuum is chosen at creation
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("CREATE TABLE made (x)")
        conn.execute("DROP TABLE made")
    server = server_factory("sqlite", env=SERVER_ENV, database_url=url)
    with own_project(server, "retention-vacuum", auto_decide=False) as p:
        name = p.client.get("/api/v1/project").json()["name"]
        # Text that does not compress (span bodies are compressed): pages enough to see them go.
        ids = [agent_trace(server, p.key, "svc", secrets.token_urlsafe(30_000), time.time_ns()) for _ in range(60)]
        keep = agent_trace(server, p.key, "svc", "small", time.time_ns())
        server.wait_trace(keep, 3, client=p.client)
        wait_indexed(server)
        age(p.engine, p.id, ids, 3)
        with sqlite3.connect(path) as conn:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
        assert server.cli("projects", "set-retention", name, "1").returncode == 0
        done = server.cli("prune", "--project", name)
        assert "deleted 60 traces" in done.stdout and "given back to the file" in done.stdout, done.stdout
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
            assert conn.execute("PRAGMA page_count").fetchone()[0] < pages - 100
        assert_search_index_whole(server, p.engine)
        assert_counted(p)


@pytest.mark.postgres
def test_postgresql_drops_a_partition_once_all_its_traces_are_past_retention(
        server_factory: Callable[..., ServerProcess]) -> None:
    """Spans go into a partition a day (tracehub/store/partitions.py). A partition holding a trace a
    project keeps stays (its expired traces go row by row); once all of its traces are past their
    projects' retention it loses its trace rows and is dropped whole, while the traces stored since
    the roll-over stay."""
    hub = server_factory("postgres", env=SERVER_ENV)
    now = time.time_ns()
    mark = uuid.uuid4().hex[:8]

    def partitions() -> dict[int, int | None]:
        with sa.create_engine(hub.database_url).connect() as conn:
            return dict(conn.execute(sa.text("SELECT number, started_ns FROM span_partitions")).all())

    def backdate(number: int, days: float) -> None:
        with sa.create_engine(hub.database_url).begin() as conn:
            conn.execute(sa.text("UPDATE span_partitions SET started_ns = started_ns - :d WHERE number = :k"),
                         {"d": int(days * DAY), "k": number})

    with own_project(hub, "keeps", auto_decide=False) as keeps, own_project(hub, "short", auto_decide=False) as short:
        names = {p.id: p.client.get("/api/v1/project").json()["name"] for p in (keeps, short)}
        kept = agent_trace(hub, keeps.key, f"old-svc-{mark}", f"zqx kept {mark}", now)
        early, dropped = (agent_trace(hub, short.key, f"old-svc-{mark}", f"zqx short {mark}", now) for _ in range(2))
        r = short.client.post("/api/v1/evals", json={"trace_id": dropped, "eval_name": "ok", "score": 1.0})
        assert r.status_code in (200, 201), r.text
        assert set(partitions()) == {0, 1}
        backdate(0, 2)
        hub.stop()  # a server gives up its block of trace numbers within a minute; this one at once
        assert hub.cli("prune").returncode == 0
        assert partitions().keys() == {0, 1, 2}  # rolled over to 1, 2 made ahead
        hub.start()
        later = agent_trace(hub, short.key, f"new-svc-{mark}", f"kwv later {mark}", now)
        wait_indexed(hub)
        with short.engine.connect() as conn:
            seqs = dict(conn.execute(sa.text("SELECT trace_id, seq >> 40 FROM traces")).all())
        assert seqs == {kept: 0, early: 0, dropped: 0, later: 1}

        # Partition 0 holds a trace of a project without retention: the short one's old trace goes
        # row by row, the partition stays.
        assert hub.cli("projects", "set-retention", names[short.id], "7").returncode == 0
        age(short.engine, short.id, [early], 10)
        backdate(1, 0.5)  # past the grace a partition gets after its last new trace, not yet a day old
        done = hub.cli("prune")
        assert done.returncode == 0 and f"{names[short.id]}: deleted 1 traces (3 spans);" in done.stdout, done.stdout
        assert set(partitions()) == {0, 1, 2}

        # Every trace of partition 0 is past retention: it goes whole, `later` stays.
        assert hub.cli("projects", "set-retention", names[keeps.id], "30").returncode == 0
        age(keeps.engine, keeps.id, [kept], 40)
        age(short.engine, short.id, [dropped], 10)
        done = hub.cli("prune")
        assert done.returncode == 0, done.stderr
        assert f"{names[short.id]}: deleted 1 traces (3 spans, 1 evaluations, 1 resources);" in done.stdout, done.stdout
        assert f"{names[keeps.id]}: deleted 1 traces (3 spans, 1 resources);" in done.stdout, done.stdout
        assert set(partitions()) == {1, 2}
        with short.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass('spans_p0')")).scalar() is None
            assert conn.execute(sa.text("SELECT count(*) FROM spans")).scalar_one() == 3
            services = {a["service.name"] for (a,) in conn.execute(sa.text("SELECT attributes FROM resources"))}
        assert services == {f"new-svc-{mark}"}
        for p, gone in ((keeps, kept), (short, dropped)):
            assert p.client.get(f"/api/v1/traces/{gone}").status_code == 404
            assert set(rows_of(p.engine, p.id, [gone]).values()) == {0}
            assert_counted(p)
            assert_rollups_match(p)
        assert len(short.client.get(f"/api/v1/traces/{later}").json()["spans"]) == 3
        assert search_ids(short, "zqx") == set() and search_ids(short, f"later {mark}") == {later}
        assert_search_index_whole(hub, short.engine)
        # New traces keep going to the active partition.
        again = agent_trace(hub, short.key, f"new-svc-{mark}", f"kwv again {mark}", time.time_ns())
        assert len(hub.wait_trace(again, client=short.client)["spans"]) == 3
