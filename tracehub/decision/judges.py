"""Judges: what turns a policy's verdict on one trace into the decision that is recorded.

The engine (`tracehub.decision.engine`) evaluates the active policy, then asks a judge. The
heuristic judge, the default, takes the policy's verdict as it is, in process. The LLM judge
(`tracehub.decision.llm_judge`) asks a model and implements the same protocol. A judge never
raises for a failure of its own: it answers a fallback verdict with `status` saying what went
wrong (`judge_runs.status`), so a decision is always made and ingest never fails because of one.
A judge does no I/O against the database; the engine caches and records its outcome.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tracehub.decision.policy import Verdict

# judge_runs.status values. "cached" is set by the engine, never by a judge.
STATUS_OK = "ok"
STATUS_CACHED = "cached"
JUDGE_ERRORS = ("invalid_output", "timeout", "http_error", "error")


@dataclass(frozen=True)
class JudgeInput:
    """One trace to judge: the policy context (signals, request, response, trace, evals), the
    policy's verdict on it, and the hash of the inputs the decision depends on."""

    project_id: int
    trace_id: str
    context: dict[str, Any]
    verdict: Verdict
    input_hash: str
    policy_name: str | None
    policy_version: int | None


@dataclass
class JudgeOutcome:
    """A judge's decision and the record of its run. `output` is what the judge answered (the
    validated document of an LLM judge), None when it answered nothing usable."""

    action: str
    reason_code: str
    severity: str
    judge: str
    rationale: str | None = None
    confidence: float | None = None
    judge_model: str | None = None
    status: str = STATUS_OK
    error: str | None = None
    output: dict[str, Any] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float = 0.0
    started_ns: int = field(default_factory=time.time_ns)
    ended_ns: int = 0
    # A model's call, for its `llm` span under the judge span: what was sent and answered.
    request_messages: list[dict[str, Any]] | None = None
    response_text: str | None = None


class Judge(Protocol):
    """`name` goes into judge_runs.judge, `model` into judge_model and the cache key (known
    before the judge is asked: a cached outcome is reused only for the same model)."""

    name: str
    model: str | None

    async def judge(self, item: JudgeInput) -> JudgeOutcome: ...

    async def aclose(self) -> None:
        """Release what the judge holds (an HTTP client), on the loop it judged on."""


class HeuristicJudge:
    """The policy's verdict as the decision: deterministic, in process, microseconds."""

    name = "heuristic"
    model: str | None = None

    async def judge(self, item: JudgeInput) -> JudgeOutcome:
        return self.outcome(item)

    async def aclose(self) -> None:
        pass

    def outcome(self, item: JudgeInput) -> JudgeOutcome:
        v = item.verdict
        now = time.time_ns()
        return JudgeOutcome(
            action=v.action, reason_code=v.reason_code, severity=v.severity, judge=self.name,
            output={"action": v.action, "reason_code": v.reason_code, "severity": v.severity},
            started_ns=now, ended_ns=now)
