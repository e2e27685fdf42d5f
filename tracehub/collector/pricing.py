"""Model pricing: turn a model call's tokens into `SpanRecord.cost_usd` on the ingest path.

Prices come from genai-prices, the catalogue its package ships (no download at run time), under an
optional override file (`TRACEHUB_PRICES_FILE`, JSON or YAML: {"models": {name: {"input": USD/1M,
"output": USD/1M}}}) whose models win over the catalogue's. The pipeline calls `apply()` on every
batch before it is written, so the writer folds span costs into the trace's `cost_usd`.

Which spans get a cost: only `llm` and `embedding` spans (the same spans whose tokens count toward
the trace), and only when the client did not set `cost_usd` itself. A cost the span states wins over
the prices; the first of these attributes present is used:
  1. `llm.cost.total` (OpenInference)
  2. `gen_ai.usage.cost`
  3. `langfuse.observation.cost_details` (JSON object: its `total`, else the sum of its values)
  4. `llm.cost.prompt` + `llm.cost.completion` (OpenInference, either may be absent)
  5. `gen_ai.usage.input_cost` + `gen_ai.usage.output_cost`
Costs on other span types are ignored: a chain or agent span's cost is usually the roll-up of its
children, and adding it would count the same calls twice.

How a model is found, once per (provider, model) pair (the provider is the span's
`gen_ai.provider.name`, `gen_ai.system`, `llm.provider` or `llm.system`):
- the override file: the name exactly (case-insensitive, after a `vendor/`, Bedrock region or vendor
  prefix), else its longest listed prefix ending at '-', ':', '@' or '_' (acme-llm prices
  acme-llm-v2), unless the catalogue that lists the longer name lists the prefix as another model
  (gpt-4o-mini keeps its price when only gpt-4o is overridden);
- the catalogue: the span's provider, the provider genai-prices matches the name to, the provider
  of a `vendor/` prefix (openai/gpt-4o), then the catalogues of `FALLBACK_PROVIDERS` in order.
The answer is cached per pair as a few floats, so a span costs two dict look-ups and a
multiplication; the first sight of a pair costs 0.1-0.5 ms (catalogues are searched model by model).
A span past a long-context tier (gemini-2.5-pro above 200k input tokens) is priced by genai-prices
itself; a model whose price depends on the time of day (DeepSeek's off-peak hours) gets a rate per
minute of the day, at the span's start. Rates are read again after each UTC midnight, as the
catalogue's prices change on dates.

What this module must never do:
- raise, log or do I/O inside `apply()`: it runs on every span at 20,000 spans/s, and a span it cannot
  price is stored without a cost rather than rejected. Bad files fail once, at start (`load`).
- guess: a model that neither the override file nor the catalogue lists gets no cost, never a
  default price.
"""

from __future__ import annotations

import functools
import json
import math
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, Provider

from tracehub.records import MODEL_CALL_SPAN_TYPES, SpanRecord

# Prices stay per million tokens, as listed, and the sum is divided once per span.
PER_MILLION = 1_000_000
# Characters that end a model family name inside a versioned id (acme-llm-2024-07-18, acme@2024,
# acme:latest). Not '.', so gpt-4 never prices gpt-4.5-x.
_SEPARATORS = frozenset("-:@_")
# AWS Bedrock ids: optional region, then vendor (us.anthropic.claude-3-7-sonnet-20250219-v1:0).
_REGION_PREFIXES = ("us.", "eu.", "apac.")
_VENDOR_PREFIXES = ("anthropic.", "meta.", "mistral.", "amazon.", "cohere.")
# Span attributes naming the model's provider, most specific first (OTel GenAI, then OpenInference).
_PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
# Catalogues searched last, for a name that genai-prices does not tie to a provider by its shape
# (claude-*, gemini-*, mistral-* it does) and that the span's provider does not list: OpenAI's other
# names (text-embedding-3-small), Bedrock ids, open-weight model ids (llama-3.3-70b-versatile).
# A miss costs up to 70 us in each, once per (provider, model): the list stays short.
FALLBACK_PROVIDERS = ("openai", "aws", "groq", "together")
# Distinct (provider, model) pairs seen in a process are few; the bound only guards against a client
# that sends a fresh string per call.
CACHE_MAX = 4096
MAX_COST_JSON_CHARS = 10_000
# `Rate.flat_upto` of a model whose price depends on the time of day (DeepSeek's off-peak hours): the
# rate is kept per minute of the day instead.
_BY_MINUTE = -1
NS_PER_MINUTE = 60_000_000_000

_COST_TOTAL_KEYS = ("llm.cost.total", "gen_ai.usage.cost")
_LANGFUSE_COST = "langfuse.observation.cost_details"
_COST_PAIRS = (("llm.cost.prompt", "llm.cost.completion"),
               ("gen_ai.usage.input_cost", "gen_ai.usage.output_cost"))
_ANY_COST_KEY = frozenset((*_COST_TOTAL_KEYS, _LANGFUSE_COST, *(k for pair in _COST_PAIRS for k in pair)))

