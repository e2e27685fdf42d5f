"""Semantic-convention mapping: derive the spec's span columns from OTel attributes.

Every span the collector decodes passes through `map_span`, and every OTLP log record through
`map_log`. They read the attribute names that LLM instrumentations use (OTel GenAI `gen_ai.*`,
OpenInference `openinference.span.kind` / `input.value` / `llm.*`, Traceloop `traceloop.*`, Langfuse
`langfuse.*`, the Vercel AI SDK's `ai.*`, and our own `tracehub.span.type` / `langgraph.*`) and fill
a `records.Mapped`: span_type, model, input/output text, tokens, user, session, environment, the
LangGraph node, the trace's name where a span states it, a streaming call's time to first token, and a
tool span's tool.
docs/SEMCONV.md lists the precedence per field and the node-detection rule; keep the two in step.

What this module must never do:
- drop, rename or rewrite an attribute: it only reads. The store keeps every attribute exactly as
  the client sent it; the mapping merely derives extra columns from them.
- do I/O, log, or raise: these are pure functions on the ingest hot path (20,000 spans/s). Bad input
  (malformed JSON, wrong types, huge values) maps to None for that field and the rest still maps.

Speed: the common case is a few dict lookups. JSON is parsed only for the source that wins, and
flattened `prefix.N.*` attributes are read by direct lookups of index 0, 1, ..., never by scanning
all keys.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import orjson

from tracehub.records import SPAN_TYPES, Mapped

# Above this many characters a JSON attribute is used as raw text instead of being parsed, so one
# huge value cannot stall the ingest path.
MAX_PARSE_CHARS = 1_000_000
# Tool arguments and results up to this size are written in one JSON style (`_json_text`); larger
# ones stay as sent, so a big tool result costs no second pass.
MAX_REWRITE_CHARS = 100_000
_INT_MAX = 2**63 - 1  # the store's BIGINT range
_STEP_MIN, _STEP_MAX = -(2**31), 2**31 - 1  # spans.step is an INTEGER

_SPAN_TYPE_SET = frozenset(SPAN_TYPES)

_LANGFUSE_TYPES = {
    "generation": "llm", "span": "span", "event": "span", "agent": "agent", "tool": "tool",
    "chain": "chain", "retriever": "retriever", "embedding": "embedding", "evaluator": "evaluator",
    "guardrail": "guardrail", "reranker": "reranker",
}
_OPENINFERENCE_KINDS = {
    "LLM": "llm", "EMBEDDING": "embedding", "TOOL": "tool", "RETRIEVER": "retriever",
    "RERANKER": "reranker", "CHAIN": "chain", "AGENT": "agent", "GUARDRAIL": "guardrail",
    "EVALUATOR": "evaluator", "PROMPT": "chain",
}
_GENAI_OPERATIONS = {
    "chat": "llm", "text_completion": "llm", "generate_content": "llm", "completion": "llm",
    "embeddings": "embedding", "embedding": "embedding",
    "execute_tool": "tool",
    "invoke_agent": "agent", "create_agent": "agent",
    "invoke_workflow": "chain", "execute_task": "chain",  # Traceloop's LangGraph tasks and nodes
    "vector_db_retrieve": "retriever", "retrieve": "retriever", "retrieval": "retriever",
    "rerank": "reranker",
}
_TRACELOOP_KINDS = {
    "workflow": "chain", "task": "chain", "agent": "agent", "tool": "tool", "llm": "llm",
}
_LLM_REQUEST_TYPES = {
    "chat": "llm", "completion": "llm", "embedding": "embedding", "rerank": "reranker",
}
# Vercel AI SDK `ai.operationId`: the `.do*` spans are the provider calls; the outer span is the call
# as the application made it (its usage sums its model calls), so a chain. Traceloop's processor
# keeps the id when it rewrites these spans into gen_ai.* (with a model but no operation name).
_AI_SDK_OPERATIONS = {
    "ai.generateText.doGenerate": "llm", "ai.streamText.doStream": "llm",
    "ai.generateObject.doGenerate": "llm", "ai.streamObject.doStream": "llm",
    "ai.embed.doEmbed": "embedding", "ai.embedMany.doEmbed": "embedding",
    "ai.rerank.doRerank": "reranker", "ai.toolCall": "tool",
    "ai.generateText": "chain", "ai.streamText": "chain", "ai.generateObject": "chain",
    "ai.streamObject": "chain", "ai.embed": "chain", "ai.embedMany": "chain", "ai.rerank": "chain",
}
# Vendor types a LangGraph node span can carry; a more specific one (llm, tool, ...) is kept.
_NODE_CONTAINER_TYPES = frozenset({"chain", "agent", "span"})

_MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "llm.model_name",
               "langfuse.observation.model.name", "llm.response.model", "llm.request.model",
               "ai.response.model", "ai.model.id")
# `ai.usage.*`: the Vercel AI SDK (promptTokens / completionTokens before 5.0, tokens on embeddings).
_INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                     "llm.token_count.prompt", "llm.usage.prompt_tokens", "ai.usage.inputTokens",
                     "ai.usage.promptTokens", "ai.usage.tokens")
_OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                      "llm.token_count.completion", "llm.usage.completion_tokens",
                      "ai.usage.outputTokens", "ai.usage.completionTokens")
_TOTAL_TOKEN_KEYS = ("gen_ai.usage.total_tokens", "llm.token_count.total", "llm.usage.total_tokens",
                     "ai.usage.totalTokens")
# Traceloop JS copies the AI SDK's metadata keys as they are (camelCase) next to its own snake_case.
_USER_KEYS = ("user.id", "langfuse.user.id", "traceloop.association.properties.user_id",
              "traceloop.association.properties.userId", "enduser.id",
              "ai.telemetry.metadata.userId", "ai.telemetry.metadata.user_id")
# The explicit session before conversation / thread ids, which instrumentations derive on their own.
_SESSION_KEYS = ("session.id", "langfuse.session.id", "traceloop.association.properties.session_id",
                 "traceloop.association.properties.sessionId", "ai.telemetry.metadata.sessionId",
                 "ai.telemetry.metadata.session_id", "gen_ai.conversation.id",
                 "traceloop.association.properties.thread_id")
# The trace's name as a span states it: Langfuse's, else the AI SDK's function id.
_TRACE_NAME_KEYS = ("langfuse.trace.name", "ai.telemetry.functionId")
_RESOURCE_ENV_KEYS = ("deployment.environment.name", "deployment.environment")
_SPAN_ENV_KEYS = ("deployment.environment.name", "deployment.environment", "langfuse.environment")
_TOKEN_KEYS = _INPUT_TOKEN_KEYS + _OUTPUT_TOKEN_KEYS + _TOTAL_TOKEN_KEYS
# Time to first token, with what turns each into milliseconds: the Vercel AI SDK's (ms, also kept by
# Traceloop's rewrite of its spans), then OTel GenAI's (seconds). OpenInference and Traceloop state
# none on spans (Traceloop only as a metric).
_FIRST_TOKEN_KEYS = (("ai.response.msToFirstChunk", 1.0), ("gen_ai.response.time_to_first_chunk", 1000.0))
_FIRST_TOKEN_NAMES = tuple(key for key, _ in _FIRST_TOKEN_KEYS)
# A tool span's tool: OTel GenAI's, OpenInference's, the Vercel AI SDK's (which names every tool span
# `ai.toolCall`); Traceloop's entity name only where its span kind says tool (`tool_name`).
_TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name", "ai.toolCall.name")
# What `_vendor_type` reads: a span with none of these (most spans of a plain app) skips it.
_TYPE_KEYS = ("langfuse.observation.type", "openinference.span.kind", "ai.operationId",
              "gen_ai.operation.name", "traceloop.span.kind", "llm.request.type",
              "gen_ai.request.model", "llm.model_name")
_LOOKUP_KEYS = frozenset(_MODEL_KEYS + _TOKEN_KEYS + _USER_KEYS + _SESSION_KEYS + _SPAN_ENV_KEYS
                         + _TYPE_KEYS + _TRACE_NAME_KEYS + _FIRST_TOKEN_NAMES)

# Traceloop wraps LangChain callback payloads: {"inputs": ..., "tags": ..., "metadata": ...}.
_TL_INPUT_WRAPPERS = ("inputs", "input_str", "input", "query")
_TL_INPUT_NOISE = frozenset({"tags", "metadata", "kwargs"})
_TL_OUTPUT_WRAPPERS = ("outputs", "output")
_TL_OUTPUT_NOISE = frozenset({"kwargs"})

_ROLE_EVENTS = {
    "gen_ai.system.message": "system", "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool",
}
_DETAILS_EVENT = "gen_ai.client.inference.operation.details"

_BAD = object()  # _loads' "not JSON" marker (None is valid JSON)
_DECODER = json.JSONDecoder()


# ---------------------------------------------------------------- public API


def map_span(name: str, kind: str, attributes: dict[str, Any], resource: dict[str, Any],
             events: list[dict[str, Any]]) -> Mapped:
    """Derive the mapped columns of one span. Never raises; unknown input maps to defaults.

    `kind` is accepted for the pipeline's sake but not used: the vendor attributes say more than
    the OTel span kind does.
    """
    mapped = Mapped()
    try:
        _fill(mapped, name if isinstance(name, str) else "",
              attributes if isinstance(attributes, dict) else {},
              resource if isinstance(resource, dict) else {},
              events if isinstance(events, list) else [])
    except Exception:  # noqa: BLE001 - one odd span must never fail a batch; keep what was mapped
        pass
    return mapped


def map_log(event_name: str | None, body: Any,
            attributes: dict[str, Any]) -> tuple[str | None, str | None]:
    """Return the (input_text, output_text) a GenAI log record contributes to its span.

    One record carries one piece (a system message, a choice, or a whole inference's details);
    the caller appends the pieces of a span's records in time order. Non-GenAI records give
    (None, None).
    """
    try:
        attrs = attributes if isinstance(attributes, dict) else {}
        name = event_name or attrs.get("event.name")
        if not isinstance(name, str) or not name.startswith("gen_ai."):
            return None, None
        if isinstance(body, str) and body[:1] in ("{", "["):
            parsed = _loads(body)
            if parsed is not _BAD:
                body = parsed
        return _event_texts(name, body, attrs)
    except Exception:  # noqa: BLE001 - same contract as map_span
        return None, None


# ---------------------------------------------------------------- span mapping


def _fill(m: Mapped, name: str, a: dict[str, Any], resource: dict[str, Any],
          events: list[dict[str, Any]]) -> None:
    get = a.get

    # LangGraph: our own attributes, else Traceloop's association properties, else the OpenInference
    # `metadata` JSON. Vendor context is inherited by every descendant, so a span counts as the node
    # span only when its own name is the node's name (see docs/SEMCONV.md).
    node = _scalar(get("langgraph.node"))
    explicit_node = node is not None
    own_node = explicit_node
    step = _int(get("langgraph.step"), _STEP_MIN, _STEP_MAX)
    graph = _scalar(get("langgraph.graph.name"))
    if node is None:
        tl_node = get("traceloop.association.properties.langgraph_node")
        if tl_node is not None:
            node = _scalar(tl_node)
            step = _int(get("traceloop.association.properties.langgraph_step"), _STEP_MIN, _STEP_MAX)
            own = get("gen_ai.task.name") or get("traceloop.entity.name")
            own_node = node is not None and (own == node or name == "execute_task " + node)
        else:
            meta = get("metadata")
            # The substring test keeps spans without LangGraph context off the slower path.
            if (isinstance(meta, str) and "langgraph" in meta) or isinstance(meta, dict):
                node = _scalar(_meta_field(meta, "langgraph_node"))
                step = _int(_meta_field(meta, "langgraph_step"), _STEP_MIN, _STEP_MAX)
                own_node = node is not None and name == node
                # The graph's own span is the one LangGraph ran that is not inside any node.
                if (node is None and graph is None
                        and _meta_field(meta, "ls_integration") == "langgraph"):
                    graph = name or None
    if graph is None:
        graph = _scalar(get("traceloop.workflow.name"))
        if graph is None and get("gen_ai.provider.name") == "langgraph":
            graph = _scalar(get("gen_ai.agent.name"))
    m.node_name, m.step, m.graph_name = node, step, graph

    # The keys of the lookups below that the span has, in one set operation: a group of which it
    # has none (most spans have few) is then skipped instead of tried key by key.
    found = _LOOKUP_KEYS.intersection(a)

    span_type = _override_type(get("tracehub.span.type"))
    if span_type is None:
        vendor = None if found.isdisjoint(_TYPE_KEYS) else _vendor_type(get)
        if explicit_node or (own_node and (vendor is None or vendor in _NODE_CONTAINER_TYPES)):
            span_type = "node"
        else:
            span_type = vendor or "span"
    m.span_type = span_type

    m.model = None if found.isdisjoint(_MODEL_KEYS) else _first_scalar(get, _MODEL_KEYS)

    tin = tout = total = None
    if not found.isdisjoint(_TOKEN_KEYS):
        tin = _first_int(get, _INPUT_TOKEN_KEYS)
        tout = _first_int(get, _OUTPUT_TOKEN_KEYS)
        total = _first_int(get, _TOTAL_TOKEN_KEYS)
    if (tin is None or tout is None or total is None) and "langfuse.observation.usage_details" in a:
        usage = _as_dict(get("langfuse.observation.usage_details"))
        if usage is not None:
            lin, lout, ltotal = _langfuse_usage(usage)
            tin = tin if tin is not None else lin
            tout = tout if tout is not None else lout
            total = total if total is not None else ltotal
    if total is None and tin is not None and tout is not None and tin + tout <= _INT_MAX:
        total = tin + tout
    m.input_tokens, m.output_tokens, m.total_tokens = tin, tout, total

    if not found.isdisjoint(_FIRST_TOKEN_NAMES):
        m.first_token_ms = _first_token_ms(get)

    if span_type == "tool":
        m.tool_name = tool_name(get)

    m.trace_name = (None if found.isdisjoint(_TRACE_NAME_KEYS)
                    else _first_scalar(get, _TRACE_NAME_KEYS))
    m.user_id = None if found.isdisjoint(_USER_KEYS) else _first_scalar(get, _USER_KEYS)
    m.session_id = None if found.isdisjoint(_SESSION_KEYS) else _first_scalar(get, _SESSION_KEYS)
    m.environment = (_first_scalar(resource.get, _RESOURCE_ENV_KEYS)
                     or (None if found.isdisjoint(_SPAN_ENV_KEYS) else _first_scalar(get, _SPAN_ENV_KEYS)))

    # Message-shaped sources read best for model calls; for everything else (chains, nodes, tools,
    # agents) the span's own input.value / entity input is the faithful record of what it got.
    present = _CONTENT_KEYS.intersection(a)
    if present or events:
        if span_type in ("llm", "embedding"):
            in_sources, out_sources = _LLM_INPUT_SOURCES, _LLM_OUTPUT_SOURCES
        else:
            in_sources, out_sources = _INPUT_SOURCES, _OUTPUT_SOURCES
        m.input_text = _first_text(in_sources, a, events, present)
        m.output_text = _first_text(out_sources, a, events, present)
        if span_type == "tool":  # arguments and result read the same however they were sent
            m.input_text = _json_text(m.input_text)
            m.output_text = _json_text(m.output_text)


def _override_type(value: Any) -> str | None:
    if isinstance(value, str):
        wanted = value.strip().lower()
        if wanted in _SPAN_TYPE_SET:
            return wanted
    return None


def _vendor_type(get: Callable[[str], Any]) -> str | None:
    value = get("langfuse.observation.type")
    if isinstance(value, str):
        found = _LANGFUSE_TYPES.get(value.lower())
        if found is not None and found != "span":  # Langfuse's default says nothing; look further
            return found
    value = get("openinference.span.kind")
    if isinstance(value, str) and (found := _OPENINFERENCE_KINDS.get(value.upper())):
        return found
    value = get("ai.operationId")
    if isinstance(value, str) and (found := _ai_sdk_type(value)):
        return found
    value = get("gen_ai.operation.name")
    if isinstance(value, str) and (found := _GENAI_OPERATIONS.get(value.lower())):
        return found
    value = get("traceloop.span.kind")
    if isinstance(value, str) and (found := _TRACELOOP_KINDS.get(value.lower())):
        return found
    value = get("llm.request.type")
    if isinstance(value, str) and (found := _LLM_REQUEST_TYPES.get(value.lower())):
        return found
    # Older GenAI instrumentations set a model but no operation name.
    if get("gen_ai.request.model") is not None or get("llm.model_name") is not None:
        return "llm"
    return None


def tool_name(get: Callable[[str], Any]) -> str | None:
    """The tool a tool span ran, from the attributes `get` reads."""
    name = _first_scalar(get, _TOOL_NAME_KEYS)
    if name is None:
        kind = get("traceloop.span.kind")
        if isinstance(kind, str) and kind.lower() == "tool":  # else the entity is a workflow or task
            name = _scalar(get("traceloop.entity.name"))
    return name


def _ai_sdk_type(operation: str) -> str | None:
    found = _AI_SDK_OPERATIONS.get(operation)
    if found is None and operation.startswith("ai.") and ".do" not in operation:
        return "chain"  # an outer span of a newer function: never a second model call
    return found


def _meta_field(meta: str | dict[str, Any], key: str) -> Any:
    """One key of OpenInference's `metadata` (a JSON object as text) without parsing all of it.

    The metadata repeats the whole LangChain config on every span, so a full json.loads would
    cost more than the rest of the mapping; decoding just the value after `"key":` reads the
    same answer. The key is matched as a quoted name followed by a colon, which cannot occur
    inside a JSON string value (its quotes would be escaped).
    """
    if isinstance(meta, dict):
        return meta.get(key)
    if len(meta) > MAX_PARSE_CHARS:
        return None
    at = meta.find(f'"{key}"')
    if at < 0:
        return None
    at += len(key) + 2
    end = len(meta)
    while at < end and meta[at] in " \t\r\n":
        at += 1
    if at >= end or meta[at] != ":":
        return None
    at += 1
    while at < end and meta[at] in " \t\r\n":
        at += 1
    try:
        return _DECODER.raw_decode(meta, at)[0]
    except (ValueError, RecursionError):
        return None


# ---------------------------------------------------------------- input / output sources

_Source = Callable[[dict[str, Any], list[dict[str, Any]]], "str | None"]


def _first_text(sources: _Sources, a: dict[str, Any], events: list[dict[str, Any]],
                present: frozenset[str] | set[str]) -> str | None:
    for keys, source in sources:
        if keys is None:
            if not events:
                continue
        elif present.isdisjoint(keys):
            continue
        text = source(a, events)
        if text is not None:
            return text or None  # "" = the source is authoritative and empty
    return None


def _src_langfuse_obs_in(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _langfuse_text(a.get("langfuse.observation.input"), False)


def _src_langfuse_obs_out(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _langfuse_text(a.get("langfuse.observation.output"), True)


def _src_langfuse_trace_in(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _langfuse_text(a.get("langfuse.trace.input"), False)


def _src_langfuse_trace_out(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _langfuse_text(a.get("langfuse.trace.output"), True)


def _src_input_value(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _plain(a.get("input.value"))


def _src_output_value(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _plain(a.get("output.value"))


def _src_llm_result_out(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    # OpenInference's output.value of a LangChain model call is the serialised LLMResult: show the
    # generated text, and nothing for a call that failed before generating (empty generations).
    value = a.get("output.value")
    if not isinstance(value, str) or not value.startswith('{"generations"'):
        return _plain(value)
    doc = _loads(value)
    if not isinstance(doc, dict) or not isinstance(doc.get("generations"), list):
        return value
    texts: list[str] = []
    for batch in doc["generations"]:
        for gen in batch if isinstance(batch, list) else []:
            text = gen.get("text") if isinstance(gen, dict) else None
            if isinstance(text, str) and text:
                texts.append(text)
    return "\n".join(texts)  # "" stops the search: this source answered, with nothing


def _src_traceloop_in(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    value = a.get("traceloop.entity.input")
    if value is None:
        value = a.get("gen_ai.task.input")
    return _unwrap(value, _TL_INPUT_WRAPPERS, _TL_INPUT_NOISE, True)


def _src_traceloop_out(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    value = a.get("traceloop.entity.output")
    if value is None:
        value = a.get("gen_ai.task.output")
    return _unwrap(value, _TL_OUTPUT_WRAPPERS, _TL_OUTPUT_NOISE, False)


def _src_tool_args(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _plain(a.get("gen_ai.tool.call.arguments"))


def _src_tool_result(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _plain(a.get("gen_ai.tool.call.result"))


def _src_genai_in(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    system = _system_text(a.get("gen_ai.system_instructions"))
    return _join(system, _messages_text(a.get("gen_ai.input.messages"), False))


def _src_genai_out(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _messages_text(a.get("gen_ai.output.messages"), True)


def _src_openinference_in(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _flat_text(a, "llm.input_messages.", "message.", "tool_call.function.", False)


def _src_openinference_out(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _flat_text(a, "llm.output_messages.", "message.", "tool_call.function.", True)


def _src_prompt_in(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _flat_text(a, "gen_ai.prompt.", "", "", False)


def _src_completion_out(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _flat_text(a, "gen_ai.completion.", "", "", True)


def _src_ai_messages_in(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _messages_text(a.get("ai.prompt.messages"), False)


def _src_ai_prompt_in(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    # The AI SDK's call as the application made it: {"system", "prompt"} or {"system", "messages"}.
    value = a.get("ai.prompt")
    doc = (_as_dict(value) if isinstance(value, dict) or (isinstance(value, str)
                                                         and value.startswith("{")) else None)
    if doc is None or not ("prompt" in doc or "messages" in doc or "system" in doc):
        return _plain(value)
    prompt = doc.get("prompt")
    if prompt is None:
        prompt = doc.get("messages")
    if isinstance(prompt, str):
        body = f"user: {prompt}" if prompt else None
    else:
        body = _render(prompt, False) if isinstance(prompt, list) else None
    return _join(_system_text(doc.get("system")), body)


def _src_ai_values_in(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    # Embedding input: `ai.values` (array) or `ai.value`, each value JSON-encoded.
    values = a.get("ai.values")
    if not isinstance(values, list):
        values = [a.get("ai.value") if values is None else values]
    texts = [_unquote(v) for v in values]
    return "\n".join(t for t in texts if t) or None


def _src_ai_response_out(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    # `ai.response.*` since AI SDK 4.0, `ai.result.*` before.
    pieces: list[str | None] = []
    for prefix in ("ai.response.", "ai.result."):
        text, calls, obj = (a.get(prefix + "text"), a.get(prefix + "toolCalls"),
                            a.get(prefix + "object"))
        if text is None and calls is None and obj is None:
            continue
        pieces.append(_plain(text))
        if isinstance(calls, str):
            calls = _loads(calls)
        if isinstance(calls, list):
            for call in calls:
                if isinstance(call, dict):
                    args = call.get("input") if "input" in call else call.get("args")
                    pieces.append(_call(call.get("toolName"), args))
        pieces.append(_plain(obj))
        break
    return "\n".join(p for p in pieces if p) or None


def _src_ai_tool_args(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _plain(a.get("ai.toolCall.args"))


def _src_ai_tool_result(a: dict[str, Any], _e: list[dict[str, Any]]) -> str | None:
    return _plain(a.get("ai.toolCall.result"))


def _src_events_in(_a: dict[str, Any], events: list[dict[str, Any]]) -> str | None:
    return _span_events_text(events, 0) if events else None


def _src_events_out(_a: dict[str, Any], events: list[dict[str, Any]]) -> str | None:
    return _span_events_text(events, 1) if events else None


# Each source with the attributes that make it worth calling (None: the span's events), so a span
# without content costs one set intersection instead of a call per source.
_Sources = tuple[tuple["tuple[str, ...] | None", _Source], ...]
_LF_OBS_IN = (("langfuse.observation.input",), _src_langfuse_obs_in)
_LF_OBS_OUT = (("langfuse.observation.output",), _src_langfuse_obs_out)
_LF_TRACE_IN = (("langfuse.trace.input",), _src_langfuse_trace_in)
_LF_TRACE_OUT = (("langfuse.trace.output",), _src_langfuse_trace_out)
_GENAI_IN = (("gen_ai.input.messages", "gen_ai.system_instructions"), _src_genai_in)
_GENAI_OUT = (("gen_ai.output.messages",), _src_genai_out)
_OI_IN = (("llm.input_messages.0.message.role", "llm.input_messages.0.message.content"),
          _src_openinference_in)
_OI_OUT = (("llm.output_messages.0.message.role", "llm.output_messages.0.message.content"),
           _src_openinference_out)
_PROMPT_IN = (("gen_ai.prompt.0.role", "gen_ai.prompt.0.content"), _src_prompt_in)
_COMPLETION_OUT = (("gen_ai.completion.0.role", "gen_ai.completion.0.content"),
                   _src_completion_out)
_EVENTS_IN = (None, _src_events_in)
_EVENTS_OUT = (None, _src_events_out)
_VALUE_IN = (("input.value",), _src_input_value)
_VALUE_OUT = (("output.value",), _src_output_value)
_LLM_RESULT_OUT = (("output.value",), _src_llm_result_out)
_TL_IN = (("traceloop.entity.input", "gen_ai.task.input"), _src_traceloop_in)
_TL_OUT = (("traceloop.entity.output", "gen_ai.task.output"), _src_traceloop_out)
_TOOL_ARGS = (("gen_ai.tool.call.arguments",), _src_tool_args)
_TOOL_RESULT = (("gen_ai.tool.call.result",), _src_tool_result)
_AI_MESSAGES_IN = (("ai.prompt.messages",), _src_ai_messages_in)
_AI_PROMPT_IN = (("ai.prompt",), _src_ai_prompt_in)
_AI_VALUES_IN = (("ai.values", "ai.value"), _src_ai_values_in)
_AI_RESPONSE_OUT = (("ai.response.text", "ai.response.toolCalls", "ai.response.object",
                     "ai.result.text", "ai.result.toolCalls", "ai.result.object"),
                    _src_ai_response_out)
_AI_TOOL_ARGS = (("ai.toolCall.args",), _src_ai_tool_args)
_AI_TOOL_RESULT = (("ai.toolCall.result",), _src_ai_tool_result)

_LLM_INPUT_SOURCES: _Sources = (
    _LF_OBS_IN, _GENAI_IN, _OI_IN, _PROMPT_IN, _EVENTS_IN, _VALUE_IN, _TL_IN, _TOOL_ARGS,
    _AI_MESSAGES_IN, _AI_VALUES_IN, _AI_PROMPT_IN, _LF_TRACE_IN)
_LLM_OUTPUT_SOURCES: _Sources = (
    _LF_OBS_OUT, _GENAI_OUT, _OI_OUT, _COMPLETION_OUT, _EVENTS_OUT, _LLM_RESULT_OUT, _TL_OUT,
    _TOOL_RESULT, _AI_RESPONSE_OUT, _LF_TRACE_OUT)
_INPUT_SOURCES: _Sources = (
    _LF_OBS_IN, _VALUE_IN, _TL_IN, _TOOL_ARGS, _GENAI_IN, _OI_IN, _PROMPT_IN, _EVENTS_IN,
    _AI_TOOL_ARGS, _AI_PROMPT_IN, _AI_VALUES_IN, _AI_MESSAGES_IN, _LF_TRACE_IN)
_OUTPUT_SOURCES: _Sources = (
    _LF_OBS_OUT, _VALUE_OUT, _TL_OUT, _TOOL_RESULT, _GENAI_OUT, _OI_OUT, _COMPLETION_OUT,
    _EVENTS_OUT, _AI_TOOL_RESULT, _AI_RESPONSE_OUT, _LF_TRACE_OUT)
_CONTENT_KEYS = frozenset(
    key for sources in (_LLM_INPUT_SOURCES, _LLM_OUTPUT_SOURCES, _INPUT_SOURCES, _OUTPUT_SOURCES)
    for keys, _ in sources if keys is not None for key in keys)


def _langfuse_text(value: Any, output: bool) -> str | None:
    # Langfuse serialises observation input/output as JSON: unquote plain strings, render chat
    # messages (a list, or the one message a generation returns), keep anything else as sent.
    if isinstance(value, str) and value[:1] in ('"', "[", "{"):
        parsed = _loads(value)
        if isinstance(parsed, str):
            return parsed or None
        if isinstance(parsed, dict) and "role" in parsed and (
                "content" in parsed or "tool_calls" in parsed):
            parsed = [parsed]
        if isinstance(parsed, list) and parsed and all(
                isinstance(x, dict) and "role" in x for x in parsed):
            rendered = _render(parsed, output)
            if rendered is not None:
                return rendered
    return _plain(value)


def _langfuse_usage(usage: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """Tokens of `langfuse.observation.usage_details` as Langfuse counts them: input is the sum
    of the counts whose key names input (`input`, `input_cached_tokens`,
    `cache_read_input_tokens`, ...: its LangChain handler takes the cached tokens out of `input`),
    output likewise, total is `total`. OpenAI's usage object (`prompt_tokens`, ...), which
    Langfuse also takes, when no key names input or output."""
    tin = tout = None
    for key, value in usage.items():
        if not isinstance(key, str):
            continue
        lowered = key.lower()
        side = 1 if "input" in lowered else 2 if "output" in lowered else 0
        count = _int(value) if side else None
        if count is None:
            continue
        if side == 1:
            tin = count if tin is None else tin + count
        else:
            tout = count if tout is None else tout + count
    if tin is None:
        tin = _int(usage.get("prompt_tokens"))
    if tout is None:
        tout = _int(usage.get("completion_tokens"))
    total = _int(usage.get("total"))
    if total is None:
        total = _int(usage.get("total_tokens"))
    # A sum past the store's BIGINT range maps to None, as one count past it does.
    return (None if tin is not None and tin > _INT_MAX else tin,
            None if tout is not None and tout > _INT_MAX else tout, total)


def _unwrap(value: Any, wrappers: tuple[str, ...], noise: frozenset[str],
            call: bool) -> str | None:
    """Traceloop's `{"inputs": X, "tags": ..., "metadata": ...}` -> X; with `call`, a decorated
    function's `{"args": [...], "kwargs": {...}}` -> its arguments; a JSON string unquoted;
    anything else as sent."""
    if isinstance(value, str):
        if value.startswith('"'):  # the SDKs serialise a returned string as JSON
            return _unquote(value)
        if not value.startswith("{") or len(value) > MAX_PARSE_CHARS:
            return value or None
        parsed = _loads(value)
        if not isinstance(parsed, dict):
            return value
        doc = parsed
    elif isinstance(value, dict):
        doc = value
    else:
        return _plain(value)
    if call and "args" in doc and all(k == "args" or k == "kwargs" for k in doc):
        return _call_arguments(doc.get("args"), doc.get("kwargs"), value)
    # Only a pure envelope is unwrapped: a payload with keys of its own is shown whole.
    if all(k in noise or k in wrappers for k in doc):
        for key in wrappers:  # most structured first: a tool has both "inputs" and "input_str"
            if key in doc:
                inner = doc[key]
                if isinstance(inner, str):
                    return inner or None
                return None if inner is None else _dumps(inner)
    return value if isinstance(value, str) else _dumps(value)


def _call_arguments(args: Any, kwargs: Any, whole: Any) -> str | None:
    """A decorated call's arguments: one argument as itself, several as a JSON list, keyword
    arguments alone as a JSON object; "" (no input) for a call without arguments."""
    if kwargs is None or kwargs == {}:
        if isinstance(args, list):
            if not args:
                return ""
            if len(args) == 1:
                args = args[0]
        return args if isinstance(args, str) else _dumps(args)
    if args is None or args == []:
        return _dumps(kwargs)
    return whole if isinstance(whole, str) else _dumps(whole)


def _unquote(value: Any) -> str | None:
    """A JSON-encoded string as its text; any other value as `_plain` gives it."""
    if isinstance(value, str) and value.startswith('"'):
        parsed = _loads(value)
        if isinstance(parsed, str):
            return parsed
    return _plain(value)


def _system_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        parsed = _loads(value) if value[:1] in ("[", "{") else _BAD
        text = _content(parsed) if parsed is not _BAD else (value or None)
    else:
        text = _content(value)
    return f"system: {text}" if text else None


def _messages_text(value: Any, output: bool) -> str | None:
    """`gen_ai.input.messages` / `gen_ai.output.messages`: a JSON string or structured list."""
    if value is None:
        return None
    if isinstance(value, str):
        parsed = _loads(value)
        if parsed is _BAD:
            return value if value.strip() else None  # not JSON: still the client's text
        value = parsed
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        return _render(value, output)
    return _plain(value)


def _flat_text(a: dict[str, Any], prefix: str, msg: str, call: str, output: bool) -> str | None:
    """Flattened messages, `<prefix>N.<msg>role|content|tool_calls.M.<call>name|arguments`."""
    if (prefix + "0." + msg + "role") not in a and (prefix + "0." + msg + "content") not in a:
        return None
    messages: list[dict[str, Any]] = []
    i = 0
    while True:
        base = f"{prefix}{i}.{msg}"
        role, content = a.get(base + "role"), a.get(base + "content")
        calls: list[dict[str, Any]] = []
        j = 0
        while True:
            tc = f"{base}tool_calls.{j}.{call}"
            fn_name = a.get(tc + "name")
            fn_args = a.get(tc + "arguments") if fn_name is not None or j == 0 else None
            if fn_name is None and fn_args is None:
                break
            calls.append({"name": fn_name, "arguments": fn_args})
            j += 1
        if content is None:
            content = _flat_contents(a, base)
        if role is None and content is None and not calls:
            break
        if isinstance(content, str) and content.startswith('[{"'):
            parsed = _loads(content)  # some versions store multimodal parts as a JSON string
            if isinstance(parsed, list):
                content = parsed
        messages.append({"role": role, "content": content, "tool_calls": calls})
        i += 1
    return _render(messages, output)


def _flat_contents(a: dict[str, Any], base: str) -> list[str] | None:
    # OpenInference multimodal: <base>contents.K.message_content.text
    texts: list[str] = []
    k = 0
    while True:
        key = f"{base}contents.{k}.message_content."
        text, kind = a.get(key + "text"), a.get(key + "type")
        if text is None and kind is None:
            break
        texts.append(text if isinstance(text, str) else f"[{kind}]")
        k += 1
    return texts or None


# ---------------------------------------------------------------- GenAI events (span events, logs)


def _span_events_text(events: list[dict[str, Any]], which: int) -> str | None:
    pieces: list[str] = []
    for event in events:
        if not isinstance(event, dict):
            continue
        name = event.get("name")
        if not isinstance(name, str) or not name.startswith("gen_ai."):
            continue
        attrs = event.get("attributes")
        if not isinstance(attrs, dict):
            continue
        # Span-event flavours put the log body either in one JSON attribute or spread over attrs.
        body: Any = attrs.get("gen_ai.event.content")
        if isinstance(body, str):
            body = _loads(body)
        if body is None or body is _BAD:
            body = attrs
        text = _event_texts(name, body, attrs)[which]
        if text is not None:
            pieces.append(text)
    return "\n".join(pieces) or None


def _event_texts(name: str, body: Any, attrs: dict[str, Any]) -> tuple[str | None, str | None]:
    if name == _DETAILS_EVENT:
        src = body if isinstance(body, dict) else {}

        def pick(key: str) -> Any:
            value = attrs.get(key)
            return src.get(key) if value is None else value

        system = _system_text(pick("gen_ai.system_instructions"))
        return (_join(system, _messages_text(pick("gen_ai.input.messages"), False)),
                _messages_text(pick("gen_ai.output.messages"), True))
    role = _ROLE_EVENTS.get(name)
    if role is not None:
        if isinstance(body, dict):
            return _render([body], False, default_role=role), None
        text = _content(body)
        return (f"{role}: {text}" if text else None), None
    if name == "gen_ai.choice":
        return None, _render([body], True) if body is not None else None
    if name == "gen_ai.content.prompt":
        return _messages_text(attrs.get("gen_ai.prompt"), False), None
    if name == "gen_ai.content.completion":
        return None, _messages_text(attrs.get("gen_ai.completion"), True)
    return None, None


# ---------------------------------------------------------------- message rendering
# One rendering for every message shape, so the same call reads the same whichever instrumentation
# reported it: a line per message, "role: text"; output drops the "assistant: " prefix; a tool call
# reads `call name(arguments)`.


def _render(messages: list[Any], output: bool, default_role: str | None = None) -> str | None:
    lines: list[str] = []
    for message in messages:
        role, text = _message(message)
        if not text:
            continue
        role = role or default_role
        if role and not (output and role == "assistant"):
            text = f"{role}: {text}"
        lines.append(text)
    return "\n".join(lines) or None


def _message(message: Any) -> tuple[str | None, str | None]:
    if isinstance(message, str):
        return None, message
    if not isinstance(message, dict):
        return None, _plain(message)
    role = message.get("role")
    if "parts" in message:  # OTel GenAI parts format
        return (role if isinstance(role, str) and role else None), _content(message.get("parts"))
    pieces: list[str | None] = []
    inner = message.get("message")  # gen_ai.choice: {"index", "message": {...}, "tool_calls"}
    if isinstance(inner, str):
        parsed = _loads(inner)
        inner = parsed if isinstance(parsed, dict) else {"content": inner}
    source = inner if isinstance(inner, dict) else message
    if role is None:
        role = source.get("role")
    content = source.get("content")
    pieces.append(_json_text(content) if role == "tool" and isinstance(content, str)
                  else _content(content))
    calls = source.get("tool_calls") or (message.get("tool_calls") if source is not message
                                          else None)
    if isinstance(calls, str):
        calls = _loads(calls)
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict):
                fn = call.get("function")
                fn = fn if isinstance(fn, dict) else call
                pieces.append(_call(fn.get("name"), fn.get("arguments")))
    text = "\n".join(p for p in pieces if p)
    return (role if isinstance(role, str) and role else None), (text or None)


def _content(content: Any) -> str | None:
    if content is None or content is _BAD:
        return None
    if isinstance(content, str):
        return content or None
    if isinstance(content, list):
        if len(content) == 1:  # most messages: one part
            return _part(content[0]) or None
        return "\n".join(filter(None, map(_part, content))) or None
    if isinstance(content, dict):
        return _part(content)
    return _plain(content)


def _part(part: Any) -> str | None:
    if not isinstance(part, dict):
        return _content(part) if isinstance(part, (str, list)) else _plain(part)
    kind = part.get("type")
    text = part.get("content")
    if text is None:
        text = part.get("text")
    if kind == "text" and isinstance(text, str):  # most parts
        return text or None
    if kind == "tool_call" or kind == "function_call":
        return _call(part.get("name"), part.get("arguments"))
    if kind == "tool_call_response":
        return _json_text(part.get("response"))
    if kind == "tool-call":  # Vercel AI SDK: `input` since 5.0, `args` before
        return _call(part.get("toolName"), part.get("input") if "input" in part
                     else part.get("args"))
    if kind == "tool-result":
        return _tool_output(part.get("output") if "output" in part else part.get("result"))
    if text is not None:
        return _content(text)
    if isinstance(kind, str):  # blob, uri, file, image_url, ...: name it, never inline the bytes
        mime = part.get("mime_type") or part.get("mediaType") or part.get("modality")
        return f"[{kind} {mime}]" if isinstance(mime, str) else f"[{kind}]"
    return _dumps(part)


def _tool_output(output: Any) -> str | None:
    # AI SDK 5+: {"type": "text" | "json" | "error-text" | "error-json" | "content", "value": ...}
    if isinstance(output, dict) and "value" in output and isinstance(output.get("type"), str):
        value = output["value"]
        return _content(value) if output["type"] == "content" else _json_text(value)
    return _json_text(output)


def _call(name: Any, arguments: Any) -> str:
    return f"call {name if isinstance(name, str) else '?'}({_json_text(arguments) or ''})"


def _json_text(value: Any) -> str | None:
    """Tool arguments and results, one rendering whichever way the client sent them: compact JSON
    (as OpenAI and JavaScript clients send it), so `{"city": "Seoul"}` sent as text and
    {"city": "Seoul"} sent as an object both read `{"city":"Seoul"}`. Other text stays as sent."""
    if isinstance(value, str):
        if value[:1] not in ("{", "[") or len(value) > MAX_REWRITE_CHARS:
            return value or None
        parsed = _loads(value)
        if not isinstance(parsed, (dict, list)):
            return value
        value = parsed
    elif value is None:
        return None
    try:
        return orjson.dumps(value).decode()  # ~10x json's speed; tool calls are on every agent span
    except TypeError:  # what orjson refuses (ints past 64 bits, deep nesting)
        try:
            return _COMPACT.encode(value)
        except (ValueError, TypeError, RecursionError):
            return str(value)


# ---------------------------------------------------------------- value coercion


def _loads(text: str) -> Any:
    if len(text) > MAX_PARSE_CHARS:
        return _BAD
    try:
        return orjson.loads(text)  # ~3x json's speed on message arrays; ingest parses one a span
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)  # what orjson refuses but Python's json reads (NaN, huge ints)
    except (ValueError, RecursionError):
        return _BAD


def _as_dict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        parsed = _loads(value)
        if isinstance(parsed, dict):
            return parsed
    return None


# One encoder: json.dumps with options builds a new one each call (~60% of a tool call's text).
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
_COMPACT = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"))


def _dumps(value: Any) -> str:
    try:
        return _ENCODER.encode(value)
    except (ValueError, TypeError, RecursionError):
        return str(value)


def _plain(value: Any) -> str | None:
    """Text as sent; structured values (decoded kvlists, arrays) as compact JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    return _dumps(value)


def _join(first: str | None, second: str | None) -> str | None:
    if first is None:
        return second
    return first if second is None else f"{first}\n{second}"


def _scalar(value: Any) -> str | None:
    """An id-like value (model, user, session, node): strings and numbers only."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return str(value)


def _first_scalar(get: Callable[[str], Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = get(key)
        if value is not None:
            found = _scalar(value)
            if found is not None:
                return found
    return None


def _int(value: Any, low: int = 0, high: int = _INT_MAX) -> int | None:
    """A count from an int, an integral float or a numeric string; None for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 32:
            return None
        try:
            number = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                return None
            if not math.isfinite(as_float) or as_float != int(as_float):
                return None
            number = int(as_float)
    else:
        return None
    return number if low <= number <= high else None


def _first_token_ms(get: Callable[[str], Any]) -> float | None:
    """The first time to first token stated as a finite number >= 0, in milliseconds."""
    for key, to_ms in _FIRST_TOKEN_KEYS:
        value = get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            ms = float(value) * to_ms
            if math.isfinite(ms) and ms >= 0:
                return ms
    return None


def _first_int(get: Callable[[str], Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = get(key)
        if value is not None:
            number = _int(value)
            if number is not None:
                return number
    return None
