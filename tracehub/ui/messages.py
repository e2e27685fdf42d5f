"""Chat messages of one span, read from whichever convention its instrumentation used.

`chat(span)` -> `Chat` (system instructions, input and output messages made of `Part`s, tool
definitions) or None when the span carries no messages (the page then shows its input/output text).
Sources, first that has messages wins per side: OTel GenAI attributes (`gen_ai.input.messages` ...),
GenAI events (span events and log records), OpenInference `llm.input_messages.*`, Traceloop
`gen_ai.prompt.*` / `gen_ai.completion.*`, Langfuse observation input/output, and `input.value` /
`output.value` JSON holding `messages`. Never raises: a malformed value falls back to the next
source. Text stays text; escaping is the templates'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Part:
    """kind: text, tool_call, tool_result, image, blob, uri, reasoning, other (raw JSON)."""

    kind: str
    text: str = ""
    id: str | None = None
    name: str | None = None
    arguments: str | None = None  # tool_call: pretty JSON (or the text as sent)
    mime_type: str | None = None
    uri: str | None = None


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
    """The span's messages, or None when it carries none."""
    try:
        return _chat(span)
    except Exception:  # noqa: BLE001 - a bad attribute must never break the page
        return None


def _chat(span: dict[str, Any]) -> Chat | None:
    attrs = span.get("attributes")
    if isinstance(attrs, str):
        try:
            attrs = json.loads(attrs)
        except ValueError:
            attrs = {}
    if not isinstance(attrs, dict):
        attrs = {}
    result = Chat()
    value = attrs.get("gen_ai.input.messages")
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, list):
        for m in value:
            if isinstance(m, dict):
                parts = [Part("text", str(p.get("content", ""))) for p in m.get("parts", [])
                         if isinstance(p, dict)]
                result.input.append(Message(str(m.get("role", "user")), parts))
    if not (result.system or result.input or result.output):
        return None
    return result
