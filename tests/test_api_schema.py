"""Every API operation's real answers, from a real server on both databases, against the response
schemas of the OpenAPI document it serves: the document cannot drift from what the server says.

A client's response hook checks each answer as it comes (the operation, status and content type
must be documented, and the body must validate: closed shapes refuse fields they do not name),
and the walk must have had a successful answer from every operation.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from conftest import BACKENDS, ServerProcess, own_project
from webhook_receiver import Receiver
from tracehub.api.openapi import document

DOC_URI = "urn:tracehub:openapi"
SERVER_ENV = {"TRACEHUB_WEBHOOK_ALLOW": "127.0.0.1", "TRACEHUB_WEBHOOK_RETRY_INITIAL_S": "0.1"}
EMAIL = "jane.doe@example.com"


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class Checked:
    """An httpx response hook: validates each answer by the document, and records what it saw."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(
            DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
        # Literal paths before templated ones: /api/v1/policies/schema is not a {policy}.
        self.templates = sorted(((re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in doc["paths"]),
                                key=lambda t: t[1].count("{"))
        self.seen: set[tuple[str, str, str]] = set()

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        method, url_path = response.request.method.lower(), response.request.url.path
        path = next(p for pattern, p in self.templates if pattern.match(url_path))
        status = str(response.status_code)
        answers = self.doc["paths"][path][method]["responses"]
        assert status in answers, f"{method} {url_path}: {status} is not documented: {response.text[:500]}"
        ctype = response.headers.get("content-type", "").split(";")[0]
        content = answers[status].get("content", {})
        assert ctype in content, f"{method} {url_path} {status}: {ctype} is not documented"
        body = response.json() if ctype.endswith("json") else response.text
        schema = {"$ref": f"{DOC_URI}#/{_pointer('paths', path, method, 'responses', status, 'content', ctype)}/schema"}
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in Draft202012Validator(schema, registry=self.registry).iter_errors(body)]
        assert not errors, f"{method} {url_path} {status} does not match its schema:\n" + "\n".join(errors[:20])
        self.seen.add((path, method, status))


@pytest.fixture(scope="module", params=BACKENDS)
def hub(request: pytest.FixtureRequest, server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(request.param, env=SERVER_ENV)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def _now(offset_s: float = 0.0) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + offset_s)) + "Z"


POLICY = {"name": "schema-safety", "definition": {"rules": [{
    "priority": 10, "when": {"any": [{"field": "signals.pii", "op": "eq", "value": True}]},
    "then": {"action": "ESCALATE", "reason_code": "PII_DETECTED", "severity": "high"},
    "metadata": {"owner": "trust-safety"}}]}}
POLICY_YAML = """name: schema-safety
description: warn instead
definition:
  rules:
    - priority: 10
      when: {any: [{field: signals.pii, op: eq, value: true}]}
      then: {action: ALLOW_WITH_WARNING, reason_code: PII_SEEN, severity: medium}
"""


