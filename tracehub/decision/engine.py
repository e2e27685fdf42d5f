"""The decision engine: one trace, its project's active policy, a judge, and the decision recorded.

`Engine.decide` reads the trace as the store's read model has it (the row with its AMENDMENTs
folded in, and its evals) with the project's policy stamp in one statement (`decisions.inputs`),
builds the policy context, runs the built-in signal detectors and the active policy (and any
shadow version), asks the judge unless the judge cache holds its answer for the same inputs, and
writes everything through the writer's decision lane in one transaction
(`tracehub.store.decisions.write`): the decision log row, the judge run, the judge span in the
trace's tree, the trace's latest decision and, on ESCALATE, the case and its notifications.

The context policies read:
- `signals.*`: `tracehub.decision.signals` over `request.text` and `response.text`;
- `request.*` / `response.*`: the payloads given, with `text` the payload's own `text` if it is a
  string, else the trace's input / output text;
- `trace.*`: total_tokens, input_tokens, output_tokens, cost_usd, duration_ms, error_count,
  span_count, model, environment, user_id, session_id, status, name (empty for a trace that is not
  stored: a rule on it does not match);
- `evals.<eval_name>.score` / `.passed`: the latest eval of each name.

`input_hash` is the SHA-256 of the canonical JSON of request, response, trace and evals, which is
everything a decision depends on besides the policy version and the judge (the signals derive from
the texts). The cache is keyed by it, the policy version and the judge model.

Only masked signals leave this module: the decision row, the answer and the judge span carry the
detectors' kinds, counts, masked matches and offsets, never the matched text.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import secrets
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from tracehub import metrics
from tracehub.decision import cases, signals
from tracehub.decision.judges import (JUDGE_ERRORS, STATUS_CACHED, STATUS_OK, HeuristicJudge, Judge, JudgeInput,
                                      JudgeOutcome)
from tracehub.decision.policy import PolicyDefinition, Verdict, parse_policy
from tracehub.records import STATUS_ERROR, STATUS_SUCCESS, Idem, Mapped, SpanRecord
from tracehub.store import db, decisions, policies
from tracehub.store.completion import cutoff
from tracehub.store.readmodel import TraceModel
from tracehub.store.writer import Writer

log = logging.getLogger(__name__)

ESCALATE = "ESCALATE"
# Decides when no policy is active: nothing matches, the answer says why.
NO_POLICY = parse_policy({"rules": [], "default": {"action": "ALLOW_ANSWER", "reason_code": "NO_ACTIVE_POLICY",
                                                   "severity": "low"}})
SPAN_ATTRIBUTE_PREFIX = "tracehub.decision."
EVALUATION_EVENT = "gen_ai.evaluation.result"
_SCOPE = {"name": "tracehub.decision"}
DEFINITIONS_KEPT = 256  # parsed policy versions kept (versions are immutable)
PROJECTS_KEPT = 1024  # projects whose policy state is kept


class IdempotencyConflict(Exception):
    """The idempotency key was used before with another body."""


@dataclass
class DecisionResult:
    """`status`: created, replayed (the idempotency key's first decision) or decided_before (an
    automatic decision of this trace and policy version exists; nothing was done). `decision` is
    the `trace_decisions` row (rule and signals as objects); None only when decided_before."""

    status: str
    decision: dict[str, Any] | None
    trace_found: bool = False
    case_id: str | None = None
    shadows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Assessment:
    """What a policy decides on one trace before any judge: the context, the signals found, the
    hash of the inputs and the verdict."""

    context: dict[str, Any]
    findings: signals.Signals
    input_hash: str
    verdict: Verdict


@dataclass
class PolicyVersion:
    """A policy version as decisions record it (all None: no policy is active)."""

    definition: PolicyDefinition
    policy_id: int | None = None
    version_id: int | None = None
    name: str | None = None
    version: int | None = None


@dataclass
class Plan:
    """One policy version's decision up to the judge: its assessment and the cached outcome."""

    policy: PolicyVersion
    assessment: Assessment
    cache_key: str
    cached: dict[str, Any] | None


