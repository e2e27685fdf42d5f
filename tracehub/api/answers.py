"""JSON Schemas (2020-12) of the JSON API's answers, as the OpenAPI document shows them.

Request bodies are `tracehub.api.schemas`'; the routes' operations (`tracehub.api.operation`) name
these shapes. A shape the API builds field by field is closed (`additionalProperties: false`);
what holds a client's own JSON (attributes, metadata, payloads) is open and says so. Shapes more
than one answer holds are components (`component`), referenced as `#/components/schemas/<name>`.
tests/test_api_schema.py checks real answers against them, so they cannot drift from the views.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tracehub.api.schemas import STATUSES
from tracehub.decision.policy import ACTIONS, SEVERITIES
from tracehub.records import OTEL_STATUS_CODES
from tracehub.store.cases import CASE_STATUSES

Schema = dict[str, Any]

COMPONENTS: dict[str, Schema] = {}


def component(name: str, schema: Schema) -> Schema:
    """`schema` as the component `name`; the answer is a reference to it."""
    COMPONENTS[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


def closed(properties: dict[str, Schema], optional: Sequence[str] = (), description: str | None = None) -> Schema:
    """An object with exactly these properties, each present unless `optional`."""
    schema: Schema = {"type": "object", "required": [k for k in properties if k not in optional],
                      "properties": properties, "additionalProperties": False}
    return {**schema, "description": description} if description else schema


def nullable(schema: Schema) -> Schema:
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema, description: str | None = None) -> Schema:
    schema: Schema = {"type": "array", "items": items}
    return {**schema, "description": description} if description else schema


def page(items: Schema, **extra: Schema) -> Schema:
    """The lists' page: `{items, page, page_size, total}`."""
    return closed({"items": array(items), "page": INT, "page_size": INT, "total": INT, **extra})


STR: Schema = {"type": "string"}
NSTR: Schema = {"type": ["string", "null"]}
INT: Schema = {"type": "integer"}
NINT: Schema = {"type": ["integer", "null"]}
NUM: Schema = {"type": "number"}
NNUM: Schema = {"type": ["number", "null"]}
BOOL: Schema = {"type": "boolean"}
NBOOL: Schema = {"type": ["boolean", "null"]}
TRUE: Schema = {"const": True}
AT: Schema = {"type": "string", "format": "date-time", "description": "ISO 8601 UTC, to the microsecond."}
NAT: Schema = nullable(AT)
OPEN: Schema = {"type": "object", "additionalProperties": True, "description": "JSON as sent or stored."}
ANY: Schema = {"description": "Any JSON value."}
STATUS: Schema = {"enum": STATUSES}
ACTION: Schema = {"enum": list(ACTIONS)}
DURATION: Schema = {**NNUM, "description": "Milliseconds from start to end; null while running."}
STATUS_CODE: Schema = {"enum": [*OTEL_STATUS_CODES, None],
                       "description": "OTel's status code as sent (`status` says success for UNSET and OK alike);"
                                      " null where none was sent (the JSON ingest API's spans, judge spans)."}
TOOL_NAME: Schema = {**NSTR, "description": "A tool span's tool, which its name need not say (the Vercel AI SDK"
                                            " names every tool span `ai.toolCall`); null for other spans."}
FIRST_TOKEN: Schema = {**NNUM, "description": "Milliseconds to a streaming model call's first chunk, where its"
                                              " instrumentation states it."}
BY_ACTION: Schema = {"type": "object", "propertyNames": ACTION, "additionalProperties": INT,
                     "description": "Traces by action."}

# -- Errors -------------------------------------------------------------------------------------------

PROBLEM_FIELDS: dict[str, Schema] = {
    "type": {"const": "about:blank"}, "title": STR, "status": INT, "detail": STR,
    "errors": array(closed({"path": STR, "message": STR}), "Each bad field's path (`spans[1].start_time`, "
                                                          "`query.page`) and what is wrong with it."),
}
PROBLEM = component("Problem", closed(PROBLEM_FIELDS, optional=["errors"], description="RFC 9457 problem details."))

# -- Traces -------------------------------------------------------------------------------------------

TRACE = component("Trace", closed({
    "trace_id": STR, "name": NSTR, "status": STATUS, "start_time": AT, "end_time": NAT, "duration_ms": DURATION,
    "model": NSTR, "environment": NSTR, "user_id": NSTR, "session_id": NSTR, "input_text": NSTR,
    "output_text": NSTR, "attributes": OPEN, "root_span_id": NSTR, "span_count": INT,
    "open_span_count": {**INT, "description": "Running spans and parents awaited (named, not yet received)."},
    "has_open_spans": BOOL,
    "completion_rate": {**NUM, "description": "Finished spans among the spans and awaited parents, 0 to 1."},
    "parents_not_received": {**INT, "description": "Parents no longer awaited that never arrived."},
    "input_tokens": INT, "output_tokens": INT, "total_tokens": INT, "cost_usd": NUM, "error_count": INT,
    "decision": {**nullable(ACTION), "description": "The latest decision's action."},
    "user_review_passed": NBOOL,
}))