def _walk(hub: ServerProcess, receiver: Receiver, key: str, checked: Checked) -> None:
    """Call every operation, with answers of each shape: errors too."""
    c = httpx.Client(base_url=hub.url, headers={"x-api-key": key}, timeout=30,
                     event_hooks={"response": [checked]})
    anonymous = httpx.Client(base_url=hub.url, timeout=30, event_hooks={"response": [checked]})
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"):
        assert anonymous.get(path).status_code == 200
    assert anonymous.get("/api/v1/traces").status_code == 401

    assert c.get("/api/v1/project").status_code == 200
    assert c.patch("/api/v1/project", json={"retention_days": 30}).status_code == 200
    assert c.patch("/api/v1/project", json={"color": "red"}).status_code == 422

    # Policies: a version, the same again (unchanged), a YAML one; activate, shadow, backtest.
    assert c.get("/api/v1/policies/schema").status_code == 200
    assert c.post("/api/v1/policies", json=POLICY).status_code == 201
    assert c.post("/api/v1/policies", json=POLICY).status_code == 200
    r = c.post("/api/v1/policies", content=POLICY_YAML, headers={"content-type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert c.post("/api/v1/policies", json={"name": "x", "definition": {"rules": 3}}).status_code == 422
    assert c.post("/api/v1/policies/schema-safety/activate", params={"version": 1}).status_code == 200
    assert c.post("/api/v1/policies/schema-safety/shadow", params={"version": 2}).status_code == 200
    assert c.get("/api/v1/policies").status_code == 200
    assert c.get("/api/v1/policies/schema-safety").status_code == 200
    assert c.get("/api/v1/policies/schema-safety/versions").status_code == 200
    assert c.get("/api/v1/policies/no-such-policy").status_code == 404

    # Webhooks: one to deliver to, one deleted, one enabled again.
    assert c.post("/api/v1/webhooks", json={"url": receiver.url}).status_code == 201
    r = c.post("/api/v1/webhooks", json={"url": receiver.url + "/other"})
    assert r.status_code == 201
    other = r.json()["id"]
    assert c.post(f"/api/v1/webhooks/{other}/enable").status_code == 200
    assert c.delete(f"/api/v1/webhooks/{other}").status_code == 200
    assert c.delete(f"/api/v1/webhooks/{other}").status_code == 404
    assert c.get("/api/v1/webhooks").status_code == 200

    # Ingest: a trace whose spans make every mark of the tree, a refused span and a retried one.
    trace_id, root, child, orphan = secrets.token_hex(16), secrets.token_hex(8), secrets.token_hex(8), secrets.token_hex(8)
    spans = [
        {"span_id": root, "name": "chat", "span_type": "chain", "start_time": _now(-2), "end_time": _now(),
         "status": "success", "input_text": f"My e-mail is {EMAIL}", "output_text": "Noted.",
         "attributes": {"team": "search"}},
        {"span_id": child, "parent_span_id": root, "name": "llm", "span_type": "llm", "model": "gpt-4.1-mini",
         "start_time": _now(-1), "end_time": _now(), "input_tokens": 12, "output_tokens": 3, "cost_usd": 0.001,
         "idempotency_key": "schema-" + child},
        {"span_id": orphan, "parent_span_id": secrets.token_hex(8), "name": "late", "start_time": _now(-1)},
        {"span_id": "not-an-id", "name": "bad"},
    ]
    body = {"trace": {"trace_id": trace_id, "name": "chat", "start_time": _now(-2), "end_time": _now(),
                      "environment": "prod", "user_id": "u-1", "session_id": "s-1", "attributes": {"a": 1}},
            "spans": spans, "allow_missing_parent": True}
    assert c.post("/api/v1/ingest/traces", json=body).status_code == 207
    assert c.post("/api/v1/ingest/traces", json={**body, "spans": spans[1:2]}).status_code == 200  # replayed
    r = c.post("/api/v1/ingest/traces", json={"trace": {"trace_id": trace_id}, "spans": [spans[3]]})
    assert r.status_code == 422 and r.json()["results"], r.text
    events = [{"trace_id": trace_id, "span_id": child, "event_type": "AMENDMENT",
               "payload": {"patch": {"output_text": "amended"}}},
              {"trace_id": trace_id, "span_id": child, "event_type": "LOG", "payload": {"message": "hello"}},
              {"trace_id": trace_id, "span_id": "bad", "event_type": 7}]
    assert c.post("/api/v1/ingest/spans", json={"events": events}).status_code == 207
    run = {"trace_id": secrets.token_hex(16), "run_id": "run-1", "graph_name": "support", "status": "success",
           "nodes": [{"node_id": "n1", "node_name": "classify", "start_time": _now(-1), "end_time": _now(),
                      "input_state": {"q": "hi"}, "output_state": "done"},
                     {"node_id": "n2", "parent_node_id": "n1", "error": "boom", "status": "error"},
                     {"node_id": 5}]}
    assert c.post("/api/v1/ingest/langgraph-runs", json=run).status_code == 207
    evaluation = {"trace_id": trace_id, "eval_name": "helpful", "score": 0.9, "passed": True,
                  "metadata": {"by": "test"}, "idempotency_key": "schema-eval-" + trace_id}
    assert c.post("/api/v1/evals", json=evaluation).status_code == 201
    assert c.post("/api/v1/evals", json=evaluation).status_code == 200
    assert c.post("/api/v1/evals", json={"trace_id": secrets.token_hex(16), "eval_name": "x"}).status_code == 201
    assert c.post("/api/v1/evals", json={"trace_id": "nope", "eval_name": "x"}).status_code == 422

    # OTLP/HTTP JSON: a span with resource, scope, an event and a link; then a body it cannot read.
    otlp_trace = secrets.token_hex(16)
    otlp = {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
                               "scopeSpans": [{"scope": {"name": "test", "version": "1"}, "spans": [{
                                   "traceId": otlp_trace, "spanId": secrets.token_hex(8), "name": "otlp",
                                   "kind": 3, "startTimeUnixNano": str(time.time_ns() - 10**9),
                                   "endTimeUnixNano": str(time.time_ns()),
                                   "events": [{"name": "e", "timeUnixNano": str(time.time_ns())}],
                                   "links": [{"traceId": secrets.token_hex(16), "spanId": secrets.token_hex(8)}]}]}]}]}
    assert c.post("/v1/traces", json=otlp).status_code == 200
    assert c.post("/v1/logs", json={"resourceLogs": []}).status_code == 200
    assert c.post("/v1/traces", content=b"{", headers={"content-type": "application/json"}).status_code == 400

    # Langfuse's paths, with HTTP Basic (its secret key is the API key): spans, a score, a batch.
    lf = httpx.Client(base_url=hub.url, auth=("pk-lf-schema", key), timeout=30, event_hooks={"response": [checked]})
    assert lf.post("/api/public/otel/v1/traces", json=otlp).status_code == 200
    score = {"id": secrets.token_hex(8), "traceId": trace_id, "name": "helpful", "value": 1, "dataType": "NUMERIC"}
    assert lf.post("/api/public/scores", json=score).status_code == 200
    assert lf.post("/api/public/scores", json=[{**score, "id": secrets.token_hex(8)}]).status_code == 202
    assert lf.post("/api/public/scores", json=[{**score, "id": secrets.token_hex(8)}, {"name": "x"}]).status_code == 207
    batch = {"batch": [{"id": secrets.token_hex(8), "type": "score-create", "body": {**score, "id": secrets.token_hex(8)}},
                       {"id": secrets.token_hex(8), "type": "trace-create", "body": {}}], "metadata": {}}
    assert lf.post("/api/public/ingestion", json=batch).status_code == 207
    lf.close()

    # Decide: PII escalates to a case, whose webhook is delivered; a retry answers the first decision.
    decide = {"trace_id": trace_id, "idempotency_key": "schema-decide-" + trace_id}
    r = c.post("/api/v1/decide", json=decide)
    assert r.status_code == 201 and r.json()["action"] == "ESCALATE", r.text
    case_id = r.json()["case_id"]
    assert c.post("/api/v1/decide", json=decide).status_code == 200
    deadline = time.monotonic() + 15
    while c.get(f"/api/v1/cases/{case_id}").json()["notifications"][0]["status"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert c.post("/api/v1/policies/schema-safety/backtest", params={"version": 2}).status_code == 200
    assert c.delete("/api/v1/policies/schema-safety/shadow").status_code == 200

    # Reads.
    hub.wait_trace(trace_id, 3, client=c)
    assert c.get("/api/v1/traces", params={"environment": "prod", "page_size": 5}).status_code == 200
    assert c.get("/api/v1/traces", params={"search": "hello"}).status_code == 200
    assert c.get("/api/v1/traces", params={"page": 0}).status_code == 422
    assert c.get(f"/api/v1/traces/{trace_id}").status_code == 200
    assert c.get(f"/api/v1/traces/{run['trace_id']}").status_code == 200
    assert c.get(f"/api/v1/traces/{otlp_trace}").status_code in (200, 404)  # OTLP's writes are queued
    assert c.get(f"/api/v1/traces/{secrets.token_hex(16)}").status_code == 404
    assert c.get(f"/api/v1/traces/{trace_id}/spans", params={"page_size": 2}).status_code == 200
    assert c.get(f"/api/v1/traces/{trace_id}/spans/{child}").status_code == 200
    assert c.get("/api/v1/traces/stats/overview", params={"last_hours": 2}).status_code == 200

    # Cases: list, detail, ack, resolve, and a move the status does not allow.
    assert c.get("/api/v1/cases", params={"status": "open"}).status_code == 200
    assert c.post(f"/api/v1/cases/{case_id}/ack").status_code == 200
    assert c.post(f"/api/v1/cases/{case_id}/resolve", json={"note": "handled"}).status_code == 200
    assert c.post(f"/api/v1/cases/{case_id}/ack").status_code == 409
    assert c.get(f"/api/v1/cases/{case_id}").status_code == 200
    c.close()
    anonymous.close()


def test_every_operation_answers_as_documented(hub: ServerProcess, receiver: Receiver) -> None:
    checked = Checked(hub.client.get("/api/v1/openapi.json").json())
    with own_project(hub, "schema", auto_decide=False) as project:
        _walk(hub, receiver, project.key, checked)
    ok = {(path, method) for path, method, status in checked.seen if status.startswith("2")}
    missing = [(path, method) for path, ops in checked.doc["paths"].items() for method in ops
               if (path, method) not in ok]
    assert not missing, f"no successful answer checked from {missing}"
    assert {status for _p, _m, status in checked.seen} >= {"401", "404", "409", "422"}


def _objects(schema: Any, doc: dict[str, Any], seen: set[str], where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object schema inside `schema`, following the document's references once each."""
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            yield from _objects(item, doc, seen, f"{where}[{i}]")
        return
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        # The policy DSL's own schema is the request body's, shown as stored.
        if name not in seen and not name.startswith("PolicyD"):
            seen.add(name)
            yield from _objects(doc["components"]["schemas"][name], doc, seen, name)
        return
    kind = schema.get("type")
    if kind == "object" or isinstance(kind, list) and "object" in kind:
        yield where, schema
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            for name, sub in value.items():
                yield from _objects(sub, doc, seen, f"{where}.{name}")
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "propertyNames"):
            yield from _objects(value, doc, seen, f"{where}.{key}")


def test_every_answer_object_says_whether_it_is_closed() -> None:
    """A closed shape lists its fields (`additionalProperties: false`); an open one says so, with
    `additionalProperties` true or a schema: no answer is a bare `{"type": "object"}`."""
    doc = document()
    bare = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status, answer in op["responses"].items():
                for content in answer.get("content", {}).values():
                    for where, schema in _objects(content.get("schema"), doc, set(), f"{method} {path} {status}"):
                        if "additionalProperties" not in schema:
                            bare.append(where)
                        elif schema["additionalProperties"] is False:
                            assert set(schema.get("required", ())) <= set(schema["properties"]), where
    assert not bare, json.dumps(bare, indent=1)
