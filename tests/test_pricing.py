"""Model pricing: genai-prices' prices and their cache, the override file, explicit span costs, and cost end
to end."""

from __future__ import annotations

import json
import pickle
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from otlp_helpers import NS, make_span, post, request_of

from genai_prices import Usage, calc_price
from genai_prices.data import providers as CATALOGUE

from conftest import ServerProcess
from tracehub.collector import pricing
from tracehub.collector.pricing import Pricing, PricingError, explicit_cost
from tracehub.records import Mapped, SpanRecord


@pytest.fixture(scope="module")
def catalogue() -> Pricing:
    return Pricing.load(None)


def _span(span_type: str = "llm", model: str | None = "gpt-4o-mini", tin: int | None = 1000,
          tout: int | None = 500, total: int | None = None, start: int = NS, **attrs: Any) -> SpanRecord:
    mapped = Mapped(span_type=span_type, model=model, input_tokens=tin, output_tokens=tout,
                    total_tokens=total)
    return SpanRecord("ab" * 16, "cd" * 8, None, "call", "INTERNAL", start, start + 1, "success", None,
                      mapped, {k.replace("__", "."): v for k, v in attrs.items()})


# The prices of the table this project kept by hand until genai-prices replaced it (USD per million
# input / output tokens, 2025-08): genai-prices must agree on each, under the names spans send.
@pytest.mark.parametrize("model, provider, price", [
    ("gpt-4o-mini", None, (0.15, 0.6)),
    ("GPT-4o-Mini", None, (0.15, 0.6)),
    ("gpt-4o-mini-2024-07-18", None, (0.15, 0.6)),
    ("gpt-4o-2024-08-06", "openai", (2.5, 10.0)),
    ("gpt-4o-2024-05-13", None, (5.0, 15.0)),  # the older snapshot has its own price
    ("openai/gpt-4o", None, (2.5, 10.0)),
    ("gpt-4.1-mini-2025-04-14", None, (0.4, 1.6)),
    ("gpt-5", None, (1.25, 10.0)),
    ("o1", None, (15.0, 60.0)),
    ("o3-mini-2025-01-31", None, (1.1, 4.4)),
    ("gpt-3.5-turbo", None, (0.5, 1.5)),
    ("text-embedding-3-small", None, (0.02, 0.0)),
    ("text-embedding-3-large", "openai", (0.13, 0.0)),
    ("claude-3-5-sonnet-20241022", None, (3.0, 15.0)),
    ("claude-3-5-sonnet@20240620", "gcp.vertex_ai", (3.0, 15.0)),
    ("anthropic/claude-3.5-sonnet", None, (3.0, 15.0)),
    ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "aws.bedrock", (3.0, 15.0)),
    ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", None, (3.0, 15.0)),
    ("claude-sonnet-4-20250514", "anthropic", (3.0, 15.0)),
    ("claude-opus-4-1-20250805", None, (15.0, 75.0)),
    ("claude-3-5-haiku-latest", None, (0.8, 4.0)),
    ("claude-3-haiku-20240307", None, (0.25, 1.25)),
    ("models/gemini-1.5-pro", None, (1.25, 5.0)),
    ("gemini-2.0-flash", "gcp.gemini", (0.1, 0.4)),
    ("gemini-2.5-pro", None, (1.25, 10.0)),
    ("gemini-2.5-flash", None, (0.3, 2.5)),
    ("mistral-large-latest", "mistral_ai", (2.0, 6.0)),
    ("codestral-latest", None, (0.3, 0.9)),
    ("meta-llama/Llama-3.3-70B-Instruct-Turbo", None, (0.88, 0.88)),
    ("llama-3.3-70b-versatile", None, (0.59, 0.79)),
    ("llama-3.1-8b-instant", "groq", (0.05, 0.08)),
])
def test_genai_prices_keeps_the_prices_of_the_old_table(catalogue: Pricing, model: str, provider: str | None,
                                                       price: tuple[float, float]) -> None:
    assert catalogue.price_of(model, provider) == price


@pytest.mark.parametrize("model", ["gpt-4omni", "gpt-4.5-turbo-x", "ft:gpt-4o-mini:acme::1",
                                   "my-own-model", "", "o"])
def test_unknown_models_get_no_price_rather_than_a_guess(catalogue: Pricing, model: str) -> None:
    assert catalogue.price_of(model) is None
    assert catalogue.price_of(model, "openai") is None


