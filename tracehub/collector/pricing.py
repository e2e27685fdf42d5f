"""Model pricing: turn a model call's tokens into `SpanRecord.cost_usd` on the ingest path.

`Pricing` holds USD prices per million input and output tokens: the table shipped in
`tracehub/data/model_prices.json`, merged with an optional override file (`TRACEHUB_PRICES_FILE`,
JSON or YAML, same shape; its entries replace or add models). The pipeline calls `apply()` on every
batch before it is written, so the writer folds span costs into the trace's `cost_usd`.

Which spans get a cost: only `llm` and `embedding` spans (the same spans whose tokens count toward
the trace), and only when the client did not set `cost_usd` itself. A cost the span states wins over
the table; the first of these attributes present is used:
  1. `llm.cost.total` (OpenInference)
  2. `gen_ai.usage.cost`
  3. `langfuse.observation.cost_details` (JSON object: its `total`, else the sum of its values)
  4. `llm.cost.prompt` + `llm.cost.completion` (OpenInference, either may be absent)
  5. `gen_ai.usage.input_cost` + `gen_ai.usage.output_cost`
Costs on other span types are ignored: a chain or agent span's cost is usually the roll-up of its
children, and adding it would count the same calls twice.

What this module must never do:
- raise, log or do I/O inside `apply()`: it runs on every span at 20,000 spans/s, and a span it cannot
  price is stored without a cost rather than rejected. Bad files fail once, at start (`load`).
- guess: an unknown model (no exact name, no listed prefix) gets no cost, never a default price.
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tracehub.records import MODEL_CALL_SPAN_TYPES, SpanRecord

# Prices stay per million tokens, as listed, and the sum is divided once per span.
PER_MILLION = 1_000_000
# Characters that end a model family name inside a versioned id (gpt-4o-mini-2024-07-18,
# claude-3-5-sonnet@20240620, mistral-large:latest). Not '.', so gpt-4 never prices gpt-4.5-x.
_SEPARATORS = frozenset("-:@_")
# AWS Bedrock ids: optional region, then vendor (us.anthropic.claude-3-7-sonnet-20250219-v1:0).
_REGION_PREFIXES = ("us.", "eu.", "apac.")
_VENDOR_PREFIXES = ("anthropic.", "meta.", "mistral.", "amazon.", "cohere.")
# Distinct model strings seen in a process are few; the bound only guards against a client that
# sends a fresh string per call.
CACHE_MAX = 4096
MAX_COST_JSON_CHARS = 10_000

_COST_TOTAL_KEYS = ("llm.cost.total", "gen_ai.usage.cost")
_LANGFUSE_COST = "langfuse.observation.cost_details"
_COST_PAIRS = (("llm.cost.prompt", "llm.cost.completion"),
               ("gen_ai.usage.input_cost", "gen_ai.usage.output_cost"))
_ANY_COST_KEY = frozenset((*_COST_TOTAL_KEYS, _LANGFUSE_COST, *(k for pair in _COST_PAIRS for k in pair)))

Price = tuple[float, float]  # (USD per million input tokens, USD per million output tokens)


class PricingError(ValueError):
    """A price table that cannot be used; the message names the file and the bad entry."""


class Pricing:
    def __init__(self, prices: dict[str, Price]) -> None:
        self._prices = prices
        self._cache: dict[str, Price | None] = {}

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def load(cls, override_file: str | None = None) -> Pricing:
        """The shipped table merged with `override_file`; a bad file stops the server at start."""
        try:
            return cls.from_tables(shipped_table(), read_table(override_file) if override_file else None)
        except PricingError as exc:
            raise SystemExit(f"TRACEHUB_PRICES_FILE: {exc}") from None

    @classmethod
    def from_tables(cls, base: dict[str, Any], override: dict[str, Any] | None = None) -> Pricing:
        prices = parse_table(base, "model_prices.json")
        if override is not None:
            prices.update(parse_table(override, "override"))
        return cls(prices)

    @property
    def models(self) -> list[str]:
        return sorted(self._prices)

    # -- lookup ----------------------------------------------------------------------------------

    def price_of(self, model: str) -> Price | None:
        """(USD per 1M input tokens, USD per 1M output tokens) for a model string, cached per string."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        price = self._match(model)
        if len(self._cache) >= CACHE_MAX:
            self._cache.clear()
        self._cache[model] = price
        return price

    def _match(self, model: str) -> Price | None:
        name = model.strip().lower()
        prices = self._prices
        if name in prices:
            return prices[name]
        # openai/gpt-4o, models/gemini-1.5-pro, meta-llama/Llama-3.3-70B-Instruct-Turbo
        if "/" in name:
            name = name.rsplit("/", 1)[1]
        for prefix in _REGION_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        for prefix in _VENDOR_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        if name in prices:
            return prices[name]
        for i in range(len(name) - 1, 0, -1):  # longest listed prefix that ends at a separator
            if name[i] in _SEPARATORS:
                price = prices.get(name[:i])
                if price is not None:
                    return price
        return None

    def cost(self, model: str, input_tokens: int | None, output_tokens: int | None) -> float | None:
        price = self.price_of(model)
        if price is None:
            return None
        return ((input_tokens or 0) * price[0] + (output_tokens or 0) * price[1]) / PER_MILLION

    # -- the pipeline stage ----------------------------------------------------------------------

    def apply(self, spans: list[SpanRecord]) -> None:
        """Set `cost_usd` on the model-call spans of a batch (see the module docstring)."""
        for s in spans:
            m = s.mapped
            if s.cost_usd is not None or m.span_type not in MODEL_CALL_SPAN_TYPES:
                continue
            attrs = s.attributes
            # One C-level check for all cost keys (the usual answer is "none present").
            if not attrs.keys().isdisjoint(_ANY_COST_KEY):
                s.cost_usd = explicit_cost(attrs)  # None when unreadable: the table prices it
                if s.cost_usd is not None:
                    continue
            if m.model is None:
                continue
            tin, tout = m.input_tokens, m.output_tokens
            if tin is None and tout is None:
                # Embedding calls often report only a total, and all of it is input.
                if m.span_type != "embedding" or not m.total_tokens:
                    continue
                tin = m.total_tokens
            price = self.price_of(m.model)
            if price is not None:
                s.cost_usd = ((tin or 0) * price[0] + (tout or 0) * price[1]) / PER_MILLION


