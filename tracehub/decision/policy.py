"""The policy DSL: validate a definition against the shipped JSON Schema, compile it, evaluate it.

A definition (JSON or YAML, the same document) is `{rules: [...], default?: {...}}`; each rule has
a `priority`, a `when` condition, a `then` outcome and free `metadata`. `parse_policy` validates it
(`policy.schema.json`, plus what a schema cannot say: a regular expression that does not compile,
two rules with one id) and compiles it once: regular expressions compiled, field paths split,
conditions turned into closures, rules sorted. `PolicyDefinition.evaluate` is then a few closure
calls per rule, microseconds for a ten-rule policy, and never does I/O.

Semantics, fixed here and nowhere else:
- A field is a dotted path into the context (`signals.pii`, `trace.total_tokens`,
  `evals.faithfulness.score`); a key holding dots (`trace.attributes.gen_ai.request.model`) is
  found too, and a number indexes a list. A field that is missing, or null, never matches, whatever
  the operator (so `ne` and `not_in` need the field present), except `exists: false`.
- eq / ne / in / not_in compare JSON values: a boolean never equals a number (true is not 1).
- gt / gte / lt / lte match numbers only; contains is a substring of a string or a member of a
  list; regex searches a string (Python's syntax, not anchored; the `regex` module runs it, and a
  search that takes longer than REGEX_TIMEOUT_S does not match: a pattern that backtracks without
  end, on text an LLM wrote, must not hold a decision).
- Rules are tried by ascending priority (10 before 20), ties in document order; the first match
  decides. No match: the definition's `default`, else ALLOW_ANSWER / NO_RULE_MATCHED / low.

This module must never import the store or the API: it is pure, and the backtest replays it over
many traces.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import regex
import yaml
from jsonschema import Draft202012Validator, ValidationError

from tracehub import metrics

ACTIONS = ("ALLOW_ANSWER", "BLOCK", "ESCALATE", "ALLOW_WITH_WARNING", "NEED_CLARIFICATION")
SEVERITIES = ("low", "medium", "high", "critical")
FIELD_ROOTS = ("signals", "request", "response", "trace", "evals")
DEFAULT_OUTCOME = {"action": "ALLOW_ANSWER", "reason_code": "NO_RULE_MATCHED", "severity": "low"}
MAX_DEPTH = 64  # levels of objects and arrays in a definition: conditions are compiled recursively
REGEX_TIMEOUT_S = 0.05

log = logging.getLogger(__name__)

SCHEMA: dict[str, Any] = json.loads(
    resources.files("tracehub.decision").joinpath("policy.schema.json").read_text("utf-8"))
_VALIDATOR = Draft202012Validator(SCHEMA)

_MISSING = object()
Fields = tuple[str, ...]
# A compiled condition: the fields that made it match, or None when it does not match.
Condition = Callable[[Mapping[str, Any]], "Fields | None"]


class PolicyError(ValueError):
    """A definition the DSL refuses; `errors` is [{"path": "rules[0].when.any[1].op", "message"}]."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        first = errors[0] if errors else {"path": "definition", "message": "invalid"}
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first['path']}: {first['message']}{more}")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a policy decides for one context. `rule` is None when the default decided."""

    action: str
    reason_code: str
    severity: str
    rule: dict[str, Any] | None
    matched_fields: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason_code": self.reason_code, "severity": self.severity,
                "rule": self.rule, "matched_fields": list(self.matched_fields)}


@dataclass(frozen=True, slots=True)
class _Rule:
    condition: Condition
    action: str
    reason_code: str
    severity: str
    info: dict[str, Any]  # index, priority, metadata (+ id, name): copied into each verdict


