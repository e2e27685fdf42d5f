"""Safe, size-limited serialization of application values into span attributes.

Graph states, tool inputs and messages are arbitrary user objects: pydantic models, dataclasses,
LangChain messages, bytes, sets, objects with cycles or a ``__repr__`` that raises. Everything
here turns them into JSON text and **never raises**: what cannot be represented becomes a short
``<...>`` placeholder. Every result is valid UTF-8 and at most ``max_bytes`` long; a value that had
to be cut ends with :data:`TRUNCATION_MARKER`.

This module must stay free of LangChain/LangGraph imports: it recognises their objects by shape.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

TRUNCATION_MARKER = "…[truncated]"
_MARKER_BYTES = len(TRUNCATION_MARKER.encode("utf-8"))
_MAX_DEPTH = 12
_MAX_ITEMS = 500  # elements kept from one container; the rest is summarised


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes without splitting a character.

    Lone surrogates (which cannot be encoded and would make an OTLP export fail) become ``?``.
    """
    if text.isascii():
        if len(text) <= max_bytes:
            return text
        encoded = text.encode("ascii")
    else:
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError:
            encoded = text.encode("utf-8", errors="replace")
            text = encoded.decode("utf-8")
        if len(encoded) <= max_bytes:
            return text
    if max_bytes < _MARKER_BYTES:
        return encoded[:max_bytes].decode("utf-8", errors="ignore")
    # errors="ignore" drops a multi-byte character cut in half at the end.
    return encoded[: max_bytes - _MARKER_BYTES].decode("utf-8", errors="ignore") + TRUNCATION_MARKER


def _safe_repr(obj: Any, limit: int) -> str:
    try:
        text = repr(obj)
    except Exception:  # a user __repr__ may raise anything
        return f"<unrepresentable {type(obj).__name__}>"
    return truncate_utf8(text, limit)


def _is_langchain_message(obj: Any) -> bool:
    # Recognised by shape so that this module never imports langchain_core.
    return any(cls.__name__ == "BaseMessage" for cls in type(obj).__mro__) and hasattr(
        obj, "content"
    )


def _message_dict(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": getattr(msg, "type", type(msg).__name__)}
    for name in ("name", "content", "tool_calls", "tool_call_id", "usage_metadata", "id"):
        value = getattr(msg, name, None)
        if value:
            out[name] = value
    return out


class _Converter:
    """Turns any object into JSON-compatible data; one instance per call (tracks cycles)."""

    def __init__(self, string_limit: int) -> None:
        self.string_limit = string_limit
        self.active: set[int] = set()

    def convert(self, obj: Any, depth: int = 0) -> Any:
        if obj is None or isinstance(obj, bool | int):
            return obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else str(obj)
        if isinstance(obj, str):
            return truncate_utf8(obj, self.string_limit)
        if isinstance(obj, bytes | bytearray | memoryview):
            return f"<bytes: {len(obj)} bytes>"
        if depth >= _MAX_DEPTH:
            return f"<max depth: {type(obj).__name__}>"
        key = id(obj)
        if key in self.active:
            return f"<cycle: {type(obj).__name__}>"
        self.active.add(key)
        try:
            return self._convert_container(obj, depth)
        except Exception:  # a property or model_dump of user code may raise anything
            return _safe_repr(obj, self.string_limit)
        finally:
            self.active.discard(key)

    def _convert_container(self, obj: Any, depth: int) -> Any:
        if isinstance(obj, Mapping):
            out: dict[str, Any] = {}
            for i, (k, v) in enumerate(obj.items()):
                if i >= _MAX_ITEMS:
                    out["…"] = f"<{len(obj) - _MAX_ITEMS} more items>"
                    break
                out[k if isinstance(k, str) else _safe_repr(k, 200)] = self.convert(v, depth + 1)
            return out
        if isinstance(obj, list | tuple | set | frozenset):
            items = list(obj)
            if isinstance(obj, set | frozenset):
                with contextlib.suppress(TypeError):  # unorderable members keep their order
                    items.sort()
            converted = [self.convert(v, depth + 1) for v in items[:_MAX_ITEMS]]
            if len(items) > _MAX_ITEMS:
                converted.append(f"<{len(items) - _MAX_ITEMS} more items>")
            return converted
        if _is_langchain_message(obj):
            return self.convert(_message_dict(obj), depth + 1)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            fields = {f.name: getattr(obj, f.name, None) for f in dataclasses.fields(obj)}
            return self.convert(fields, depth + 1)
        dump = getattr(obj, "model_dump", None)  # pydantic v2
        if callable(dump) and not isinstance(obj, type):
            return self.convert(dump(), depth + 1)
        as_dict = getattr(obj, "_asdict", None)  # namedtuple-like (already a tuple above)
        if callable(as_dict):
            return self.convert(as_dict(), depth + 1)
        return _safe_repr(obj, self.string_limit)


def to_jsonable(obj: Any, string_limit: int = 16384) -> Any:
    """JSON-compatible copy of ``obj`` (strings capped at ``string_limit`` bytes)."""
    try:
        return _Converter(string_limit).convert(obj)
    except Exception:  # last line of defence, e.g. RecursionError in a hostile object
        return _safe_repr(obj, string_limit)


def to_json(obj: Any, max_bytes: int) -> str:
    """JSON text of ``obj``, at most ``max_bytes`` UTF-8 bytes, never raising.

    A plain ``str`` is still encoded as JSON (quoted) so a reader can always ``json.loads`` a value
    that was not truncated.
    """
    try:
        text = json.dumps(to_jsonable(obj, max_bytes), ensure_ascii=False, separators=(",", ":"))
    except Exception:  # e.g. a surrogate or recursion that slipped past the converter
        text = json.dumps(_safe_repr(obj, max_bytes))
    return truncate_utf8(text, max_bytes)


def to_text(obj: Any, max_bytes: int) -> str:
    """Human text of ``obj``: strings stay as they are, anything else becomes JSON."""
    if isinstance(obj, str):
        return truncate_utf8(obj, max_bytes)
    return to_json(obj, max_bytes)
