"""The decision engine's tables: policies and their immutable versions, decisions, judge runs and
their cache, cases, webhook endpoints, notifications (the outbox) and their delivery attempts;
`projects.auto_decide` turns automatic decisions on completed traces on or off per project.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

Json = sa.JSON()
RowId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _id() -> sa.Column[int]:
    return sa.Column("id", RowId, primary_key=True, autoincrement=True)


def upgrade() -> None:
    op.add_column("projects", sa.Column("auto_decide", sa.Boolean, nullable=False, server_default=sa.true()))
    op.create_table(
        "policies", _id(),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("active_version", sa.Integer),
        sa.Column("shadow_version", sa.Integer),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("project_id", "name", name="uq_policies_name"),
    )
    op.create_table(
        "policy_versions", _id(),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("policy_id", sa.BigInteger, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("definition", Json, nullable=False),
        sa.Column("definition_hash", sa.String(64), nullable=False),
        sa.Column("source_format", sa.String(8), nullable=False),
        sa.Column("source_text", sa.Text),
        sa.Column("description", sa.Text),
        sa.Column("effective_from_ns", sa.BigInteger),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("policy_id", "version", name="uq_policy_versions"),
    )
    op.create_table(
        "trace_decisions", _id(),
        sa.Column("decision_id", sa.String(32), nullable=False, unique=True),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("policy_id", sa.BigInteger),
        sa.Column("policy_version_id", sa.BigInteger),
        sa.Column("policy_name", sa.String(200)),
        sa.Column("policy_version", sa.Integer),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("reason_code", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("rule", Json),
        sa.Column("signals", Json, nullable=False),
        sa.Column("input_hash", sa.String(64), nullable=False),
        sa.Column("judge", sa.String(32), nullable=False),
        sa.Column("judge_model", sa.Text),
        sa.Column("cached", sa.Boolean, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("source", sa.String(8), nullable=False),
        sa.Column("judge_span_id", sa.String(16)),
        sa.Column("auto_key", sa.String(80)),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("project_id", "auto_key", name="uq_trace_decisions_auto"),
    )
    op.create_index("ix_trace_decisions_trace", "trace_decisions", ["project_id", "trace_id", "created_ns"])
    op.create_table(
        "judge_runs", _id(),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("decision_id", sa.String(32)),
        sa.Column("judge", sa.String(32), nullable=False),
        sa.Column("judge_model", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input_hash", sa.String(64), nullable=False),
        sa.Column("output", Json),
        sa.Column("error", sa.Text),
        sa.Column("cached", sa.Boolean, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("cost_usd", sa.Float),
        sa.Column("span_id", sa.String(16)),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_judge_runs_trace", "judge_runs", ["project_id", "trace_id"])
    op.create_table(
        "judge_cache",
        sa.Column("project_id", sa.Integer, primary_key=True),
        sa.Column("cache_key", sa.String(64), primary_key=True),
        sa.Column("output", Json, nullable=False),
        sa.Column("hit_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "cases", _id(),
        sa.Column("case_id", sa.String(32), nullable=False, unique=True),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("decision_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(200), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("updated_ns", sa.BigInteger, nullable=False),
        sa.Column("acked_ns", sa.BigInteger),
        sa.Column("resolved_ns", sa.BigInteger),
    )
    op.create_index("ix_cases_status", "cases", ["project_id", "status", "created_ns"])
    op.create_table(
        "webhook_endpoints", _id(),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("disabled_reason", sa.Text),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "notifications", _id(),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("endpoint_id", sa.BigInteger, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_ns", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_ns", sa.BigInteger, nullable=False),
        sa.Column("delivered_ns", sa.BigInteger),
    )
    op.create_index("ix_notifications_due", "notifications", ["status", "next_attempt_ns"])
    op.create_index("ix_notifications_case", "notifications", ["project_id", "case_id"])
    op.create_table(
        "notification_attempts", _id(),
        sa.Column("project_id", sa.Integer, nullable=False),
        sa.Column("notification_id", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_ns", sa.BigInteger, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("latency_ms", sa.Float, nullable=False),
    )
    op.create_index("ix_notification_attempts", "notification_attempts", ["notification_id", "attempt"])


def downgrade() -> None:
    for table in ("notification_attempts", "notifications", "webhook_endpoints", "cases", "judge_cache",
                  "judge_runs", "trace_decisions", "policy_versions", "policies"):
        op.drop_table(table)
    # Not a batch (copy and move) on SQLite: api_keys' foreign key refuses dropping projects.
    op.execute("ALTER TABLE projects DROP COLUMN auto_decide")
