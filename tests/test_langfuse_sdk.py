"""The Langfuse SDK pointed at a real server: only its host changes.

An app traced with the real `langfuse` package (its own OTel exporter: OTLP/HTTP protobuf, gzip, to
/api/public/otel/v1/traces; scores as JSON arrays to /api/public/scores; HTTP Basic) writes a trace
with a generation, a tool, user, session, tags, a trace name and metadata, and scores of the trace
and of the generation; the REST API reads them back, on SQLite and PostgreSQL. Then the two paths
as other clients meet them: credentials, the score shapes and refusals, OTLP/JSON.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langfuse import Langfuse, propagate_attributes
from opentelemetry.sdk.trace import TracerProvider

from conftest import API_KEY, Project, ServerProcess, own_project

TRACES = "/api/public/otel/v1/traces"
SCORES = "/api/public/scores"
INGESTION = "/api/public/ingestion"


def basic(public: str, secret: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{public}:{secret}".encode()).decode()}


@pytest.fixture(scope="module")
def project(server: ServerProcess) -> Iterator[tuple[Project, str]]:
    """A project of its own, and its name."""
    with own_project(server, "langfuse") as made:
        name = made.client.get("/api/v1/project").json()["name"]
        yield made, name


@pytest.fixture(scope="module")
def sent(server: ServerProcess, project: tuple[Project, str]) -> dict[str, Any]:
    """One request as a Langfuse user writes it, configured as its docs say, with only the host
    changed; the public key is the project's name. Its own tracer provider keeps the SDK off this
    process's global one."""
    made, name = project
    tag = "tag-" + uuid.uuid4().hex[:10]
    with pytest.MonkeyPatch.context() as env:
        env.delenv("LANGFUSE_BASE_URL", raising=False)
        env.setenv("LANGFUSE_HOST", server.url)
        env.setenv("LANGFUSE_PUBLIC_KEY", name)
        env.setenv("LANGFUSE_SECRET_KEY", made.key)
        provider = TracerProvider()
        lf = Langfuse(tracer_provider=provider)
        with lf.start_as_current_observation(as_type="span", name="handle-request", input={"q": "hi"},
                                             metadata={"route": "/chat"}) as root:
            with propagate_attributes(user_id="u-lf", session_id="s-lf", tags=[tag, "beta"],
                                      trace_name="chat-turn", metadata={"tenant": "acme"}):
                with lf.start_as_current_observation(
                        as_type="generation", name="llm", model="gpt-4o-mini",
                        input=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "안녕?"}],
                        usage_details={"input": 10, "output": 5},
                        cost_details={"input": 0.001, "output": 0.002}) as gen:
                    gen.update(output={"role": "assistant", "content": "안녕하세요!"})
                    gen.score(name="relevance", value=0.9, comment="on topic")
                with lf.start_as_current_observation(as_type="tool", name="search", input={"q": "x"}) as tool:
                    tool.update(output=["a", "b"])
                root.update(output="done")
            root.score_trace(name="helpful", value=True, data_type="BOOLEAN")
            root.score_trace(name="tone", value="friendly", data_type="CATEGORICAL", comment="warm")
        trace_id, generation_id, tool_id, root_id = root.trace_id, gen.id, tool.id, root.id
        # The same score twice (an app's retry): one evaluation.
        for _ in range(2):
            lf.create_score(score_id="retried-" + trace_id[:8], trace_id=trace_id, name="thumbs", value=1,
                            data_type="BOOLEAN")
        lf.flush()
        lf.shutdown()
        provider.shutdown()
    detail = server.wait_trace(trace_id, 3, client=made.client)
    deadline = time.monotonic() + 15
    while len(detail["evals"]) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
        detail = made.client.get(f"/api/v1/traces/{trace_id}").json()
    return {"detail": detail, "trace_id": trace_id, "generation": generation_id, "tool": tool_id, "root": root_id,
            "tag": tag}


def test_the_trace_reads_as_langfuse_showed_it(sent: dict[str, Any]) -> None:
    trace = sent["detail"]["trace"]
    assert (trace["name"], trace["user_id"], trace["session_id"], trace["model"]) == (
        "chat-turn", "u-lf", "s-lf", "gpt-4o-mini")
    assert (trace["input_tokens"], trace["output_tokens"], trace["total_tokens"]) == (10, 5, 15)
    assert trace["cost_usd"] == pytest.approx(0.003)  # Langfuse's cost_details, not a price lookup
    assert (trace["input_text"], trace["output_text"]) == ('{"q": "hi"}', "done")
    assert trace["status"] == "success"