class PolicyDefinition:
    """A validated, compiled definition. `document` is the definition as given (JSON-ready)."""

    __slots__ = ("document", "fields", "_rules", "_default")

    def __init__(self, document: dict[str, Any], rules: list[_Rule], default: dict[str, str],
                 fields: frozenset[str]) -> None:
        self.document = document
        self.fields = fields  # every field a condition reads
        self._rules = rules
        self._default = default

    def __len__(self) -> int:
        return len(self._rules)

    def evaluate(self, context: Mapping[str, Any]) -> Verdict:
        for rule in self._rules:
            matched = rule.condition(context)
            if matched is not None:
                return Verdict(rule.action, rule.reason_code, rule.severity, dict(rule.info),
                               list(dict.fromkeys(matched)))
        d = self._default
        return Verdict(d["action"], d["reason_code"], d["severity"], None, [])


def schema() -> dict[str, Any]:
    """The shipped JSON Schema (2020-12) of a definition."""
    return SCHEMA


class SourceError(ValueError):
    """A policy document that is not valid JSON or YAML, or holds what JSON cannot."""


MAX_SOURCE_NODES = 100_000  # values in a loaded document: YAML aliases must not multiply a small text


def load_source(text: str | bytes, source_format: str) -> Any:
    """A policy document (JSON or YAML text) as JSON values: YAML's times become RFC 3339 text,
    its non-text keys text; NaN, infinities and documents past MAX_SOURCE_NODES values (YAML
    aliases) are refused."""
    try:
        if source_format == "yaml":
            loaded = yaml.load(text, Loader=_YAML_LOADER)
        else:
            loaded = json.loads(text)
    except (ValueError, RecursionError, yaml.YAMLError) as exc:
        raise SourceError(f"not valid {source_format.upper()}: {exc}") from None
    return _json_values(loaded)


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _json_values(root: Any) -> Any:
    """`root` rebuilt with JSON types only, without recursion, counting every value visited."""
    visited = 0
    holder: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(root, holder, 0)]
    while stack:
        value, parent, key = stack.pop()
        visited += 1
        if visited > MAX_SOURCE_NODES:
            raise SourceError(f"the document holds more than {MAX_SOURCE_NODES} values")
        if isinstance(value, dict):
            names = [k if isinstance(k, str) else json.dumps(_scalar(k)) for k in value]
            rebuilt: Any = dict.fromkeys(names)  # the document's key order
            stack.extend((v, rebuilt, name) for name, v in zip(names, value.values()))
        elif isinstance(value, (list, tuple)):
            rebuilt = [None] * len(value)
            stack.extend((v, rebuilt, i) for i, v in enumerate(value))
        else:
            rebuilt = _scalar(value)
        parent[key] = rebuilt
    return holder[0]


def _scalar(value: Any) -> Any:
    if isinstance(value, float) and value - value != 0.0:
        raise SourceError("numbers must be finite (no NaN or infinity)")
    if isinstance(value, datetime.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        return aware.isoformat().replace("+00:00", "Z")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)  # YAML's binary and other tagged scalars: their text


