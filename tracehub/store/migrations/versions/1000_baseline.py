"""The schema of the first release, on SQLite and on PostgreSQL.

The migrations written before the first release (0001-0020) were squashed into this baseline; their
history, with what each table, index and setting was measured to save, is in git. A database still
at one of them is refused at start (../env.py).

The DDL is written out as each database keeps it, and nothing is imported from tracehub: a
migration states the schema of its time, never today's. The SQLite text is, byte for byte, what
the pre-release migrations left in sqlite_master (the columns they added follow, on one line, the
column before them); on PostgreSQL this makes the same `pg_dump --schema-only`.

Revision ID: 1000
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "1000"
down_revision = None
branch_labels = None
depends_on = None


def _table(head: str, *lines: str, suffix: str = "") -> str:
    """CREATE TABLE laid out as SQLAlchemy lays it out: a line for each column or constraint."""
    return head + " (\n\t" + ", \n\t".join(lines) + "\n)" + suffix


# Tables with their indexes; after search_state, the search index: FTS5 tables with trigram tokens
# and no positions, an fts5vocab table over each (short queries), the spans' documents.
SQLITE = (
    _table("CREATE TABLE projects",
           "id INTEGER NOT NULL",
           "name VARCHAR(200) NOT NULL",
           "created_ns BIGINT NOT NULL, trace_count BIGINT DEFAULT '0' NOT NULL, auto_decide BOOLEAN"
           " DEFAULT 1 NOT NULL, retention_days INTEGER",
           "PRIMARY KEY (id)",
           "UNIQUE (name)"),
    _table("CREATE TABLE api_keys",
           "id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "key_hash VARCHAR(64) NOT NULL",
           "key_prefix VARCHAR(16) NOT NULL",
           "created_ns BIGINT NOT NULL",
           "revoked_ns BIGINT",
           "PRIMARY KEY (id)",
           "FOREIGN KEY(project_id) REFERENCES projects (id)",
           "UNIQUE (key_hash)"),
    _table("CREATE TABLE ui_sessions",
           "token_hash VARCHAR(64) NOT NULL",
           "api_key_id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "csrf_token VARCHAR(64) NOT NULL",
           "created_ns BIGINT NOT NULL",
           "expires_ns BIGINT NOT NULL",
           "PRIMARY KEY (token_hash)"),
    "CREATE INDEX ix_ui_sessions_expires ON ui_sessions (expires_ns)",
    _table("CREATE TABLE traces",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "name TEXT",
           "status VARCHAR(16) NOT NULL",
           "start_ns BIGINT NOT NULL",
           "end_ns BIGINT",
           "model TEXT",
           "environment TEXT",
           "user_id TEXT",
           "session_id TEXT",
           "input_text TEXT",
           "output_text TEXT",
           "attributes JSON",
           "root_span_id VARCHAR(32)",
           "span_count INTEGER NOT NULL",
           "running_span_count INTEGER NOT NULL",
           "missing_parent_count INTEGER NOT NULL",
           "error_count INTEGER NOT NULL",
           "input_tokens BIGINT NOT NULL",
           "output_tokens BIGINT NOT NULL",
           "cost_usd FLOAT NOT NULL",
           "decision VARCHAR(32)",
           "user_review_passed BOOLEAN",
           "input_rank_ns BIGINT",
           "output_rank_ns BIGINT",
           "updated_ns BIGINT NOT NULL, status_explicit VARCHAR(16), graph_name TEXT, awaited_parents TEXT,"
           " seq BIGINT, last_span_ns BIGINT, own_text BOOLEAN DEFAULT 0 NOT NULL",
           "PRIMARY KEY (project_id, trace_id)"),
    "CREATE INDEX ix_traces_awaiting ON traces (project_id, (coalesce(last_span_ns, updated_ns)))"
    " WHERE missing_parent_count > 0 AND running_span_count = 0",
    "CREATE INDEX ix_traces_latency ON traces (project_id, (CASE WHEN end_ns - start_ns < 0 THEN 0 ELSE"
    " length(CAST(end_ns - start_ns AS TEXT)) * 100 + CAST(substr(CAST(end_ns - start_ns AS TEXT), 1, 2) AS"
    " INTEGER) END), start_ns, end_ns) WHERE end_ns IS NOT NULL AND running_span_count = 0",
    "CREATE INDEX ix_traces_own_text ON traces (project_id) WHERE own_text",
    "CREATE INDEX ix_traces_project_environment ON traces (project_id, environment, start_ns, trace_id)",
    "CREATE INDEX ix_traces_project_session ON traces (project_id, session_id)",
    "CREATE INDEX ix_traces_project_start ON traces (project_id, start_ns, trace_id)",
    "CREATE INDEX ix_traces_project_status ON traces (project_id, status, start_ns, trace_id)",
    "CREATE INDEX ix_traces_project_user ON traces (project_id, user_id)",
    "CREATE UNIQUE INDEX uq_traces_seq ON traces (seq)",
    _table('CREATE TABLE "spans"',
           "id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "span_id VARCHAR(32) NOT NULL",
           "parent_span_id VARCHAR(32)",
           "name TEXT NOT NULL",
           "kind VARCHAR(16) NOT NULL",
           "span_type VARCHAR(16) NOT NULL",
           "status VARCHAR(16) NOT NULL",
           "status_message TEXT",
           "start_ns BIGINT NOT NULL",
           "end_ns BIGINT",
           "model TEXT",
           "input_text TEXT",
           "output_text TEXT",
           "input_tokens BIGINT",
           "output_tokens BIGINT",
           "total_tokens BIGINT",
           "cost_usd FLOAT",
           "user_id TEXT",
           "session_id TEXT",
           "environment TEXT",
           "graph_name TEXT",
           "node_name TEXT",
           "step INTEGER",
           "attributes JSON NOT NULL",
           "scope JSON NOT NULL",
           "events JSON NOT NULL",
           "links JSON NOT NULL",
           "resource_id BIGINT",
           "trace_seq BIGINT, parent_remote BOOLEAN, body BLOB",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_spans_resource ON spans (project_id, resource_id) WHERE resource_id IS NOT NULL",
    "CREATE UNIQUE INDEX uq_spans_key ON spans (trace_seq, span_id)",
    _table("CREATE TABLE resources",
           "project_id INTEGER NOT NULL",
           "resource_id BIGINT NOT NULL",
           "attributes JSON NOT NULL",
           "PRIMARY KEY (project_id, resource_id)"),
    _table("CREATE TABLE span_events",
           "id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32)",
           "span_id VARCHAR(32)",
           "event_type VARCHAR(24) NOT NULL",
           "name TEXT NOT NULL",
           "time_ns BIGINT NOT NULL",
           "payload JSON NOT NULL",
           "idempotency_key TEXT",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_span_events_span ON span_events (project_id, trace_id, span_id)",
    _table("CREATE TABLE evaluation_results",
           "id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "span_id VARCHAR(32)",
           "eval_name TEXT NOT NULL",
           "eval_model TEXT",
           "score FLOAT",
           "passed BOOLEAN",
           "metadata JSON NOT NULL",
           "user_review_passed BOOLEAN",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_evals_name ON evaluation_results (project_id, eval_name, created_ns)",
    "CREATE INDEX ix_evals_trace ON evaluation_results (project_id, trace_id)",
    _table("CREATE TABLE idempotency_keys",
           "project_id INTEGER NOT NULL",
           '"key" TEXT NOT NULL',
           "request_hash VARCHAR(64) NOT NULL",
           "response JSON NOT NULL",
           "created_ns BIGINT NOT NULL",
           'PRIMARY KEY (project_id, "key")'),
    _table("CREATE TABLE search_state",
           "name VARCHAR(32) NOT NULL",
           "indexed_upto BIGINT NOT NULL",
           "PRIMARY KEY (name)"),
    "CREATE VIRTUAL TABLE spans_fts USING fts5(name, input_text, output_text, attributes, content='spans',"
    " content_rowid='id', tokenize='trigram', detail=none)",
    "CREATE VIRTUAL TABLE spans_fts_vocab USING fts5vocab(spans_fts, 'row')",
    "CREATE TABLE spans_fts_docs (id INTEGER PRIMARY KEY, last_id INTEGER NOT NULL)",
    "CREATE VIRTUAL TABLE span_events_fts USING fts5(name, payload, content='span_events', content_rowid='id',"
    " tokenize='trigram', detail=none)",
    "CREATE VIRTUAL TABLE span_events_fts_vocab USING fts5vocab(span_events_fts, 'row')",
    _table("CREATE TABLE policies",
           "id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "name VARCHAR(200) NOT NULL",
           "description TEXT",
           "active_version INTEGER",
           "shadow_version INTEGER",
           "created_ns BIGINT NOT NULL",
           "updated_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)",
           "CONSTRAINT uq_policies_name UNIQUE (project_id, name)"),
    _table("CREATE TABLE policy_versions",
           "id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "policy_id BIGINT NOT NULL",
           "version INTEGER NOT NULL",
           "definition JSON NOT NULL",
           "definition_hash VARCHAR(64) NOT NULL",
           "source_format VARCHAR(8) NOT NULL",
           "source_text TEXT",
           "description TEXT",
           "effective_from_ns BIGINT",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)",
           "CONSTRAINT uq_policy_versions UNIQUE (policy_id, version)"),
    _table("CREATE TABLE policy_activations",
           "id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "policy_id BIGINT NOT NULL",
           "policy_version_id BIGINT NOT NULL",
           "version INTEGER NOT NULL",
           "effective_ns BIGINT NOT NULL",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_policy_activations ON policy_activations (project_id, effective_ns)",
    _table("CREATE TABLE trace_decisions",
           "id INTEGER NOT NULL",
           "decision_id VARCHAR(32) NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "policy_id BIGINT",
           "policy_version_id BIGINT",
           "policy_name VARCHAR(200)",
           "policy_version INTEGER",
           "action VARCHAR(32) NOT NULL",
           "reason_code VARCHAR(200) NOT NULL",
           "severity VARCHAR(16) NOT NULL",
           "rule JSON",
           "signals JSON NOT NULL",
           "input_hash VARCHAR(64) NOT NULL",
           "judge VARCHAR(32) NOT NULL",
           "judge_model TEXT",
           "cached BOOLEAN NOT NULL",
           "latency_ms FLOAT NOT NULL",
           "shadow BOOLEAN NOT NULL",
           "source VARCHAR(8) NOT NULL",
           "judge_span_id VARCHAR(16)",
           "auto_key VARCHAR(80)",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)",
           "CONSTRAINT uq_trace_decisions_auto UNIQUE (project_id, auto_key)",
           "UNIQUE (decision_id)"),
    "CREATE INDEX ix_trace_decisions_trace ON trace_decisions (project_id, trace_id, created_ns)",
    _table("CREATE TABLE judge_runs",
           "id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "decision_id VARCHAR(32)",
           "judge VARCHAR(32) NOT NULL",
           "judge_model TEXT",
           "status VARCHAR(16) NOT NULL",
           "input_hash VARCHAR(64) NOT NULL",
           "output JSON",
           "error TEXT",
           "cached BOOLEAN NOT NULL",
           "latency_ms FLOAT NOT NULL",
           "input_tokens INTEGER",
           "output_tokens INTEGER",
           "cost_usd FLOAT",
           "span_id VARCHAR(16)",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_judge_runs_trace ON judge_runs (project_id, trace_id)",
    _table("CREATE TABLE judge_cache",
           "project_id INTEGER NOT NULL",
           "cache_key VARCHAR(64) NOT NULL",
           "output JSON NOT NULL",
           "hit_count INTEGER DEFAULT '0' NOT NULL",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (project_id, cache_key)"),
    _table("CREATE TABLE cases",
           "id INTEGER NOT NULL",
           "case_id VARCHAR(32) NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "decision_id VARCHAR(32) NOT NULL",
           "status VARCHAR(16) NOT NULL",
           "severity VARCHAR(16) NOT NULL",
           "reason_code VARCHAR(200) NOT NULL",
           "title TEXT NOT NULL",
           "note TEXT",
           "created_ns BIGINT NOT NULL",
           "updated_ns BIGINT NOT NULL",
           "acked_ns BIGINT",
           "resolved_ns BIGINT",
           "PRIMARY KEY (id)",
           "UNIQUE (case_id)"),
    "CREATE INDEX ix_cases_status ON cases (project_id, status, created_ns)",
    "CREATE INDEX ix_cases_trace ON cases (project_id, trace_id)",
    _table("CREATE TABLE webhook_endpoints",
           "id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "url TEXT NOT NULL",
           "secret TEXT NOT NULL",
           "enabled BOOLEAN NOT NULL",
           "disabled_reason TEXT",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)"),
    _table("CREATE TABLE notifications",
           "id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "case_id VARCHAR(32) NOT NULL",
           "endpoint_id BIGINT NOT NULL",
           "event_type VARCHAR(64) NOT NULL",
           "message_id VARCHAR(64) NOT NULL",
           "payload JSON NOT NULL",
           "status VARCHAR(16) NOT NULL",
           "attempts INTEGER DEFAULT '0' NOT NULL",
           "next_attempt_ns BIGINT NOT NULL",
           "last_error TEXT",
           "created_ns BIGINT NOT NULL",
           "delivered_ns BIGINT",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_notifications_case ON notifications (project_id, case_id)",
    "CREATE INDEX ix_notifications_due ON notifications (status, next_attempt_ns)",
    _table("CREATE TABLE notification_attempts",
           "id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "notification_id BIGINT NOT NULL",
           "attempt INTEGER NOT NULL",
           "started_ns BIGINT NOT NULL",
           "status_code INTEGER",
           "error TEXT",
           "latency_ms FLOAT NOT NULL",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_notification_attempts ON notification_attempts (notification_id, attempt)",
    _table("CREATE TABLE trace_hours",
           "project_id INTEGER NOT NULL",
           "hour_ns BIGINT NOT NULL",
           "writer_pid INTEGER NOT NULL",
           "trace_count BIGINT NOT NULL",
           "error_count BIGINT NOT NULL",
           "open_traces BIGINT NOT NULL",
           "langgraph_runs BIGINT NOT NULL",
           "completion_sum FLOAT NOT NULL",
           "input_tokens BIGINT NOT NULL",
           "output_tokens BIGINT NOT NULL",
           "cost_usd FLOAT NOT NULL",
           "eval_count BIGINT NOT NULL",
           "eval_passed BIGINT NOT NULL",
           "eval_failed BIGINT NOT NULL",
           "PRIMARY KEY (project_id, hour_ns, writer_pid)", suffix="\n WITHOUT ROWID\n\n"),
    _table("CREATE TABLE trace_hour_latency",
           "project_id INTEGER NOT NULL",
           "hour_ns BIGINT NOT NULL",
           "writer_pid INTEGER NOT NULL",
           "bucket INTEGER NOT NULL",
           "n BIGINT NOT NULL",
           "PRIMARY KEY (project_id, hour_ns, writer_pid, bucket)", suffix="\n WITHOUT ROWID\n\n"),
    _table("CREATE TABLE trace_hour_decisions",
           "project_id INTEGER NOT NULL",
           "hour_ns BIGINT NOT NULL",
           "writer_pid INTEGER NOT NULL",
           "action VARCHAR(32) NOT NULL",
           "n BIGINT NOT NULL",
           "PRIMARY KEY (project_id, hour_ns, writer_pid, action)", suffix="\n WITHOUT ROWID\n\n"),
)

# The statistics roll-ups (tracehub/store/rollups.py): row triggers that add each write's
# difference to trace_hours, trace_hour_latency and trace_hour_decisions.
SQLITE_TRIGGERS = (
    "CREATE TRIGGER trace_hours_insert AFTER INSERT ON traces FOR EACH ROW BEGIN"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT NEW.project_id, (NEW.start_ns - NEW.start_ns % 3600000000000), 0, 1, (CASE WHEN NEW.status ="
    " 'error' THEN 1 ELSE 0 END), (CASE WHEN (NEW.running_span_count + (CASE WHEN NEW.missing_parent_count > 0"
    " AND NEW.running_span_count = 0 THEN 0 ELSE NEW.missing_parent_count END)) > 0 THEN 1 ELSE 0 END), (CASE"
    " WHEN NEW.graph_name IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN (NEW.span_count + (CASE WHEN"
    " NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0 ELSE NEW.missing_parent_count END)) > 0"
    " THEN CAST(NEW.span_count - NEW.running_span_count AS FLOAT) / (NEW.span_count + (CASE WHEN"
    " NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0 ELSE NEW.missing_parent_count END))"
    " ELSE 0.0 END), NEW.input_tokens, NEW.output_tokens, NEW.cost_usd, ev.n, ev.passed, ev.failed"
    " FROM (SELECT count(*) AS n, coalesce(sum((CASE WHEN e.passed = 1 THEN 1 ELSE 0 END)), 0) AS passed,"
    " coalesce(sum((CASE WHEN e.passed = 0 THEN 1 ELSE 0 END)), 0) AS failed FROM evaluation_results e"
    " WHERE e.project_id = NEW.project_id AND e.trace_id = NEW.trace_id) AS ev WHERE true"
    " ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_count + excluded.trace_count, error_count = error_count +"
    " excluded.error_count, open_traces = open_traces + excluded.open_traces, langgraph_runs = langgraph_runs +"
    " excluded.langgraph_runs, completion_sum = completion_sum + excluded.completion_sum, input_tokens ="
    " input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, cost_usd ="
    " cost_usd + excluded.cost_usd, eval_count = eval_count + excluded.eval_count, eval_passed = eval_passed +"
    " excluded.eval_passed, eval_failed = eval_failed + excluded.eval_failed;"
    " INSERT INTO trace_hour_latency (project_id, hour_ns, writer_pid, bucket, n)"
    " SELECT NEW.project_id, (NEW.start_ns - NEW.start_ns % 3600000000000), 0, (CASE WHEN NEW.end_ns -"
    " NEW.start_ns < 0 THEN 0 ELSE length(CAST(NEW.end_ns - NEW.start_ns AS TEXT)) * 100 +"
    " CAST(substr(CAST(NEW.end_ns - NEW.start_ns AS TEXT), 1, 2) AS INTEGER) END), 1"
    " WHERE NEW.end_ns IS NOT NULL AND NEW.running_span_count = 0"
    " ON CONFLICT (project_id, hour_ns, writer_pid, bucket) DO UPDATE SET n = n + excluded.n;"
    " INSERT INTO trace_hour_decisions (project_id, hour_ns, writer_pid, action, n)"
    " SELECT NEW.project_id, (NEW.start_ns - NEW.start_ns % 3600000000000), 0, NEW.decision, 1"
    " WHERE NEW.decision IS NOT NULL ON CONFLICT (project_id, hour_ns, writer_pid, action)"
    " DO UPDATE SET n = n + excluded.n; END",
    "CREATE TRIGGER trace_hours_update AFTER UPDATE ON traces"
    " FOR EACH ROW WHEN OLD.project_id IS NOT NEW.project_id OR OLD.trace_id IS NOT NEW.trace_id OR OLD.start_ns"
    " IS NOT NEW.start_ns OR OLD.end_ns IS NOT NEW.end_ns OR OLD.status IS NOT NEW.status OR"
    " OLD.running_span_count IS NOT NEW.running_span_count OR OLD.missing_parent_count IS NOT"
    " NEW.missing_parent_count OR OLD.span_count IS NOT NEW.span_count OR OLD.graph_name IS NOT NEW.graph_name"
    " OR OLD.input_tokens IS NOT NEW.input_tokens OR OLD.output_tokens IS NOT NEW.output_tokens OR OLD.cost_usd"
    " IS NOT NEW.cost_usd OR OLD.decision IS NOT NEW.decision BEGIN"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT NEW.project_id, (NEW.start_ns - NEW.start_ns % 3600000000000), 0, 1 - 1, (CASE WHEN NEW.status ="
    " 'error' THEN 1 ELSE 0 END) - (CASE WHEN OLD.status = 'error' THEN 1 ELSE 0 END), (CASE WHEN"
    " (NEW.running_span_count + (CASE WHEN NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0"
    " ELSE NEW.missing_parent_count END)) > 0 THEN 1 ELSE 0 END) - (CASE WHEN (OLD.running_span_count + (CASE"
    " WHEN OLD.missing_parent_count > 0 AND OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count"
    " END)) > 0 THEN 1 ELSE 0 END), (CASE WHEN NEW.graph_name IS NOT NULL THEN 1 ELSE 0 END) - (CASE WHEN"
    " OLD.graph_name IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN (NEW.span_count + (CASE WHEN"
    " NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0 ELSE NEW.missing_parent_count END)) > 0"
    " THEN CAST(NEW.span_count - NEW.running_span_count AS FLOAT) / (NEW.span_count + (CASE WHEN"
    " NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0 ELSE NEW.missing_parent_count END))"
    " ELSE 0.0 END) - (CASE WHEN (OLD.span_count + (CASE WHEN OLD.missing_parent_count > 0 AND"
    " OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count END)) > 0 THEN CAST(OLD.span_count -"
    " OLD.running_span_count AS FLOAT) / (OLD.span_count + (CASE WHEN OLD.missing_parent_count > 0 AND"
    " OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count END)) ELSE 0.0 END), NEW.input_tokens -"
    " OLD.input_tokens, NEW.output_tokens - OLD.output_tokens, NEW.cost_usd - OLD.cost_usd, 0, 0, 0"
    " WHERE NOT (OLD.project_id <> NEW.project_id OR OLD.trace_id <> NEW.trace_id OR (OLD.start_ns -"
    " OLD.start_ns % 3600000000000) <> (NEW.start_ns - NEW.start_ns % 3600000000000)) AND (OLD.status IS NOT"
    " NEW.status OR OLD.running_span_count IS NOT NEW.running_span_count OR OLD.missing_parent_count IS NOT"
    " NEW.missing_parent_count OR OLD.span_count IS NOT NEW.span_count OR OLD.graph_name IS NOT NEW.graph_name"
    " OR OLD.input_tokens IS NOT NEW.input_tokens OR OLD.output_tokens IS NOT NEW.output_tokens OR OLD.cost_usd"
    " IS NOT NEW.cost_usd) ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_count + excluded.trace_count, error_count = error_count +"
    " excluded.error_count, open_traces = open_traces + excluded.open_traces, langgraph_runs = langgraph_runs +"
    " excluded.langgraph_runs, completion_sum = completion_sum + excluded.completion_sum, input_tokens ="
    " input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, cost_usd ="
    " cost_usd + excluded.cost_usd, eval_count = eval_count + excluded.eval_count, eval_passed = eval_passed +"
    " excluded.eval_passed, eval_failed = eval_failed + excluded.eval_failed;"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT OLD.project_id, (OLD.start_ns - OLD.start_ns % 3600000000000), 0, -1, -(CASE WHEN OLD.status ="
    " 'error' THEN 1 ELSE 0 END), -(CASE WHEN (OLD.running_span_count + (CASE WHEN OLD.missing_parent_count > 0"
    " AND OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count END)) > 0 THEN 1 ELSE 0 END), -(CASE"
    " WHEN OLD.graph_name IS NOT NULL THEN 1 ELSE 0 END), -(CASE WHEN (OLD.span_count + (CASE WHEN"
    " OLD.missing_parent_count > 0 AND OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count END)) > 0"
    " THEN CAST(OLD.span_count - OLD.running_span_count AS FLOAT) / (OLD.span_count + (CASE WHEN"
    " OLD.missing_parent_count > 0 AND OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count END))"
    " ELSE 0.0 END), -OLD.input_tokens, -OLD.output_tokens, -OLD.cost_usd, -ev.n, -ev.passed, -ev.failed"
    " FROM (SELECT count(*) AS n, coalesce(sum((CASE WHEN e.passed = 1 THEN 1 ELSE 0 END)), 0) AS passed,"
    " coalesce(sum((CASE WHEN e.passed = 0 THEN 1 ELSE 0 END)), 0) AS failed FROM evaluation_results e"
    " WHERE e.project_id = OLD.project_id AND e.trace_id = OLD.trace_id) AS ev"
    " WHERE (OLD.project_id <> NEW.project_id OR OLD.trace_id <> NEW.trace_id OR (OLD.start_ns - OLD.start_ns %"
    " 3600000000000) <> (NEW.start_ns - NEW.start_ns % 3600000000000))"
    " ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_count + excluded.trace_count, error_count = error_count +"
    " excluded.error_count, open_traces = open_traces + excluded.open_traces, langgraph_runs = langgraph_runs +"
    " excluded.langgraph_runs, completion_sum = completion_sum + excluded.completion_sum, input_tokens ="
    " input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, cost_usd ="
    " cost_usd + excluded.cost_usd, eval_count = eval_count + excluded.eval_count, eval_passed = eval_passed +"
    " excluded.eval_passed, eval_failed = eval_failed + excluded.eval_failed;"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT NEW.project_id, (NEW.start_ns - NEW.start_ns % 3600000000000), 0, 1, (CASE WHEN NEW.status ="
    " 'error' THEN 1 ELSE 0 END), (CASE WHEN (NEW.running_span_count + (CASE WHEN NEW.missing_parent_count > 0"
    " AND NEW.running_span_count = 0 THEN 0 ELSE NEW.missing_parent_count END)) > 0 THEN 1 ELSE 0 END), (CASE"
    " WHEN NEW.graph_name IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN (NEW.span_count + (CASE WHEN"
    " NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0 ELSE NEW.missing_parent_count END)) > 0"
    " THEN CAST(NEW.span_count - NEW.running_span_count AS FLOAT) / (NEW.span_count + (CASE WHEN"
    " NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0 ELSE NEW.missing_parent_count END))"
    " ELSE 0.0 END), NEW.input_tokens, NEW.output_tokens, NEW.cost_usd, ev.n, ev.passed, ev.failed"
    " FROM (SELECT count(*) AS n, coalesce(sum((CASE WHEN e.passed = 1 THEN 1 ELSE 0 END)), 0) AS passed,"
    " coalesce(sum((CASE WHEN e.passed = 0 THEN 1 ELSE 0 END)), 0) AS failed FROM evaluation_results e"
    " WHERE e.project_id = NEW.project_id AND e.trace_id = NEW.trace_id) AS ev"
    " WHERE (OLD.project_id <> NEW.project_id OR OLD.trace_id <> NEW.trace_id OR (OLD.start_ns - OLD.start_ns %"
    " 3600000000000) <> (NEW.start_ns - NEW.start_ns % 3600000000000))"
    " ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_count + excluded.trace_count, error_count = error_count +"
    " excluded.error_count, open_traces = open_traces + excluded.open_traces, langgraph_runs = langgraph_runs +"
    " excluded.langgraph_runs, completion_sum = completion_sum + excluded.completion_sum, input_tokens ="
    " input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, cost_usd ="
    " cost_usd + excluded.cost_usd, eval_count = eval_count + excluded.eval_count, eval_passed = eval_passed +"
    " excluded.eval_passed, eval_failed = eval_failed + excluded.eval_failed;"
    " INSERT INTO trace_hour_latency (project_id, hour_ns, writer_pid, bucket, n)"
    " SELECT v.p, v.h, 0, v.k, sum(v.n)"
    " FROM (SELECT OLD.project_id AS p, (OLD.start_ns - OLD.start_ns % 3600000000000) AS h, (CASE WHEN"
    " OLD.end_ns - OLD.start_ns < 0 THEN 0 ELSE length(CAST(OLD.end_ns - OLD.start_ns AS TEXT)) * 100 +"
    " CAST(substr(CAST(OLD.end_ns - OLD.start_ns AS TEXT), 1, 2) AS INTEGER) END) AS k, -1 AS n"
    " WHERE OLD.end_ns IS NOT NULL AND OLD.running_span_count = 0 UNION ALL"
    " SELECT NEW.project_id AS p, (NEW.start_ns - NEW.start_ns % 3600000000000) AS h, (CASE WHEN NEW.end_ns -"
    " NEW.start_ns < 0 THEN 0 ELSE length(CAST(NEW.end_ns - NEW.start_ns AS TEXT)) * 100 +"
    " CAST(substr(CAST(NEW.end_ns - NEW.start_ns AS TEXT), 1, 2) AS INTEGER) END) AS k, 1 AS n"
    " WHERE NEW.end_ns IS NOT NULL AND NEW.running_span_count = 0) AS v"
    " WHERE (OLD.end_ns IS NOT NULL AND OLD.running_span_count = 0 OR NEW.end_ns IS NOT NULL AND"
    " NEW.running_span_count = 0) AND ((OLD.project_id <> NEW.project_id OR OLD.trace_id <> NEW.trace_id OR"
    " (OLD.start_ns - OLD.start_ns % 3600000000000) <> (NEW.start_ns - NEW.start_ns % 3600000000000)) OR NOT"
    " (OLD.end_ns IS NOT NULL AND OLD.running_span_count = 0) OR NOT (NEW.end_ns IS NOT NULL AND"
    " NEW.running_span_count = 0) OR (CASE WHEN OLD.end_ns - OLD.start_ns < 0 THEN 0 ELSE length(CAST(OLD.end_ns"
    " - OLD.start_ns AS TEXT)) * 100 + CAST(substr(CAST(OLD.end_ns - OLD.start_ns AS TEXT), 1, 2) AS INTEGER)"
    " END) <> (CASE WHEN NEW.end_ns - NEW.start_ns < 0 THEN 0 ELSE length(CAST(NEW.end_ns - NEW.start_ns AS"
    " TEXT)) * 100 + CAST(substr(CAST(NEW.end_ns - NEW.start_ns AS TEXT), 1, 2) AS INTEGER) END))"
    " GROUP BY v.p, v.h, v.k HAVING sum(v.n) <> 0 ON CONFLICT (project_id, hour_ns, writer_pid, bucket)"
    " DO UPDATE SET n = n + excluded.n;"
    " INSERT INTO trace_hour_decisions (project_id, hour_ns, writer_pid, action, n)"
    " SELECT v.p, v.h, 0, v.k, sum(v.n)"
    " FROM (SELECT OLD.project_id AS p, (OLD.start_ns - OLD.start_ns % 3600000000000) AS h, OLD.decision AS k,"
    " -1 AS n WHERE OLD.decision IS NOT NULL UNION ALL"
    " SELECT NEW.project_id AS p, (NEW.start_ns - NEW.start_ns % 3600000000000) AS h, NEW.decision AS k, 1 AS n"
    " WHERE NEW.decision IS NOT NULL) AS v"
    " WHERE (OLD.decision IS NOT NULL OR NEW.decision IS NOT NULL) AND ((OLD.project_id <> NEW.project_id OR"
    " OLD.trace_id <> NEW.trace_id OR (OLD.start_ns - OLD.start_ns % 3600000000000) <> (NEW.start_ns -"
    " NEW.start_ns % 3600000000000)) OR OLD.decision IS NOT NEW.decision) GROUP BY v.p, v.h, v.k"
    " HAVING sum(v.n) <> 0 ON CONFLICT (project_id, hour_ns, writer_pid, action)"
    " DO UPDATE SET n = n + excluded.n; END",
    "CREATE TRIGGER trace_hours_delete AFTER DELETE ON traces FOR EACH ROW BEGIN"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT OLD.project_id, (OLD.start_ns - OLD.start_ns % 3600000000000), 0, -1, -(CASE WHEN OLD.status ="
    " 'error' THEN 1 ELSE 0 END), -(CASE WHEN (OLD.running_span_count + (CASE WHEN OLD.missing_parent_count > 0"
    " AND OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count END)) > 0 THEN 1 ELSE 0 END), -(CASE"
    " WHEN OLD.graph_name IS NOT NULL THEN 1 ELSE 0 END), -(CASE WHEN (OLD.span_count + (CASE WHEN"
    " OLD.missing_parent_count > 0 AND OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count END)) > 0"
    " THEN CAST(OLD.span_count - OLD.running_span_count AS FLOAT) / (OLD.span_count + (CASE WHEN"
    " OLD.missing_parent_count > 0 AND OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count END))"
    " ELSE 0.0 END), -OLD.input_tokens, -OLD.output_tokens, -OLD.cost_usd, -ev.n, -ev.passed, -ev.failed"
    " FROM (SELECT count(*) AS n, coalesce(sum((CASE WHEN e.passed = 1 THEN 1 ELSE 0 END)), 0) AS passed,"
    " coalesce(sum((CASE WHEN e.passed = 0 THEN 1 ELSE 0 END)), 0) AS failed FROM evaluation_results e"
    " WHERE e.project_id = OLD.project_id AND e.trace_id = OLD.trace_id) AS ev WHERE true"
    " ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_count + excluded.trace_count, error_count = error_count +"
    " excluded.error_count, open_traces = open_traces + excluded.open_traces, langgraph_runs = langgraph_runs +"
    " excluded.langgraph_runs, completion_sum = completion_sum + excluded.completion_sum, input_tokens ="
    " input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, cost_usd ="
    " cost_usd + excluded.cost_usd, eval_count = eval_count + excluded.eval_count, eval_passed = eval_passed +"
    " excluded.eval_passed, eval_failed = eval_failed + excluded.eval_failed;"
    " INSERT INTO trace_hour_latency (project_id, hour_ns, writer_pid, bucket, n)"
    " SELECT OLD.project_id, (OLD.start_ns - OLD.start_ns % 3600000000000), 0, (CASE WHEN OLD.end_ns -"
    " OLD.start_ns < 0 THEN 0 ELSE length(CAST(OLD.end_ns - OLD.start_ns AS TEXT)) * 100 +"
    " CAST(substr(CAST(OLD.end_ns - OLD.start_ns AS TEXT), 1, 2) AS INTEGER) END), -1"
    " WHERE OLD.end_ns IS NOT NULL AND OLD.running_span_count = 0"
    " ON CONFLICT (project_id, hour_ns, writer_pid, bucket) DO UPDATE SET n = n + excluded.n;"
    " INSERT INTO trace_hour_decisions (project_id, hour_ns, writer_pid, action, n)"
    " SELECT OLD.project_id, (OLD.start_ns - OLD.start_ns % 3600000000000), 0, OLD.decision, -1"
    " WHERE OLD.decision IS NOT NULL ON CONFLICT (project_id, hour_ns, writer_pid, action)"
    " DO UPDATE SET n = n + excluded.n; END",
    "CREATE TRIGGER trace_hours_eval_insert AFTER INSERT ON evaluation_results FOR EACH ROW BEGIN"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT t.project_id, (t.start_ns - t.start_ns % 3600000000000), 0, 0, 0, 0, 0, 0.0, 0, 0, 0.0, 1, (CASE"
    " WHEN NEW.passed = 1 THEN 1 ELSE 0 END), (CASE WHEN NEW.passed = 0 THEN 1 ELSE 0 END) FROM traces t"
    " WHERE t.project_id = NEW.project_id AND t.trace_id = NEW.trace_id"
    " ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_count + excluded.trace_count, error_count = error_count +"
    " excluded.error_count, open_traces = open_traces + excluded.open_traces, langgraph_runs = langgraph_runs +"
    " excluded.langgraph_runs, completion_sum = completion_sum + excluded.completion_sum, input_tokens ="
    " input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, cost_usd ="
    " cost_usd + excluded.cost_usd, eval_count = eval_count + excluded.eval_count, eval_passed = eval_passed +"
    " excluded.eval_passed, eval_failed = eval_failed + excluded.eval_failed; END",
    "CREATE TRIGGER trace_hours_eval_update AFTER UPDATE ON evaluation_results FOR EACH ROW BEGIN"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT t.project_id, (t.start_ns - t.start_ns % 3600000000000), 0, 0, 0, 0, 0, 0.0, 0, 0, 0.0, -1, -(CASE"
    " WHEN OLD.passed = 1 THEN 1 ELSE 0 END), -(CASE WHEN OLD.passed = 0 THEN 1 ELSE 0 END) FROM traces t"
    " WHERE t.project_id = OLD.project_id AND t.trace_id = OLD.trace_id"
    " ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_count + excluded.trace_count, error_count = error_count +"
    " excluded.error_count, open_traces = open_traces + excluded.open_traces, langgraph_runs = langgraph_runs +"
    " excluded.langgraph_runs, completion_sum = completion_sum + excluded.completion_sum, input_tokens ="
    " input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, cost_usd ="
    " cost_usd + excluded.cost_usd, eval_count = eval_count + excluded.eval_count, eval_passed = eval_passed +"
    " excluded.eval_passed, eval_failed = eval_failed + excluded.eval_failed;"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT t.project_id, (t.start_ns - t.start_ns % 3600000000000), 0, 0, 0, 0, 0, 0.0, 0, 0, 0.0, 1, (CASE"
    " WHEN NEW.passed = 1 THEN 1 ELSE 0 END), (CASE WHEN NEW.passed = 0 THEN 1 ELSE 0 END) FROM traces t"
    " WHERE t.project_id = NEW.project_id AND t.trace_id = NEW.trace_id"
    " ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_count + excluded.trace_count, error_count = error_count +"
    " excluded.error_count, open_traces = open_traces + excluded.open_traces, langgraph_runs = langgraph_runs +"
    " excluded.langgraph_runs, completion_sum = completion_sum + excluded.completion_sum, input_tokens ="
    " input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, cost_usd ="
    " cost_usd + excluded.cost_usd, eval_count = eval_count + excluded.eval_count, eval_passed = eval_passed +"
    " excluded.eval_passed, eval_failed = eval_failed + excluded.eval_failed; END",
    "CREATE TRIGGER trace_hours_eval_delete AFTER DELETE ON evaluation_results FOR EACH ROW BEGIN"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT t.project_id, (t.start_ns - t.start_ns % 3600000000000), 0, 0, 0, 0, 0, 0.0, 0, 0, 0.0, -1, -(CASE"
    " WHEN OLD.passed = 1 THEN 1 ELSE 0 END), -(CASE WHEN OLD.passed = 0 THEN 1 ELSE 0 END) FROM traces t"
    " WHERE t.project_id = OLD.project_id AND t.trace_id = OLD.trace_id"
    " ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_count + excluded.trace_count, error_count = error_count +"
    " excluded.error_count, open_traces = open_traces + excluded.open_traces, langgraph_runs = langgraph_runs +"
    " excluded.langgraph_runs, completion_sum = completion_sum + excluded.completion_sum, input_tokens ="
    " input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, cost_usd ="
    " cost_usd + excluded.cost_usd, eval_count = eval_count + excluded.eval_count, eval_passed = eval_passed +"
    " excluded.eval_passed, eval_failed = eval_failed + excluded.eval_failed; END",
)

# Spans are keyed by their trace's number (traces.seq) from trace_seq, which hands each writer a
# block of 1,000; the search index is span_search and span_event_search with pg_trgm GIN indexes.
POSTGRESQL = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE SEQUENCE trace_seq AS BIGINT INCREMENT BY 1000",
    _table("CREATE TABLE projects",
           "id SERIAL NOT NULL",
           "name VARCHAR(200) NOT NULL",
           "created_ns BIGINT NOT NULL",
           "trace_count BIGINT DEFAULT '0' NOT NULL",
           "auto_decide BOOLEAN DEFAULT true NOT NULL",
           "retention_days INTEGER",
           "PRIMARY KEY (id)",
           "UNIQUE (name)"),
    _table("CREATE TABLE api_keys",
           "id SERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "key_hash VARCHAR(64) NOT NULL",
           "key_prefix VARCHAR(16) NOT NULL",
           "created_ns BIGINT NOT NULL",
           "revoked_ns BIGINT",
           "PRIMARY KEY (id)",
           "FOREIGN KEY(project_id) REFERENCES projects (id)",
           "UNIQUE (key_hash)"),
    _table("CREATE TABLE ui_sessions",
           "token_hash VARCHAR(64) NOT NULL",
           "api_key_id INTEGER NOT NULL",
           "project_id INTEGER NOT NULL",
           "csrf_token VARCHAR(64) NOT NULL",
           "created_ns BIGINT NOT NULL",
           "expires_ns BIGINT NOT NULL",
           "PRIMARY KEY (token_hash)"),
    "CREATE INDEX ix_ui_sessions_expires ON ui_sessions (expires_ns)",
    _table("CREATE TABLE traces",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "name TEXT",
           "status VARCHAR(16) NOT NULL",
           "start_ns BIGINT NOT NULL",
           "end_ns BIGINT",
           "model TEXT",
           "environment TEXT",
           "user_id TEXT",
           "session_id TEXT",
           "input_text TEXT",
           "output_text TEXT",
           "attributes JSON",
           "root_span_id VARCHAR(32)",
           "span_count INTEGER NOT NULL",
           "running_span_count INTEGER NOT NULL",
           "missing_parent_count INTEGER NOT NULL",
           "error_count INTEGER NOT NULL",
           "input_tokens BIGINT NOT NULL",
           "output_tokens BIGINT NOT NULL",
           "cost_usd FLOAT NOT NULL",
           "decision VARCHAR(32)",
           "user_review_passed BOOLEAN",
           "input_rank_ns BIGINT",
           "output_rank_ns BIGINT",
           "updated_ns BIGINT NOT NULL",
           "status_explicit VARCHAR(16)",
           "graph_name TEXT",
           "awaited_parents TEXT",
           "seq BIGINT",
           "last_span_ns BIGINT",
           "own_text BOOLEAN DEFAULT false NOT NULL",
           "PRIMARY KEY (project_id, trace_id)"),
    "CREATE INDEX ix_traces_awaiting ON traces (project_id, (coalesce(last_span_ns, updated_ns)))"
    " WHERE missing_parent_count > 0 AND running_span_count = 0",
    "CREATE INDEX ix_traces_latency ON traces (project_id, (CASE WHEN end_ns - start_ns < 0 THEN 0 ELSE"
    " length(CAST(end_ns - start_ns AS TEXT)) * 100 + CAST(substr(CAST(end_ns - start_ns AS TEXT), 1, 2) AS"
    " INTEGER) END), start_ns, end_ns) WHERE end_ns IS NOT NULL AND running_span_count = 0",
    "CREATE INDEX ix_traces_own_text ON traces (project_id) WHERE own_text",
    "CREATE INDEX ix_traces_project_environment ON traces (project_id, environment, start_ns, trace_id)",
    "CREATE INDEX ix_traces_project_session ON traces (project_id, session_id)",
    "CREATE INDEX ix_traces_project_start ON traces (project_id, start_ns, trace_id)",
    "CREATE INDEX ix_traces_project_status ON traces (project_id, status, start_ns, trace_id)",
    "CREATE INDEX ix_traces_project_user ON traces (project_id, user_id)",
    "CREATE UNIQUE INDEX uq_traces_seq ON traces (seq)",
    _table("CREATE TABLE spans",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "span_id VARCHAR(32) NOT NULL",
           "parent_span_id VARCHAR(32)",
           "name TEXT NOT NULL",
           "kind VARCHAR(16) NOT NULL",
           "span_type VARCHAR(16) NOT NULL",
           "status VARCHAR(16) NOT NULL",
           "status_message TEXT",
           "start_ns BIGINT NOT NULL",
           "end_ns BIGINT",
           "model TEXT",
           "input_text TEXT",
           "output_text TEXT",
           "input_tokens BIGINT",
           "output_tokens BIGINT",
           "total_tokens BIGINT",
           "cost_usd FLOAT",
           "user_id TEXT",
           "session_id TEXT",
           "environment TEXT",
           "graph_name TEXT",
           "node_name TEXT",
           "step INTEGER",
           "attributes TEXT NOT NULL",
           "scope TEXT NOT NULL",
           "events TEXT NOT NULL",
           "links TEXT NOT NULL",
           "resource_id BIGINT",
           "trace_seq BIGINT",
           "parent_remote BOOLEAN",
           "body BYTEA",
           "PRIMARY KEY (id)", suffix=" WITH (toast_tuple_target = 8160)"),
    "CREATE INDEX ix_spans_resource ON spans (project_id, resource_id) WHERE resource_id IS NOT NULL",
    "CREATE UNIQUE INDEX uq_spans_key ON spans (trace_seq, span_id)",
    _table("CREATE TABLE resources",
           "project_id INTEGER NOT NULL",
           "resource_id BIGINT NOT NULL",
           "attributes JSON NOT NULL",
           "PRIMARY KEY (project_id, resource_id)"),
    _table("CREATE TABLE span_events",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32)",
           "span_id VARCHAR(32)",
           "event_type VARCHAR(24) NOT NULL",
           "name TEXT NOT NULL",
           "time_ns BIGINT NOT NULL",
           "payload JSON NOT NULL",
           "idempotency_key TEXT",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_span_events_span ON span_events (project_id, trace_id, span_id)",
    _table("CREATE TABLE evaluation_results",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "span_id VARCHAR(32)",
           "eval_name TEXT NOT NULL",
           "eval_model TEXT",
           "score FLOAT",
           "passed BOOLEAN",
           "metadata JSON NOT NULL",
           "user_review_passed BOOLEAN",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_evals_name ON evaluation_results (project_id, eval_name, created_ns)",
    "CREATE INDEX ix_evals_trace ON evaluation_results (project_id, trace_id)",
    _table("CREATE TABLE idempotency_keys",
           "project_id INTEGER NOT NULL",
           '"key" TEXT NOT NULL',
           "request_hash VARCHAR(64) NOT NULL",
           "response JSON NOT NULL",
           "created_ns BIGINT NOT NULL",
           'PRIMARY KEY (project_id, "key")'),
    _table("CREATE TABLE search_state",
           "name VARCHAR(32) NOT NULL",
           "indexed_upto BIGINT NOT NULL",
           "PRIMARY KEY (name)"),
    _table("CREATE TABLE span_search",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32)",
           "doc TEXT NOT NULL",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_span_search_doc ON span_search USING gin (doc gin_trgm_ops)",
    "CREATE INDEX ix_span_search_trace ON span_search (project_id, trace_id)",
    _table("CREATE TABLE span_event_search",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32)",
           "doc TEXT NOT NULL",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_span_event_search_doc ON span_event_search USING gin (doc gin_trgm_ops)",
    "CREATE INDEX ix_span_event_search_trace ON span_event_search (project_id, trace_id)",
    _table("CREATE TABLE policies",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "name VARCHAR(200) NOT NULL",
           "description TEXT",
           "active_version INTEGER",
           "shadow_version INTEGER",
           "created_ns BIGINT NOT NULL",
           "updated_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)",
           "CONSTRAINT uq_policies_name UNIQUE (project_id, name)"),
    _table("CREATE TABLE policy_versions",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "policy_id BIGINT NOT NULL",
           "version INTEGER NOT NULL",
           "definition JSON NOT NULL",
           "definition_hash VARCHAR(64) NOT NULL",
           "source_format VARCHAR(8) NOT NULL",
           "source_text TEXT",
           "description TEXT",
           "effective_from_ns BIGINT",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)",
           "CONSTRAINT uq_policy_versions UNIQUE (policy_id, version)"),
    _table("CREATE TABLE policy_activations",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "policy_id BIGINT NOT NULL",
           "policy_version_id BIGINT NOT NULL",
           "version INTEGER NOT NULL",
           "effective_ns BIGINT NOT NULL",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_policy_activations ON policy_activations (project_id, effective_ns)",
    _table("CREATE TABLE trace_decisions",
           "id BIGSERIAL NOT NULL",
           "decision_id VARCHAR(32) NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "policy_id BIGINT",
           "policy_version_id BIGINT",
           "policy_name VARCHAR(200)",
           "policy_version INTEGER",
           "action VARCHAR(32) NOT NULL",
           "reason_code VARCHAR(200) NOT NULL",
           "severity VARCHAR(16) NOT NULL",
           "rule JSON",
           "signals JSON NOT NULL",
           "input_hash VARCHAR(64) NOT NULL",
           "judge VARCHAR(32) NOT NULL",
           "judge_model TEXT",
           "cached BOOLEAN NOT NULL",
           "latency_ms FLOAT NOT NULL",
           "shadow BOOLEAN NOT NULL",
           "source VARCHAR(8) NOT NULL",
           "judge_span_id VARCHAR(16)",
           "auto_key VARCHAR(80)",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)",
           "CONSTRAINT uq_trace_decisions_auto UNIQUE (project_id, auto_key)",
           "UNIQUE (decision_id)"),
    "CREATE INDEX ix_trace_decisions_trace ON trace_decisions (project_id, trace_id, created_ns)",
    _table("CREATE TABLE judge_runs",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "decision_id VARCHAR(32)",
           "judge VARCHAR(32) NOT NULL",
           "judge_model TEXT",
           "status VARCHAR(16) NOT NULL",
           "input_hash VARCHAR(64) NOT NULL",
           "output JSON",
           "error TEXT",
           "cached BOOLEAN NOT NULL",
           "latency_ms FLOAT NOT NULL",
           "input_tokens INTEGER",
           "output_tokens INTEGER",
           "cost_usd FLOAT",
           "span_id VARCHAR(16)",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_judge_runs_trace ON judge_runs (project_id, trace_id)",
    _table("CREATE TABLE judge_cache",
           "project_id INTEGER NOT NULL",
           "cache_key VARCHAR(64) NOT NULL",
           "output JSON NOT NULL",
           "hit_count INTEGER DEFAULT '0' NOT NULL",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (project_id, cache_key)"),
    _table("CREATE TABLE cases",
           "id BIGSERIAL NOT NULL",
           "case_id VARCHAR(32) NOT NULL",
           "project_id INTEGER NOT NULL",
           "trace_id VARCHAR(32) NOT NULL",
           "decision_id VARCHAR(32) NOT NULL",
           "status VARCHAR(16) NOT NULL",
           "severity VARCHAR(16) NOT NULL",
           "reason_code VARCHAR(200) NOT NULL",
           "title TEXT NOT NULL",
           "note TEXT",
           "created_ns BIGINT NOT NULL",
           "updated_ns BIGINT NOT NULL",
           "acked_ns BIGINT",
           "resolved_ns BIGINT",
           "PRIMARY KEY (id)",
           "UNIQUE (case_id)"),
    "CREATE INDEX ix_cases_status ON cases (project_id, status, created_ns)",
    "CREATE INDEX ix_cases_trace ON cases (project_id, trace_id)",
    _table("CREATE TABLE webhook_endpoints",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "url TEXT NOT NULL",
           "secret TEXT NOT NULL",
           "enabled BOOLEAN NOT NULL",
           "disabled_reason TEXT",
           "created_ns BIGINT NOT NULL",
           "PRIMARY KEY (id)"),
    _table("CREATE TABLE notifications",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "case_id VARCHAR(32) NOT NULL",
           "endpoint_id BIGINT NOT NULL",
           "event_type VARCHAR(64) NOT NULL",
           "message_id VARCHAR(64) NOT NULL",
           "payload JSON NOT NULL",
           "status VARCHAR(16) NOT NULL",
           "attempts INTEGER DEFAULT '0' NOT NULL",
           "next_attempt_ns BIGINT NOT NULL",
           "last_error TEXT",
           "created_ns BIGINT NOT NULL",
           "delivered_ns BIGINT",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_notifications_case ON notifications (project_id, case_id)",
    "CREATE INDEX ix_notifications_due ON notifications (status, next_attempt_ns)",
    _table("CREATE TABLE notification_attempts",
           "id BIGSERIAL NOT NULL",
           "project_id INTEGER NOT NULL",
           "notification_id BIGINT NOT NULL",
           "attempt INTEGER NOT NULL",
           "started_ns BIGINT NOT NULL",
           "status_code INTEGER",
           "error TEXT",
           "latency_ms FLOAT NOT NULL",
           "PRIMARY KEY (id)"),
    "CREATE INDEX ix_notification_attempts ON notification_attempts (notification_id, attempt)",
    _table("CREATE TABLE trace_hours",
           "project_id INTEGER NOT NULL",
           "hour_ns BIGINT NOT NULL",
           "writer_pid INTEGER NOT NULL",
           "trace_count BIGINT NOT NULL",
           "error_count BIGINT NOT NULL",
           "open_traces BIGINT NOT NULL",
           "langgraph_runs BIGINT NOT NULL",
           "completion_sum FLOAT NOT NULL",
           "input_tokens BIGINT NOT NULL",
           "output_tokens BIGINT NOT NULL",
           "cost_usd FLOAT NOT NULL",
           "eval_count BIGINT NOT NULL",
           "eval_passed BIGINT NOT NULL",
           "eval_failed BIGINT NOT NULL",
           "PRIMARY KEY (project_id, hour_ns, writer_pid)"),
    _table("CREATE TABLE trace_hour_latency",
           "project_id INTEGER NOT NULL",
           "hour_ns BIGINT NOT NULL",
           "writer_pid INTEGER NOT NULL",
           "bucket INTEGER NOT NULL",
           "n BIGINT NOT NULL",
           "PRIMARY KEY (project_id, hour_ns, writer_pid, bucket)"),
    _table("CREATE TABLE trace_hour_decisions",
           "project_id INTEGER NOT NULL",
           "hour_ns BIGINT NOT NULL",
           "writer_pid INTEGER NOT NULL",
           "action VARCHAR(32) NOT NULL",
           "n BIGINT NOT NULL",
           "PRIMARY KEY (project_id, hour_ns, writer_pid, action)"),
)

# The roll-ups: statement triggers over transition tables on INSERT and DELETE, a row trigger on
# UPDATE (the writer updates a stored trace one row a statement).
POSTGRESQL_TRIGGERS = (
    "CREATE FUNCTION trace_hours_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF NOT (OLD.project_id <> NEW.project_id OR OLD.trace_id <> NEW.trace_id OR (OLD.start_ns - OLD.start_ns %"
    " 3600000000000) <> (NEW.start_ns - NEW.start_ns % 3600000000000)) AND (OLD.status IS DISTINCT"
    " FROM NEW.status OR OLD.running_span_count IS DISTINCT"
    " FROM NEW.running_span_count OR OLD.missing_parent_count IS DISTINCT"
    " FROM NEW.missing_parent_count OR OLD.span_count IS DISTINCT"
    " FROM NEW.span_count OR OLD.graph_name IS DISTINCT FROM NEW.graph_name OR OLD.input_tokens IS DISTINCT"
    " FROM NEW.input_tokens OR OLD.output_tokens IS DISTINCT FROM NEW.output_tokens OR OLD.cost_usd IS DISTINCT"
    " FROM NEW.cost_usd) THEN"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT NEW.project_id, (NEW.start_ns - NEW.start_ns % 3600000000000), pg_backend_pid(), 1 - 1, (CASE WHEN"
    " NEW.status = 'error' THEN 1 ELSE 0 END) - (CASE WHEN OLD.status = 'error' THEN 1 ELSE 0 END), (CASE WHEN"
    " (NEW.running_span_count + (CASE WHEN NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0"
    " ELSE NEW.missing_parent_count END)) > 0 THEN 1 ELSE 0 END) - (CASE WHEN (OLD.running_span_count + (CASE"
    " WHEN OLD.missing_parent_count > 0 AND OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count"
    " END)) > 0 THEN 1 ELSE 0 END), (CASE WHEN NEW.graph_name IS NOT NULL THEN 1 ELSE 0 END) - (CASE WHEN"
    " OLD.graph_name IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN (NEW.span_count + (CASE WHEN"
    " NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0 ELSE NEW.missing_parent_count END)) > 0"
    " THEN CAST(NEW.span_count - NEW.running_span_count AS FLOAT) / (NEW.span_count + (CASE WHEN"
    " NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0 ELSE NEW.missing_parent_count END))"
    " ELSE 0.0 END) - (CASE WHEN (OLD.span_count + (CASE WHEN OLD.missing_parent_count > 0 AND"
    " OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count END)) > 0 THEN CAST(OLD.span_count -"
    " OLD.running_span_count AS FLOAT) / (OLD.span_count + (CASE WHEN OLD.missing_parent_count > 0 AND"
    " OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count END)) ELSE 0.0 END), NEW.input_tokens -"
    " OLD.input_tokens, NEW.output_tokens - OLD.output_tokens, NEW.cost_usd - OLD.cost_usd, 0, 0, 0 WHERE true"
    " ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_hours.trace_count + excluded.trace_count, error_count ="
    " trace_hours.error_count + excluded.error_count, open_traces = trace_hours.open_traces +"
    " excluded.open_traces, langgraph_runs = trace_hours.langgraph_runs + excluded.langgraph_runs,"
    " completion_sum = trace_hours.completion_sum + excluded.completion_sum, input_tokens ="
    " trace_hours.input_tokens + excluded.input_tokens, output_tokens = trace_hours.output_tokens +"
    " excluded.output_tokens, cost_usd = trace_hours.cost_usd + excluded.cost_usd, eval_count ="
    " trace_hours.eval_count + excluded.eval_count, eval_passed = trace_hours.eval_passed +"
    " excluded.eval_passed, eval_failed = trace_hours.eval_failed + excluded.eval_failed; END IF;"
    " IF (OLD.project_id <> NEW.project_id OR OLD.trace_id <> NEW.trace_id OR (OLD.start_ns - OLD.start_ns %"
    " 3600000000000) <> (NEW.start_ns - NEW.start_ns % 3600000000000)) THEN"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT OLD.project_id, (OLD.start_ns - OLD.start_ns % 3600000000000), pg_backend_pid(), -1, -(CASE WHEN"
    " OLD.status = 'error' THEN 1 ELSE 0 END), -(CASE WHEN (OLD.running_span_count + (CASE WHEN"
    " OLD.missing_parent_count > 0 AND OLD.running_span_count = 0 THEN 0 ELSE OLD.missing_parent_count END)) > 0"
    " THEN 1 ELSE 0 END), -(CASE WHEN OLD.graph_name IS NOT NULL THEN 1 ELSE 0 END), -(CASE WHEN (OLD.span_count"
    " + (CASE WHEN OLD.missing_parent_count > 0 AND OLD.running_span_count = 0 THEN 0 ELSE"
    " OLD.missing_parent_count END)) > 0 THEN CAST(OLD.span_count - OLD.running_span_count AS FLOAT) /"
    " (OLD.span_count + (CASE WHEN OLD.missing_parent_count > 0 AND OLD.running_span_count = 0 THEN 0 ELSE"
    " OLD.missing_parent_count END)) ELSE 0.0 END), -OLD.input_tokens, -OLD.output_tokens, -OLD.cost_usd, -ev.n,"
    " -ev.passed, -ev.failed"
    " FROM (SELECT count(*) AS n, coalesce(sum((CASE WHEN e.passed THEN 1 ELSE 0 END)), 0) AS passed,"
    " coalesce(sum((CASE WHEN NOT e.passed THEN 1 ELSE 0 END)), 0) AS failed FROM evaluation_results e"
    " WHERE e.project_id = OLD.project_id AND e.trace_id = OLD.trace_id) AS ev WHERE true"
    " ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_hours.trace_count + excluded.trace_count, error_count ="
    " trace_hours.error_count + excluded.error_count, open_traces = trace_hours.open_traces +"
    " excluded.open_traces, langgraph_runs = trace_hours.langgraph_runs + excluded.langgraph_runs,"
    " completion_sum = trace_hours.completion_sum + excluded.completion_sum, input_tokens ="
    " trace_hours.input_tokens + excluded.input_tokens, output_tokens = trace_hours.output_tokens +"
    " excluded.output_tokens, cost_usd = trace_hours.cost_usd + excluded.cost_usd, eval_count ="
    " trace_hours.eval_count + excluded.eval_count, eval_passed = trace_hours.eval_passed +"
    " excluded.eval_passed, eval_failed = trace_hours.eval_failed + excluded.eval_failed; END IF;"
    " IF (OLD.project_id <> NEW.project_id OR OLD.trace_id <> NEW.trace_id OR (OLD.start_ns - OLD.start_ns %"
    " 3600000000000) <> (NEW.start_ns - NEW.start_ns % 3600000000000)) THEN"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed)"
    " SELECT NEW.project_id, (NEW.start_ns - NEW.start_ns % 3600000000000), pg_backend_pid(), 1, (CASE WHEN"
    " NEW.status = 'error' THEN 1 ELSE 0 END), (CASE WHEN (NEW.running_span_count + (CASE WHEN"
    " NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0 ELSE NEW.missing_parent_count END)) > 0"
    " THEN 1 ELSE 0 END), (CASE WHEN NEW.graph_name IS NOT NULL THEN 1 ELSE 0 END), (CASE WHEN (NEW.span_count +"
    " (CASE WHEN NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0 ELSE"
    " NEW.missing_parent_count END)) > 0 THEN CAST(NEW.span_count - NEW.running_span_count AS FLOAT) /"
    " (NEW.span_count + (CASE WHEN NEW.missing_parent_count > 0 AND NEW.running_span_count = 0 THEN 0 ELSE"
    " NEW.missing_parent_count END)) ELSE 0.0 END), NEW.input_tokens, NEW.output_tokens, NEW.cost_usd, ev.n,"
    " ev.passed, ev.failed"
    " FROM (SELECT count(*) AS n, coalesce(sum((CASE WHEN e.passed THEN 1 ELSE 0 END)), 0) AS passed,"
    " coalesce(sum((CASE WHEN NOT e.passed THEN 1 ELSE 0 END)), 0) AS failed FROM evaluation_results e"
    " WHERE e.project_id = NEW.project_id AND e.trace_id = NEW.trace_id) AS ev WHERE true"
    " ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_hours.trace_count + excluded.trace_count, error_count ="
    " trace_hours.error_count + excluded.error_count, open_traces = trace_hours.open_traces +"
    " excluded.open_traces, langgraph_runs = trace_hours.langgraph_runs + excluded.langgraph_runs,"
    " completion_sum = trace_hours.completion_sum + excluded.completion_sum, input_tokens ="
    " trace_hours.input_tokens + excluded.input_tokens, output_tokens = trace_hours.output_tokens +"
    " excluded.output_tokens, cost_usd = trace_hours.cost_usd + excluded.cost_usd, eval_count ="
    " trace_hours.eval_count + excluded.eval_count, eval_passed = trace_hours.eval_passed +"
    " excluded.eval_passed, eval_failed = trace_hours.eval_failed + excluded.eval_failed; END IF;"
    " IF (OLD.end_ns IS NOT NULL AND OLD.running_span_count = 0 OR NEW.end_ns IS NOT NULL AND"
    " NEW.running_span_count = 0) AND ((OLD.project_id <> NEW.project_id OR OLD.trace_id <> NEW.trace_id OR"
    " (OLD.start_ns - OLD.start_ns % 3600000000000) <> (NEW.start_ns - NEW.start_ns % 3600000000000)) OR NOT"
    " (OLD.end_ns IS NOT NULL AND OLD.running_span_count = 0) OR NOT (NEW.end_ns IS NOT NULL AND"
    " NEW.running_span_count = 0) OR (CASE WHEN OLD.end_ns - OLD.start_ns < 0 THEN 0 ELSE length(CAST(OLD.end_ns"
    " - OLD.start_ns AS TEXT)) * 100 + CAST(substr(CAST(OLD.end_ns - OLD.start_ns AS TEXT), 1, 2) AS INTEGER)"
    " END) <> (CASE WHEN NEW.end_ns - NEW.start_ns < 0 THEN 0 ELSE length(CAST(NEW.end_ns - NEW.start_ns AS"
    " TEXT)) * 100 + CAST(substr(CAST(NEW.end_ns - NEW.start_ns AS TEXT), 1, 2) AS INTEGER) END)) THEN"
    " INSERT INTO trace_hour_latency (project_id, hour_ns, writer_pid, bucket, n)"
    " SELECT v.p, v.h, pg_backend_pid(), v.k, sum(v.n)"
    " FROM (SELECT OLD.project_id AS p, (OLD.start_ns - OLD.start_ns % 3600000000000) AS h, (CASE WHEN"
    " OLD.end_ns - OLD.start_ns < 0 THEN 0 ELSE length(CAST(OLD.end_ns - OLD.start_ns AS TEXT)) * 100 +"
    " CAST(substr(CAST(OLD.end_ns - OLD.start_ns AS TEXT), 1, 2) AS INTEGER) END) AS k, -1 AS n"
    " WHERE OLD.end_ns IS NOT NULL AND OLD.running_span_count = 0 UNION ALL"
    " SELECT NEW.project_id AS p, (NEW.start_ns - NEW.start_ns % 3600000000000) AS h, (CASE WHEN NEW.end_ns -"
    " NEW.start_ns < 0 THEN 0 ELSE length(CAST(NEW.end_ns - NEW.start_ns AS TEXT)) * 100 +"
    " CAST(substr(CAST(NEW.end_ns - NEW.start_ns AS TEXT), 1, 2) AS INTEGER) END) AS k, 1 AS n"
    " WHERE NEW.end_ns IS NOT NULL AND NEW.running_span_count = 0) AS v WHERE true GROUP BY v.p, v.h, v.k"
    " HAVING sum(v.n) <> 0 ON CONFLICT (project_id, hour_ns, writer_pid, bucket)"
    " DO UPDATE SET n = trace_hour_latency.n + excluded.n; END IF;"
    " IF (OLD.decision IS NOT NULL OR NEW.decision IS NOT NULL) AND ((OLD.project_id <> NEW.project_id OR"
    " OLD.trace_id <> NEW.trace_id OR (OLD.start_ns - OLD.start_ns % 3600000000000) <> (NEW.start_ns -"
    " NEW.start_ns % 3600000000000)) OR OLD.decision IS DISTINCT FROM NEW.decision) THEN"
    " INSERT INTO trace_hour_decisions (project_id, hour_ns, writer_pid, action, n)"
    " SELECT v.p, v.h, pg_backend_pid(), v.k, sum(v.n)"
    " FROM (SELECT OLD.project_id AS p, (OLD.start_ns - OLD.start_ns % 3600000000000) AS h, OLD.decision AS k,"
    " -1 AS n WHERE OLD.decision IS NOT NULL UNION ALL"
    " SELECT NEW.project_id AS p, (NEW.start_ns - NEW.start_ns % 3600000000000) AS h, NEW.decision AS k, 1 AS n"
    " WHERE NEW.decision IS NOT NULL) AS v WHERE true GROUP BY v.p, v.h, v.k HAVING sum(v.n) <> 0"
    " ON CONFLICT (project_id, hour_ns, writer_pid, action)"
    " DO UPDATE SET n = trace_hour_decisions.n + excluded.n; END IF; RETURN NULL; END $$",
    "CREATE TRIGGER trace_hours_update AFTER UPDATE ON traces FOR EACH ROW WHEN (OLD.project_id IS DISTINCT"
    " FROM NEW.project_id OR OLD.trace_id IS DISTINCT FROM NEW.trace_id OR OLD.start_ns IS DISTINCT"
    " FROM NEW.start_ns OR OLD.end_ns IS DISTINCT FROM NEW.end_ns OR OLD.status IS DISTINCT"
    " FROM NEW.status OR OLD.running_span_count IS DISTINCT"
    " FROM NEW.running_span_count OR OLD.missing_parent_count IS DISTINCT"
    " FROM NEW.missing_parent_count OR OLD.span_count IS DISTINCT"
    " FROM NEW.span_count OR OLD.graph_name IS DISTINCT FROM NEW.graph_name OR OLD.input_tokens IS DISTINCT"
    " FROM NEW.input_tokens OR OLD.output_tokens IS DISTINCT FROM NEW.output_tokens OR OLD.cost_usd IS DISTINCT"
    " FROM NEW.cost_usd OR OLD.decision IS DISTINCT FROM NEW.decision) EXECUTE FUNCTION trace_hours_update()",
    "CREATE FUNCTION trace_hours_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NOT EXISTS (SELECT 1"
    " FROM new_rows) THEN RETURN NULL; END IF;"
    " WITH s AS (INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count,"
    " open_traces, langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count,"
    " eval_passed, eval_failed) SELECT *"
    " FROM (SELECT c.project_id, (c.start_ns - c.start_ns % 3600000000000) AS hour_ns, pg_backend_pid() AS"
    " writer_pid, sum(c.sign * 1) AS trace_count, sum(c.sign * (CASE WHEN c.status = 'error' THEN 1 ELSE 0 END))"
    " AS error_count, sum(c.sign * (CASE WHEN (c.running_span_count + (CASE WHEN c.missing_parent_count > 0 AND"
    " c.running_span_count = 0 THEN 0 ELSE c.missing_parent_count END)) > 0 THEN 1 ELSE 0 END)) AS open_traces,"
    " sum(c.sign * (CASE WHEN c.graph_name IS NOT NULL THEN 1 ELSE 0 END)) AS langgraph_runs, sum(c.sign * (CASE"
    " WHEN (c.span_count + (CASE WHEN c.missing_parent_count > 0 AND c.running_span_count = 0 THEN 0 ELSE"
    " c.missing_parent_count END)) > 0 THEN CAST(c.span_count - c.running_span_count AS FLOAT) / (c.span_count +"
    " (CASE WHEN c.missing_parent_count > 0 AND c.running_span_count = 0 THEN 0 ELSE c.missing_parent_count"
    " END)) ELSE 0.0 END)) AS completion_sum, sum(c.sign * c.input_tokens) AS input_tokens, sum(c.sign *"
    " c.output_tokens) AS output_tokens, sum(c.sign * c.cost_usd) AS cost_usd, sum(c.sign * ev.eval_count) AS"
    " eval_count, sum(c.sign * ev.eval_passed) AS eval_passed, sum(c.sign * ev.eval_failed) AS eval_failed"
    " FROM (SELECT 1 AS sign, r.* FROM new_rows r) AS c LEFT"
    " JOIN LATERAL (SELECT count(*) AS eval_count, count(*) FILTER (WHERE e.passed) AS eval_passed, count(*)"
    " FILTER (WHERE NOT e.passed) AS eval_failed FROM evaluation_results e"
    " WHERE e.project_id = c.project_id AND e.trace_id = c.trace_id) AS ev ON true"
    " GROUP BY c.project_id, (c.start_ns - c.start_ns % 3600000000000)) AS g"
    " WHERE g.trace_count <> 0 OR g.error_count <> 0 OR g.open_traces <> 0 OR g.langgraph_runs <> 0 OR"
    " g.completion_sum <> 0 OR g.input_tokens <> 0 OR g.output_tokens <> 0 OR g.cost_usd <> 0 OR g.eval_count <>"
    " 0 OR g.eval_passed <> 0 OR g.eval_failed <> 0 ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_hours.trace_count + excluded.trace_count, error_count ="
    " trace_hours.error_count + excluded.error_count, open_traces = trace_hours.open_traces +"
    " excluded.open_traces, langgraph_runs = trace_hours.langgraph_runs + excluded.langgraph_runs,"
    " completion_sum = trace_hours.completion_sum + excluded.completion_sum, input_tokens ="
    " trace_hours.input_tokens + excluded.input_tokens, output_tokens = trace_hours.output_tokens +"
    " excluded.output_tokens, cost_usd = trace_hours.cost_usd + excluded.cost_usd, eval_count ="
    " trace_hours.eval_count + excluded.eval_count, eval_passed = trace_hours.eval_passed +"
    " excluded.eval_passed, eval_failed = trace_hours.eval_failed + excluded.eval_failed), l AS (INSERT INTO"
    " trace_hour_latency (project_id, hour_ns, writer_pid, bucket, n) SELECT *"
    " FROM (SELECT c.project_id, (c.start_ns - c.start_ns % 3600000000000) AS hour_ns, pg_backend_pid() AS"
    " writer_pid, (CASE WHEN c.end_ns - c.start_ns < 0 THEN 0 ELSE length(CAST(c.end_ns - c.start_ns AS TEXT)) *"
    " 100 + CAST(substr(CAST(c.end_ns - c.start_ns AS TEXT), 1, 2) AS INTEGER) END) AS bucket, sum(c.sign) AS n"
    " FROM (SELECT 1 AS sign, r.* FROM new_rows r) AS c WHERE c.end_ns IS NOT NULL AND c.running_span_count = 0"
    " GROUP BY c.project_id, (c.start_ns - c.start_ns % 3600000000000), (CASE WHEN c.end_ns - c.start_ns < 0"
    " THEN 0 ELSE length(CAST(c.end_ns - c.start_ns AS TEXT)) * 100 + CAST(substr(CAST(c.end_ns - c.start_ns AS"
    " TEXT), 1, 2) AS INTEGER) END)) AS g WHERE g.n <> 0 ON CONFLICT (project_id, hour_ns, writer_pid, bucket)"
    " DO UPDATE SET n = trace_hour_latency.n + excluded.n)"
    " INSERT INTO trace_hour_decisions (project_id, hour_ns, writer_pid, action, n) SELECT *"
    " FROM (SELECT c.project_id, (c.start_ns - c.start_ns % 3600000000000) AS hour_ns, pg_backend_pid() AS"
    " writer_pid, c.decision AS action, sum(c.sign) AS n FROM (SELECT 1 AS sign, r.* FROM new_rows r) AS c"
    " WHERE c.decision IS NOT NULL"
    " GROUP BY c.project_id, (c.start_ns - c.start_ns % 3600000000000), c.decision) AS g WHERE g.n <> 0"
    " ON CONFLICT (project_id, hour_ns, writer_pid, action)"
    " DO UPDATE SET n = trace_hour_decisions.n + excluded.n; RETURN NULL; END $$",
    "CREATE TRIGGER trace_hours_insert AFTER INSERT ON traces REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION trace_hours_insert()",
    "CREATE FUNCTION trace_hours_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NOT EXISTS (SELECT 1"
    " FROM old_rows) THEN RETURN NULL; END IF;"
    " WITH s AS (INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count,"
    " open_traces, langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count,"
    " eval_passed, eval_failed) SELECT *"
    " FROM (SELECT c.project_id, (c.start_ns - c.start_ns % 3600000000000) AS hour_ns, pg_backend_pid() AS"
    " writer_pid, sum(c.sign * 1) AS trace_count, sum(c.sign * (CASE WHEN c.status = 'error' THEN 1 ELSE 0 END))"
    " AS error_count, sum(c.sign * (CASE WHEN (c.running_span_count + (CASE WHEN c.missing_parent_count > 0 AND"
    " c.running_span_count = 0 THEN 0 ELSE c.missing_parent_count END)) > 0 THEN 1 ELSE 0 END)) AS open_traces,"
    " sum(c.sign * (CASE WHEN c.graph_name IS NOT NULL THEN 1 ELSE 0 END)) AS langgraph_runs, sum(c.sign * (CASE"
    " WHEN (c.span_count + (CASE WHEN c.missing_parent_count > 0 AND c.running_span_count = 0 THEN 0 ELSE"
    " c.missing_parent_count END)) > 0 THEN CAST(c.span_count - c.running_span_count AS FLOAT) / (c.span_count +"
    " (CASE WHEN c.missing_parent_count > 0 AND c.running_span_count = 0 THEN 0 ELSE c.missing_parent_count"
    " END)) ELSE 0.0 END)) AS completion_sum, sum(c.sign * c.input_tokens) AS input_tokens, sum(c.sign *"
    " c.output_tokens) AS output_tokens, sum(c.sign * c.cost_usd) AS cost_usd, sum(c.sign * ev.eval_count) AS"
    " eval_count, sum(c.sign * ev.eval_passed) AS eval_passed, sum(c.sign * ev.eval_failed) AS eval_failed"
    " FROM (SELECT -1 AS sign, r.* FROM old_rows r) AS c LEFT"
    " JOIN LATERAL (SELECT count(*) AS eval_count, count(*) FILTER (WHERE e.passed) AS eval_passed, count(*)"
    " FILTER (WHERE NOT e.passed) AS eval_failed FROM evaluation_results e"
    " WHERE e.project_id = c.project_id AND e.trace_id = c.trace_id) AS ev ON true"
    " GROUP BY c.project_id, (c.start_ns - c.start_ns % 3600000000000)) AS g"
    " WHERE g.trace_count <> 0 OR g.error_count <> 0 OR g.open_traces <> 0 OR g.langgraph_runs <> 0 OR"
    " g.completion_sum <> 0 OR g.input_tokens <> 0 OR g.output_tokens <> 0 OR g.cost_usd <> 0 OR g.eval_count <>"
    " 0 OR g.eval_passed <> 0 OR g.eval_failed <> 0 ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_hours.trace_count + excluded.trace_count, error_count ="
    " trace_hours.error_count + excluded.error_count, open_traces = trace_hours.open_traces +"
    " excluded.open_traces, langgraph_runs = trace_hours.langgraph_runs + excluded.langgraph_runs,"
    " completion_sum = trace_hours.completion_sum + excluded.completion_sum, input_tokens ="
    " trace_hours.input_tokens + excluded.input_tokens, output_tokens = trace_hours.output_tokens +"
    " excluded.output_tokens, cost_usd = trace_hours.cost_usd + excluded.cost_usd, eval_count ="
    " trace_hours.eval_count + excluded.eval_count, eval_passed = trace_hours.eval_passed +"
    " excluded.eval_passed, eval_failed = trace_hours.eval_failed + excluded.eval_failed), l AS (INSERT INTO"
    " trace_hour_latency (project_id, hour_ns, writer_pid, bucket, n) SELECT *"
    " FROM (SELECT c.project_id, (c.start_ns - c.start_ns % 3600000000000) AS hour_ns, pg_backend_pid() AS"
    " writer_pid, (CASE WHEN c.end_ns - c.start_ns < 0 THEN 0 ELSE length(CAST(c.end_ns - c.start_ns AS TEXT)) *"
    " 100 + CAST(substr(CAST(c.end_ns - c.start_ns AS TEXT), 1, 2) AS INTEGER) END) AS bucket, sum(c.sign) AS n"
    " FROM (SELECT -1 AS sign, r.* FROM old_rows r) AS c WHERE c.end_ns IS NOT NULL AND c.running_span_count = 0"
    " GROUP BY c.project_id, (c.start_ns - c.start_ns % 3600000000000), (CASE WHEN c.end_ns - c.start_ns < 0"
    " THEN 0 ELSE length(CAST(c.end_ns - c.start_ns AS TEXT)) * 100 + CAST(substr(CAST(c.end_ns - c.start_ns AS"
    " TEXT), 1, 2) AS INTEGER) END)) AS g WHERE g.n <> 0 ON CONFLICT (project_id, hour_ns, writer_pid, bucket)"
    " DO UPDATE SET n = trace_hour_latency.n + excluded.n)"
    " INSERT INTO trace_hour_decisions (project_id, hour_ns, writer_pid, action, n) SELECT *"
    " FROM (SELECT c.project_id, (c.start_ns - c.start_ns % 3600000000000) AS hour_ns, pg_backend_pid() AS"
    " writer_pid, c.decision AS action, sum(c.sign) AS n FROM (SELECT -1 AS sign, r.* FROM old_rows r) AS c"
    " WHERE c.decision IS NOT NULL"
    " GROUP BY c.project_id, (c.start_ns - c.start_ns % 3600000000000), c.decision) AS g WHERE g.n <> 0"
    " ON CONFLICT (project_id, hour_ns, writer_pid, action)"
    " DO UPDATE SET n = trace_hour_decisions.n + excluded.n; RETURN NULL; END $$",
    "CREATE TRIGGER trace_hours_delete AFTER DELETE ON traces REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION trace_hours_delete()",
    "CREATE FUNCTION trace_hours_eval_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed) SELECT *"
    " FROM (SELECT t.project_id, (t.start_ns - t.start_ns % 3600000000000) AS hour_ns, pg_backend_pid() AS"
    " writer_pid, 0 AS trace_count, 0 AS error_count, 0 AS open_traces, 0 AS langgraph_runs, 0 AS"
    " completion_sum, 0 AS input_tokens, 0 AS output_tokens, 0 AS cost_usd, sum(c.sign * 1) AS eval_count,"
    " sum(c.sign * (CASE WHEN c.passed THEN 1 ELSE 0 END)) AS eval_passed, sum(c.sign * (CASE WHEN NOT c.passed"
    " THEN 1 ELSE 0 END)) AS eval_failed FROM (SELECT 1 AS sign, r.* FROM new_rows r) AS c"
    " JOIN traces t ON t.project_id = c.project_id AND t.trace_id = c.trace_id"
    " GROUP BY t.project_id, (t.start_ns - t.start_ns % 3600000000000)) AS g"
    " WHERE g.trace_count <> 0 OR g.error_count <> 0 OR g.open_traces <> 0 OR g.langgraph_runs <> 0 OR"
    " g.completion_sum <> 0 OR g.input_tokens <> 0 OR g.output_tokens <> 0 OR g.cost_usd <> 0 OR g.eval_count <>"
    " 0 OR g.eval_passed <> 0 OR g.eval_failed <> 0 ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_hours.trace_count + excluded.trace_count, error_count ="
    " trace_hours.error_count + excluded.error_count, open_traces = trace_hours.open_traces +"
    " excluded.open_traces, langgraph_runs = trace_hours.langgraph_runs + excluded.langgraph_runs,"
    " completion_sum = trace_hours.completion_sum + excluded.completion_sum, input_tokens ="
    " trace_hours.input_tokens + excluded.input_tokens, output_tokens = trace_hours.output_tokens +"
    " excluded.output_tokens, cost_usd = trace_hours.cost_usd + excluded.cost_usd, eval_count ="
    " trace_hours.eval_count + excluded.eval_count, eval_passed = trace_hours.eval_passed +"
    " excluded.eval_passed, eval_failed = trace_hours.eval_failed + excluded.eval_failed; RETURN NULL; END $$",
    "CREATE TRIGGER trace_hours_eval_insert AFTER INSERT ON evaluation_results REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION trace_hours_eval_insert()",
    "CREATE FUNCTION trace_hours_eval_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed) SELECT *"
    " FROM (SELECT t.project_id, (t.start_ns - t.start_ns % 3600000000000) AS hour_ns, pg_backend_pid() AS"
    " writer_pid, 0 AS trace_count, 0 AS error_count, 0 AS open_traces, 0 AS langgraph_runs, 0 AS"
    " completion_sum, 0 AS input_tokens, 0 AS output_tokens, 0 AS cost_usd, sum(c.sign * 1) AS eval_count,"
    " sum(c.sign * (CASE WHEN c.passed THEN 1 ELSE 0 END)) AS eval_passed, sum(c.sign * (CASE WHEN NOT c.passed"
    " THEN 1 ELSE 0 END)) AS eval_failed FROM (SELECT 1 AS sign, r.* FROM new_rows r UNION ALL"
    " SELECT -1 AS sign, r.* FROM old_rows r) AS c"
    " JOIN traces t ON t.project_id = c.project_id AND t.trace_id = c.trace_id"
    " GROUP BY t.project_id, (t.start_ns - t.start_ns % 3600000000000)) AS g"
    " WHERE g.trace_count <> 0 OR g.error_count <> 0 OR g.open_traces <> 0 OR g.langgraph_runs <> 0 OR"
    " g.completion_sum <> 0 OR g.input_tokens <> 0 OR g.output_tokens <> 0 OR g.cost_usd <> 0 OR g.eval_count <>"
    " 0 OR g.eval_passed <> 0 OR g.eval_failed <> 0 ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_hours.trace_count + excluded.trace_count, error_count ="
    " trace_hours.error_count + excluded.error_count, open_traces = trace_hours.open_traces +"
    " excluded.open_traces, langgraph_runs = trace_hours.langgraph_runs + excluded.langgraph_runs,"
    " completion_sum = trace_hours.completion_sum + excluded.completion_sum, input_tokens ="
    " trace_hours.input_tokens + excluded.input_tokens, output_tokens = trace_hours.output_tokens +"
    " excluded.output_tokens, cost_usd = trace_hours.cost_usd + excluded.cost_usd, eval_count ="
    " trace_hours.eval_count + excluded.eval_count, eval_passed = trace_hours.eval_passed +"
    " excluded.eval_passed, eval_failed = trace_hours.eval_failed + excluded.eval_failed; RETURN NULL; END $$",
    "CREATE TRIGGER trace_hours_eval_update AFTER UPDATE ON evaluation_results"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION trace_hours_eval_update()",
    "CREATE FUNCTION trace_hours_eval_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
    " IF NOT EXISTS (SELECT 1 FROM old_rows) THEN RETURN NULL; END IF;"
    " INSERT INTO trace_hours (project_id, hour_ns, writer_pid, trace_count, error_count, open_traces,"
    " langgraph_runs, completion_sum, input_tokens, output_tokens, cost_usd, eval_count, eval_passed,"
    " eval_failed) SELECT *"
    " FROM (SELECT t.project_id, (t.start_ns - t.start_ns % 3600000000000) AS hour_ns, pg_backend_pid() AS"
    " writer_pid, 0 AS trace_count, 0 AS error_count, 0 AS open_traces, 0 AS langgraph_runs, 0 AS"
    " completion_sum, 0 AS input_tokens, 0 AS output_tokens, 0 AS cost_usd, sum(c.sign * 1) AS eval_count,"
    " sum(c.sign * (CASE WHEN c.passed THEN 1 ELSE 0 END)) AS eval_passed, sum(c.sign * (CASE WHEN NOT c.passed"
    " THEN 1 ELSE 0 END)) AS eval_failed FROM (SELECT -1 AS sign, r.* FROM old_rows r) AS c"
    " JOIN traces t ON t.project_id = c.project_id AND t.trace_id = c.trace_id"
    " GROUP BY t.project_id, (t.start_ns - t.start_ns % 3600000000000)) AS g"
    " WHERE g.trace_count <> 0 OR g.error_count <> 0 OR g.open_traces <> 0 OR g.langgraph_runs <> 0 OR"
    " g.completion_sum <> 0 OR g.input_tokens <> 0 OR g.output_tokens <> 0 OR g.cost_usd <> 0 OR g.eval_count <>"
    " 0 OR g.eval_passed <> 0 OR g.eval_failed <> 0 ON CONFLICT (project_id, hour_ns, writer_pid)"
    " DO UPDATE SET trace_count = trace_hours.trace_count + excluded.trace_count, error_count ="
    " trace_hours.error_count + excluded.error_count, open_traces = trace_hours.open_traces +"
    " excluded.open_traces, langgraph_runs = trace_hours.langgraph_runs + excluded.langgraph_runs,"
    " completion_sum = trace_hours.completion_sum + excluded.completion_sum, input_tokens ="
    " trace_hours.input_tokens + excluded.input_tokens, output_tokens = trace_hours.output_tokens +"
    " excluded.output_tokens, cost_usd = trace_hours.cost_usd + excluded.cost_usd, eval_count ="
    " trace_hours.eval_count + excluded.eval_count, eval_passed = trace_hours.eval_passed +"
    " excluded.eval_passed, eval_failed = trace_hours.eval_failed + excluded.eval_failed; RETURN NULL; END $$",
    "CREATE TRIGGER trace_hours_eval_delete AFTER DELETE ON evaluation_results REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION trace_hours_eval_delete()",
)

# PostgreSQL: columns compressed with lz4 where the server was built with it (else pglz).
LZ4 = {
    "traces": ('input_text', 'output_text', 'attributes'),
    "spans": ('input_text', 'output_text', 'attributes', 'scope', 'events', 'links'),
    "span_events": ('payload',),
    "span_search": ('doc',),
    "span_event_search": ('doc',),
}

TABLES = ("projects", "api_keys", "ui_sessions", "traces", "spans", "resources", "span_events", "evaluation_results",
          "idempotency_keys", "search_state", "policies", "policy_versions", "policy_activations", "trace_decisions",
          "judge_runs", "judge_cache", "cases", "webhook_endpoints", "notifications", "notification_attempts",
          "trace_hours", "trace_hour_latency", "trace_hour_decisions")
SEARCH_TABLES = {"sqlite": ("spans_fts_vocab", "span_events_fts_vocab", "spans_fts", "span_events_fts",
                            "spans_fts_docs"),
                 "postgresql": ("span_search", "span_event_search")}
FUNCTIONS = ("trace_hours_update", "trace_hours_insert", "trace_hours_delete", "trace_hours_eval_insert",
             "trace_hours_eval_update", "trace_hours_eval_delete")


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for statement in (*POSTGRESQL, *POSTGRESQL_TRIGGERS) if pg else (*SQLITE, *SQLITE_TRIGGERS):
        op.execute(statement)
    if pg and _lz4_available():
        for table, columns in LZ4.items():
            op.execute(f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} SET COMPRESSION lz4" for c in columns))
    # Nothing indexed yet: the search index covers ids up to 0.
    op.execute("INSERT INTO search_state (name, indexed_upto) VALUES ('spans', 0), ('span_events', 0)")


def _lz4_available() -> bool:
    row = op.get_bind().exec_driver_sql(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'").first()
    return bool(row and row[0])


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in (*SEARCH_TABLES[dialect], *reversed(TABLES)):  # triggers go with their tables
        op.execute(f"DROP TABLE {table}")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION " + ", ".join(f"{f}()" for f in FUNCTIONS))
        op.execute("DROP SEQUENCE trace_seq")
