"""The OpenAPI 3.1 document, served at `/api/v1/openapi.json`.

It is rendered from the routes' operations (`tracehub.api.operation`: each route module's table),
whose parameters are the ones the routes read; request bodies are the very JSON Schemas the API
validates with (`tracehub.api.schemas`) and answers the shapes of `tracehub.api.answers`. Tests check
that every route is documented (tests/test_openapi_fuzz.py) and that real answers match it
(tests/test_api_schema.py). The operations of the health routes and of OTLP/HTTP are declared here.
"""

from __future__ import annotations

import json
from typing import Any

from tracehub.api import answers, cases, decide, ingest, langfuse, policies, project, stats, traces
from tracehub.api.operation import Operation, json_answer, paths
from tracehub.api.schemas import BODIES, MAX_DEPTH
from tracehub.decision.policy import schema as policy_schema

_READY = answers.closed({
    "status": {"enum": ["ready", "overloaded"]},
    "queued_spans": {**answers.INT, "description": "Spans waiting for the writer."},
    "search_unindexed_rows": {**answers.INT, "description": "Rows the search index has still to take."},
    "search_lag_s": {**answers.NUM, "description": "Age of the oldest of them."}})
_WRITER_DOWN = answers.closed({**answers.PROBLEM_FIELDS, "queued_spans": answers.INT}, optional=["errors"])
OPS = (
    Operation("GET", "/healthz", "Liveness", "ops",
              {"200": json_answer(answers.closed({"status": {"const": "ok"}}), "Serving.")},
              refuse_unknown=False, public=True),
    Operation("GET", "/readyz", "Readiness (ingest queue has room)", "ops",
              {"200": json_answer(_READY, "Ready."),
               "503": {"description": "Overloaded (the ingest queue is full), or the writer cannot reach the "
                                      "database (problem details).",
                       "content": {"application/json": {"schema": _READY},
                                   "application/problem+json": {"schema": _WRITER_DOWN}}}},
              refuse_unknown=False, public=True),
    Operation("GET", "/metrics", "Prometheus metrics", "ops",
              {"200": {"description": "Text exposition format.", "content": {"text/plain": {"schema": answers.STR}}}},
              refuse_unknown=False, public=True),
    Operation("GET", "/api/v1/openapi.json", "This document", "ops",
              {"200": json_answer({"type": "object", "required": ["openapi", "info", "paths"],
                                   "additionalProperties": True}, "OpenAPI 3.1.")},
              refuse_unknown=False, public=True),
)


def _otlp(path: str, summary: str, rejected: str) -> Operation:
    """OTLP/HTTP: the request's protobuf or JSON messages (opentelemetry-proto), answered in its encoding."""
    binary = {"schema": {"type": "string", "contentMediaType": "application/x-protobuf"}}
    count = {**answers.STR, "description": "An int64, which protobuf's JSON writes as a string."}
    stored = answers.closed({"partialSuccess": answers.closed(
        {rejected: count, "errorMessage": answers.STR}, optional=[rejected, "errorMessage"])},
        optional=["partialSuccess"], description="The Export*ServiceResponse.")
    status = answers.closed({"code": answers.INT, "message": answers.STR, "details": answers.array(answers.OPEN)},
                            optional=["code", "message", "details"], description="A google.rpc.Status.")

    def answer(description: str, schema: answers.Schema) -> dict[str, Any]:
        return {"description": description, "content": {"application/x-protobuf": binary,
                                                        "application/json": {"schema": schema}}}

    return Operation(
        "POST", path, summary, "otlp",
        {"200": answer("Stored; partialSuccess counts rejected items.", stored),
         **{code: answer(text, status) for code, text in (
             ("400", "Undecodable body."), ("401", "Bad key."), ("413", "Body too large after decompression."),
             ("415", "Unsupported content type or encoding."), ("429", "Overloaded; see Retry-After."),
             ("503", "Unavailable; see Retry-After."))}},
        body={"required": True, "content": {"application/x-protobuf": binary,
                                            "application/json": {"schema": {"type": "object"}}}},
        refuse_unknown=False)


OTLP = (_otlp("/v1/traces", "OTLP/HTTP trace export (protobuf or JSON, gzip or not)", "rejectedSpans"),
        _otlp("/v1/logs", "OTLP/HTTP log export (GenAI content events)", "rejectedLogRecords"),
        _otlp("/api/public/otel/v1/traces", "/v1/traces where the Langfuse SDK sends it (HTTP Basic taken)",
              "rejectedSpans"))


def _dsl_components() -> dict[str, Any]:
    """The shipped policy DSL schema (tracehub/decision/policy.schema.json) as components: its
    `$defs` become `PolicyDsl_<name>`, so every reference resolves inside this document."""
    text = json.dumps(policy_schema()).replace('"#/$defs/', '"#/components/schemas/PolicyDsl_')
    dsl = json.loads(text)
    defs = dsl.pop("$defs")
    dsl.pop("$schema", None)
    dsl.pop("$id", None)
    return {"PolicyDefinition": dsl, **{f"PolicyDsl_{name}": d for name, d in defs.items()}}


def _schemas(*parts: dict[str, Any]) -> dict[str, Any]:
    """The components' schemas: request bodies and answers, each name given once."""
    out: dict[str, Any] = {}
    for part in parts:
        taken = out.keys() & part.keys()
        assert not taken, f"components named twice: {taken}"
        out.update(part)
    return out


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "LLM Trace Hub", "version": "0.1.0",
                 "description": "OpenTelemetry-native tracing for LLM applications. Authenticate "
                                "with `x-api-key` or `Authorization: Bearer`.\n\n"
                                "Ingest answers each item of a batch on its own: a refused item has a "
                                "status and the path of its bad field, the others are stored (207). "
                                "Ids are 32 (trace) or 16 (span) hex characters, as OTLP's 16 and 8 "
                                "bytes, or UUIDs, and never all zero. Times are RFC 3339 from "
                                "1970-01-01T00:00:00Z to 2262-04-11T23:47:16Z (signed 64-bit "
                                "nanoseconds). A request body nests objects and arrays at most "
                                f"{MAX_DEPTH} levels deep, its numbers are finite and its text is "
                                "Unicode (no lone surrogates). Query text must not contain NUL, and a "
                                "query parameter is given at most once."},
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}, {"bearer": []}],
        "paths": paths([*traces.OPERATIONS, *stats.OPERATIONS, *ingest.OPERATIONS, *decide.OPERATIONS,
                        *cases.OPERATIONS, *policies.OPERATIONS, *project.OPERATIONS, *langfuse.OPERATIONS,
                        *OTLP, *OPS]),
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                                "bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(BODIES, _dsl_components(), {"PolicyBody": policies.POLICY_BODY}, answers.COMPONENTS),
        },
    }