EVENT = component("Event", closed({
    "event_type": {"enum": ["OTEL", "LOG", "AMENDMENT", "START", "END", "ERROR"],
                   "description": "OTEL: an OTLP span event; the others came through the JSON API or OTLP logs."},
    "name": STR, "time": AT, "attributes": OPEN}))

SPAN = component("Span", closed({
    "span_id": STR, "trace_id": STR, "parent_span_id": NSTR,
    "parent_remote": {**BOOL, "description": "The parent is in another process."},
    "name": STR, "kind": {**STR, "description": "OTLP span kind: INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER, "
                                                "UNSPECIFIED."},
    "span_type": STR, "tool_name": TOOL_NAME, "status": STATUS, "status_code": STATUS_CODE, "status_message": NSTR,
    "start_time": AT, "end_time": NAT, "duration_ms": DURATION, "time_to_first_token_ms": FIRST_TOKEN, "model": NSTR,
    "input_text": NSTR, "output_text": NSTR, "input_tokens": NINT, "output_tokens": NINT, "total_tokens": NINT,
    "cost_usd": NNUM, "user_id": NSTR, "session_id": NSTR, "environment": NSTR,
    "langgraph": nullable(closed({"graph_name": NSTR, "node_name": NSTR, "step": NINT},
                                 description="For LangGraph spans.")),
    "attributes": {**OPEN, "description": "As stored, with AMENDMENTs applied."},
    "resource": {**OPEN, "description": "The resource's attributes (service, host, SDK)."},
    "scope": closed({"name": STR, "version": STR, "attributes": OPEN}, optional=["name", "version", "attributes"],
                    description="The OTLP instrumentation scope; empty for the JSON API's spans."),
    "links": array(closed({"trace_id": STR, "span_id": STR, "attributes": OPEN})),
    "events": array(EVENT),
    "amendments": array(closed({"time": AT, "patch": OPEN}), "The AMENDMENT events, in order."),
}))

LIGHT_SPAN = component("SpanLight", closed({
    "span_id": STR, "parent_span_id": NSTR, "parent_remote": BOOL, "name": STR, "span_type": STR,
    "tool_name": TOOL_NAME, "status": STATUS, "status_code": STATUS_CODE, "start_time": AT, "end_time": NAT,
    "duration_ms": DURATION, "time_to_first_token_ms": FIRST_TOKEN, "model": NSTR, "input_tokens": NINT,
    "output_tokens": NINT, "total_tokens": NINT, "cost_usd": NNUM}))

TREE_NODE = component("TreeNode", closed({
    "span_id": STR, "name": STR, "span_type": STR, "tool_name": TOOL_NAME, "status": STATUS, "duration_ms": DURATION,
    "depth": {**INT, "description": "Levels below the top of the trace."},
    "cycle": {**TRUE, "description": "One span of a parent cycle, its parent link cut."},
    "parent_remote": {**TRUE, "description": "Its parent is in another process."},
    "parent_not_received": {**TRUE, "description": "Its parent has not arrived."},
    "continued_from": {**STR, "description": "Too deep to nest: the parent's span id."},
    "children": array({"$ref": "#/components/schemas/TreeNode"}, "In start order."),
}, optional=["cycle", "parent_remote", "parent_not_received", "continued_from"]))

TIMELINE_ENTRY = closed({
    "span_id": STR, "parent_span_id": NSTR, "name": STR, "span_type": STR, "tool_name": TOOL_NAME, "status": STATUS,
    "depth": INT, "start_offset_ms": {**NUM, "description": "From the trace's start."}, "duration_ms": DURATION})

EVAL = component("EvalResult", closed({
    "trace_id": STR, "span_id": NSTR, "eval_name": STR, "eval_model": NSTR, "score": NNUM, "passed": NBOOL,
    "metadata": OPEN, "user_review_passed": NBOOL, "created_at": AT}))

