"""Chat messages of one span, read from whichever convention its instrumentation used.

`chat(span)` -> `Chat` (system instructions, input and output messages made of `Part`s, tool
definitions) or None when the span carries no messages (the page then shows its input/output text).
`span` is a read-model span row (`store.readmodel`): `attributes` (dict or JSON text), `events`
(JSON text of OTel span events), `span_events` (stored events: GenAI log records are `LOG` ones),
`input_text` / `output_text`.

Each side (input, output) takes the first source that yields messages, in this order:
- OTel GenAI: `gen_ai.input.messages` / `gen_ai.output.messages` (parts), `gen_ai.system_instructions`,
  `gen_ai.tool.definitions`; the `gen_ai.client.inference.operation.details` event carrying them;
- OpenInference: `llm.input_messages.{i}.message.*`, `llm.output_messages.*`, `llm.tools.*`;
- Traceloop: `gen_ai.prompt.{i}.*`, `gen_ai.completion.{i}.*`, `llm.request.functions.*`;
- GenAI events (span events or log records): `gen_ai.{system,user,assistant,tool}.message`,
  `gen_ai.choice`, `gen_ai.content.prompt` / `.completion`;
- Vercel AI SDK: `ai.prompt.messages` / `ai.prompt`, `ai.response.text` / `.toolCalls`, `ai.prompt.tools`;
- Langfuse: `langfuse.observation.input` / `.output` holding messages;
- `input.value` / `output.value` (and last, the span's input/output text) as JSON holding a message
  list or `{"messages": [...]}` (LangChain and LangGraph states, our SDK's serialised messages).

Every message shape (GenAI parts, OpenAI chat, LangChain dumps, Vercel parts) becomes the same
`Message`/`Part`. Never raises: a source whose value is malformed is skipped, and `chat` answers
None rather than fail. Text stays text; escaping is the templates'. Binary parts are never
inlined: a blob, image or file is a placeholder with its mime type or URI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

# Above this many characters a value is not parsed as JSON (shown elsewhere as raw text).
MAX_PARSE_CHARS = 2_000_000
# Flattened `prefix.N.*` lists stop here even if a client sent more.
MAX_ITEMS = 10_000


@dataclass
class Part:
    """One piece of a message. kind: text, reasoning, tool_call (id, name, arguments), tool_result
    (id, name, content), image / blob / uri (placeholder: mime_type, uri), other (text is raw JSON)."""

    kind: str
    text: str = ""
    id: str | None = None
    name: str | None = None
    arguments: str | None = None  # tool_call: pretty JSON, or the text as sent
    mime_type: str | None = None
    uri: str | None = None

    @property
    def content(self) -> str:  # a tool result's content
        return self.text


@dataclass
class Message:
    role: str
    parts: list[Part] = field(default_factory=list)
    finish_reason: str | None = None
    name: str | None = None


@dataclass
class ToolDefinition:
    name: str
    description: str = ""
    parameters: str | None = None  # pretty JSON


@dataclass
class Chat:
    system: list[Message] = field(default_factory=list)
    input: list[Message] = field(default_factory=list)
    output: list[Message] = field(default_factory=list)
    tools: list[ToolDefinition] = field(default_factory=list)


def chat(span: dict[str, Any]) -> Chat | None:
    """The span's messages, or None when it carries none (or nothing readable)."""
    try:
        return _chat(span)
    except Exception:  # noqa: BLE001 - a bad attribute must never break the page
        return None


# ---------------------------------------------------------------- sources

_Source = Callable[[dict[str, Any], list[tuple[str, Any, dict[str, Any]]], dict[str, Any]], "list[Message]"]


def _chat(span: dict[str, Any]) -> Chat | None:
    a = _as_dict(span.get("attributes")) or {}
    events = _events(span)
    result = Chat()
    result.system = _first(_SYSTEM_SOURCES, a, events, span)
    result.input = _first(_INPUT_SOURCES, a, events, span)
    result.output = _first(_OUTPUT_SOURCES, a, events, span)
    result.tools = _tools(a, events)
    if not (result.system or result.input or result.output):
        return None
    _fill_finish_reasons(result.output, a)
    return result