@dataclass
class _Prepared:
    trace_found: bool
    active: Plan
    shadows: list[Plan]
    endpoints: list[dict[str, Any]]  # enabled webhook endpoints: whom an ESCALATE notifies


# `Engine.decide`'s arguments as `_prepare` takes them (project, trace, request, response, source,
# idempotency key, its request hash, the start); what a decision written answers with.
_Args = tuple[int, str, "dict[str, Any] | None", "dict[str, Any] | None", str, "str | None", "str | None", int]
_Step = tuple[_Prepared, JudgeOutcome, decisions.DecisionWrite, decisions.Written]


def build_context(model: TraceModel | None, request_payload: dict[str, Any] | None,
                  response_payload: dict[str, Any] | None) -> tuple[dict[str, Any], signals.Signals, str]:
    """The policy context (signals included), the signals, and the input hash."""
    inputs = context_inputs(model, request_payload, response_payload)
    context, found = with_signals(inputs)
    return context, found, input_hash(inputs)


def input_hash(inputs: dict[str, Any]) -> str:
    """The hash of `context_inputs`: equal hashes, equal texts, equal signals."""
    return hashlib.sha256(canonical_json(inputs)).hexdigest()


def context_inputs(model: TraceModel | None, request_payload: dict[str, Any] | None,
                   response_payload: dict[str, Any] | None) -> dict[str, Any]:
    """The context but its signals: request, response, trace and evals (what the input hash covers)."""
    row = model.trace if model is not None else None
    request = _with_text(request_payload, row["input_text"] if row else None)
    response = _with_text(response_payload, row["output_text"] if row else None)
    trace = trace_fields(row) if row is not None else {}
    evals: dict[str, Any] = {}
    for e in model.evals if model is not None else ():  # in creation order: the latest wins
        evals[e["eval_name"]] = {"score": e["score"], "passed": e["passed"]}
    return {"request": request, "response": response, "trace": trace, "evals": evals}


def with_signals(inputs: dict[str, Any]) -> tuple[dict[str, Any], signals.Signals]:
    """The whole context: `inputs` with the signals detected in the request's and response's text."""
    found = signals.detect(_text(inputs["request"]), _text(inputs["response"]))
    return {**inputs, "signals": found.context()}, found


def assess(model: TraceModel | None, request_payload: dict[str, Any] | None,
           response_payload: dict[str, Any] | None, definition: PolicyDefinition) -> Assessment:
    """The pure part of a decision (no I/O): context, signals, input hash, the policy's verdict."""
    context, found, input_hash = build_context(model, request_payload, response_payload)
    return Assessment(context, found, input_hash, definition.evaluate(context))


def trace_fields(row: dict[str, Any]) -> dict[str, Any]:
    start, end = row["start_ns"], row["end_ns"]
    return {
        "total_tokens": row["input_tokens"] + row["output_tokens"],
        "input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"],
        "cost_usd": row["cost_usd"],
        "duration_ms": max(0, end - start) / 1e6 if start is not None and end is not None else None,
        "error_count": row["error_count"], "span_count": row["span_count"], "model": row["model"],
        "environment": row["environment"], "user_id": row["user_id"], "session_id": row["session_id"],
        "status": row["status"], "name": row["name"],
    }


def _with_text(payload: dict[str, Any] | None, trace_text: str | None) -> dict[str, Any]:
    out = dict(payload or {})
    if not isinstance(out.get("text"), str) and trace_text is not None:
        out["text"] = trace_text
    return out