DECISION_FIELDS: dict[str, Schema] = {
    "decision_id": STR, "trace_id": STR, "action": ACTION, "reason_code": STR, "severity": {"enum": list(SEVERITIES)},
    "rule": {"type": ["object", "null"], "additionalProperties": True,
             "description": "The matched rule (index, priority, metadata, matched_fields); null when the "
                            "policy's default decided."},
    "signals": {**OPEN, "description": "What the detectors found, masked: kinds, counts and `findings` (kind, "
                                       "where, offsets, masked match), never the matched text."},
    "policy_name": {**NSTR, "description": "Null when no policy is active (reason_code NO_ACTIVE_POLICY)."},
    "policy_version": NINT, "judge": STR, "judge_model": NSTR,
    "cached": {**BOOL, "description": "The judge's outcome came from the judge cache (same input_hash, policy "
                                      "version and judge model)."},
    "latency_ms": {**NUM, "description": "From the request to the decision, before it is written."},
    "input_hash": {**STR, "description": "SHA-256 of the canonical JSON of what was decided on: request, "
                                         "response, trace fields and evals."},
    "shadow": {**BOOL, "description": "Decided by a shadow version: only recorded."},
    "source": {"enum": ["api", "auto"]}, "judge_span_id": NSTR, "created_at": AT,
}
DECISION = component("Decision", closed(DECISION_FIELDS, description="A decision log entry."))
DECIDE_ANSWER = closed({
    **DECISION_FIELDS,
    "trace_found": {**BOOL, "description": "Whether the trace was stored when decided on."},
    "case_id": {**NSTR, "description": "The case an ESCALATE opened."}})

JUDGE_RUN = closed({
    "decision_id": NSTR, "judge": STR, "judge_model": NSTR,
    "status": {**STR, "description": "ok, cached, invalid_output, timeout, http_error or error."},
    "cached": BOOL, "input_hash": STR, "output": {**ANY, "description": "The judge's output; null without one."},
    "error": NSTR, "latency_ms": NUM, "input_tokens": NINT, "output_tokens": NINT, "cost_usd": NNUM,
    "span_id": NSTR, "created_at": AT})

TRACE_DETAIL = closed({
    "trace": TRACE, "spans": array(SPAN, "In start order."),
    "tree": array(TREE_NODE, "The spans without a parent here (or cut from one), each holding its descendants."),
    "timeline": array(TIMELINE_ENTRY, "Every span in start order."),
    "events": array(EVENT, "Events that name no span."), "evals": array(EVAL),
    "decisions": array(DECISION, "Newest first."), "judge_runs": array(JUDGE_RUN, "Newest first.")})

# -- Cases and webhooks -------------------------------------------------------------------------------

CASE_FIELDS: dict[str, Schema] = {
    "case_id": STR, "trace_id": STR, "decision_id": STR, "status": {"enum": list(CASE_STATUSES)},
    "severity": {"enum": list(SEVERITIES)}, "reason_code": STR, "title": STR, "note": NSTR,
    "created_at": AT, "updated_at": AT, "acknowledged_at": NAT, "resolved_at": NAT,
    "trace_url": {**STR, "description": "The trace's detail in this API."},
}
CASE = component("Case", closed(CASE_FIELDS))
NOTIFICATION = closed({
    "notification_id": INT, "endpoint_id": INT, "event_type": STR, "message_id": {**STR, "description": "webhook-id"},
    "status": {"enum": ["pending", "delivered", "failed", "disabled"]}, "attempts": INT,
    "next_attempt_at": {**NAT, "description": "While pending."}, "last_error": NSTR, "created_at": AT,
    "delivered_at": NAT,
    "delivery_attempts": array(closed({"attempt": INT, "started_at": AT, "status_code": NINT, "error": NSTR,
                                       "latency_ms": NUM}))})
CASE_DETAIL = closed({**CASE_FIELDS, "decision": nullable(DECISION), "notifications": array(NOTIFICATION)})

ENDPOINT_FIELDS: dict[str, Schema] = {"id": INT, "url": STR, "enabled": BOOL, "disabled_reason": NSTR,
                                      "created_at": AT}
ENDPOINT = component("WebhookEndpoint", closed(ENDPOINT_FIELDS))

# -- Policies -----------------------------------------------------------------------------------------

