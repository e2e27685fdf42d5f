"""Backtest: a candidate policy version replayed over a project's stored traces against the version
in force, to see how decisions would change before activating it. Nothing is written.

Each trace's context is the one an automatic decision builds (`engine.context_inputs` over the
trace row and its evals, no payloads), built once and read by both versions. The texts are read
only if one of the two versions reads `signals.`, `request.` or `response.`, and the evals only if
one reads `evals.` or `signals.`. Only the policies decide here: a judge (an LLM's) is not asked,
so the answer is what the heuristic judge would record.

Signals are the costly part (the detectors take ~0.3 ms over 4 KB of text, some 3,000 traces a
second). They derive from the texts alone, so a trace decided before on the same inputs (a stored
decision with the same `input_hash`, which covers texts, trace fields and evals, and signals of
the detectors' current revision) has them stored: they are read back instead of detected again.
Only the traces without such a decision run the detectors (bench/README.md).

Traces are read in pages in (start_ns, trace_id) order, a keyset on the project's start index,
with only the columns the context needs, and each page's evals in one query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa

from tracehub.decision.engine import context_inputs, input_hash, signals_context, with_signals
from tracehub.decision.policy import PolicyDefinition
from tracehub.store.completion import Completion
from tracehub.store.readmodel import TraceModel
from tracehub.store.schema import evaluation_results, trace_decisions, traces

DEFAULT_HOURS = 24
MAX_HOURS = 720
PAGE_ROWS = 1000
SAMPLES = 5  # trace ids kept per transition


@dataclass
class Transition:
    count: int = 0
    samples: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What the candidate would decide against the baseline over the traces read."""

    traces: int = 0
    transitions: dict[tuple[str, str], Transition] = field(default_factory=dict)
    candidate: dict[str, int] = field(default_factory=dict)
    baseline: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        return sum(t.count for (a, b), t in self.transitions.items() if a != b)

    def add(self, trace_id: str, before: str, after: str) -> None:
        self.traces += 1
        self.baseline[before] = self.baseline.get(before, 0) + 1
        self.candidate[after] = self.candidate.get(after, 0) + 1
        t = self.transitions.get((before, after))
        if t is None:
            t = self.transitions[(before, after)] = Transition()
        t.count += 1
        if len(t.samples) < SAMPLES:
            t.samples.append(trace_id)

    def view(self) -> dict[str, Any]:
        """Changes first (most traces first), then the actions that stay."""
        order = sorted(self.transitions.items(), key=lambda kv: (kv[0][0] == kv[0][1], -kv[1].count, kv[0]))
        return {
            "traces": self.traces,
            "transitions": [{"from": a, "to": b, "count": t.count, "sample_trace_ids": t.samples}
                            for (a, b), t in order],
            "by_action": {"candidate": dict(sorted(self.candidate.items())),
                          "baseline": dict(sorted(self.baseline.items()))},
            "changed": self.changed,
        }


def _reads(definitions: tuple[PolicyDefinition, ...], root: str) -> bool:
    return any(f == root or f.startswith(root + ".") for d in definitions for f in d.fields)


def run(conn: sa.Connection, project_id: int, candidate: PolicyDefinition, baseline: PolicyDefinition,
        start_ns: int, end_ns: int, c: Completion, page_rows: int = PAGE_ROWS) -> Outcome:
    """Replay both definitions over the project's traces that started in [start_ns, end_ns]."""
    both = (candidate, baseline)
    signals = _reads(both, "signals")
    evals = signals or _reads(both, "evals")  # stored signals are found by a hash that covers evals
    t = traces.c
    texts: list[sa.ColumnElement[Any]] = [t.input_text, t.output_text]
    if not (signals or _reads(both, "request") or _reads(both, "response")):
        texts = [sa.null().label("input_text"), sa.null().label("output_text")]
    columns = [t.trace_id, t.start_ns, t.end_ns, t.name, c.status.label("status"), *texts,
               t.input_tokens, t.output_tokens, t.cost_usd, t.error_count, t.span_count, t.model, t.environment,
               t.user_id, t.session_id]
    page = (sa.select(*columns)
            .where(t.project_id == project_id, t.start_ns >= sa.bindparam("after_ns"), t.start_ns <= end_ns,
                   sa.or_(t.start_ns > sa.bindparam("after_ns"), t.trace_id > sa.bindparam("after_id")))
            .order_by(t.start_ns, t.trace_id).limit(page_rows))
    out = Outcome()
    after: dict[str, Any] = {"after_ns": start_ns, "after_id": ""}
    while True:
        result = conn.execute(page, after)
        keys = list(result.keys())
        rows = [dict(zip(keys, r)) for r in result]
        if not rows:
            return out
        by_trace = _evals(conn, project_id, [r["trace_id"] for r in rows]) if evals else {}
        page_inputs = [context_inputs(TraceModel(row, [], [], by_trace.get(row["trace_id"], [])), None, None)
                       for row in rows]
        if signals:
            hashes = [input_hash(inputs) for inputs in page_inputs]
            stored = _stored_signals(conn, project_id, [r["trace_id"] for r in rows], hashes)
        for i, (row, inputs) in enumerate(zip(rows, page_inputs)):
            context = inputs
            if signals:
                found = stored.get((row["trace_id"], hashes[i]))
                context = {**inputs, "signals": found} if found is not None else with_signals(inputs)[0]
            out.add(row["trace_id"], baseline.evaluate(context).action, candidate.evaluate(context).action)
        if len(rows) < page_rows:
            return out
        after = {"after_ns": rows[-1]["start_ns"], "after_id": rows[-1]["trace_id"]}


def _evals(conn: sa.Connection, project_id: int, trace_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The page's evals by trace, in creation order (the context keeps the latest of each name)."""
    ev = evaluation_results.c
    found: dict[str, list[dict[str, Any]]] = {}
    for trace_id, name, score, passed in conn.execute(
            sa.select(ev.trace_id, ev.eval_name, ev.score, ev.passed)
            .where(ev.project_id == project_id, ev.trace_id.in_(trace_ids)).order_by(ev.created_ns, ev.id)):
        found.setdefault(trace_id, []).append({"eval_name": name, "score": score, "passed": passed})
    return found


def _stored_signals(conn: sa.Connection, project_id: int, trace_ids: list[str],
                    hashes: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """The policies' view of the signals stored with the page's decisions, by (trace, input hash)."""
    d = trace_decisions.c
    found: dict[tuple[str, str], dict[str, Any]] = {}
    # As text, parsed by orjson: the stored findings made the JSON type's parsing a third of the time.
    for trace_id, hashed, stored in conn.execute(
            sa.select(d.trace_id, d.input_hash, sa.cast(d.signals, sa.Text))
            .where(d.project_id == project_id, d.trace_id.in_(trace_ids), d.input_hash.in_(hashes))):
        if (trace_id, hashed) not in found:
            context = signals_context(orjson.loads(stored))
            if context is not None:
                found[trace_id, hashed] = context
    return found