def _text(part: dict[str, Any]) -> str | None:
    text = part.get("text")
    return text if isinstance(text, str) else None


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same inputs give the same bytes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request_hash(trace_id: str, request_payload: dict[str, Any] | None, response_payload: dict[str, Any] | None,
                 idempotency_key: str) -> str:
    """What an idempotency key is bound to: the request as decided (the trace id normalized)."""
    body = {"trace_id": trace_id, "request_payload": request_payload, "response_payload": response_payload,
            "idempotency_key": idempotency_key}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def cache_key(input_hash: str, policy_version_id: int | None, judge_model: str | None) -> str:
    return hashlib.sha256(f"{input_hash}:{policy_version_id or ''}:{judge_model or ''}".encode()).hexdigest()


class Engine:
    def __init__(self, reads: sa.Engine, writer: Writer, judge: Judge, missing_parent_grace_s: float) -> None:
        self._reads = reads
        # PostgreSQL: the decision's reads on a pool without pre-ping, retried on a lost connection.
        self._own_reads = db.unpinged(reads) if reads.dialect.name == "postgresql" else None
        self._decision_reads = (self._own_reads.execution_options(isolation_level="AUTOCOMMIT")
                                if self._own_reads is not None else reads)
        self._writer = writer
        self.judge = judge
        # Its verdict needs no I/O: a decision wakes the event loop once (`_on_threads`).
        self._judge_in_process = type(judge) is HeuristicJudge
        self._grace_ns = int(missing_parent_grace_s * 1e9)
        self._definitions: dict[int, PolicyDefinition] = {}
        # Per project: (stamp, policy in force, shadow versions), reused while the stamp is the same.
        self._policy_states: dict[int, tuple[tuple[Any, ...], PolicyVersion, list[PolicyVersion]]] = {}

    def close(self) -> None:
        """Closes the connections of the decision reads' own pool (PostgreSQL)."""
        if self._own_reads is not None:
            self._own_reads.dispose()

    async def aclose(self) -> None:
        """Closes the judge's HTTP client: on the loop the engine decided on, before `close`."""
        await self.judge.aclose()

    async def decide(self, project_id: int, trace_id: str, request_payload: dict[str, Any] | None = None,
                     response_payload: dict[str, Any] | None = None, source: str = "api",
                     idempotency_key: str | None = None) -> DecisionResult:
        """Decide on a trace (stored or not) and record the decision. Raises `IdempotencyConflict`,
        the writer's `Fault`s and `WriterStopped`; a judge's failure is recorded, not raised."""
        t0 = time.perf_counter()
        started_ns = time.time_ns()
        idem_hash = (request_hash(trace_id, request_payload, response_payload, idempotency_key)
                     if idempotency_key else None)
        args = (project_id, trace_id, request_payload, response_payload, source, idempotency_key, idem_hash,
                started_ns)
        if self._judge_in_process:
            step = await self._on_threads(t0, args)
        else:
            prepared = await asyncio.to_thread(self._prepare, *args)
            if isinstance(prepared, DecisionResult):
                return prepared
            outcomes = [await self._judge(project_id, trace_id, plan) for plan in (prepared.active, *prepared.shadows)]
            write = self._write_of(t0, args, prepared, outcomes)
            written = await asyncio.wrap_future(self._writer.submit_decision(lambda tx: decisions.write(tx, write)))
            step = (prepared, outcomes[0], write, written)
        if isinstance(step, DecisionResult):
            return step
        prepared, outcome, write, written = step
        if written.status in ("replayed", "conflict"):  # another request with the key came first
            return await asyncio.to_thread(self._replay, project_id, idempotency_key or "", written)
        if written.status == "decided_before":
            return DecisionResult("decided_before", None, prepared.trace_found)
        row = write.active.decision
        self._count(outcome, prepared.active.cached is not None, row["action"])
        return DecisionResult("created", row, prepared.trace_found, written.case_id,
                              [s.decision for s in write.shadows])

    def _on_threads(self, t0: float, args: _Args) -> asyncio.Future[_Step | DecisionResult]:
        """An in-process judge's decision: read, judge and hand the rows to the writer on an executor
        thread, and wake the event loop once, when the writer committed (not also between)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[_Step | DecisionResult] = loop.create_future()

        def settle(result: Any, exc: BaseException | None) -> None:  # on the event loop
            if done.cancelled():
                return
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(result)

        def work() -> None:
            try:
                prepared = self._prepare(*args)
                if isinstance(prepared, DecisionResult):
                    loop.call_soon_threadsafe(settle, prepared, None)
                    return
                project_id, trace_id = args[0], args[1]
                outcomes = [self._judge_now(project_id, trace_id, plan)
                            for plan in (prepared.active, *prepared.shadows)]
                write = self._write_of(t0, args, prepared, outcomes)
                future = self._writer.submit_decision(lambda tx: decisions.write(tx, write))
            except BaseException as exc:
                loop.call_soon_threadsafe(settle, None, exc)
                return

            def written(f: Future[decisions.Written]) -> None:
                exc = f.exception()
                loop.call_soon_threadsafe(settle, None if exc else (prepared, outcomes[0], write, f.result()), exc)

            future.add_done_callback(written)

        loop.run_in_executor(None, contextvars.copy_context().run, work)
        return done

    def _write_of(self, t0: float, args: _Args, prepared: _Prepared,
                  outcomes: list[JudgeOutcome]) -> decisions.DecisionWrite:
        """The decision's rows for the writer, from the judges' `outcomes` (the active plan's first)."""
        project_id, trace_id, _request, _response, source, idempotency_key, idem_hash, started_ns = args
        active, outcome = prepared.active, outcomes[0]
        judged_ns = time.time_ns()
        latency_ms = round((time.perf_counter() - t0) * 1000, 3)
        decision_id = uuid.uuid4().hex
        spans = judge_spans(trace_id, decision_id, active, outcome, started_ns, judged_ns)
        verdict = decision_rows(project_id, trace_id, decision_id, active, outcome, source, latency_ms, started_ns,
                                spans[0].span_id)
        shadows = [decision_rows(project_id, trace_id, uuid.uuid4().hex, plan, o, source, latency_ms, started_ns,
                                 None, shadow=True) for plan, o in zip(prepared.shadows, outcomes[1:])]
        row = verdict.decision
        escalation = None
        if row["action"] == ESCALATE:
            escalation = cases.escalation_rows(project_id, trace_id, decision_id, row["action"], row["reason_code"],
                                               row["severity"], row["policy_name"], row["policy_version"],
                                               prepared.endpoints, time.time_ns())
        idem = None
        if idempotency_key and idem_hash:
            # The answer to replay is read back from the decision row, so only its id is kept.
            idem = Idem(idempotency_key, idem_hash, {"decision_id": decision_id, "trace_found": prepared.trace_found})
        return decisions.DecisionWrite(project_id, trace_id, verdict, spans, prepared.trace_found, escalation, idem,
                                       shadows)

    # -- before the judge (a thread of its own: database reads) ------------------------------------

    def _prepare(self, project_id: int, trace_id: str, request_payload: dict[str, Any] | None,
                 response_payload: dict[str, Any] | None, source: str, idempotency_key: str | None,
                 idem_hash: str | None, now_ns: int) -> _Prepared | DecisionResult:
        return db.retry_lost(self._decision_reads, lambda conn: self._read(
            conn, project_id, trace_id, request_payload, response_payload, source, idempotency_key, idem_hash, now_ns))

    def _read(self, conn: sa.Connection, project_id: int, trace_id: str, request_payload: dict[str, Any] | None,
              response_payload: dict[str, Any] | None, source: str, idempotency_key: str | None,
              idem_hash: str | None, now_ns: int) -> _Prepared | DecisionResult:
        if idempotency_key:
            seen = decisions.idempotency_record(conn, project_id, idempotency_key)
            if seen is not None:
                if seen[0] != idem_hash:
                    raise IdempotencyConflict(idempotency_key)
                return self._replayed(conn, project_id, seen[1])
        read = decisions.inputs(conn, project_id, trace_id, cutoff(now_ns, self._grace_ns), now_ns)
        active, shadows = self._policies(conn, project_id, now_ns, read.policy_stamp)
        if source == "auto" and decisions.decided(conn, project_id, _auto_key(trace_id, active)):
            return DecisionResult("decided_before", None, True)
        model = TraceModel(read.trace, [], [], read.evals) if read.trace is not None else None
        # `assess` for each version, the inputs and signals shared; the judge cache (and who an
        # ESCALATE notifies) is asked first, and answers while the detectors run.
        inputs = context_inputs(model, request_payload, response_payload)
        digest = input_hash(inputs)
        versions = (active, *shadows)
        keys = [cache_key(digest, policy.version_id, self.judge.model) for policy in versions]
        with decisions.lookups(conn, project_id, keys) as looked_up:
            context, found = with_signals(inputs)
            assessed = [Assessment(context, found, digest, policy.definition.evaluate(context)) for policy in versions]
        plans = [Plan(*plan) for plan in zip(versions, assessed, keys, looked_up.cached)]
        return _Prepared(model is not None, plans[0], plans[1:], looked_up.endpoints)

    def _policies(self, conn: sa.Connection, project_id: int, now_ns: int,
                  stamp: tuple[Any, ...]) -> tuple[PolicyVersion, list[PolicyVersion]]:
        """The policy in force and the shadow versions (but it), read again only when the project's
        policy `stamp` changed: reading them was a third of a decision's time before the judge."""
        kept = self._policy_states.get(project_id)
        if kept is not None and kept[0] == stamp:
            return kept[1], kept[2]
        active = self._policy(policies.active_policy(conn, project_id, now_ns))
        shadows = [p for p in map(self._policy, policies.shadow_versions(conn, project_id))
                   if p.version_id != active.version_id]
        if len(self._policy_states) >= PROJECTS_KEPT:
            self._policy_states.clear()
        self._policy_states[project_id] = (stamp, active, shadows)
        return active, shadows

    def _policy(self, version: dict[str, Any] | None) -> PolicyVersion:
        if version is None:
            return PolicyVersion(NO_POLICY)
        definition = self._definitions.get(version["id"])
        if definition is None:
            if len(self._definitions) >= DEFINITIONS_KEPT:
                self._definitions.clear()
            definition = self._definitions[version["id"]] = parse_policy(_json(version["definition"]))
        return PolicyVersion(definition, version["policy_id"], version["id"], version["policy_name"],
                             version["version"])

    def _replayed(self, conn: sa.Connection, project_id: int, response: Any) -> DecisionResult:
        decision_id = response.get("decision_id") if isinstance(response, dict) else None
        row = decisions.decision_row(conn, project_id, str(decision_id))
        if row is None:  # the key belongs to an ingest item, not to a decision
            raise IdempotencyConflict(str(decision_id))
        return DecisionResult("replayed", row, bool(response.get("trace_found")),
                              decisions.case_of(conn, project_id, row["decision_id"]))

    def _replay(self, project_id: int, key: str, written: decisions.Written) -> DecisionResult:
        if written.status == "conflict":
            raise IdempotencyConflict(key)
        with self._reads.connect() as conn:
            return self._replayed(conn, project_id, written.response)

    # -- the judge ---------------------------------------------------------------------------------

    async def _judge(self, project_id: int, trace_id: str, plan: Plan) -> JudgeOutcome:
        if plan.cached is not None:
            return self._cached(plan.cached)
        try:
            return await self.judge.judge(self._judge_input(project_id, trace_id, plan))
        except Exception as exc:  # a judge must not fail a decision: the policy's verdict stands
            return self._failed(plan, exc)

    def _judge_now(self, project_id: int, trace_id: str, plan: Plan) -> JudgeOutcome:
        """`_judge` for an in-process judge (`HeuristicJudge.outcome`, which its `judge` answers)."""
        assert isinstance(self.judge, HeuristicJudge)
        if plan.cached is not None:
            return self._cached(plan.cached)
        try:
            return self.judge.outcome(self._judge_input(project_id, trace_id, plan))
        except Exception as exc:
            return self._failed(plan, exc)

    def _cached(self, c: dict[str, Any]) -> JudgeOutcome:
        now = time.time_ns()
        return JudgeOutcome(
            action=c["action"], reason_code=c["reason_code"], severity=c["severity"], judge=self.judge.name,
            rationale=c.get("rationale"), confidence=c.get("confidence"), judge_model=self.judge.model,
            status=STATUS_CACHED, output=c, started_ns=now, ended_ns=now)

    @staticmethod
    def _judge_input(project_id: int, trace_id: str, plan: Plan) -> JudgeInput:
        a, policy = plan.assessment, plan.policy
        return JudgeInput(project_id, trace_id, a.context, a.verdict, a.input_hash, policy.name, policy.version)

    def _failed(self, plan: Plan, exc: Exception) -> JudgeOutcome:
        log.exception("the %s judge failed; the policy's verdict decides", self.judge.name, exc_info=exc)
        v = plan.assessment.verdict
        return JudgeOutcome(action=v.action, reason_code=v.reason_code, severity=v.severity,
                            judge=self.judge.name, judge_model=self.judge.model, status="error",
                            error=f"{type(exc).__name__}: {exc}"[:1000], ended_ns=time.time_ns())

    def _count(self, outcome: JudgeOutcome, cached: bool, action: str) -> None:
        metrics.DECISIONS.labels(action).inc()
        if cached:
            metrics.JUDGE_CACHE_HITS.inc()
        if outcome.status in JUDGE_ERRORS:
            metrics.JUDGE_ERRORS.labels(outcome.status).inc()


def _auto_key(trace_id: str, policy: PolicyVersion) -> str:
    return f"{trace_id}:{policy.version_id or 0}"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def decision_rows(project_id: int, trace_id: str, decision_id: str, plan: Plan, outcome: JudgeOutcome, source: str,
                  latency_ms: float, created_ns: int, span_id: str | None, shadow: bool = False) -> decisions.Verdict:
    """The rows of one policy version's decision."""
    a, policy = plan.assessment, plan.policy
    rule = a.verdict.rule
    cached = plan.cached is not None
    decision = {
        "decision_id": decision_id, "project_id": project_id, "trace_id": trace_id,
        "policy_id": policy.policy_id, "policy_version_id": policy.version_id, "policy_name": policy.name,
        "policy_version": policy.version, "action": outcome.action, "reason_code": outcome.reason_code,
        "severity": outcome.severity,
        "rule": {**rule, "matched_fields": a.verdict.matched_fields} if rule is not None else None,
        "signals": stored_signals(a.context["signals"], a.findings),
        "input_hash": a.input_hash, "judge": outcome.judge, "judge_model": outcome.judge_model,
        "cached": cached, "latency_ms": latency_ms, "shadow": shadow, "source": source,
        "judge_span_id": span_id, "auto_key": _auto_key(trace_id, policy) if source == "auto" else None,
        "created_ns": created_ns,
    }
    run = {
        "project_id": project_id, "trace_id": trace_id, "decision_id": decision_id, "judge": outcome.judge,
        "judge_model": outcome.judge_model, "status": STATUS_CACHED if cached else outcome.status,
        "input_hash": a.input_hash, "output": outcome.output, "error": outcome.error, "cached": cached,
        "latency_ms": round(outcome.latency_ms, 3), "input_tokens": outcome.input_tokens,
        "output_tokens": outcome.output_tokens, "cost_usd": outcome.cost_usd, "span_id": span_id,
        "created_ns": created_ns,
    }
    # Only a judge's own answer is kept for reuse: after a fallback the judge is asked again.
    output = None
    if not cached and outcome.status == STATUS_OK:
        output = {"action": outcome.action, "reason_code": outcome.reason_code, "severity": outcome.severity,
                  "rationale": outcome.rationale, "confidence": outcome.confidence}
    return decisions.Verdict(decision, run, plan.cache_key, output, cached)


def stored_signals(context: dict[str, Any], found: signals.Signals) -> dict[str, Any]:
    """A decision's `signals` as stored: the policies' view, the masked findings and the detectors'
    revision (what `signals_context` needs to give the policies' view back)."""
    return {**context, "findings": found.masked(), "detectors": signals.REVISION}


def signals_context(stored: Any) -> dict[str, Any] | None:
    """The policies' view of a decision's stored signals, or None if another revision of the
    detectors found them (or they are not a stored decision's)."""
    if not isinstance(stored, dict) or stored.get("detectors") != signals.REVISION:
        return None
    return {k: v for k, v in stored.items() if k not in ("findings", "detectors")}


def judge_spans(trace_id: str, decision_id: str, plan: Plan, outcome: JudgeOutcome, started_ns: int,
                ended_ns: int) -> list[SpanRecord]:
    """The judge span (its parent is set as it is written) and, for a model's call, its llm span."""
    policy = plan.policy
    rule = plan.assessment.verdict.rule
    cached = plan.cached is not None
    values = {
        "action": outcome.action, "reason_code": outcome.reason_code, "severity": outcome.severity,
        "policy.name": policy.name, "policy.version": policy.version,
        "rule": json.dumps(rule, sort_keys=True, ensure_ascii=False) if rule is not None else None,
        "cached": cached, "decision_id": decision_id, "judge": outcome.judge, "judge_model": outcome.judge_model,
        "input_hash": plan.assessment.input_hash,
    }
    attributes: dict[str, Any] = {"openinference.span.kind": "GUARDRAIL"}
    attributes.update({SPAN_ATTRIBUTE_PREFIX + k: v for k, v in values.items() if v is not None})
    evaluation = {
        "gen_ai.evaluation.name": policy.name or "tracehub.decision",
        "gen_ai.evaluation.score.value": outcome.confidence if outcome.confidence is not None else 1.0,
        "gen_ai.evaluation.score.label": outcome.action,
        "gen_ai.evaluation.explanation": outcome.rationale or outcome.reason_code,
    }
    judge = SpanRecord(
        trace_id, _span_id(), None, f"judge {policy.name}" if policy.name else "judge", "INTERNAL",
        started_ns, ended_ns, STATUS_SUCCESS, None, Mapped(span_type="judge"), attributes, scope=_SCOPE,
        events=[{"name": EVALUATION_EVENT, "time_unix_nano": ended_ns, "attributes": evaluation}])
    spans = [judge]
    if outcome.request_messages is not None and not cached and outcome.judge_model:
        failed = outcome.status not in (STATUS_OK, STATUS_CACHED)
        in_tokens, out_tokens = outcome.input_tokens, outcome.output_tokens
        total = (in_tokens or 0) + (out_tokens or 0) if in_tokens is not None or out_tokens is not None else None
        spans.append(SpanRecord(
            trace_id, _span_id(), judge.span_id, f"chat {outcome.judge_model}", "CLIENT", outcome.started_ns,
            outcome.ended_ns or ended_ns, STATUS_ERROR if failed else STATUS_SUCCESS,
            outcome.error if failed else None,
            Mapped(span_type="llm", model=outcome.judge_model,
                   input_text=json.dumps(outcome.request_messages, ensure_ascii=False),
                   output_text=outcome.response_text, input_tokens=in_tokens, output_tokens=out_tokens,
                   total_tokens=total),
            {k: v for k, v in {"gen_ai.operation.name": "chat", "gen_ai.request.model": outcome.judge_model,
                               "gen_ai.usage.input_tokens": in_tokens, "gen_ai.usage.output_tokens": out_tokens,
                               "openinference.span.kind": "LLM", SPAN_ATTRIBUTE_PREFIX + "judge_status": outcome.status,
                               }.items() if v is not None},
            scope=_SCOPE, cost_usd=outcome.cost_usd))
    return spans


def _span_id() -> str:
    return secrets.token_hex(8)