def test_the_span_provider_chooses_the_catalogue(catalogue: Pricing) -> None:
    spans = [_span(model="qwen/qwen3-32b", gen_ai__provider__name="groq"),
             _span(model="qwen/qwen3-32b", gen_ai__system="openrouter"),
             _span(model="qwen/qwen3-32b", llm__provider="groq", llm__system="openrouter")]
    catalogue.apply(spans)
    groq = calc_price(Usage(input_tokens=1000, output_tokens=500), "qwen/qwen3-32b", provider_id="groq")
    openrouter = calc_price(Usage(input_tokens=1000, output_tokens=500), "qwen/qwen3-32b",
                            provider_id="openrouter")
    assert groq.total_price != openrouter.total_price
    assert [s.cost_usd for s in spans] == [pytest.approx(float(groq.total_price)),
                                           pytest.approx(float(openrouter.total_price)),
                                           pytest.approx(float(groq.total_price))]


def test_every_cached_rate_is_what_genai_prices_charges() -> None:
    """The floats the ingest path multiplies equal genai-prices' own sum for every model it lists."""
    now = datetime.now(UTC)
    for provider in CATALOGUE:
        for model in provider.models:
            rate = pricing.catalogue_rate((provider, model))
            for tin, tout in ((0, 0), (1234, 0), (0, 567), (1234, 567)):
                expected = model.calc_price(Usage(input_tokens=tin, output_tokens=tout), provider,
                                            genai_request_timestamp=now).total_price
                mine = rate.call + (tin * rate.input + tout * rate.output) / 1e6
                assert mine == pytest.approx(float(expected), rel=1e-9, abs=1e-15), (provider.id, model.id)


def test_a_call_past_a_long_context_tier_pays_the_tier_price(catalogue: Pricing) -> None:
    rate = catalogue.rate_of("gemini-2.5-pro")
    assert rate is not None and rate.flat_upto == 200_000
    short, long = _span(model="gemini-2.5-pro", tin=200_000, tout=1000), _span(model="gemini-2.5-pro",
                                                                               tin=200_001, tout=1000)
    catalogue.apply([short, long])
    assert short.cost_usd == pytest.approx((200_000 * 1.25 + 1000 * 10) / 1e6)
    expected = calc_price(Usage(input_tokens=200_001, output_tokens=1000), "gemini-2.5-pro", provider_id="google")
    assert long.cost_usd == pytest.approx(float(expected.total_price)) and long.cost_usd > 1.9 * short.cost_usd


def test_a_price_by_the_hour_is_read_at_the_span_start(catalogue: Pricing) -> None:
    day = NS - NS % (86_400 * 10**9)
    spans = [_span(model="deepseek-chat", start=day + hour * 3600 * 10**9, gen_ai__system="deepseek")
             for hour in range(24)]
    catalogue.apply(spans)
    for hour, span in enumerate(spans):
        at = datetime.fromtimestamp(span.start_ns / 1e9, UTC)
        expected = calc_price(Usage(input_tokens=1000, output_tokens=500), "deepseek-chat", provider_id="deepseek",
                              genai_request_timestamp=at)
        assert span.cost_usd == pytest.approx(float(expected.total_price)), hour
    assert len({s.cost_usd for s in spans}) > 1  # peak and off-peak hours


def test_the_lookup_cache_is_bounded() -> None:
    p = Pricing()
    for i in range(pricing.CACHE_MAX + 10):
        p.price_of(f"gpt-4o-mini-{i}")
    assert p._cached <= pricing.CACHE_MAX
    assert p.price_of("gpt-4o-mini-7") is None  # not a snapshot genai-prices knows
    assert p.price_of("gpt-4o-mini-2024-07-18") == (0.15, 0.6)


def test_a_spawned_worker_gets_the_overrides_without_the_cache(catalogue: Pricing) -> None:
    p = Pricing({"acme-llm": (1.0, 2.0)})
    p.price_of("gpt-4o")
    copy = pickle.loads(pickle.dumps(p))
    assert copy._cached == 0 and copy.price_of("acme-llm") == (1.0, 2.0) and copy.price_of("gpt-4o") == (2.5, 10.0)


