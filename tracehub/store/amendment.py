"""What an AMENDMENT changes: a patch of new values for some of a span's fields.

An amendment never edits a span: it is an event (`span_events`) whose payload's `patch` is applied,
in time order, over the span as stored. The read model (`tracehub.store.readmodel`) applies it to
the spans every reader sees, and the writer folds it into the trace's totals
(`tracerow.amend_span`), both through `apply_patch`, so the two say the same. The patch is the
client's free-form object: a value of the wrong kind is ignored, by both.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from tracehub.records import STATUS_ERROR, STATUS_RUNNING, STATUS_SUCCESS

EVENT_TYPE = "AMENDMENT"
_NUMBER_MAX = 2**53  # a JSON client's exact integers; a trace's sums of them stay within BIGINT


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _optional_text(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _count(value: Any) -> bool:
    return value is None or (type(value) is int and 0 <= value < _NUMBER_MAX)


def _cost(value: Any) -> bool:
    return value is None or (type(value) in (int, float) and math.isfinite(value) and 0 <= value < _NUMBER_MAX)


# The fields a patch may change (the spans table's column names) and the values each takes.
AMENDABLE: dict[str, Callable[[Any], bool]] = {
    "name": _text, "span_type": _text,
    "status": lambda v: v in (STATUS_RUNNING, STATUS_SUCCESS, STATUS_ERROR),
    "status_message": _optional_text, "model": _optional_text,
    "input_text": _optional_text, "output_text": _optional_text,
    "input_tokens": _count, "output_tokens": _count, "total_tokens": _count, "cost_usd": _cost,
}


def apply_patch(values: dict[str, Any], patch: Any) -> None:
    """One amendment's patch over a span's values (a dict holding every AMENDABLE field)."""
    if not isinstance(patch, dict):
        return
    for name, valid in AMENDABLE.items():
        if name in patch and valid(patch[name]):
            values[name] = patch[name]
    if "total_tokens" not in patch and ("input_tokens" in patch or "output_tokens" in patch):
        values["total_tokens"] = (values["input_tokens"] or 0) + (values["output_tokens"] or 0)


def patch_of(payload: Any) -> Any:
    """The patch of an AMENDMENT's payload."""
    return payload.get("patch") if isinstance(payload, dict) else None


def merge_events(span: dict[str, Any], own: list[dict[str, Any]]) -> None:
    """A stored span as readers see it: its events (`span_events`, time order) and, of those, its
    `amendments`, applied over it; an amendment of attributes merges key by key, and `attributes`
    is then a dict, else the stored text."""
    span["span_events"] = own
    amendments = span["amendments"] = [e for e in own if e["event_type"] == EVENT_TYPE] if own else []
    for event in amendments:
        patch = patch_of(event["payload"])
        apply_patch(span, patch)
        if isinstance(patch, dict) and isinstance(patch.get("attributes"), dict):
            stored = span["attributes"]
            # Not orjson: it reads integers beyond 64 bits (JSON clients send them) as floats.
            span["attributes"] = {**(json.loads(stored) if isinstance(stored, str) else stored),
                                  **patch["attributes"]}
