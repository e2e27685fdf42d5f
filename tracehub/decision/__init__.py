"""The decision engine: what a trace's answer should be, decided by a policy, recorded and explained.

- `policy`: the policy DSL (`policy.schema.json`, shipped with the package), parsed, validated and
  compiled once; `PolicyDefinition.evaluate(context) -> Verdict`, pure and microseconds fast.
- `signals`: built-in offline detectors (PII, secrets, prompt injection, ...), reported masked.
- `judges` / `llm_judge`: the heuristic judge (the policy's verdict) and an OpenAI-compatible one.
- `engine`: builds a trace's context, applies the active (and shadow) policy and a judge, and
  writes the decision, judge run and judge span through the writer.
- `cases` / `webhooks`: ESCALATE's case and notification outbox, and their signed delivery.

Layering: collector -> store -> decision -> api. This package may import the store and records;
the store never imports it.
"""