def test_the_observations_are_typed_spans(sent: dict[str, Any]) -> None:
    spans = {s["span_id"]: s for s in sent["detail"]["spans"]}
    root, gen, tool = spans[sent["root"]], spans[sent["generation"]], spans[sent["tool"]]
    assert [(s["name"], s["span_type"]) for s in (root, gen, tool)] == [
        ("handle-request", "span"), ("llm", "llm"), ("search", "tool")]
    assert (gen["model"], gen["input_tokens"], gen["output_tokens"]) == ("gpt-4o-mini", 10, 5)
    assert (gen["input_text"], gen["output_text"]) == ("system: Be brief.\nuser: 안녕?", "안녕하세요!")
    assert (tool["input_text"], tool["output_text"]) == ('{"q":"x"}', '["a","b"]')
    assert all((s["user_id"], s["session_id"]) == ("u-lf", "s-lf") for s in (root, gen, tool))


def test_metadata_and_tags_are_kept_and_found(server: ServerProcess, project: tuple[Project, str],
                                              sent: dict[str, Any]) -> None:
    client = project[0].client
    span = client.get(f"/api/v1/traces/{sent['trace_id']}/spans/{sent['generation']}").json()
    attributes = span["attributes"]
    assert attributes["langfuse.trace.metadata.tenant"] == '"acme"'
    assert attributes["langfuse.trace.tags"] == [sent["tag"], "beta"]
    root = client.get(f"/api/v1/traces/{sent['trace_id']}/spans/{sent['root']}").json()
    assert root["attributes"]["langfuse.observation.metadata.route"] == '"/chat"'
    # No tags column: a tag is found by the search over attributes; user, session and name filter
    for query in ({"search": sent["tag"]}, {"user_id": "u-lf"}, {"session_id": "s-lf"}, {"name": "chat-turn"},
                  {"eval_name": "tone"}):
        items = client.get("/api/v1/traces", params=query).json()["items"]
        assert [t["trace_id"] for t in items] == [sent["trace_id"]], query


def test_scores_are_evaluations_of_the_trace_and_the_span(sent: dict[str, Any]) -> None:
    evals = {e["eval_name"]: e for e in sent["detail"]["evals"]}
    assert sorted(evals) == ["helpful", "relevance", "thumbs", "tone"]
    assert len(sent["detail"]["evals"]) == 4  # the score sent twice is one
    relevance, helpful, tone = evals["relevance"], evals["helpful"], evals["tone"]
    assert (relevance["span_id"], relevance["score"], relevance["passed"]) == (sent["generation"], 0.9, None)
    assert (relevance["metadata"]["comment"], relevance["metadata"]["dataType"]) == ("on topic", "NUMERIC")
    assert (helpful["span_id"], helpful["score"], helpful["passed"], helpful["metadata"]["dataType"]) == (
        None, 1.0, True, "BOOLEAN")
    assert (tone["score"], tone["passed"]) == (None, None)
    assert {k: tone["metadata"][k] for k in ("value", "dataType", "comment")} == {
        "value": "friendly", "dataType": "CATEGORICAL", "comment": "warm"}
    assert evals["thumbs"]["metadata"]["id"] == "retried-" + sent["trace_id"][:8]
    assert all(e["metadata"]["id"] and e["metadata"]["timestamp"] for e in evals.values())


# -- the two paths as other clients meet them -------------------------------------------------------------


def test_credentials(server: ServerProcess, project: tuple[Project, str]) -> None:
    made, name = project
    for path in (TRACES, SCORES, INGESTION):
        for headers in (basic(name, "wrong"), basic("pk-lf-1", ""), {"authorization": "Basic !!"}, {}):
            r = httpx.post(server.url + path, headers={**headers, "content-type": "application/json"},
                           content=b"[]")
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"] == 'Basic realm="tracehub"'
            assert r.headers["content-type"] == "application/problem+json"
        # The public key names another project than the key's: refused, saying which
        r = httpx.post(server.url + path, headers={**basic("default", made.key), "content-type": "application/json"},
                       content=b"[]")
        assert r.status_code == 401 and "names project 'default'" in r.json()["detail"], r.text
    # Any public key that names no project is no secret and needs no setting; the local dev-key works
    r = httpx.post(server.url + SCORES, headers=basic("pk-lf-anything", API_KEY), json=[])
    assert (r.status_code, r.json()) == (202, {"message": "Accepted"})
    # x-api-key is taken there too
    r = httpx.post(server.url + SCORES, headers={"x-api-key": made.key}, json=[])
    assert r.status_code == 202


