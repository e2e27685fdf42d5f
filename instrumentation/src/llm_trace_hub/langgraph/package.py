"""Versions of the instrumented library this instrumentor supports (checked by BaseInstrumentor)."""

from __future__ import annotations

_instruments = ("langgraph >= 0.3",)