def explicit_cost(attrs: dict[str, Any]) -> float | None:
    """The cost a span states about itself, in the precedence of the module docstring."""
    for key in _COST_TOTAL_KEYS:
        value = _money(attrs.get(key))
        if value is not None:
            return value
    details = attrs.get(_LANGFUSE_COST)
    if isinstance(details, str) and len(details) <= MAX_COST_JSON_CHARS:
        try:
            details = json.loads(details)
        except (ValueError, RecursionError):
            details = None
    if isinstance(details, dict):
        total = _money(details.get("total"))
        if total is None:
            parts = [v for v in (_money(x) for x in details.values()) if v is not None]
            total = sum(parts) if parts else None
        if total is not None:
            return total
    for first, second in _COST_PAIRS:
        a, b = _money(attrs.get(first)), _money(attrs.get(second))
        if a is not None or b is not None:
            return (a or 0.0) + (b or 0.0)
    return None


def _money(value: Any) -> float | None:
    """A non-negative finite amount from a number or a numeric string; None for anything else."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > 40:
            return None
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


# -- tables ------------------------------------------------------------------------------------


def shipped_table() -> dict[str, Any]:
    text = resources.files("tracehub").joinpath("data/model_prices.json").read_text("utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def read_table(path: str) -> dict[str, Any]:
    """An override file: `.json` as JSON, anything else as YAML (which also reads JSON)."""
    file = Path(path)
    try:
        text = file.read_text("utf-8")
    except OSError as exc:
        raise PricingError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise PricingError(f"{path} is not valid {'JSON' if file.suffix.lower() == '.json' else 'YAML'}:"
                           f" {exc}") from None
    if not isinstance(data, dict):
        raise PricingError(f"{path}: expected an object with a 'models' mapping")
    return data


def parse_table(table: dict[str, Any], source: str) -> dict[str, Price]:
    """{"models": {name: {"input": USD/1M, "output": USD/1M}}} -> {lowercase name: (input, output)}."""
    models = table.get("models")
    if not isinstance(models, dict):
        raise PricingError(f"{source}: 'models' must be a mapping of model name to prices")
    prices: dict[str, Price] = {}
    for name, entry in models.items():
        if not isinstance(name, str) or not name.strip():
            raise PricingError(f"{source}: model names must be non-empty strings, got {name!r}")
        if not isinstance(entry, dict):
            raise PricingError(f"{source}: models.{name} must be an object with input and output")
        per_million = []
        for side in ("input", "output"):
            raw = entry.get(side)
            value = None if isinstance(raw, str) else _money(raw)  # a file states numbers
            if value is None:
                raise PricingError(f"{source}: models.{name}.{side} must be a non-negative number"
                                   " (USD per million tokens)")
            per_million.append(value)
        prices[name.strip().lower()] = (per_million[0], per_million[1])
    return prices