def _first(sources: tuple[_Source, ...], a: dict[str, Any], events: list[tuple[str, Any, dict[str, Any]]],
           span: dict[str, Any]) -> list[Message]:
    for source in sources:
        try:
            found = source(a, events, span)
        except Exception:  # noqa: BLE001 - a malformed source falls back to the next
            continue
        if found:
            return found
    return []


def _events(span: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    """(name, body, attributes) of the span's GenAI events: OTel span events, then log records."""
    out: list[tuple[str, Any, dict[str, Any]]] = []
    raw = span.get("events")
    listed = _loads(raw) if isinstance(raw, str) else raw
    for event in listed if isinstance(listed, list) else []:
        if not isinstance(event, dict):
            continue
        name, attrs = event.get("name"), event.get("attributes")
        if isinstance(name, str) and name.startswith("gen_ai.") and isinstance(attrs, dict):
            body = attrs.get("gen_ai.event.content")
            body = _loads(body) if isinstance(body, str) else body
            out.append((name, attrs if body is None else body, attrs))
    stored = span.get("span_events")
    for event in stored if isinstance(stored, list) else []:
        if not isinstance(event, dict) or event.get("event_type") != "LOG":
            continue
        name, payload = event.get("name"), event.get("payload")
        if isinstance(payload, str):
            payload = _loads(payload)
        if isinstance(name, str) and name.startswith("gen_ai.") and isinstance(payload, dict):
            attrs = payload.get("attributes")
            body = payload.get("body")
            if isinstance(body, str) and body[:1] in ("{", "["):
                parsed = _loads(body)
                body = body if parsed is None else parsed
            out.append((name, body, attrs if isinstance(attrs, dict) else {}))
    return out


def _details(events: list[tuple[str, Any, dict[str, Any]]], key: str) -> Any:
    """`key` of the inference details event (attributes first, then its body)."""
    for name, body, attrs in events:
        if name == "gen_ai.client.inference.operation.details":
            value = attrs.get(key)
            if value is None and isinstance(body, dict):
                value = body.get(key)
            if value is not None:
                return value
    return None


# System instructions

def _sys_genai(a: dict[str, Any], events: Any, _s: Any) -> list[Message]:
    value = a.get("gen_ai.system_instructions")
    if value is None:
        value = _details(events, "gen_ai.system_instructions")
    if value is None:
        return []
    parts = _parts(_json_or_text(value))
    return [Message("system", parts)] if parts else []


def _sys_vercel(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    prompt = _as_dict(a.get("ai.prompt"))
    system = prompt.get("system") if prompt else None
    return [Message("system", _parts(system))] if isinstance(system, str) and system else []


# Input

def _in_genai(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    return _message_list(a.get("gen_ai.input.messages"), "user")


def _in_details(_a: Any, events: Any, _s: Any) -> list[Message]:
    return _message_list(_details(events, "gen_ai.input.messages"), "user")


def _in_openinference(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    return _flat(a, "llm.input_messages.", "message.", "tool_call.", "tool_call.function.")


def _in_traceloop(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    return _flat(a, "gen_ai.prompt.", "", "", "")


_ROLE_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}


def _in_events(a: dict[str, Any], events: list[tuple[str, Any, dict[str, Any]]], _s: Any) -> list[Message]:
    out: list[Message] = []
    for name, body, attrs in events:
        role = _ROLE_EVENTS.get(name)
        if role is not None:
            message = _message(body, role) if isinstance(body, dict) else _text_message(role, body)
            if message is not None:
                out.append(message)
        elif name == "gen_ai.content.prompt":
            out.extend(_message_list(attrs.get("gen_ai.prompt"), "user"))
    return out


def _in_vercel(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    found = _message_list(a.get("ai.prompt.messages"), "user")
    if found:
        return [m for m in found if m.role != "system"] if _sys_vercel(a, None, None) else found
    prompt = _as_dict(a.get("ai.prompt"))
    if not prompt:
        return []
    if prompt.get("messages") is not None:
        return _message_list(prompt.get("messages"), "user")
    text = prompt.get("prompt")
    message = _text_message("user", text) if text is not None else None
    return [message] if message else []


def _in_langfuse(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    return _embedded_messages(a.get("langfuse.observation.input"), "user")


def _in_value(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    return _embedded_messages(a.get("input.value"), "user")


def _in_text(_a: Any, _e: Any, span: dict[str, Any]) -> list[Message]:
    return _embedded_messages(span.get("input_text"), "user")


# Output

def _out_genai(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    return _message_list(a.get("gen_ai.output.messages"), "assistant")


def _out_details(_a: Any, events: Any, _s: Any) -> list[Message]:
    return _message_list(_details(events, "gen_ai.output.messages"), "assistant")


def _out_openinference(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    found = _flat(a, "llm.output_messages.", "message.", "tool_call.", "tool_call.function.")
    reason = a.get("llm.finish_reason")
    if found and isinstance(reason, str) and found[-1].finish_reason is None:
        found[-1].finish_reason = reason
    return found


def _out_traceloop(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    return _flat(a, "gen_ai.completion.", "", "", "", default_role="assistant")


def _out_events(a: dict[str, Any], events: list[tuple[str, Any, dict[str, Any]]], _s: Any) -> list[Message]:
    out: list[Message] = []
    for name, body, attrs in events:
        if name == "gen_ai.choice":
            message = _message(body, "assistant") if isinstance(body, dict) else _text_message("assistant", body)
            if message is not None:
                out.append(message)
        elif name == "gen_ai.content.completion":
            out.extend(_message_list(attrs.get("gen_ai.completion"), "assistant"))
    return out


def _out_vercel(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    parts: list[Part] = []
    text = a.get("ai.response.text")
    if isinstance(text, str) and text:
        parts.append(Part("text", text))
    calls = _json_or_text(a.get("ai.response.toolCalls"))
    if isinstance(calls, list):
        parts.extend(_part(call if "type" in call else {**call, "type": "tool-call"})
                     for call in calls if isinstance(call, dict))
    if not parts:
        return []
    reason = a.get("ai.response.finishReason")
    return [Message("assistant", parts, reason if isinstance(reason, str) else None)]


def _out_langfuse(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    return _embedded_messages(a.get("langfuse.observation.output"), "assistant")


def _out_value(a: dict[str, Any], _e: Any, _s: Any) -> list[Message]:
    return _embedded_messages(a.get("output.value"), "assistant")


def _out_text(_a: Any, _e: Any, span: dict[str, Any]) -> list[Message]:
    return _embedded_messages(span.get("output_text"), "assistant")


_SYSTEM_SOURCES: tuple[_Source, ...] = (_sys_genai, _sys_vercel)
_INPUT_SOURCES: tuple[_Source, ...] = (
    _in_genai, _in_details, _in_openinference, _in_traceloop, _in_events, _in_vercel, _in_langfuse,
    _in_value, _in_text)
_OUTPUT_SOURCES: tuple[_Source, ...] = (
    _out_genai, _out_details, _out_openinference, _out_traceloop, _out_events, _out_vercel,
    _out_langfuse, _out_value, _out_text)


def _fill_finish_reasons(output: list[Message], a: dict[str, Any]) -> None:
    reasons = a.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, str):
        reasons = _json_or_text(reasons)
        reasons = reasons if isinstance(reasons, list) else [reasons]
    if isinstance(reasons, list) and len(reasons) == len(output):
        for message, reason in zip(output, reasons):
            if message.finish_reason is None and isinstance(reason, str) and reason:
                message.finish_reason = reason


# ---------------------------------------------------------------- tool definitions

def _tools(a: dict[str, Any], events: list[tuple[str, Any, dict[str, Any]]]) -> list[ToolDefinition]:
    for source in (lambda: _json_or_text(a.get("gen_ai.tool.definitions")),
                   lambda: _json_or_text(_details(events, "gen_ai.tool.definitions")),
                   lambda: _indexed(a, "llm.tools.", ".tool.json_schema"),
                   lambda: _traceloop_functions(a),
                   lambda: _json_or_text(a.get("ai.prompt.tools"))):
        try:
            value = source()
            if isinstance(value, dict):
                value = [value]
            if not isinstance(value, list):
                continue
            found = [t for t in map(_tool, value) if t is not None]
        except Exception:  # noqa: BLE001 - malformed: try the next source
            continue
        if found:
            return found
    return []


def _tool(value: Any) -> ToolDefinition | None:
    value = _json_or_text(value)
    if not isinstance(value, dict):
        return None
    fn = value.get("function")
    d = fn if isinstance(fn, dict) else value
    name = d.get("name")
    if not isinstance(name, str) or not name:
        return None
    description = d.get("description")
    params = d.get("parameters", d.get("inputSchema", d.get("input_schema")))
    return ToolDefinition(name, description if isinstance(description, str) else "",
                          None if params is None else _pretty(params))


def _indexed(a: dict[str, Any], prefix: str, suffix: str) -> list[Any]:
    out = []
    for i in range(MAX_ITEMS):
        value = a.get(f"{prefix}{i}{suffix}")
        if value is None:
            break
        out.append(value)
    return out


def _traceloop_functions(a: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for i in range(MAX_ITEMS):
        base = f"llm.request.functions.{i}."
        name = a.get(base + "name")
        if name is None:
            break
        out.append({"name": name, "description": a.get(base + "description"),
                    "parameters": _json_or_text(a.get(base + "parameters"))})
    return out


# ---------------------------------------------------------------- message shapes

_ROLES = {"human": "user", "ai": "assistant", "aimessagechunk": "assistant", "humanmessagechunk": "user",
          "system": "system", "developer": "system", "tool": "tool", "function": "tool",
          "user": "user", "assistant": "assistant", "model": "assistant"}


def _role(value: Any, default: str) -> str:
    if isinstance(value, str) and value:
        return _ROLES.get(value.lower(), value)
    return default


def _message_list(value: Any, default_role: str) -> list[Message]:
    """A JSON text or structured value holding messages (a list, or one message)."""
    value = _json_or_text(value)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        message = _message(item, default_role) if isinstance(item, dict) else _text_message(default_role, item)
        if message is not None:
            out.append(message)
    return out


def _embedded_messages(value: Any, default_role: str) -> list[Message]:
    """Messages inside a JSON payload: a list of role-bearing messages or `{"messages": [...]}`."""
    value = _json_or_text(value) if isinstance(value, str) and value[:1] in ("{", "[") else value
    if isinstance(value, dict):
        inner = value.get("messages")
        if isinstance(inner, list):
            value = inner
        elif _is_message(value):
            value = [value]
        else:
            return []
    if not isinstance(value, list) or not value or not all(_is_message(m) for m in value):
        return []
    return _message_list(value, default_role)


def _is_message(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    if "role" in value and ("content" in value or "parts" in value or "tool_calls" in value):
        return True
    data = value.get("data")  # LangChain dumps: {"type": "human", "data": {...}}
    kind = value.get("type")
    return isinstance(kind, str) and kind.lower() in _ROLES and (
        "content" in value or (isinstance(data, dict) and "content" in data))


def _text_message(role: str, value: Any) -> Message | None:
    parts = _parts(value)
    return Message(role, parts) if parts else None


def _message(m: dict[str, Any], default_role: str) -> Message | None:
    data = m.get("data")
    if isinstance(data, dict) and "content" in data and "content" not in m:
        m = {**data, "type": m.get("type", data.get("type"))}  # LangChain dump
    inner = m.get("message")  # gen_ai.choice: {"index", "message": {...}, "finish_reason", "tool_calls"}
    if isinstance(inner, str):
        inner = _as_dict(inner) or {"content": inner}
    source = inner if isinstance(inner, dict) else m
    role = _role(m.get("role") or source.get("role") or m.get("type"), default_role)
    if "parts" in source:
        parts = _parts(source.get("parts"))
    else:
        parts = _parts(source.get("content"))
        calls = source.get("tool_calls")
        if calls is None and source is not m:
            calls = m.get("tool_calls")
        calls = _json_or_text(calls)
        if isinstance(calls, list):
            parts.extend(_call_part(c) for c in calls if isinstance(c, dict))
        call_id = source.get("tool_call_id", source.get("id") if role == "tool" else None)
        if role == "tool":
            # A tool message's content is its result.
            parts = [Part("tool_result", p.text, id=_str(call_id), name=_str(source.get("name")))
                     if p.kind == "text" else p for p in parts]
    finish = m.get("finish_reason", source.get("finish_reason"))
    name = source.get("name")
    if not parts and finish is None:
        return None
    return Message(role, parts, finish if isinstance(finish, str) else None,
                   name if isinstance(name, str) and name else None)


def _call_part(call: dict[str, Any]) -> Part:
    fn = call.get("function")
    d = fn if isinstance(fn, dict) else call
    args = d.get("arguments", d.get("args", d.get("input")))
    return Part("tool_call", id=_str(call.get("id")), name=_str(d.get("name")),
                arguments=None if args is None else _pretty(args))


def _parts(content: Any) -> list[Part]:
    content = _json_parts_text(content)
    if content is None:
        return []
    if isinstance(content, str):
        return [Part("text", content)] if content else []
    if isinstance(content, dict):
        return [_part(content)]
    if isinstance(content, list):
        out = []
        for item in content:
            if isinstance(item, str):
                if item:
                    out.append(Part("text", item))
            elif isinstance(item, dict):
                out.append(_part(item))
            elif item is not None:
                out.append(Part("other", _pretty(item)))
        return out
    return [Part("text", _dumps(content))]


_TEXT_KINDS = frozenset({"text", "input_text", "output_text"})
_CALL_KINDS = frozenset({"tool_call", "tool-call", "function_call", "tool_use"})
_RESULT_KINDS = frozenset({"tool_call_response", "tool-result", "tool_result", "function_call_output"})
_REASONING_KINDS = frozenset({"reasoning", "thinking"})
_IMAGE_KINDS = frozenset({"image", "image_url", "input_image"})


def _part(p: dict[str, Any]) -> Part:
    kind = p.get("type")
    kind = kind.lower() if isinstance(kind, str) else None
    text = p.get("content", p.get("text"))
    if kind in _TEXT_KINDS or (kind is None and isinstance(text, str)):
        return Part("text", text if isinstance(text, str) else _pretty(text))
    if kind in _CALL_KINDS:
        args = p.get("arguments", p.get("input", p.get("args")))
        return Part("tool_call", id=_str(p.get("id", p.get("toolCallId"))),
                    name=_str(p.get("name", p.get("toolName"))),
                    arguments=None if args is None else _pretty(args))
    if kind in _RESULT_KINDS:
        result = p.get("response", p.get("result", p.get("output", p.get("content"))))
        return Part("tool_result", _result_text(result), id=_str(p.get("id", p.get("toolCallId"))),
                    name=_str(p.get("name", p.get("toolName"))))
    if kind in _REASONING_KINDS:
        value = p.get("content", p.get("text", p.get("reasoning", p.get("thinking"))))
        return Part("reasoning", value if isinstance(value, str) else _pretty(value))
    if kind in ("blob", "uri", "file") or kind in _IMAGE_KINDS or kind in ("audio", "input_audio", "video"):
        return _media(kind, p)
    return Part("other", _pretty(p))


def _media(kind: str, p: dict[str, Any]) -> Part:
    """A placeholder: the kind, mime type and a URI (never a data: URI's payload)."""
    mime = p.get("mime_type", p.get("mimeType", p.get("mediaType", p.get("media_type"))))
    uri = p.get("uri", p.get("url"))
    image_url = p.get("image_url")
    if isinstance(image_url, dict):
        uri = image_url.get("url")
    elif isinstance(image_url, str):
        uri = image_url
    modality = p.get("modality")
    if isinstance(uri, str) and uri.startswith("data:"):
        mime = mime or uri[5:].split(";", 1)[0].split(",", 1)[0] or None
        uri = None
    shown = "image" if kind in _IMAGE_KINDS or modality == "image" else ("uri" if kind == "uri" else "blob")
    return Part(shown, mime_type=_str(mime) or _str(modality), uri=_str(uri) if shown != "blob" else None)


def _flat(a: dict[str, Any], prefix: str, msg: str, call: str, fn: str,
          default_role: str = "user") -> list[Message]:
    """Flattened messages: `<prefix>N.<msg>role|content|name|tool_call_id|finish_reason`,
    `...contents.K.message_content.type|text|image.image.url`, `...tool_calls.M.<call>id`,
    `...tool_calls.M.<fn>name|arguments` (OpenInference with msg="message.", Traceloop with none)."""
    out: list[Message] = []
    for i in range(MAX_ITEMS):
        base = f"{prefix}{i}.{msg}"
        role, content = a.get(base + "role"), a.get(base + "content")
        parts = _parts(content) if content is not None else []
        for k in range(MAX_ITEMS):
            ckey = f"{base}contents.{k}.message_content."
            ctype, ctext = a.get(ckey + "type"), a.get(ckey + "text")
            url = a.get(ckey + "image.image.url")
            if ctype is None and ctext is None and url is None:
                break
            if ctype == "image" or url is not None:
                parts.append(_media("image", {"url": url}))
            elif isinstance(ctext, str):
                parts.append(Part("text", ctext))
        for j in range(MAX_ITEMS):
            tc = f"{base}tool_calls.{j}."
            name, args, cid = a.get(tc + fn + "name"), a.get(tc + fn + "arguments"), a.get(tc + call + "id")
            if name is None and args is None and cid is None:
                break
            parts.append(Part("tool_call", id=_str(cid), name=_str(name),
                              arguments=None if args is None else _pretty(args)))
        finish = a.get(base + "finish_reason")
        if role is None and not parts and finish is None:
            break
        role_s = _role(role, default_role)
        if role_s == "tool":
            call_id, tool_name = _str(a.get(base + "tool_call_id")), _str(a.get(base + "name"))
            parts = [Part("tool_result", p.text, id=call_id, name=tool_name) if p.kind == "text" else p
                     for p in parts]
        name = a.get(base + "name")
        out.append(Message(role_s, parts, finish if isinstance(finish, str) else None,
                           name if isinstance(name, str) and name and role_s != "tool" else None))
    return out


# ---------------------------------------------------------------- values

def _loads(text: str) -> Any:
    """Parsed JSON, or None when it is not JSON (or too large to parse here)."""
    if len(text) > MAX_PARSE_CHARS:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _json_or_text(value: Any) -> Any:
    """A JSON text parsed; any other value (or text that is not JSON) as it is."""
    if isinstance(value, str) and value[:1] in ("{", "[", '"'):
        parsed = _loads(value)
        return value if parsed is None else parsed
    return value


def _json_parts_text(value: Any) -> Any:
    # Some instrumentations store multimodal content as a JSON text of parts.
    if isinstance(value, str) and value.startswith('[{"'):
        parsed = _loads(value)
        if isinstance(parsed, list) and all(isinstance(p, dict) and "type" in p for p in parsed):
            return parsed
    return value


def _as_dict(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value[:1] == "{":
        parsed = _loads(value)
        if isinstance(parsed, dict):
            return parsed
    return None


def _pretty(value: Any) -> str:
    """JSON (or JSON text) indented for reading; other text as sent."""
    if isinstance(value, str):
        parsed = _loads(value) if value[:1] in ("{", "[") else None
        return value if parsed is None else _dumps(parsed, indent=2)
    return _dumps(value, indent=2)


def _result_text(value: Any) -> str:
    if isinstance(value, dict) and value.get("type") in ("json", "text") and "value" in value:
        value = value["value"]  # Vercel AI SDK's tagged output
    if isinstance(value, str):
        return _pretty(value)
    if isinstance(value, list) and all(isinstance(p, dict) and "type" in p for p in value):
        return "\n".join(p.text or p.arguments or "" for p in _parts(value))
    return "" if value is None else _pretty(value)


def _dumps(value: Any, indent: int | None = None) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, indent=indent, default=str)
    except (ValueError, TypeError, RecursionError):
        return str(value)


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None