def test_score_shapes_and_refusals(server: ServerProcess, project: tuple[Project, str]) -> None:
    made, name = project
    auth = basic(name, made.key)
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    score_id = uuid.uuid4().hex
    single = {"id": score_id, "traceId": trace_id, "observationId": span_id, "name": "accuracy", "value": 0.5,
              "metadata": {"judge": "human"}, "environment": "prod"}
    r = httpx.post(server.url + SCORES, headers=auth, json=single)
    assert (r.status_code, r.json()) == (200, {"id": score_id})
    r = httpx.post(server.url + SCORES, headers=auth, json=single)  # again: stored before
    assert (r.status_code, r.json()) == (200, {"id": score_id})
    r = httpx.post(server.url + SCORES, headers=auth, json={**single, "value": 0.7})
    assert r.status_code == 409 and "stored with other values" in r.json()["detail"], r.text
    r = httpx.post(server.url + SCORES, headers=auth, json={"traceId": trace_id, "name": "n", "value": "x",
                                                            "dataType": "NUMERIC"})
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", r.text

    batch = [
        {"traceId": trace_id, "name": "label", "value": "good"},  # text without a dataType: categorical
        {"traceId": trace_id, "name": "ok", "value": 0, "dataType": "BOOLEAN"},
        {"traceId": trace_id, "name": "ok", "value": 2, "dataType": "BOOLEAN"},
        {"sessionId": "s-1", "name": "session-score", "value": 1},
        {"id": score_id, "traceId": trace_id, "observationId": span_id, "name": "accuracy", "value": 0.1},
        "not a score",
    ]
    body = gzip.compress(json.dumps(batch).encode())
    r = httpx.post(server.url + SCORES, content=body,
                   headers={**auth, "content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 207, r.text
    answer = r.json()
    assert (answer["accepted"], answer["rejected"]) == (2, 4)
    assert [(e["index"], e["id"]) for e in answer["errors"]] == [(2, None), (3, None), (4, score_id), (5, None)]
    assert "traceId" in answer["errors"][1]["message"]
    r = httpx.post(server.url + SCORES, headers={**auth, "content-type": "application/json"},
                   content=b'[{"traceId": "%s", "name": "\\ud800", "value": 1},'
                           b' {"traceId": "%s", "name": "n", "value": 1e999}]' % (trace_id.encode(), trace_id.encode()))
    assert [e["message"] for e in r.json()["errors"]] == [
        "name: text is not valid Unicode (a lone surrogate)", "value: must be a finite number, not NaN or an infinity"]
    for bad, status in ((b"{", 400), (b"3", 400), (b"NaN", 400)):
        r = httpx.post(server.url + SCORES, content=bad, headers={**auth, "content-type": "application/json"})
        assert (r.status_code, r.headers["content-type"]) == (status, "application/problem+json"), r.text
    r = httpx.post(server.url + SCORES, content=b"[]", headers={**auth, "content-type": "text/plain"})
    assert r.status_code == 415


def test_scores_of_a_trace_not_yet_stored_wait_for_it(server: ServerProcess, project: tuple[Project, str]) -> None:
    """A score may arrive before its trace (the SDK flushes the two apart): it is kept, and the
    trace shows it once its spans come, here as OTLP/JSON."""
    made, name = project
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    r = httpx.post(server.url + SCORES, headers=basic(name, made.key),
                   json=[{"traceId": trace_id, "observationId": span_id, "name": "early", "value": 3}])
    assert r.status_code == 202, r.text
    now = time.time_ns()
    otlp = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {"name": "langfuse-sdk"}, "spans": [{
        "traceId": trace_id, "spanId": span_id, "name": "answer", "kind": 1,
        "startTimeUnixNano": str(now), "endTimeUnixNano": str(now + 1000),
        "attributes": [{"key": "langfuse.observation.type", "value": {"stringValue": "agent"}},
                       {"key": "langfuse.trace.name", "value": {"stringValue": "json-turn"}}]}]}]}]}
    r = httpx.post(server.url + TRACES, json=otlp, headers=basic(name, made.key))
    assert (r.status_code, r.headers["content-type"]) == (200, "application/json"), r.text
    detail = server.wait_trace(trace_id, 1, client=made.client)
    assert (detail["trace"]["name"], detail["spans"][0]["span_type"]) == ("json-turn", "agent")
    assert [(e["eval_name"], e["span_id"], e["score"]) for e in detail["evals"]] == [("early", span_id, 3.0)]


