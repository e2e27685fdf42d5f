"""Prometheus metrics of the ingest path, served at `/metrics` with the default process metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

INGEST_REQUESTS = Counter("tracehub_ingest_requests", "Ingest requests by transport and outcome.",
                          ["transport", "outcome"])
SPANS_STORED = Counter("tracehub_spans_stored", "Spans committed to the database.")
SPANS_DUPLICATE = Counter("tracehub_spans_duplicate", "Re-delivered spans that were already stored.")
SPANS_REJECTED = Counter("tracehub_spans_rejected", "Invalid spans and log records rejected.")
EVENTS_STORED = Counter("tracehub_events_stored", "Span events and log records committed.")
DECODE_TRANSFERS = Counter("tracehub_decode_transfers",
                           "OTLP trace requests sent to decode workers, by how their body crossed: shared"
                           " (memory) or pipe (the arena was full or missing); pipe_rows counts the shared"
                           " ones whose rows outgrew their room and came back through the pipe.", ["path"])
DECODE_ARENA_FREE = Gauge("tracehub_decode_arena_free_bytes",
                          "Free bytes of the memory shared with the decode workers.")
WRITER_BUSY_SECONDS = Counter("tracehub_writer_busy_seconds",
                              "Time the writer spent in its transactions, writing and committing: a rate"
                              " near 1 means ingest waits on the writer.")
WRITER_TRANSACTIONS = Counter("tracehub_writer_transactions",
                              "Transactions of the writer, each holding one or more requests.")
WRITER_CONFLICTS = Counter("tracehub_writer_conflicts",
                           "Writer transactions run again after a conflict with another server process on the"
                           " same PostgreSQL (a trace both stored first, a deadlock).")
WEBHOOK_DELIVERIES = Counter("tracehub_webhook_deliveries", "Webhook notifications delivered (answered 2xx).")
WEBHOOK_FAILURES = Counter("tracehub_webhook_failures",
                           "Failed webhook delivery attempts by reason: http (an answer other than 2xx and"
                           " 410), gone (410: the endpoint is disabled), error (connection, timeout),"
                           " refused (the target's address is not allowed).", ["reason"])
POLICY_REGEX_TIMEOUTS = Counter("tracehub_policy_regex_timeouts",
                                "Policy regex searches stopped after REGEX_TIMEOUT_S (counted as no match).")
QUEUED_SPANS = Gauge("tracehub_writer_queued_spans", "Spans waiting for the writer.")
SEARCH_UNINDEXED_ROWS = Gauge("tracehub_search_unindexed_rows",
                              "Span and event rows committed but not yet in the search index (searches scan them).")
SEARCH_LAG_SECONDS = Gauge("tracehub_search_lag_seconds",
                           "How long the oldest row not yet in the search index has waited for it.")
EXPORT_SECONDS = Histogram("tracehub_export_seconds", "Time from a request's submit to its commit.",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
AUTO_DECISION_QUEUE = Gauge("tracehub_auto_decision_queue",
                            "Completed traces waiting for the decision worker: handed over, settling or"
                            " being decided.")
AUTO_DECISIONS = Counter("tracehub_auto_decisions", "Traces the decision worker decided automatically.")
AUTO_DECISION_ERRORS = Counter("tracehub_auto_decision_errors",
                               "Automatic decisions that failed; the worker's sweep tries them again.")
AUTO_DECISION_DROPPED = Counter("tracehub_auto_decision_dropped",
                                "Completed traces the writer could not hand to the decision worker (its"
                                " hand-off was full); the worker's sweep finds them.")
DECISIONS = Counter("tracehub_decisions", "Decisions recorded, by action (shadow versions' not counted).",
                    ["action"])
JUDGE_CACHE_HITS = Counter("tracehub_judge_cache_hits",
                           "Decisions whose judge outcome came from the judge cache (same inputs, policy"
                           " version and judge model).")
JUDGE_ERRORS = Counter("tracehub_judge_errors",
                       "Judge runs that failed and fell back, by judge_runs.status (invalid_output,"
                       " timeout, http_error, error).", ["status"])
