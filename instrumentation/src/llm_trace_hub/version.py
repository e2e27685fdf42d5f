"""Version of the llm-trace-hub-sdk distribution."""

from __future__ import annotations

__version__ = "0.1.0"