def error_path(parts: Sequence[Any]) -> str:
    """`["rules", 0, "when", "any", 1, "op"]` -> `rules[0].when.any[1].op`."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "definition"


def parse_policy(document: Any) -> PolicyDefinition:
    """Validate and compile a definition; raises `PolicyError` naming every bad path."""
    deep = _too_deep(document)
    if deep is not None:
        raise PolicyError([{"path": error_path(deep),
                            "message": f"nested deeper than {MAX_DEPTH} levels of objects and arrays"}])
    errors = _schema_errors(document)
    if not errors:
        errors = _semantic_errors(document)
    if errors:
        raise PolicyError(errors)
    fields: set[str] = set()
    rules = [(rule["priority"], index, _compile_rule(index, rule, fields))
             for index, rule in enumerate(document["rules"])]
    rules.sort(key=lambda item: (item[0], item[1]))
    return PolicyDefinition(document, [rule for _p, _i, rule in rules],
                            {**DEFAULT_OUTCOME, **document.get("default", {})}, frozenset(fields))


def _too_deep(document: Any) -> list[Any] | None:
    stack: list[tuple[Any, list[Any]]] = [(document, [])]
    while stack:
        node, parts = stack.pop()
        if len(parts) > MAX_DEPTH:
            return parts
        if isinstance(node, dict):
            stack.extend((v, [*parts, k]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, [*parts, i]) for i, v in enumerate(node))
    return None


def _schema_errors(document: Any) -> list[dict[str, str]]:
    found: dict[str, str] = {}
    for error in _VALIDATOR.iter_errors(document):
        for parts, message in explain_error(error):
            found.setdefault(error_path(parts), message)
    return [{"path": path, "message": message} for path, message in sorted(found.items())]


def explain_error(error: ValidationError) -> list[tuple[list[Any], str]]:
    """A jsonschema error as (path, message) pairs pointing at the key at fault: an unknown key
    or a missing one is named in the path, not only in the message."""
    parts = list(error.absolute_path)
    instance = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
        extra = sorted(k for k in instance if k not in allowed)
        hint = f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""
        return [([*parts, k], f"unknown key{hint}") for k in extra]
    if error.validator == "required" and isinstance(instance, dict):
        return [([*parts, k], "is required") for k in error.validator_value if k not in instance]
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, str) else " or ".join(error.validator_value)
        return [(parts, f"expected {_ARTICLE.get(wanted, wanted)}, got {_json_type(instance)}")]
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    if error.validator == "pattern" and title:
        return [(parts, f"expected {title}, got {instance!r}")]
    return [(parts, str(error.message))]


_ARTICLE = {"object": "an object", "array": "a list", "number": "a number", "integer": "an integer",
            "string": "a string", "boolean": "true or false"}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    return "a list" if isinstance(value, list) else "a string"


def _semantic_errors(document: dict[str, Any]) -> list[dict[str, str]]:
    """What the schema cannot say: regular expressions that compile, rule ids unique."""
    errors: list[dict[str, str]] = []
    seen_ids: dict[str, int] = {}
    for index, rule in enumerate(document["rules"]):
        rule_id = rule.get("id")
        if rule_id is not None:
            if rule_id in seen_ids:
                errors.append({"path": f"rules[{index}].id",
                               "message": f"duplicate rule id {rule_id!r} (also rules[{seen_ids[rule_id]}])"})
            seen_ids.setdefault(rule_id, index)
        stack: list[tuple[dict[str, Any], list[Any]]] = [(rule["when"], ["rules", index, "when"])]
        while stack:
            cond, parts = stack.pop()
            for group in ("any", "all"):
                if group in cond:
                    stack.extend((c, [*parts, group, i]) for i, c in enumerate(cond[group]))
            if "not" in cond:
                stack.append((cond["not"], [*parts, "not"]))
            if cond.get("op") == "regex":
                try:
                    regex.compile(cond["value"])
                except regex.error as exc:
                    errors.append({"path": error_path([*parts, "value"]),
                                   "message": f"not a valid regular expression: {exc}"})
    return sorted(errors, key=lambda e: e["path"])


def _compile_rule(index: int, rule: dict[str, Any], fields: set[str]) -> _Rule:
    info: dict[str, Any] = {"index": index, "priority": rule["priority"], "metadata": rule.get("metadata", {})}
    for key in ("id", "name"):
        if key in rule:
            info[key] = rule[key]
    then = rule["then"]
    return _Rule(_compile(rule["when"], fields), then["action"], then["reason_code"], then["severity"], info)


def _compile(cond: dict[str, Any], fields: set[str]) -> Condition:
    if "any" in cond:
        return _any([_compile(c, fields) for c in cond["any"]])
    if "all" in cond:
        return _all([_compile(c, fields) for c in cond["all"]])
    if "not" in cond:
        inner_fields: set[str] = set()
        inner = _compile(cond["not"], inner_fields)
        fields |= inner_fields
        return _not(inner, tuple(sorted(inner_fields)))
    fields.add(cond["field"])
    return _comparison(cond["field"], cond["op"], cond.get("value", True))


def _any(parts: list[Condition]) -> Condition:
    def match(ctx: Mapping[str, Any]) -> Fields | None:
        for part in parts:
            found = part(ctx)
            if found is not None:
                return found
        return None
    return match


def _all(parts: list[Condition]) -> Condition:
    def match(ctx: Mapping[str, Any]) -> Fields | None:
        matched: Fields = ()
        for part in parts:
            found = part(ctx)
            if found is None:
                return None
            matched += found
        return matched
    return match


def _not(inner: Condition, inner_fields: Fields) -> Condition:
    def match(ctx: Mapping[str, Any]) -> Fields | None:
        return inner_fields if inner(ctx) is None else None
    return match


def _lookup(segments: tuple[str, ...]) -> Callable[[Mapping[str, Any]], Any]:
    def get(ctx: Mapping[str, Any]) -> Any:
        node: Any = ctx
        i, n = 0, len(segments)
        while i < n:
            if isinstance(node, dict) or isinstance(node, Mapping):  # dict first: the ABC's check is slow
                found = node.get(segments[i], _MISSING)
                j = i + 1
                while found is _MISSING and j < n:  # a key that holds dots: "gen_ai.request.model"
                    j += 1
                    found = node.get(".".join(segments[i:j]), _MISSING)
                if found is _MISSING:
                    return _MISSING
                node, i = found, j
            elif isinstance(node, list) and segments[i].isdigit() and int(segments[i]) < len(node):
                node, i = node[int(segments[i])], i + 1
            else:
                return _MISSING
        return _MISSING if node is None else node
    return get


def _key(value: Any) -> tuple[str, Any] | None:
    """A hashable key under which JSON-equal scalars are equal and true is not 1; None for
    objects and lists, which are compared with ==."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if value is None:
        return ("z", None)
    return None


