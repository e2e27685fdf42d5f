"""Model pricing: name matching, the override file, explicit span costs, and cost end to end."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Callable

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from otlp_helpers import NS, make_span, post, request_of

from conftest import ServerProcess
from tracehub.collector import pricing
from tracehub.collector.pricing import Pricing, PricingError, explicit_cost
from tracehub.records import Mapped, SpanRecord


@pytest.fixture(scope="module")
def shipped() -> Pricing:
    return Pricing.load(None)


def _span(span_type: str = "llm", model: str | None = "gpt-4o-mini", tin: int | None = 1000,
          tout: int | None = 500, total: int | None = None, **attrs: Any) -> SpanRecord:
    mapped = Mapped(span_type=span_type, model=model, input_tokens=tin, output_tokens=tout,
                    total_tokens=total)
    return SpanRecord("ab" * 16, "cd" * 8, None, "call", "INTERNAL", NS, NS + 1, "success", None,
                      mapped, {k.replace("__", "."): v for k, v in attrs.items()})


@pytest.mark.parametrize("model, listed", [
    ("gpt-4o-mini", "gpt-4o-mini"),
    ("GPT-4o-Mini", "gpt-4o-mini"),
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # the older snapshot has its own price
    ("openai/gpt-4o", "gpt-4o"),
    ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
    ("o3-mini-2025-01-31", "o3-mini"),
    ("o1-preview", "o1"),
    ("text-embedding-3-small", "text-embedding-3-small"),
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
    ("anthropic/claude-3.5-sonnet", "claude-3.5-sonnet"),
    ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("models/gemini-1.5-pro", "gemini-1.5-pro"),
    ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
    ("mistral-large-latest", "mistral-large"),
    ("meta-llama/Llama-3.3-70B-Instruct-Turbo", "llama-3.3-70b-instruct-turbo"),
])
def test_model_names_match_exactly_else_by_longest_prefix(shipped: Pricing, model: str,
                                                          listed: str) -> None:
    assert shipped.price_of(model) == shipped.price_of(listed) is not None
    assert listed in shipped.models


@pytest.mark.parametrize("model", ["gpt-4omni", "gpt-4.5-turbo-x", "ft:gpt-4o-mini:acme::1",
                                   "my-own-model", "", "o"])
def test_unknown_models_get_no_price_rather_than_a_guess(shipped: Pricing, model: str) -> None:
    assert shipped.price_of(model) is None


def test_the_shipped_table_covers_the_common_models(shipped: Pricing) -> None:
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3",
                  "o3-mini", "o4-mini", "gpt-3.5-turbo", "text-embedding-3-small",
                  "text-embedding-3-large", "claude-3-5-sonnet", "claude-3-5-haiku",
                  "claude-3-7-sonnet", "claude-sonnet-4", "claude-opus-4", "claude-3-haiku",
                  "gemini-1.5-pro", "gemini-1.5-flash", "gemini-2.0-flash", "gemini-2.5-pro",
                  "gemini-2.5-flash", "mistral-large", "mistral-small", "llama-3.3-70b-versatile"):
        assert model in shipped.models, model
    assert shipped.price_of("gpt-4o-mini") == (0.15, 0.6)
    table = pricing.shipped_table()
    assert table["as_of"] and table["source"] and "per 1,000,000 tokens" in table["unit"]


def test_the_lookup_cache_is_bounded(shipped: Pricing) -> None:
    p = Pricing(dict(pricing.parse_table(pricing.shipped_table(), "shipped")))
    for i in range(pricing.CACHE_MAX + 10):
        p.price_of(f"gpt-4o-mini-{i}")
    assert len(p._cache) <= pricing.CACHE_MAX
    assert p.price_of("gpt-4o-mini-7") == (0.15, 0.6)


def test_apply_prices_model_calls_only(shipped: Pricing) -> None:
    llm, emb = _span(), _span("embedding", "text-embedding-3-small", None, None, total=2000)
    chain, tool = _span("chain"), _span("tool")
    no_model, unknown, no_tokens = _span(model=None), _span(model="acme-1"), _span(tin=None, tout=None)
    stated = _span()
    stated.cost_usd = 1.5  # the JSON ingest API's explicit cost_usd
    spans = [llm, emb, chain, tool, no_model, unknown, no_tokens, stated]
    shipped.apply(spans)
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
def test_a_cost_the_span_states_wins(shipped: Pricing, attrs: dict[str, Any], expected: Any) -> None:
    span = _span(**attrs)
    shipped.apply([span])
    assert span.cost_usd == expected


@pytest.mark.parametrize("attrs", [
    {"llm__cost__total": "lots"}, {"llm__cost__total": -1}, {"llm__cost__total": True},
    {"gen_ai__usage__cost": float("nan")}, {"langfuse__observation__cost_details": "{not json"},
    {"langfuse__observation__cost_details": '["a"]'},
])
def test_an_unreadable_stated_cost_falls_back_to_the_table(shipped: Pricing,
                                                           attrs: dict[str, Any]) -> None:
    span = _span(**attrs)
    shipped.apply([span])
    assert span.cost_usd == 0.00045


def test_stated_costs_on_other_span_types_are_ignored(shipped: Pricing) -> None:
    chain = _span("chain", llm__cost__total=9.0)  # a roll-up: counting it would double the trace
    shipped.apply([chain])
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
    assert p.price_of("gpt-4o") == (2.5, 10.0)  # the rest of the shipped table stays


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