Price = tuple[float, float]  # (USD per million input tokens, USD per million output tokens)
if TYPE_CHECKING:
    Found = tuple[Provider, ModelInfo]


@functools.cache
def _catalogue() -> tuple[list[Provider], dict[str, Provider]]:
    """genai-prices' providers, and by id; imported at the first model priced. Its models take
    ~25 MiB, which a server at rest, and a process that never prices, need not hold."""
    from genai_prices.data import providers

    return providers, {p.id: p for p in providers}


class Rate(NamedTuple):
    """A model's price as the ingest path uses it."""

    input: float  # USD per million input tokens
    output: float  # USD per million output tokens
    call: float  # USD per call, whatever its tokens
    flat_upto: float  # these hold up to this many input tokens; past it `found` prices the span
    found: Found | None  # the catalogue's entry; None for an override-file price


class PricingError(ValueError):
    """A price table that cannot be used; the message names the file and the bad entry."""


class Pricing:
    def __init__(self, overrides: dict[str, Price] | None = None) -> None:
        self._overrides = overrides or {}
        # provider -> model -> rate: two look-ups of strings whose hashes are kept, no key tuple.
        self._cache: dict[str | None, dict[str, Rate | None]] = {}
        self._cached = 0
        self._by_minute: dict[tuple[int, int], Rate] = {}  # (id of the model entry, minute of the day)
        self._fresh_until = 0.0

    def __reduce__(self) -> tuple[type[Pricing], tuple[dict[str, Price]]]:
        return (Pricing, (self._overrides,))  # spawned decode workers start with an empty cache

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def load(cls, override_file: str | None = None) -> Pricing:
        """The catalogue under `override_file`'s prices; a bad file stops the server at start."""
        try:
            return cls(parse_table(read_table(override_file), override_file) if override_file else None)
        except PricingError as exc:
            raise SystemExit(f"TRACEHUB_PRICES_FILE: {exc}") from None

    # -- lookup ----------------------------------------------------------------------------------

    def rate_of(self, model: str, provider: str | None = None) -> Rate | None:
        """The price of a model (as a span names it) from a provider, cached per pair."""
        if time.time() >= self._fresh_until:
            self._refresh()
        by_model = self._cache.get(provider)
        if by_model is not None and model in by_model:
            return by_model[model]
        try:
            rate = self._resolve(model, provider)
        except (ArithmeticError, LookupError, TypeError, ValueError):
            rate = None  # an entry genai-prices cannot price: no cost, as for an unknown model
        if self._cached >= CACHE_MAX:
            self._cache.clear()
            self._cached = 0
        self._cache.setdefault(provider, {})[model] = rate
        self._cached += 1
        return rate

    def price_of(self, model: str, provider: str | None = None) -> Price | None:
        """(USD per 1M input tokens, USD per 1M output tokens), below any long-context tier."""
        rate = self.rate_of(model, provider)
        return None if rate is None else (rate.input, rate.output)

    def cost(self, model: str, input_tokens: int | None, output_tokens: int | None,
             provider: str | None = None) -> float | None:
        rate = self.rate_of(model, provider)
        if rate is None:
            return None
        return self._cost(rate, input_tokens or 0, output_tokens or 0, time.time_ns())

    def _refresh(self) -> None:
        """Forget every rate after UTC midnight: the catalogue's prices change on dates."""
        self._cache.clear()
        self._cached = 0
        self._by_minute.clear()
        now = datetime.now(UTC)
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        self._fresh_until = midnight.timestamp()

    def _resolve(self, model: str, provider: str | None) -> Rate | None:
        name = model.strip().lower()
        if not name:
            return None
        listed = self._listed(name)
        found = None if listed is not None and listed[2] else find_model(name, provider)
        if listed is not None:
            listed_name, price, exact = listed
            # A listed prefix yields to the catalogue where that catalogue lists it as another model.
            other = (None if exact or found is None
                     else found[0].find_model(listed_name, all_providers=_catalogue()[0]))
            if other is None or found is None or other is found[1]:
                return Rate(price[0], price[1], 0.0, math.inf, None)
        return None if found is None else catalogue_rate(found)

    def _listed(self, name: str) -> tuple[str, Price, bool] | None:
        """The override file's entry for a lowercase name: (listed name, price, matched exactly)."""
        prices = self._overrides
        if not prices:
            return None
        if name in prices:
            return name, prices[name], True
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
            return name, prices[name], True
        for i in range(len(name) - 1, 0, -1):  # longest listed prefix that ends at a separator
            if name[i] in _SEPARATORS:
                price = prices.get(name[:i])
                if price is not None:
                    return name[:i], price, False
        return None

    def _cost(self, rate: Rate, tin: int, tout: int, start_ns: int) -> float | None:
        """A call's cost at its start time: the cached rate where it holds, else genai-prices' own sum."""
        found = rate.found
        if found is None:
            return rate.call + (tin * rate.input + tout * rate.output) / PER_MILLION
        try:
            if rate.flat_upto == _BY_MINUTE:
                key = (id(found[1]), start_ns // NS_PER_MINUTE % 1440)
                timed = self._by_minute.get(key)
                if timed is None:
                    timed = self._by_minute[key] = catalogue_rate(found, _utc(start_ns))
                rate = timed
            if tin <= rate.flat_upto:
                return rate.call + (tin * rate.input + tout * rate.output) / PER_MILLION
            from genai_prices import Usage

            provider, model = found
            usage = Usage(input_tokens=tin, output_tokens=tout)
            return float(model.calc_price(usage, provider, genai_request_timestamp=_utc(start_ns)).total_price)
        except (ArithmeticError, LookupError, TypeError, ValueError, OSError):
            return None  # a token count or time the catalogue cannot take: no cost rather than an error

    # -- the pipeline stage ----------------------------------------------------------------------

    def apply(self, spans: list[SpanRecord]) -> None:
        """Set `cost_usd` on the model-call spans of a batch (see the module docstring)."""
        if time.time() >= self._fresh_until:
            self._refresh()
        cache = self._cache
        key0, key1, key2, key3 = _PROVIDER_KEYS
        for s in spans:
            m = s.mapped
            if s.cost_usd is not None or m.span_type not in MODEL_CALL_SPAN_TYPES:
                continue
            attrs = s.attributes
            # One C-level check for all cost keys (the usual answer is "none present").
            if not attrs.keys().isdisjoint(_ANY_COST_KEY):
                s.cost_usd = explicit_cost(attrs)  # None when unreadable: the prices price it
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
            provider = attrs.get(key0) or attrs.get(key1) or attrs.get(key2) or attrs.get(key3)
            if not isinstance(provider, str):
                provider = None
            try:
                rate = cache[provider][m.model]
            except KeyError:
                rate = self.rate_of(m.model, provider)
            if rate is not None:
                tin, tout = tin or 0, tout or 0
                per_in, per_out, per_call, flat_upto, _ = rate
                if tin <= flat_upto:
                    s.cost_usd = per_call + (tin * per_in + tout * per_out) / PER_MILLION
                else:
                    s.cost_usd = self._cost(rate, tin, tout, s.start_ns)


# -- the catalogue -------------------------------------------------------------------------------


def find_model(name: str, provider: str | None = None) -> Found | None:
    """genai-prices' entry for a lowercase model name (see the module docstring for the order)."""
    catalogues, by_id = _catalogue()
    by_shape = next((p for p in catalogues if p.model_match is not None and p.model_match.is_match(name)), None)
    tries = [(_provider_named(provider) if provider else None, name), (by_shape, name)]
    if "/" in name:
        vendor, _, rest = name.partition("/")
        tries.append((_provider_named(vendor), rest))
    tries.extend((by_id.get(pid), name) for pid in FALLBACK_PROVIDERS)
    seen: set[tuple[str, str]] = set()
    for catalogue, ref in tries:
        if catalogue is None or (catalogue.id, ref) in seen:
            continue
        seen.add((catalogue.id, ref))
        model = catalogue.find_model(ref, all_providers=catalogues)
        if model is not None:
            return catalogue, model
    return None


def catalogue_rate(found: Found, at: datetime | None = None) -> Rate:
    """A catalogue entry's price now (or at `at`), flat up to its first long-context tier.

    The three figures are genai-prices' own totals for a call of no tokens (a per-request fee, as
    Perplexity charges), 1,000 input and 1,000 output tokens, so whatever it counts is counted.
    """
    from genai_prices import Usage
    from genai_prices.types import TieredPrices, TimeOfDateConstraint

    provider, model = found
    now = at or datetime.now(UTC)

    def total(tin: int, tout: int) -> Decimal:
        usage = Usage(input_tokens=tin, output_tokens=tout)
        return model.calc_price(usage, provider, genai_request_timestamp=now).total_price

    fee = total(0, 0)
    upto = math.inf
    prices = model.get_prices(now)
    for price in (prices.input_mtok, prices.output_mtok):
        if isinstance(price, TieredPrices):
            upto = min(upto, min((tier.start for tier in price.tiers), default=math.inf))
    if at is None and isinstance(model.prices, list) and any(isinstance(c.constraint, TimeOfDateConstraint)
                                                             for c in model.prices):
        upto = _BY_MINUTE
    return Rate(float((total(1000, 0) - fee) * 1000), float((total(0, 1000) - fee) * 1000), float(fee), upto,
                found)


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def _provider_named(name: str) -> Provider | None:
    """The catalogue a span's provider names (openai, gcp.vertex_ai, aws.bedrock, mistral_ai, ...)."""
    name = name.strip().lower()
    catalogues, by_id = _catalogue()
    provider = by_id.get(name)
    if provider is None:
        provider = next((p for p in catalogues if p.provider_match is not None and p.provider_match.is_match(name)),
                        None)
    return provider




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



# -- the override file --------------------------------------------------------------------------


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
