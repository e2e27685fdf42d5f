"""The OpenAPI 3.1 document, served at `/api/v1/openapi.json`.

Request bodies are the very JSON Schemas the API validates with (`tracehub.api.schemas`), so the
document cannot drift from what is enforced. A test checks that every route is documented.
"""

from __future__ import annotations

import json
from typing import Any

from tracehub.api.ingest import MAX_BODY_BYTES
from tracehub.api import answers, cases, decide, ingest, stats, traces
from tracehub.api.operation import paths
from tracehub.api.params import PAGE, PAGE_SIZE
from tracehub.api.policies import (
    ACTIVATION_VIEW,
    BACKTEST_ANSWER,
    MAX_VERSION,
    POLICY_BODY,
    POLICY_DETAIL,
    POLICY_VIEW,
    VERSION_ANSWER,
    VERSION_VIEW,
)
from tracehub.api.policies import MAX_BODY_BYTES as POLICY_BODY_BYTES
from tracehub.api.project import PROJECT_PATCH, RETENTION_DAYS
from tracehub.api.schemas import BODIES, MAX_DEPTH
from tracehub.decision.policy import schema as policy_schema

PROBLEM = {"description": "Error (RFC 9457 problem details)",
           "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
AUTH_ERRORS = {"401": PROBLEM, "422": PROBLEM}
# Reads answer 503 with Retry-After while the database cannot be reached; writes also when overloaded.
BODY_LIMIT = f"At most {MAX_BODY_BYTES // 2**20} MiB after decompression (gzip is read), else 413."
READ_ERRORS = {**AUTH_ERRORS, "503": PROBLEM}
WRITE_ERRORS = {"400": PROBLEM, "409": PROBLEM, **AUTH_ERRORS, "413": PROBLEM, "415": PROBLEM,
                "429": PROBLEM, "503": PROBLEM}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    # An empty value is taken as the parameter left out, as HTML forms send unset fields.
    return {"name": name, "in": "query", "required": False, "allowEmptyValue": True, "schema": schema,
            "description": description}


_STR = {"type": "string"}
_TEXT = {"type": "string", "pattern": "^[^\\x00]*$", "description": "Text without NUL."}
_BOOL = {"type": "boolean"}

PAGED = [PAGE.openapi(), PAGE_SIZE.openapi()]

_OBJ = {"type": "object"}
_PROJECT = {"type": "object", "required": ["name", "auto_decide", "trace_count", "retention_days"],
            "properties": {"name": _STR, "auto_decide": _BOOL, "trace_count": {"type": "integer"},
                           "retention_days": {**RETENTION_DAYS, "minimum": 1, "description":
                                              "Days a trace is kept after its last activity; null: for ever."}}}


_PAGE = {"type": "object", "required": ["items", "page", "page_size", "total"],
         "properties": {"items": {"type": "array", "items": _OBJ}, "page": {"type": "integer"},
                        "page_size": {"type": "integer"}, "total": {"type": "integer"}}}
_NULLABLE_STR = {"type": ["string", "null"]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _otlp(summary: str) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "contentMediaType": "application/x-protobuf"}}
    return {"post": {
        "summary": summary, "tags": ["otlp"],
        "requestBody": {"required": True, "content": {"application/x-protobuf": binary,
                                                      "application/json": {"schema": _OBJ}}},
        "responses": {code: {"description": text} for code, text in (
            ("200", "Stored; partial_success counts rejected items."), ("400", "Undecodable body."),
            ("401", "Bad key."), ("413", "Body too large after decompression."),
            ("415", "Unsupported content type or encoding."), ("429", "Overloaded; see Retry-After."),
            ("503", "Unavailable; see Retry-After."))},
    }}


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


