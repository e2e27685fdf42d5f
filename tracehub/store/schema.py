"""The database schema, as SQLAlchemy Core tables: the one description queries are built from.

Alembic migrations (`tracehub/store/migrations/`) create and evolve these tables; this module must
describe the schema as the newest migration leaves it. Times are Unix nanoseconds (BIGINT): they sort,
they cost nothing to convert on the ingest path, and the API renders them as ISO 8601 UTC.
Every table carries project_id, and every query filters by it.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# JSON documents: json on PostgreSQL (checked text: building jsonb was ~18% of the ingest backend's
# time, migration 0009), text on SQLite. The API returns them whole; search reads their text.
Json = sa.JSON()
# A span's documents, which only the writer's encoder writes: text on PostgreSQL too, as json's
# check of every document was 16% of the ingest backend's time (migration 0012).
SpanJson = sa.JSON().with_variant(sa.Text(), "postgresql")

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    # Kept by the writer as it inserts trace rows: the unfiltered trace list's total. Counting
    # instead, the newest 50 of a million spans took 12.5 ms to list; with this, 6.1 ms.
    sa.Column("trace_count", sa.BigInteger, nullable=False, server_default="0"),
    # Automatic decisions on the project's completed traces (the decision engine).
    sa.Column("auto_decide", sa.Boolean, nullable=False, server_default=sa.true()),
    # Days a trace is kept after its last activity (tracehub/store/retention.py); NULL: for ever.
    sa.Column("retention_days", sa.Integer),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("revoked_ns", sa.BigInteger),
)

# Web UI sessions (`tracehub.ui.session`): the cookie's token only as its SHA-256.
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("api_key_id", sa.Integer, nullable=False),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("expires_ns", sa.BigInteger, nullable=False),
    sa.Index("ix_ui_sessions_expires", "expires_ns"),
)

traces = sa.Table(
    "traces",
    metadata,
    sa.Column("project_id", sa.Integer, primary_key=True),
    sa.Column("trace_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("end_ns", sa.BigInteger),
    sa.Column("model", sa.Text),
    sa.Column("environment", sa.Text),
    sa.Column("user_id", sa.Text),
    sa.Column("session_id", sa.Text),
    sa.Column("input_text", sa.Text),
    sa.Column("output_text", sa.Text),
    sa.Column("attributes", Json),
    sa.Column("root_span_id", sa.String(32)),
    sa.Column("span_count", sa.Integer, nullable=False),
    # Spans stored without an end, and parents that children name but that have not arrived yet.
    sa.Column("running_span_count", sa.Integer, nullable=False),
    sa.Column("missing_parent_count", sa.Integer, nullable=False),
    # Those parents' span ids, space-separated: a span that arrives later is found here, so
    # ingest needs no index on spans.parent_span_id.
    sa.Column("awaited_parents", sa.Text),
    # When the writer last stored or ended one of the trace's spans (its clock): a parent still
    # awaited a grace period later is given up (tracehub/store/completion.py).
    sa.Column("last_span_ns", sa.BigInteger),
    sa.Column("error_count", sa.Integer, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("decision", sa.String(32)),
    sa.Column("user_review_passed", sa.Boolean),
    # Start of the span the input_text came from and end of the one output_text came from, so a
    # later batch can tell whether its span's text is earlier / later (the root always wins).
    sa.Column("input_rank_ns", sa.BigInteger),
    sa.Column("output_rank_ns", sa.BigInteger),
    sa.Column("updated_ns", sa.BigInteger, nullable=False),
    # Set by the JSON ingest API when the client states the trace's status; wins over derivation.
    sa.Column("status_explicit", sa.String(16)),
    sa.Column("graph_name", sa.Text),
    # Numbers traces in the order they were first stored (PostgreSQL: sequence trace_seq; SQLite:
    # the largest so far + 1, under the write lock): spans are keyed by it (migration 0011).
    sa.Column("seq", sa.BigInteger),
    # The name or text is the client's own (stated, or amended), not a span's: only such traces'
    # text is searched besides their spans' (migration 0018).
    sa.Column("own_text", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("ix_traces_project_start", "project_id", "start_ns", "trace_id"),
    sa.Index("uq_traces_seq", "seq", unique=True),
    sa.Index("ix_traces_project_session", "project_id", "session_id"),
    sa.Index("ix_traces_project_user", "project_id", "user_id"),
    sa.Index("ix_traces_project_environment", "project_id", "environment", "start_ns", "trace_id"),
    sa.Index("ix_traces_project_status", "project_id", "status", "start_ns", "trace_id"),
    sa.Index("ix_traces_own_text", "project_id", sqlite_where=sa.text("own_text"),
             postgresql_where=sa.text("own_text")),
)

spans = sa.Table(
    "spans",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("trace_seq", sa.BigInteger),  # traces.seq of the span's trace
    sa.Column("span_id", sa.String(32), nullable=False),
    sa.Column("parent_span_id", sa.String(32)),
    sa.Column("parent_remote", sa.Boolean),  # true: the parent is in another process; else NULL
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("span_type", sa.String(16), nullable=False),
    # A tool span's tool, which the name need not say (the Vercel AI SDK's are all `ai.toolCall`).
    sa.Column("tool_name", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_message", sa.Text),
    # OTel's status code (0 UNSET, 1 OK, 2 ERROR), which `status` folds; NULL: the JSON ingest API's.
    sa.Column("status_code", sa.SmallInteger),
    sa.Column("start_ns", sa.BigInteger, nullable=False),
    sa.Column("end_ns", sa.BigInteger),
    sa.Column("first_token_ms", sa.Float),  # a streaming model call's time to its first chunk
    sa.Column("model", sa.Text),
    sa.Column("input_text", sa.Text),
    sa.Column("output_text", sa.Text),
    sa.Column("input_tokens", sa.BigInteger),
    sa.Column("output_tokens", sa.BigInteger),
    sa.Column("total_tokens", sa.BigInteger),
    sa.Column("cost_usd", sa.Float),
    sa.Column("user_id", sa.Text),
    sa.Column("session_id", sa.Text),
    sa.Column("environment", sa.Text),
    sa.Column("graph_name", sa.Text),
    sa.Column("node_name", sa.Text),
    sa.Column("step", sa.Integer),
    sa.Column("attributes", SpanJson, nullable=False),
    sa.Column("resource_id", sa.BigInteger),  # resources; None when the span's resource is empty
    sa.Column("scope", SpanJson, nullable=False),
    sa.Column("events", SpanJson, nullable=False),
    sa.Column("links", SpanJson, nullable=False),
    # The input, output and JSON columns compressed together (tracehub/store/spanbody.py, migration
    # 0020): those columns are NULL or ''.
    sa.Column("body", sa.LargeBinary),
    # A span's key, with its trace's number in place of its trace id: new spans belong to new
    # traces, so their keys go at the end of the index instead of at random pages of it.
    sa.Index("uq_spans_key", "trace_seq", "span_id", unique=True),
    # Whether a span still names a resource, once retention pruned some (migration 0019).
    sa.Index("ix_spans_resource", "project_id", "resource_id", sqlite_where=sa.text("resource_id IS NOT NULL"),
             postgresql_where=sa.text("resource_id IS NOT NULL")),
)

# A resource (service, host, SDK) is the same for every span a process sends: stored once, named by
# a hash of its JSON. A copy in every span row was ~14% of the row (~600 bytes) and of the work to
# write it (migration 0010).
resources = sa.Table(
    "resources",
    metadata,
    sa.Column("project_id", sa.Integer, primary_key=True),
    sa.Column("resource_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("attributes", Json, nullable=False),
)

span_events = sa.Table(
    "span_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("trace_id", sa.String(32)),
    sa.Column("span_id", sa.String(32)),
    sa.Column("event_type", sa.String(24), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("time_ns", sa.BigInteger, nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("idempotency_key", sa.Text),
    sa.Index("ix_span_events_span", "project_id", "trace_id", "span_id"),
)

evaluation_results = sa.Table(
    "evaluation_results",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("span_id", sa.String(32)),
    sa.Column("eval_name", sa.Text, nullable=False),
    sa.Column("eval_model", sa.Text),
    sa.Column("score", sa.Float),
    sa.Column("passed", sa.Boolean),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("user_review_passed", sa.Boolean),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Index("ix_evals_trace", "project_id", "trace_id"),
    sa.Index("ix_evals_name", "project_id", "eval_name", "created_ns"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("project_id", sa.Integer, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("response", Json, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
)

# The text the PostgreSQL trigram index covers (migration 0001); search queries use this same
# expression so the planner can use the index.
SEARCH_DOCUMENT_PG = (
    "lower(coalesce(name, '') || ' ' || coalesce(input_text, '') || ' ' || coalesce(output_text, '')"
    " || ' ' || coalesce(attributes::text, ''))"
)
SEARCH_TRACES_PG = (
    "lower(coalesce(name, '') || ' ' || coalesce(input_text, '') || ' ' || coalesce(output_text, ''))"
)
SEARCH_EVENTS_PG = "lower(name || ' ' || payload::text)"

# How far each indexed table is covered by the search index (tracehub.store.search). The indexes
# themselves are dialect-specific: FTS5 tables on SQLite, span_search / span_event_search with
# pg_trgm GIN indexes on PostgreSQL (migration 0003); a spans document is a trace's spans of one
# indexing step, which SQLite lists in spans_fts_docs (migration 0020).
search_state = sa.Table(
    "search_state",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("indexed_upto", sa.BigInteger, nullable=False),
)


# The decision engine (migration 0014). Row ids are BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite.
RowId = sa.BigInteger().with_variant(sa.Integer, "sqlite")

# A policy is a name; its definitions are immutable versions. `active_version` decides and acts,
# `shadow_version` decides alongside and is only recorded.
policies = sa.Table(
    "policies",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("active_version", sa.Integer),
    sa.Column("shadow_version", sa.Integer),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("updated_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project_id", "name", name="uq_policies_name"),
)

policy_versions = sa.Table(
    "policy_versions",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("policy_id", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("definition", Json, nullable=False),
    sa.Column("definition_hash", sa.String(64), nullable=False),  # SHA-256 of its canonical JSON
    sa.Column("source_format", sa.String(8), nullable=False),  # json | yaml, as submitted
    sa.Column("source_text", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("effective_from_ns", sa.BigInteger),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("policy_id", "version", name="uq_policy_versions"),
)

# Every activation, in order (migration 0015). In force at time t: the newest activation whose
# effective time is at or before t, so a version effective later leaves the current one in force.
policy_activations = sa.Table(
    "policy_activations",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("policy_id", sa.BigInteger, nullable=False),
    sa.Column("policy_version_id", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("effective_ns", sa.BigInteger, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Index("ix_policy_activations", "project_id", "effective_ns"),
)

# The decision log: every decision with what explains it. `auto_key` ("<trace_id>:<policy version
# id>") is set on automatic decisions only; unique, it makes them once per trace and version.
trace_decisions = sa.Table(
    "trace_decisions",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
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
    sa.Column("rule", Json),  # the matched rule (index, priority, metadata); NULL: the default
    sa.Column("signals", Json, nullable=False),  # masked: never the raw PII or secret
    sa.Column("input_hash", sa.String(64), nullable=False),
    sa.Column("judge", sa.String(32), nullable=False),
    sa.Column("judge_model", sa.Text),
    sa.Column("cached", sa.Boolean, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("shadow", sa.Boolean, nullable=False),
    sa.Column("source", sa.String(8), nullable=False),  # api | auto
    sa.Column("judge_span_id", sa.String(16)),
    sa.Column("auto_key", sa.String(80)),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project_id", "auto_key", name="uq_trace_decisions_auto"),
    sa.Index("ix_trace_decisions_trace", "project_id", "trace_id", "created_ns"),
)

judge_runs = sa.Table(
    "judge_runs",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("decision_id", sa.String(32)),
    sa.Column("judge", sa.String(32), nullable=False),
    sa.Column("judge_model", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),  # ok cached invalid_output timeout http_error error
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
    sa.Index("ix_judge_runs_trace", "project_id", "trace_id"),
)

# A judge's output by sha256(input_hash:policy_version_id:judge_model).
judge_cache = sa.Table(
    "judge_cache",
    metadata,
    sa.Column("project_id", sa.Integer, primary_key=True),
    sa.Column("cache_key", sa.String(64), primary_key=True),
    sa.Column("output", Json, nullable=False),
    sa.Column("hit_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
)

cases = sa.Table(
    "cases",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.String(32), nullable=False, unique=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("decision_id", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open -> acknowledged -> resolved
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("reason_code", sa.String(200), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("updated_ns", sa.BigInteger, nullable=False),
    sa.Column("acked_ns", sa.BigInteger),
    sa.Column("resolved_ns", sa.BigInteger),
    sa.Index("ix_cases_status", "project_id", "status", "created_ns"),
    sa.Index("ix_cases_trace", "project_id", "trace_id"),  # retention (migration 0019)
)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),  # whsec_<base64>, Standard Webhooks
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
)

# The outbox: written in the decision's transaction, delivered by a worker.
notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("case_id", sa.String(32), nullable=False),
    sa.Column("endpoint_id", sa.BigInteger, nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("message_id", sa.String(64), nullable=False),  # webhook-id
    sa.Column("payload", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending delivered failed disabled
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_ns", sa.BigInteger, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("delivered_ns", sa.BigInteger),
    sa.Index("ix_notifications_due", "status", "next_attempt_ns"),
    sa.Index("ix_notifications_case", "project_id", "case_id"),
)

notification_attempts = sa.Table(
    "notification_attempts",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.Integer, nullable=False),
    sa.Column("notification_id", sa.BigInteger, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_ns", sa.BigInteger, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Index("ix_notification_attempts", "notification_id", "attempt"),
)


# Statistics roll-ups (migration 0017, tracehub/store/rollups.py): per project and UTC hour of
# trace start, the sums the stats overview reads, kept by triggers on traces and
# evaluation_results, so every write counts whichever connection makes it. `writer_pid` is the
# PostgreSQL backend that wrote a difference (0 on SQLite): concurrent writers never wait on each
# other's row; a read adds an hour's rows up.
trace_hours = sa.Table(
    "trace_hours",
    metadata,
    sa.Column("project_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hour_ns", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("writer_pid", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("trace_count", sa.BigInteger, nullable=False),
    sa.Column("error_count", sa.BigInteger, nullable=False),
    sa.Column("open_traces", sa.BigInteger, nullable=False),  # running spans, awaited parents given up
    sa.Column("langgraph_runs", sa.BigInteger, nullable=False),
    sa.Column("completion_sum", sa.Float, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("eval_count", sa.BigInteger, nullable=False),  # evaluations of the hour's traces
    sa.Column("eval_passed", sa.BigInteger, nullable=False),
    sa.Column("eval_failed", sa.BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# Finished traces (nothing running; awaited parents given up) by duration bucket.
trace_hour_latency = sa.Table(
    "trace_hour_latency",
    metadata,
    sa.Column("project_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hour_ns", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("writer_pid", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("bucket", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

trace_hour_decisions = sa.Table(
    "trace_hour_decisions",
    metadata,
    sa.Column("project_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hour_ns", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("writer_pid", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("action", sa.String(32), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# A duration's bucket: its number of digits and its first two (1-10% wide), increasing with the
# duration; a negative one (clocks) is 0. The same text in the index and in the reads, so that
# both databases match them.
LATENCY_BUCKET_SQL = (
    "(CASE WHEN end_ns - start_ns < 0 THEN 0 ELSE length(CAST(end_ns - start_ns AS TEXT)) * 100"
    " + CAST(substr(CAST(end_ns - start_ns AS TEXT), 1, 2) AS INTEGER) END)")
FINISHED_SQL = "end_ns IS NOT NULL AND running_span_count = 0"  # given-up parents aside
# Traces whose awaited parents a read may not have given up yet, by when their wait began.
AWAITING_SQL = "missing_parent_count > 0 AND running_span_count = 0"
LAST_WRITE_SQL = "(coalesce(last_span_ns, updated_ns))"

# The finished traces' durations by bucket, for a percentile's exact value in its bucket.
sa.Index("ix_traces_latency", traces.c.project_id, sa.text(LATENCY_BUCKET_SQL), traces.c.start_ns,
         traces.c.end_ns, sqlite_where=sa.text(FINISHED_SQL), postgresql_where=sa.text(FINISHED_SQL))
sa.Index("ix_traces_awaiting", traces.c.project_id, sa.text(LAST_WRITE_SQL),
         sqlite_where=sa.text(AWAITING_SQL), postgresql_where=sa.text(AWAITING_SQL))
