"""Safe serialization and settings: hostile values never raise, limits hold, UTF-8 stays valid."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import BaseModel

from llm_trace_hub.langgraph._messages import messages_json, output_messages_json
from llm_trace_hub.serialize import TRUNCATION_MARKER, to_json, to_text, truncate_utf8
from llm_trace_hub.settings import ContentSettings, HubSettings


class Order(BaseModel):
    order_id: int
    items: list[str]


@dataclass
class Ticket:
    title: str
    order: Order


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class ExplodingModel:
    def model_dump(self) -> dict[str, Any]:
        raise ValueError("broken dump")

    def __repr__(self) -> str:
        return "ExplodingModel()"


@pytest.mark.parametrize("limit", [1, 5, 13, 14, 15, 16, 17, 40, 41, 100])
def test_truncation_never_splits_a_character(limit: int) -> None:
    text = "가나다라마바사아자차카타파하" * 3 + "🙂" * 5
    cut = truncate_utf8(text, limit)
    encoded = cut.encode("utf-8")  # raises if the cut left a broken character
    assert len(encoded) <= limit
    if limit >= len(TRUNCATION_MARKER.encode()):
        assert cut.endswith(TRUNCATION_MARKER)
        assert text.startswith(cut[: -len(TRUNCATION_MARKER)])


def test_short_text_is_unchanged_and_surrogates_are_replaced() -> None:
    assert truncate_utf8("short", 100) == "short"
    assert truncate_utf8("ünïcödé", 100) == "ünïcödé"
    cleaned = truncate_utf8("bad \ud800 surrogate", 100)
    cleaned.encode("utf-8")
    assert cleaned == "bad ? surrogate"


def test_structures_serialize_to_json() -> None:
    state = {
        "ticket": Ticket("refund", Order(order_id=7, items=["a", "b"])),
        "messages": [
            HumanMessage("hi"),
            AIMessage("hello", tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "c1"}]),
        ],
        "tags": {"b", "a"},
        "blob": b"\x00\x01\x02",
        "score": float("nan"),
        7: "int key",
    }
    data = json.loads(to_json(state, 10_000))
    assert data["ticket"] == {"title": "refund", "order": {"order_id": 7, "items": ["a", "b"]}}
    assert data["messages"][0] == {"type": "human", "content": "hi"}
    assert data["messages"][1]["tool_calls"][0]["name"] == "search"
    assert data["tags"] == ["a", "b"]
    assert data["blob"] == "<bytes: 3 bytes>"
    assert data["score"] == "nan"
    assert data["7"] == "int key"


def test_cycles_hostile_objects_and_depth_never_raise() -> None:
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    deep: list[Any] = []
    cursor = deep
    for _ in range(50):
        cursor.append([])
        cursor = cursor[0]
    data = json.loads(
        to_json(
            {"loop": loop, "hostile": Hostile(), "boom": ExplodingModel(), "deep": deep}, 10_000
        )
    )
    assert data["loop"]["self"] == "<cycle: dict>"
    assert data["hostile"] == "<unrepresentable Hostile>"
    assert data["boom"] == "ExplodingModel()"
    assert "<max depth" in json.dumps(data["deep"])
    # A value shared twice is not a cycle.
    shared = {"k": 1}
    assert json.loads(to_json([shared, shared], 100)) == [{"k": 1}, {"k": 1}]


def test_json_is_limited_and_text_passes_through() -> None:
    big = {"text": "x" * 5000}
    out = to_json(big, 300)
    assert len(out.encode()) <= 300 and out.endswith(TRUNCATION_MARKER)
    assert to_text("plain words", 100) == "plain words"
    assert to_text({"a": 1}, 100) == '{"a":1}'


def test_genai_messages_format() -> None:
    prompt = [
        HumanMessage("what is 2+2"),
        AIMessage("", tool_calls=[{"name": "calc", "args": {"expr": "2+2"}, "id": "t1"}]),
        ToolMessage("4", tool_call_id="t1"),
    ]
    assert json.loads(messages_json(prompt, 1000)) == [
        {"role": "user", "parts": [{"type": "text", "content": "what is 2+2"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "t1", "name": "calc", "arguments": {"expr": "2+2"}}
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "t1", "response": "4"}]},
    ]
    multimodal = HumanMessage(
        content=[
            {"type": "text", "text": "see"},
            {"type": "image_url", "image_url": {"url": "data:..."}},
        ]
    )
    assert json.loads(messages_json([multimodal], 1000))[0]["parts"] == [
        {"type": "text", "content": "see"},
        {"type": "image_url"},
    ]
    assert json.loads(output_messages_json([("plain completion", "length")], 1000)) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "plain completion"}],
            "finish_reason": "length",
        }
    ]


def test_content_settings_from_env() -> None:
    assert ContentSettings.from_env(environ={}) == ContentSettings(True, 16384)
    env = {"LLM_TRACE_HUB_CAPTURE_CONTENT": "False", "LLM_TRACE_HUB_MAX_CONTENT_BYTES": "2048"}
    assert ContentSettings.from_env(environ=env) == ContentSettings(False, 2048)
    assert ContentSettings.from_env(capture=True, max_bytes=99, environ=env) == ContentSettings(
        True, 99
    )
    bad = {"LLM_TRACE_HUB_CAPTURE_CONTENT": "yes", "LLM_TRACE_HUB_MAX_CONTENT_BYTES": "-3"}
    assert ContentSettings.from_env(environ=bad) == ContentSettings(True, 16384)


def test_hub_settings_from_env() -> None:
    hub = HubSettings.from_env(
        environ={"LLM_TRACE_HUB_BASE_URL": "http://hub:9000/", "LLM_TRACE_HUB_API_KEY": "k1"}
    )
    assert hub.traces_endpoint == "http://hub:9000/v1/traces" and hub.api_key == "k1"
    assert HubSettings.from_env("http://x", None, environ={}).api_key == "dev-key"