def test_apply_prices_model_calls_only(catalogue: Pricing) -> None:
    llm, emb = _span(), _span("embedding", "text-embedding-3-small", None, None, total=2000)
    chain, tool = _span("chain"), _span("tool")
    no_model, unknown, no_tokens = _span(model=None), _span(model="acme-1"), _span(tin=None, tout=None)
    stated = _span()
    stated.cost_usd = 1.5  # the JSON ingest API's explicit cost_usd
    spans = [llm, emb, chain, tool, no_model, unknown, no_tokens, stated]
    catalogue.apply(spans)
    assert llm.cost_usd == pytest.approx(1000 * 0.15 / 1e6 + 500 * 0.6 / 1e6)
    assert llm.cost_usd == 0.00045  # exact: the per-million product is divided once
    assert emb.cost_usd == pytest.approx(2000 * 0.02 / 1e6)
    assert [s.cost_usd for s in spans[2:]] == [None, None, None, None, None, 1.5]


@pytest.mark.parametrize("attrs, expected", [
    ({"llm__cost__total": 0.25}, 0.25),
    ({"llm__cost__total": "0.25"}, 0.25),
    ({"gen_ai__usage__cost": 0.5}, 0.5),
    ({"llm__cost__total": 0.25, "gen_ai__usage__cost": 0.5}, 0.25),
    ({"langfuse__observation__cost_details": '{"input": 0.1, "output": 0.2, "total": 0.3}'}, 0.3),
    ({"langfuse__observation__cost_details": '{"input": 0.1, "output": 0.2}'}, pytest.approx(0.3)),
    ({"langfuse__observation__cost_details": {"total": 0.7}}, 0.7),
    ({"llm__cost__prompt": 0.1, "llm__cost__completion": 0.05}, pytest.approx(0.15)),
    ({"llm__cost__completion": 0.05}, 0.05),
    ({"gen_ai__usage__input_cost": 0.01, "gen_ai__usage__output_cost": 0.02}, pytest.approx(0.03)),
    ({"llm__cost__total": 0}, 0.0),
])
def test_a_cost_the_span_states_wins(catalogue: Pricing, attrs: dict[str, Any], expected: Any) -> None:
    span = _span(**attrs)
    catalogue.apply([span])
    assert span.cost_usd == expected


@pytest.mark.parametrize("attrs", [
    {"llm__cost__total": "lots"}, {"llm__cost__total": -1}, {"llm__cost__total": True},
    {"gen_ai__usage__cost": float("nan")}, {"langfuse__observation__cost_details": "{not json"},
    {"langfuse__observation__cost_details": '["a"]'},
])
def test_an_unreadable_stated_cost_falls_back_to_the_prices(catalogue: Pricing,
                                                           attrs: dict[str, Any]) -> None:
    span = _span(**attrs)
    catalogue.apply([span])
    assert span.cost_usd == 0.00045


def test_stated_costs_on_other_span_types_are_ignored(catalogue: Pricing) -> None:
    chain = _span("chain", llm__cost__total=9.0)  # a roll-up: counting it would double the trace
    catalogue.apply([chain])
    assert chain.cost_usd is None
    assert explicit_cost({"llm.cost.total": 9.0}) == 9.0


@pytest.mark.parametrize("suffix, text", [
    (".json", json.dumps({"models": {"gpt-4o-mini": {"input": 1, "output": 2},
                                     "Acme-LLM": {"input": 10, "output": 20}}})),
    (".yaml", ("models:\n  gpt-4o-mini: {input: 1, output: 2}\n  Acme-LLM:\n    input: 10\n"
               "    output: 20\n")),
])
def test_the_override_file_replaces_and_adds_models(tmp_path: Path, suffix: str, text: str) -> None:
    path = tmp_path / f"prices{suffix}"
    path.write_text(text)
    p = Pricing.load(str(path))
    assert p.price_of("gpt-4o-mini-2024-07-18") == (1.0, 2.0)
    assert p.price_of("acme-llm-v2") == (10.0, 20.0)
    assert p.price_of("gpt-4o") == (2.5, 10.0)  # genai-prices prices the rest
    assert p.price_of("gpt-4o-mini", "openai") == (1.0, 2.0)  # whatever the provider