POLICY_FIELDS: dict[str, Schema] = {
    "policy_id": INT, "name": STR, "description": NSTR,
    "active_version": {**NINT, "description": "The designated version (the project's newest activation, in "
                                              "force from its effective time)."},
    "shadow_version": {**NINT, "description": "Decides alongside the active one; only recorded."},
    "latest_version": NINT,
    "in_force_version": {**NINT, "description": "This policy's version deciding now, if it is the project's "
                                                "policy in force."},
    "created_at": AT, "updated_at": AT,
}
POLICY = component("Policy", closed(POLICY_FIELDS))
VERSION_FIELDS: dict[str, Schema] = {
    "policy_id": INT, "version": INT, "definition": {"$ref": "#/components/schemas/PolicyDefinition"},
    "definition_hash": {**STR, "description": "SHA-256 of the definition's canonical JSON."},
    "description": NSTR, "source_format": {"enum": ["json", "yaml"]},
    "source_text": {**NSTR, "description": "The YAML body as sent (YAML only)."},
    "effective_from": NAT, "created_at": AT,
}
VERSION = component("PolicyVersion", closed(VERSION_FIELDS))
LISTED_VERSION = closed({**VERSION_FIELDS, "active": BOOL, "shadow": BOOL})
ACTIVATION = component("Activation", closed({"version": INT, "activated_at": AT, "effective_at": AT,
                                             "in_force": BOOL}))


def version_answer(activation: Schema) -> Schema:
    """A policy with one version, as creating or activating it answers."""
    return closed({**POLICY_FIELDS, "version": VERSION, "activation": activation, "unchanged": {
        **BOOL, "description": "Nothing new was written: the newest version already held this definition "
                               "(and it was already active if asked)."}})


POLICY_DETAIL = closed({**POLICY_FIELDS, "active": nullable(VERSION), "shadow": nullable(VERSION),
                        "in_force": nullable(VERSION)})
BACKTEST = closed({
    "policy": STR, "policy_id": INT, "version": INT,
    "baseline": nullable(closed({"policy": STR, "version": INT},
                                description="The version in force now; null: none is, the default ALLOW_ANSWER.")),
    "window": closed({"start": AT, "end": AT}),
    "traces": {**INT, "description": "Traces that started in the window."},
    "transitions": array(closed({"from": ACTION, "to": ACTION, "count": INT,
                                 "sample_trace_ids": {**array(STR), "maxItems": 5}}),
                         "Baseline action -> candidate action, changes first."),
    "by_action": closed({"candidate": BY_ACTION, "baseline": BY_ACTION}),
    "changed": {**INT, "description": "Traces whose action would change."},
    "elapsed_ms": NUM,
})

# -- Stats --------------------------------------------------------------------------------------------

OVERVIEW = closed({
    "last_hours": INT, "window_start": AT, "window_end": AT, "trace_count": INT, "error_count": INT,
    "error_rate": NUM, "open_traces": INT, "completion_rate": NUM,
    "latency_ms": closed({"p50": NUM, "p95": NUM, "p99": NUM}, description="Of finished traces."),
    "tokens": closed({"input": INT, "output": INT, "total": INT}), "cost_usd": NUM,
    "decisions_by_action": closed(dict.fromkeys(ACTIONS, INT)),
    "eval": closed({"count": INT, "passed": INT, "failed": INT, "pass_rate": NUM}),
    "langgraph_runs": INT,
    "series": array(closed({"start": AT, "trace_count": INT, "error_count": INT, "total_tokens": INT,
                            "cost_usd": NUM, "latency_p50_ms": {**NUM, "description": "0 without a finished trace."}}),
                    "One entry an hour, oldest first."),
})

# -- Ingest -------------------------------------------------------------------------------------------

ITEM_ERROR = closed({"status": INT, "path": STR, "message": STR})
SUMMARY = closed({"created": INT, "duplicate": INT, "error": INT, "replayed": INT},
                 description="Items by outcome; a replayed item counts only as replayed.")


def item_result(fields: dict[str, Schema], optional: Sequence[str] = ()) -> Schema:
    """One item's outcome in a batch answer: its own fields, then how it went."""
    return closed({"index": {**INT, "description": "The item's place in the request."}, **fields,
                   "status": {"enum": ["created", "duplicate", "error"]},
                   "replayed": {**TRUE, "description": "A retry: the first result."}, "error": ITEM_ERROR},
                  optional=[*optional, "replayed", "error"])


def batch_answer(head: dict[str, Schema], item: Schema) -> Schema:
    return closed({**head, "results": array(item), "summary": SUMMARY})


def batch_refusal(head: dict[str, Schema], item: Schema) -> Schema:
    """The problem answered when no item was stored, all for the same reason: the batch answer too."""
    return closed({**PROBLEM_FIELDS, **head, "results": array(item), "summary": SUMMARY},
                  optional=["errors", *head, "results", "summary"])


EVAL_ANSWER = closed({
    "trace_id": STR, "eval_name": STR, "status": {"const": "created"},
    "trace_found": {**BOOL, "description": "Whether the trace was stored when the eval came. The eval is kept "
                                           "either way; the stats count it once its trace is stored."},
    "warning": {**STR, "description": "Present when trace_found is false."},
}, optional=["warning"])
