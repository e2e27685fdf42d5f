"""The running hub: settings, engine, writer, pipeline and key resolver, built once and passed down.

API routes and the CLI take a `Hub`; the OTLP receivers take its `intake`, so they need not import
this module. Nothing else creates engines or writers.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from tracehub.collector import otlp
from tracehub.collector.decoding import DecodePool, default_workers
from tracehub.collector.intake import Intake
from tracehub.collector.pipeline import Pipeline
from tracehub.collector.pricing import Pricing
from tracehub.decision.engine import Engine
from tracehub.decision.judges import HeuristicJudge, Judge
from tracehub.decision.llm_judge import LlmJudge
from tracehub.decision.webhooks import Deliveries
from tracehub.decision.worker import DecisionWorker
from tracehub.settings import Settings
from tracehub.store import db, keys
from tracehub.store.retention import Retention
from tracehub.store.writer import Writer

log = logging.getLogger(__name__)


class Hub:
    def __init__(self, settings: Settings, engine: sa.Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or db.create_engine(settings.database_url)
        # API reads, on the same pool: without BEGIN and ROLLBACK around them. Under READ COMMITTED
        # (and SQLite's reads) each statement sees its own snapshot either way.
        self.reads = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.writer = Writer(self.engine, settings.queue_max_spans, settings.writer_batch_spans)
        self.pricing = Pricing.load(settings.prices_file)
        self.pipeline = Pipeline(self.writer, pricing=self.pricing,
                                 max_inflight_bytes=settings.max_inflight_bytes)
        # Anyone who can reach a public address knows dev-key.
        self.keys = keys.KeyResolver(self.engine, refuse_default_key=not (
            settings.binds_loopback or settings.allow_default_key_on_public))
        otlp.use_wire_reader(settings.otlp_c_reader)  # before the workers fork
        workers = settings.decode_workers
        self.decoder = DecodePool(workers if workers >= 0 else default_workers(settings.database_url),
                                  self.pricing, self.writer.nul_free, settings.otlp_c_reader,
                                  nice=settings.decode_worker_nice)
        # What the OTLP receivers take.
        self.intake = Intake(self.keys.project_for, self.pipeline, self.decoder.decode_traces,
                             self.decoder.decode_logs, settings.max_request_bytes)
        judge: Judge = LlmJudge.from_settings(settings, self.pricing) if settings.judge == "llm" else HeuristicJudge()
        # Decides on one trace and records it through the writer's decision lane.
        self.decisions = Engine(self.reads, self.writer, judge, settings.missing_parent_grace_s)
        # Decides completed traces off the request path, on an event loop of its own: so with an
        # engine and judge of its own (an LLM judge's HTTP client belongs to one loop).
        self.auto_decisions: DecisionWorker | None = None
        self.auto_engine: Engine | None = None
        if settings.decisions:
            auto = self.auto_engine = Engine(self.reads, self.writer, LlmJudge.from_settings(settings, self.pricing)
                          if settings.judge == "llm" else HeuristicJudge(), settings.missing_parent_grace_s)
            self.auto_decisions = DecisionWorker(self.reads, lambda p, t: auto.decide(p, t, source="auto"),
                                                 settings.decision_settle_s, settings.missing_parent_grace_s,
                                                 self.writer.busy, auto.aclose)
            self.writer.on_completed = self.auto_decisions.completed
        self.webhooks = Deliveries(self.engine, settings)  # sends the cases' notification outbox
        # Deletes traces past their project's retention, a chunk at a time through the writer.
        self.retention = (Retention(self.engine, self.writer, settings.retention_interval_s)
                          if settings.retention_interval_s > 0 else None)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def prepare(self) -> None:
        """Migrate, make sure a project exists, and start the writer and the decode workers."""
        db.migrate(self.engine)
        keys.ensure_default_project(self.engine)
        # Forked workers must not inherit open connections: a child closing one would end the
        # server's PostgreSQL session, or could checkpoint SQLite's WAL under the server.
        self.engine.dispose()
        self.decoder.start()  # forks: before any thread
        self.writer.start()
        self.webhooks.start()
        if self.auto_decisions is not None:
            self.auto_decisions.start()
        if self.retention is not None:
            self.retention.start()

    def close(self) -> None:
        if self.retention is not None:  # before the writer: a chunk under way writes through it
            self.retention.stop()
        self.webhooks.stop()
        if self.auto_decisions is not None:  # before the writer: decisions under way write through it
            self.auto_decisions.stop()
        self.decisions.close()
        if self.auto_engine is not None:
            self.auto_engine.close()
        self.decoder.close()
        self.writer.stop()
        self.keys.close()
        self.engine.dispose()