def _equals(expected: Any) -> Callable[[Any], bool]:
    key = _key(expected)
    if key is None:
        return lambda actual: _key(actual) is None and bool(actual == expected)
    return lambda actual: _key(actual) == key


def _member_of(values: list[Any]) -> Callable[[Any], bool]:
    keys = {k for k in map(_key, values) if k is not None}
    others = [v for v in values if _key(v) is None]

    def test(actual: Any) -> bool:
        key = _key(actual)
        return key in keys if key is not None else any(actual == v for v in others)
    return test


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _test(op: str, value: Any) -> Callable[[Any], bool]:
    """The test a present field's value must pass."""
    if op == "eq":
        return _equals(value)
    if op == "ne":
        equal = _equals(value)
        return lambda actual: not equal(actual)
    if op in ("gt", "gte", "lt", "lte"):
        limit = value
        compare: Callable[[Any], bool] = {
            "gt": lambda a: a > limit, "gte": lambda a: a >= limit,
            "lt": lambda a: a < limit, "lte": lambda a: a <= limit}[op]
        return lambda actual: _is_number(actual) and compare(actual)
    if op == "in":
        return _member_of(value)
    if op == "not_in":
        member = _member_of(value)
        return lambda actual: not member(actual)
    if op == "contains":
        member_test = _equals(value)

        def contains(actual: Any) -> bool:
            if isinstance(actual, str):
                return isinstance(value, str) and value in actual
            if isinstance(actual, list):
                return any(member_test(item) for item in actual)
            return False
        return contains
    if op == "regex":
        search = regex.compile(value).search

        def matches(actual: Any) -> bool:
            if not isinstance(actual, str):
                return False
            try:
                return search(actual, timeout=REGEX_TIMEOUT_S) is not None
            except TimeoutError:
                metrics.POLICY_REGEX_TIMEOUTS.inc()
                log.warning("the policy regex %r took over %s s on %d characters: no match", value,
                            REGEX_TIMEOUT_S, len(actual))
                return False
        return matches
    raise AssertionError(f"operator {op!r} passed the schema but has no test")


def _comparison(path: str, op: str, value: Any) -> Condition:
    get = _lookup(tuple(path.split(".")))
    matched: Fields = (path,)
    if op == "exists":
        want = bool(value)

        def exists(ctx: Mapping[str, Any]) -> Fields | None:
            return matched if (get(ctx) is not _MISSING) == want else None
        return exists
    test = _test(op, value)

    def compare(ctx: Mapping[str, Any]) -> Fields | None:
        actual = get(ctx)
        return matched if actual is not _MISSING and test(actual) else None
    return compare