def test_a_listed_prefix_does_not_reprice_a_model_genai_prices_knows_apart() -> None:
    p = Pricing({"gpt-4o": (1.0, 2.0), "claude-3-7-sonnet": (3.5, 4.5)})
    assert p.price_of("gpt-4o-2024-08-06") == (1.0, 2.0)  # genai-prices' gpt-4o too
    assert p.price_of("gpt-4o-mini") == (0.15, 0.6)  # another model to genai-prices
    assert p.price_of("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "aws.bedrock") == (3.5, 4.5)


@pytest.mark.parametrize("text, message", [
    ("models: [1, 2]", "'models' must be a mapping"),
    ("- just a list", "expected an object"),
    ("models:\n  x: {input: 1}", "models.x.output must be a non-negative number"),
    ("models:\n  x: {input: -1, output: 1}", "models.x.input must be a non-negative number"),
    ("models:\n  x: {input: '1', output: 1}", "models.x.input must be"),
    ("models:\n  x: 3", "models.x must be an object"),
    ("models: {x: [unclosed", "is not valid YAML"),
])
def test_a_bad_override_file_stops_the_start_with_a_clear_message(tmp_path: Path, text: str,
                                                                  message: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as raised:
        Pricing.load(str(path))
    assert message in str(raised.value) and "TRACEHUB_PRICES_FILE" in str(raised.value)
    with pytest.raises(PricingError):
        pricing.read_table(str(tmp_path / "missing.json"))


# -- end to end: OTLP in, costs out --------------------------------------------------------------


def _double(span: Any, key: str, value: float) -> None:
    span.attributes.append(KeyValue(key=key, value=AnyValue(double_value=value)))


def _send(server: ServerProcess, *spans: Any) -> None:
    r = post(server, request_of(*spans))
    assert r.status_code == 200, r.text


def test_llm_spans_and_their_trace_get_a_cost(server: ServerProcess) -> None:
    tid = secrets.token_bytes(16)
    root = make_span(tid, secrets.token_bytes(8), name="request", end=NS + 50_000_000)
    chat = make_span(tid, secrets.token_bytes(8), parent=root.span_id, name="chat", start=NS + 1,
                     gen_ai__operation__name="chat", gen_ai__request__model="gpt-4o-mini", gen_ai__usage__input_tokens=1000, gen_ai__usage__output_tokens=500)
    stated = make_span(tid, secrets.token_bytes(8), parent=root.span_id, name="chat 2", start=NS + 2,
                       openinference__span__kind="LLM", llm__model_name="gpt-4o", llm__token_count__prompt=10, llm__token_count__completion=10)
    _double(stated, "llm.cost.total", 0.25)
    chain = make_span(tid, secrets.token_bytes(8), parent=root.span_id, name="chain", start=NS + 3,
                      openinference__span__kind="CHAIN")
    _double(chain, "llm.cost.total", 9.0)
    _send(server, root, chat, stated, chain)
    detail = server.wait_trace(tid.hex(), 4)
    costs = {s["name"]: s["cost_usd"] for s in detail["spans"]}
    assert costs["chat"] == pytest.approx(1000 * 0.15 / 1e6 + 500 * 0.6 / 1e6)
    assert costs["chat 2"] == 0.25
    assert costs["chain"] is None and costs["request"] is None
    assert detail["trace"]["cost_usd"] == pytest.approx(0.00045 + 0.25)


def test_a_server_uses_its_prices_file(server_factory: Callable[..., ServerProcess],
                                       tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  gpt-4o-mini: {input: 1.0, output: 2.0}\n"
                    "  acme-llm: {input: 10, output: 20}\n")
    server = server_factory("sqlite", env={"TRACEHUB_PRICES_FILE": str(path)})
    tid = secrets.token_bytes(16)
    root = make_span(tid, secrets.token_bytes(8), name="request")
    spans = [root] + [
        make_span(tid, secrets.token_bytes(8), parent=root.span_id, name=model, start=NS + i,
                  gen_ai__operation__name="chat", gen_ai__response__model=model, gen_ai__usage__input_tokens=tin, gen_ai__usage__output_tokens=tout)
        for i, (model, tin, tout) in enumerate((("gpt-4o-mini-2024-07-18", 1000, 500),
                                                 ("acme-llm", 100, 100)), 1)
    ]
    _send(server, *spans)
    detail = server.wait_trace(tid.hex(), 3)
    costs = {s["name"]: s["cost_usd"] for s in detail["spans"]}
    assert costs["gpt-4o-mini-2024-07-18"] == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert costs["acme-llm"] == pytest.approx((100 * 10 + 100 * 20) / 1e6)
    assert detail["trace"]["cost_usd"] == pytest.approx(0.002 + 0.003)