def _policy_paths() -> dict[str, Any]:
    ref = {"name": "policy", "in": "path", "required": True,
           "schema": {"type": "string", "minLength": 1, "pattern": "^[^/]+$"},
           "description": "The policy's numeric id or its name."}
    version = {"name": "version", "in": "query", "required": True,
               "schema": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}, "description": "Version number."}
    body = {"schema": {"$ref": "#/components/schemas/PolicyBody"}}
    paged = [*PAGED]
    invalid = {**PROBLEM, "description": "The version does not validate under the current policy schema "
                                         "(errors name the paths); nothing changed."}
    page: dict[str, Any] = {"type": "object", "required": ["items", "page", "page_size", "total"],
                            "properties": {"items": {"type": "array"}, "page": {"type": "integer"},
                                           "page_size": {"type": "integer"}, "total": {"type": "integer"}}}
    return {
        "/api/v1/policies": {
            "post": {"summary": "Create a policy, or a new immutable version of the policy with this name",
                     "description": f"JSON or YAML (the same document), at most {POLICY_BODY_BYTES // 1024} "
                                    "KiB. A definition the DSL refuses is 422 with its paths under "
                                    "`definition.` and is not stored. The same definition and effective "
                                    "time as the newest version answer that version, unchanged (200).",
                     "tags": ["policies"],
                     "requestBody": {"required": True, "content": {"application/json": body,
                                                                   "application/yaml": body}},
                     "responses": {"201": _json(VERSION_ANSWER, "A new version (and policy)."),
                                   "200": _json(VERSION_ANSWER, "Unchanged: the newest version."),
                                   "400": PROBLEM, "413": PROBLEM, "415": PROBLEM, **READ_ERRORS}},
            "get": {"summary": "List policies with their active, shadow, latest and in-force versions",
                    "tags": ["policies"], "parameters": paged,
                    "responses": {"200": _json({**page, "properties": {**page["properties"], "items": {
                        "type": "array", "items": POLICY_VIEW}}}, "A page."), **READ_ERRORS}}},
        "/api/v1/policies/schema": {"get": {
            "summary": "The policy DSL's JSON Schema (2020-12), as shipped", "tags": ["policies"],
            "responses": {"200": _json(_OBJ, "The JSON Schema."), **READ_ERRORS}}},
        "/api/v1/policies/{policy}": {"get": {
            "summary": "A policy with its active, shadow and in-force versions", "tags": ["policies"],
            "parameters": [ref], "responses": {"200": _json(POLICY_DETAIL, "The policy."), "404": PROBLEM,
                                               **READ_ERRORS}}},
        "/api/v1/policies/{policy}/versions": {"get": {
            "summary": "A policy's versions, newest first", "tags": ["policies"], "parameters": [ref, *paged],
            "responses": {"200": _json({**page, "properties": {**page["properties"], "items": {
                "type": "array", "items": VERSION_VIEW}}}, "A page."), "404": PROBLEM, **READ_ERRORS}}},
        "/api/v1/policies/{policy}/activate": {"post": {
            "summary": "Make a version the project's active policy (from its effective_from, if later)",
            "description": "One policy is active in a project: this replaces the other. Until the version's "
                           "effective time the version in force stays in force.",
            "tags": ["policies"], "parameters": [ref, version],
            "responses": {"200": _json({**VERSION_ANSWER, "properties": {
                **VERSION_ANSWER["properties"], "activation": ACTIVATION_VIEW}}, "Activated (or already)."),
                "404": PROBLEM, "409": invalid, **READ_ERRORS}}},
        "/api/v1/policies/{policy}/shadow": {
            "post": {"summary": "Make a version the policy's shadow (decides alongside, only recorded)",
                     "tags": ["policies"], "parameters": [ref, version],
                     "responses": {"200": _json(POLICY_VIEW, "The policy."), "404": PROBLEM, "409": invalid,
                                   **READ_ERRORS}},
            "delete": {"summary": "Clear the policy's shadow version", "tags": ["policies"], "parameters": [ref],
                       "responses": {"200": _json(POLICY_VIEW, "The policy."), "404": PROBLEM, **READ_ERRORS}}},
        "/api/v1/policies/{policy}/backtest": {"post": {
            "summary": "Replay a version over the stored traces against the version in force; nothing is written",
            "description": "Each trace that started in the last `last_hours` gets the context an automatic "
                           "decision builds; the candidate version and the version in force now (none: "
                           "ALLOW_ANSWER) both decide on it, without a judge. The answer counts the "
                           "transitions between their actions, with up to 5 sample trace ids each.",
            "tags": ["policies"],
            "parameters": [ref, version, _query("last_hours", {"type": "integer", "minimum": 1, "maximum": 720,
                                                               "default": 24}, "Hours back from now.")],
            "responses": {"200": _json(BACKTEST_ANSWER, "What would change."), "404": PROBLEM, "409": invalid,
                          **READ_ERRORS}}},
    }


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
        "paths": {
            **paths(list(traces.OPERATIONS)),
            **paths([*stats.OPERATIONS, *ingest.OPERATIONS[:3], *decide.OPERATIONS, ingest.EVAL]),
            **paths(list(cases.OPERATIONS)),
            **_policy_paths(),
            "/api/v1/project": {
                "get": {"summary": "The key's project and its settings", "tags": ["project"],
                        "responses": {"200": _json(_PROJECT, "The project."), **READ_ERRORS}},
                "patch": {"summary": "Change the key's project's settings: automatic decisions, retention",
                          "description": "Only the fields sent change. A retention deletes the project's"
                                         " traces once their last activity is older, in the server's"
                                         " passes (TRACEHUB_RETENTION_INTERVAL_S) or `tracehub prune`.",
                          "tags": ["project"],
                          "requestBody": {"required": True,
                                          "content": {"application/json": {"schema": PROJECT_PATCH}}},
                          "responses": {"200": _json(_PROJECT, "The project."), "400": PROBLEM, "413": PROBLEM,
                                        "415": PROBLEM, **READ_ERRORS}}},
            "/v1/traces": _otlp("OTLP/HTTP trace export (protobuf or JSON, gzip or not)"),
            "/v1/logs": _otlp("OTLP/HTTP log export (GenAI content events)"),
            "/healthz": {"get": {"summary": "Liveness", "tags": ["ops"], "security": [],
                                 "responses": {"200": {"description": "Serving."}}}},
            "/readyz": {"get": {"summary": "Readiness (ingest queue has room)", "tags": ["ops"],
                                "security": [],
                                "responses": {"200": {"description": "Ready."},
                                              "503": {"description": "Overloaded."}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["ops"], "security": [],
                                 "responses": {"200": {"description": "Text exposition format."}}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document", "tags": ["ops"], "security": [],
                                             "responses": {"200": _json(_OBJ, "OpenAPI 3.1.")}}},
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                                "bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(BODIES, _dsl_components(), {"PolicyBody": POLICY_BODY}, answers.COMPONENTS),
        },
    }
