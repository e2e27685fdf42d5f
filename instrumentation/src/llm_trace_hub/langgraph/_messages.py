"""LangChain messages -> OTel GenAI message JSON (the "parts" format of ``gen_ai.*.messages``).

Input:  ``[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]``
Output: ``[{"role": "assistant", "parts": [...], "finish_reason": "stop"}]``
Tool calls become ``{"type": "tool_call", "id", "name", "arguments"}`` parts and tool results
``{"type": "tool_call_response", "id", "response"}``. Messages are read by shape (``type``,
``content``, ``tool_calls``), so this module works for any langchain_core version. Only called
when content capture is on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llm_trace_hub.serialize import to_json, to_jsonable, to_text, truncate_utf8

_ROLES = {
    "human": "user",
    "ai": "assistant",
    "AIMessageChunk": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
}


def _content_parts(content: Any, limit: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": truncate_utf8(content, limit)}] if content else []
    parts: list[dict[str, Any]] = []
    if not isinstance(content, list):
        return [{"type": "text", "content": to_text(content, limit)}]
    for block in content:
        if isinstance(block, str):
            parts.append({"type": "text", "content": truncate_utf8(block, limit)})
            continue
        if not isinstance(block, Mapping):
            parts.append({"type": "text", "content": to_text(block, limit)})
            continue
        kind = str(block.get("type", "text"))
        if kind == "text":
            parts.append(
                {"type": "text", "content": truncate_utf8(str(block.get("text", "")), limit)}
            )
        elif kind in ("reasoning", "thinking"):
            text = block.get("reasoning") or block.get("thinking") or ""
            parts.append({"type": "reasoning", "content": truncate_utf8(str(text), limit)})
        elif kind in ("tool_use", "tool_call", "function_call"):
            continue  # the message's tool_calls list carries these, normalised
        else:
            # Images, audio, files: keep the kind, never inline the (possibly huge) payload.
            parts.append({"type": kind})
    return parts


def _tool_call_parts(tool_calls: Iterable[Any], limit: int) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for call in tool_calls:
        if not isinstance(call, Mapping):
            continue
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id"),
                "name": call.get("name"),
                "arguments": to_jsonable(call.get("args", call.get("arguments")), limit),
            }
        )
    return parts


def message_to_genai(message: Any, limit: int) -> dict[str, Any]:
    """One LangChain message (or a plain string prompt) as a GenAI message dict."""
    if isinstance(message, str):
        return {"role": "user", "parts": _content_parts(message, limit)}
    kind = str(getattr(message, "type", "") or "")
    role = _ROLES.get(kind) or str(getattr(message, "role", "") or kind or "user")
    content = getattr(message, "content", None)
    if role == "tool":
        parts: list[dict[str, Any]] = [
            {
                "type": "tool_call_response",
                "id": getattr(message, "tool_call_id", None),
                "response": to_jsonable(content, limit),
            }
        ]
    else:
        parts = _content_parts(content, limit)
        parts.extend(_tool_call_parts(getattr(message, "tool_calls", None) or (), limit))
    out: dict[str, Any] = {"role": role, "parts": parts}
    name = getattr(message, "name", None)
    if isinstance(name, str) and name:
        out["name"] = name
    return out


def messages_json(messages: Iterable[Any], limit: int) -> str:
    return to_json([message_to_genai(m, limit) for m in messages], limit)


def output_messages_json(outputs: list[tuple[Any, str | None]], limit: int) -> str:
    """``outputs`` pairs a generated message (or text) with its finish reason."""
    items = []
    for message, finish_reason in outputs:
        item = message_to_genai(message, limit)
        item["role"] = "assistant"
        if finish_reason:
            item["finish_reason"] = finish_reason
        items.append(item)
    return to_json(items, limit)
