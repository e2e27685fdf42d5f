"""The policy DSL (tracehub/decision/policy.py): validation paths, operators, ordering, defaults."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from tracehub.decision.policy import PolicyError, Verdict, parse_policy, schema

# docs/SPEC.ko.md example 6, as written.
SPEC_DEFINITION = {
    "rules": [
        {
            "priority": 10,
            "when": {"any": [{"field": "signals.pii", "op": "eq", "value": True}]},
            "then": {"action": "ESCALATE", "reason_code": "PII_DETECTED", "severity": "high"},
            "metadata": {"owner": "trust-safety"},
        }
    ]
}


def rule(when: dict[str, Any], action: str = "BLOCK", reason: str = "HIT", priority: int = 10,
         **extra: Any) -> dict[str, Any]:
    return {"priority": priority, "when": when,
            "then": {"action": action, "reason_code": reason, "severity": "medium"}, **extra}


def one(when: dict[str, Any]) -> Any:
    return parse_policy({"rules": [rule(when)]})


def matches(when: dict[str, Any], context: dict[str, Any]) -> bool:
    return one(when).evaluate(context).action == "BLOCK"


def errors_of(document: Any) -> list[dict[str, str]]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(document)
    return caught.value.errors


def test_spec_definition_escalates_pii_and_allows_the_rest() -> None:
    policy = parse_policy(SPEC_DEFINITION)
    hit = policy.evaluate({"signals": {"pii": True, "email": True}})
    assert hit == Verdict("ESCALATE", "PII_DETECTED", "high",
                          {"index": 0, "priority": 10, "metadata": {"owner": "trust-safety"}},
                          ["signals.pii"])
    assert policy.evaluate({"signals": {"pii": False}}) == Verdict(
        "ALLOW_ANSWER", "NO_RULE_MATCHED", "low", None, [])
    assert policy.evaluate({}).rule is None  # no signals at all: the default, no error


def test_shipped_schema_is_a_valid_2020_12_schema() -> None:
    Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_rules_run_by_priority_then_document_order() -> None:
    policy = parse_policy({"rules": [
        rule({"field": "trace.total_tokens", "op": "gt", "value": 100}, "ALLOW_WITH_WARNING", "LATE", 20),
        rule({"field": "trace.total_tokens", "op": "gt", "value": 100}, "BLOCK", "FIRST_OF_TIE", 5),
        rule({"field": "trace.total_tokens", "op": "gt", "value": 100}, "ESCALATE", "SECOND_OF_TIE", 5),
    ]})
    verdict = policy.evaluate({"trace": {"total_tokens": 500}})
    assert (verdict.reason_code, verdict.rule and verdict.rule["index"]) == ("FIRST_OF_TIE", 1)
    assert policy.evaluate({"trace": {"total_tokens": 50}}).reason_code == "NO_RULE_MATCHED"


def test_definition_default_decides_when_nothing_matches() -> None:
    policy = parse_policy({"rules": [], "default": {"action": "NEED_CLARIFICATION"}})
    assert policy.evaluate({}) == Verdict("NEED_CLARIFICATION", "NO_RULE_MATCHED", "low", None, [])
    policy = parse_policy({"rules": [], "default": {"action": "BLOCK", "reason_code": "DENY", "severity": "high"}})
    assert (policy.evaluate({}).action, policy.evaluate({}).severity) == ("BLOCK", "high")


@pytest.mark.parametrize(("when", "context", "expected"), [
    ({"field": "signals.pii", "op": "eq", "value": True}, {"signals": {"pii": True}}, True),
    ({"field": "signals.pii", "op": "eq", "value": True}, {"signals": {"pii": 1}}, False),  # true is not 1
    ({"field": "trace.error_count", "op": "eq", "value": 1}, {"trace": {"error_count": 1.0}}, True),
    ({"field": "trace.model", "op": "ne", "value": "gpt-4.1"}, {"trace": {"model": "gpt-4o"}}, True),
    ({"field": "trace.model", "op": "ne", "value": "gpt-4.1"}, {"trace": {}}, False),  # missing never matches
    ({"field": "trace.model", "op": "ne", "value": "gpt-4.1"}, {"trace": {"model": None}}, False),
    ({"field": "trace.cost_usd", "op": "gt", "value": 0.5}, {"trace": {"cost_usd": 0.51}}, True),
    ({"field": "trace.cost_usd", "op": "gt", "value": 0.5}, {"trace": {"cost_usd": 0.5}}, False),
    ({"field": "trace.cost_usd", "op": "gte", "value": 0.5}, {"trace": {"cost_usd": 0.5}}, True),
    ({"field": "trace.duration_ms", "op": "lt", "value": 10}, {"trace": {"duration_ms": 9}}, True),
    ({"field": "trace.duration_ms", "op": "lte", "value": 10}, {"trace": {"duration_ms": 11}}, False),
    ({"field": "trace.duration_ms", "op": "gt", "value": 10}, {"trace": {"duration_ms": "11"}}, False),
    ({"field": "trace.duration_ms", "op": "gt", "value": 0}, {"trace": {"duration_ms": True}}, False),
    ({"field": "trace.environment", "op": "in", "value": ["prod", "staging"]}, {"trace": {"environment": "prod"}}, True),
    ({"field": "trace.environment", "op": "in", "value": ["prod"]}, {"trace": {"environment": "dev"}}, False),
    ({"field": "signals.refusal", "op": "in", "value": [1]}, {"signals": {"refusal": True}}, False),
    ({"field": "request.tags", "op": "in", "value": [["a", "b"]]}, {"request": {"tags": ["a", "b"]}}, True),
    ({"field": "trace.environment", "op": "not_in", "value": ["prod"]}, {"trace": {"environment": "dev"}}, True),
    ({"field": "trace.environment", "op": "not_in", "value": ["prod"]}, {"trace": {}}, False),
    ({"field": "response.text", "op": "contains", "value": "원금 보장"}, {"response": {"text": "이건 원금 보장 상품"}}, True),
    ({"field": "response.text", "op": "contains", "value": "guaranteed"}, {"response": {"text": "Guaranteed"}}, False),
    ({"field": "signals.pii_kinds", "op": "contains", "value": "card"}, {"signals": {"pii_kinds": ["email", "card"]}}, True),
    ({"field": "signals.pii_kinds", "op": "contains", "value": "card"}, {"signals": {"pii_kinds": ["email"]}}, False),
    ({"field": "trace.total_tokens", "op": "contains", "value": 1}, {"trace": {"total_tokens": 10}}, False),
    ({"field": "trace.model", "op": "regex", "value": "^gpt-4(\\.1)?-mini$"}, {"trace": {"model": "gpt-4.1-mini"}}, True),
    ({"field": "trace.model", "op": "regex", "value": "(?i)CLAUDE"}, {"trace": {"model": "claude-3-5"}}, True),
    ({"field": "trace.model", "op": "regex", "value": "mini"}, {"trace": {"model": 7}}, False),
    ({"field": "evals.faithfulness.score", "op": "exists"}, {"evals": {"faithfulness": {"score": 0.7}}}, True),
    ({"field": "evals.faithfulness.score", "op": "exists", "value": True}, {"evals": {}}, False),
    ({"field": "evals.faithfulness.score", "op": "exists", "value": False}, {"evals": {}}, True),
    ({"field": "evals.faithfulness.score", "op": "exists", "value": False}, {"evals": {"faithfulness": {"score": None}}}, True),
    # Keys holding dots (OTel attribute names) and list indexes.
    ({"field": "trace.attributes.gen_ai.request.model", "op": "eq", "value": "gpt-4o"},
     {"trace": {"attributes": {"gen_ai.request.model": "gpt-4o"}}}, True),
    ({"field": "request.messages.1.role", "op": "eq", "value": "user"},
     {"request": {"messages": [{"role": "system"}, {"role": "user"}]}}, True),
    ({"field": "request.messages.5.role", "op": "exists"}, {"request": {"messages": []}}, False),
    ({"field": "signals.pii.deeper", "op": "exists"}, {"signals": {"pii": True}}, False),
])
def test_operators(when: dict[str, Any], context: dict[str, Any], expected: bool) -> None:
    assert matches(when, context) is expected


def test_groups_nest_and_report_the_fields_that_matched() -> None:
    when = {"all": [
        {"field": "trace.environment", "op": "eq", "value": "prod"},
        {"any": [{"field": "signals.email", "op": "eq", "value": True},
                 {"field": "signals.phone", "op": "eq", "value": True}]},
        {"not": {"field": "trace.user_id", "op": "in", "value": ["qa-bot"]}},
    ]}
    policy = one(when)
    verdict = policy.evaluate({"trace": {"environment": "prod", "user_id": "u1"},
                               "signals": {"email": False, "phone": True}})
    assert verdict.action == "BLOCK"
    assert verdict.matched_fields == ["trace.environment", "signals.phone", "trace.user_id"]
    assert policy.evaluate({"trace": {"environment": "prod", "user_id": "qa-bot"},
                            "signals": {"phone": True}}).action == "ALLOW_ANSWER"
    assert policy.evaluate({"trace": {"environment": "dev"}, "signals": {"phone": True}}).action == "ALLOW_ANSWER"
    assert policy.fields == {"trace.environment", "signals.email", "signals.phone", "trace.user_id"}


def test_rule_info_carries_id_name_metadata_and_is_a_copy() -> None:
    policy = parse_policy({"rules": [rule({"field": "signals.secret", "op": "eq", "value": True},
                                          id="secrets", name="Secrets leak", metadata={"owner": "sec"})]})
    first = policy.evaluate({"signals": {"secret": True}})
    assert first.rule == {"index": 0, "priority": 10, "metadata": {"owner": "sec"}, "id": "secrets",
                          "name": "Secrets leak"}
    assert first.rule is not None
    first.rule["index"] = 99
    assert policy.evaluate({"signals": {"secret": True}}).rule == {**first.rule, "index": 0}
    assert first.as_dict()["matched_fields"] == ["signals.secret"]


@pytest.mark.parametrize(("document", "path", "fragment"), [
    ({"rules": [rule({"any": [{"field": "signals.pii", "op": "eq", "value": True},
                              {"field": "signals.pii", "op": "equals", "value": True}]})]},
     "rules[0].when.any[1].op", "is not one of"),
    ({"rules": [rule({"field": "trace.model", "op": "regex", "value": "(unclosed"})]},
     "rules[0].when.value", "not a valid regular expression"),
    ({"rules": [rule({"field": "trace.environment", "op": "in", "value": "prod"})]},
     "rules[0].when.value", "expected a list"),
    ({"rules": [rule({"field": "trace.cost_usd", "op": "gt", "value": "1"})]},
     "rules[0].when.value", "expected a number"),
    ({"rules": [rule({"field": "trace.cost_usd", "op": "gt"})]}, "rules[0].when.value", "is required"),
    ({"rules": [rule({"field": "trace.cost_usd", "op": "exists", "value": "yes"})]},
     "rules[0].when.value", "expected true or false"),
    ({"rules": [rule({"field": "signal.pii", "op": "eq", "value": True})]},
     "rules[0].when.field", "dotted path under signals"),
    ({"rules": [rule({"field": "signals.pii", "op": "eq", "value": True, "vlaue": 1})]},
     "rules[0].when.vlaue", "unknown key"),
    ({"rules": [rule({"any": []})]}, "rules[0].when.any", "should be non-empty"),
    ({"rules": [rule({"not": [{"field": "signals.pii", "op": "exists"}]})]}, "rules[0].when.not",
     "expected an object"),
    ({"rules": [rule({"any": [{"field": "signals.pii", "op": "exists"}], "all": []})]}, "rules[0].when.all",
     "unknown key"),
    ({"rules": [{**rule({"field": "signals.pii", "op": "exists"}), "then": {"action": "DENY", "reason_code": "X",
                                                                         "severity": "low"}}]},
     "rules[0].then.action", "is not one of"),
    ({"rules": [{**rule({"field": "signals.pii", "op": "exists"}), "then": {"action": "BLOCK", "severity": "low"}}]},
     "rules[0].then.reason_code", "is required"),
    ({"rules": [{"when": {"field": "signals.pii", "op": "exists"},
                 "then": {"action": "BLOCK", "reason_code": "X", "severity": "low"}}]},
     "rules[0].priority", "is required"),
    ({"rules": [rule({"field": "signals.pii", "op": "exists"}, id="a"),
                rule({"field": "signals.pii", "op": "exists"}, id="a")]}, "rules[1].id", "duplicate rule id"),
    ({"rules": [], "default": {"action": "BLOCK", "severity": "fatal"}}, "default.severity", "is not one of"),
    ({"rulez": []}, "rulez", "unknown key"),
    ([], "definition", "expected an object"),
])
def test_invalid_definitions_name_the_path(document: Any, path: str, fragment: str) -> None:
    errors = errors_of(document)
    assert path in [e["path"] for e in errors], errors
    assert fragment in next(e["message"] for e in errors if e["path"] == path)


def test_every_error_is_reported_and_the_message_names_the_first() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"rules": [rule({"field": "signals.pii", "op": "bogus"}),
                                rule({"field": "trace.x", "op": "gt", "value": None})]})
    assert [e["path"] for e in caught.value.errors] == ["rules[0].when.op", "rules[1].when.value"]
    assert str(caught.value).startswith("rules[0].when.op: ") and "(and 1 more)" in str(caught.value)


def test_a_definition_nested_too_deep_is_refused_without_recursing() -> None:
    when: dict[str, Any] = {"field": "signals.pii", "op": "exists"}
    for _ in range(5000):
        when = {"not": when}
    errors = errors_of({"rules": [rule(when)]})
    assert errors[0]["message"].startswith("nested deeper than")



def test_a_regex_that_backtracks_without_end_stops_and_does_not_match() -> None:
    import time

    from prometheus_client import REGISTRY

    from tracehub.decision.policy import REGEX_TIMEOUT_S

    def timeouts() -> float:
        return REGISTRY.get_sample_value("tracehub_policy_regex_timeouts_total") or 0.0

    definition = parse_policy({"rules": [
        rule({"field": "response.text", "op": "regex", "value": "(x+x+)+y"}, reason="BACKTRACKS"),
        rule({"field": "response.text", "op": "contains", "value": "xxx"}, reason="SEEN", priority=20)]})
    before = timeouts()
    started = time.perf_counter()
    verdict = definition.evaluate({"response": {"text": "x" * 5000}})
    # Python's re takes ~0.3 s for 22 characters here, doubling with each one more.
    assert time.perf_counter() - started < 20 * REGEX_TIMEOUT_S
    assert verdict.reason_code == "SEEN"  # the next rule decides
    assert timeouts() == before + 1
    assert definition.evaluate({"response": {"text": "xxy"}}).reason_code == "BACKTRACKS"