def test_scores_of_sdks_3_and_4_through_the_ingestion_batch(server: ServerProcess,
                                                            project: tuple[Project, str]) -> None:
    """SDKs 3.x and 4.x send scores as `score-create` events to /api/public/ingestion (their
    ScoreIngestionConsumer's batch_post: a `batch` and its `metadata`, HTTP Basic), and read a 207's
    `errors`. Events of other types (the v2 SDK's) are refused one by one; the rest are kept."""
    made, name = project
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    now = "2026-12-08T04:00:00.000000Z"

    def event(body: dict[str, Any], kind: str = "score-create") -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "type": kind, "timestamp": now, "body": body}

    scores = [event({"id": "s-" + trace_id[:8], "traceId": trace_id, "name": "correct", "value": 1,
                     "dataType": "BOOLEAN", "comment": "checked", "environment": "default"}),
              event({"id": "r-" + trace_id[:8], "traceId": trace_id, "observationId": span_id, "name": "relevance",
                     "value": 0.25})]
    refused = [event({"id": trace_id, "name": "v2 trace"}, "trace-create"),
               event({"traceId": trace_id, "value": 1}),  # no name
               {"type": "score-create", "body": {}}]
    body = {"batch": [*scores, *refused],
            "metadata": {"batch_size": 5, "sdk_name": "python", "sdk_version": "4.0.0", "public_key": name}}
    headers = {**basic(name, made.key), "x-langfuse-sdk-name": "python", "x-langfuse-public-key": name}
    for _ in range(2):  # the SDK retries a batch it saw fail: stored once
        r = httpx.post(server.url + INGESTION, content=json.dumps(body), timeout=30,
                       headers={**headers, "content-type": "application/json"})
        assert r.status_code == 207, r.text
        answer = r.json()
        assert answer["successes"] == [{"id": e["id"], "status": 201} for e in scores]
        assert [(e["id"], e["status"]) for e in answer["errors"]] == [
            (refused[0]["id"], 400), (refused[1]["id"], 400), (None, 400)]
        assert "OpenTelemetry" in answer["errors"][0]["message"] and "name" in answer["errors"][1]["message"]
    r = httpx.post(server.url + INGESTION, headers=basic(name, made.key), json={"batch": [
        event({"id": "s-" + trace_id[:8], "traceId": trace_id, "name": "correct", "value": 0, "dataType": "BOOLEAN"})]})
    assert r.status_code == 207 and r.json()["errors"][0]["status"] == 409, r.text
    for bad in ([], {"events": []}, "x"):
        r = httpx.post(server.url + INGESTION, headers=basic(name, made.key), json=bad)
        assert (r.status_code, r.headers["content-type"]) == (400, "application/problem+json"), r.text
    now_ns = time.time_ns()
    otlp = {"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {"name": "langfuse-sdk"}, "spans": [{
        "traceId": trace_id, "spanId": span_id, "name": "answer", "kind": 1,
        "startTimeUnixNano": str(now_ns), "endTimeUnixNano": str(now_ns + 1000)}]}]}]}
    assert httpx.post(server.url + TRACES, json=otlp, headers=basic(name, made.key)).status_code == 200
    detail = server.wait_trace(trace_id, 1, client=made.client)
    evals = {e["eval_name"]: e for e in detail["evals"]}
    assert len(detail["evals"]) == 2
    assert (evals["correct"]["score"], evals["correct"]["passed"], evals["correct"]["span_id"]) == (1.0, True, None)
    assert evals["correct"]["metadata"]["comment"] == "checked"
    assert (evals["relevance"]["score"], evals["relevance"]["span_id"]) == (0.25, span_id)
