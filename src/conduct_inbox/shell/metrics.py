"""Prometheus metrics (`[metrics] listen`): counts and times read from the database at scrape time.

Every value is a gauge computed by a few aggregate queries over plain (never sealed) columns
when Prometheus asks, so the numbers survive restarts, the forked dispatch worker needs no
changes, and nothing in the hot path counts. The collector has an engine of its own without the
encryption key: it could not read a report's content even by mistake. No label carries an
address, a subject or a case reference; the only label is a case's kind (normal, auto, spam).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, create_engine, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from conduct_inbox.core.sla import CLOSED_STATES
from conduct_inbox.errors import where
from conduct_inbox.ports import Clock
from conduct_inbox.store.models import Case, InboundMessage, MailboxState, OutboxMessage

log = logging.getLogger(__name__)

#: A scrape gives up on the database after this long (a stuck database must not hang Prometheus).
QUERY_TIMEOUT_SECONDS = 2
#: The inbound kinds that are reports (a report by mail; one a member forwarded with `!new`).
REPORT_KINDS = ("new_report", "forwarded_report")
PREFIX = "conduct_inbox"


def parse_listen(value: str) -> tuple[str, int]:
    """"127.0.0.1:9464" or "[::1]:9464" -> (host, port); the caller validated it (config.Metrics)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def metrics_engine(url: str) -> Engine:
    """A small read-only engine with short timeouts and no cipher (only unsealed columns are read)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, hide_parameters=True, pool_size=1, max_overflow=0,
                               pool_timeout=QUERY_TIMEOUT_SECONDS, connect_args={"timeout": QUERY_TIMEOUT_SECONDS})

        def _query_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only = ON")

        event.listen(engine, "connect", _query_only)
        return engine
    ms = QUERY_TIMEOUT_SECONDS * 1000
    return create_engine(
        url, hide_parameters=True, pool_pre_ping=True, pool_size=1, max_overflow=0, pool_timeout=QUERY_TIMEOUT_SECONDS,
        connect_args={"connect_timeout": QUERY_TIMEOUT_SECONDS,
                      "options": f"-c statement_timeout={ms} -c lock_timeout={ms} -c default_transaction_read_only=on"},
    )


def _age(now: datetime, then: datetime | None) -> float:
    return 0.0 if then is None else max(0.0, (now - then).total_seconds())


class DatabaseCollector(Collector):
    """Gauges from aggregate queries at scrape time; one `up`-style gauge says whether they worked."""

    def __init__(self, engine: Engine, clock: Clock = lambda: datetime.now(timezone.utc)):
        self.engine = engine
        self.clock = clock

    def describe(self) -> Iterator[Any]:
        return iter(())  # values come from the database at scrape time only: no query at registration

    def collect(self) -> Iterator[Any]:
        try:
            families = self._families()
            ok = 1.0
        except (SQLAlchemyError, OSError) as exc:
            log.warning("metrics: database query failed (%s)", where(exc))
            families, ok = [], 0.0
        yield from families
        yield GaugeMetricFamily(f"{PREFIX}_database_up", "1 when the last scrape could read the database, else 0",
                                value=ok)

    def _families(self) -> list[Any]:
        now = self.clock()
        with self.engine.connect() as conn:
            reports = conn.scalar(select(func.count(InboundMessage.id)).where(InboundMessage.kind.in_(REPORT_KINDS)))
            kind = case((Case.spam.is_(True), "spam"), (Case.auto.is_(True), "auto"), else_="normal")
            cases: dict[str, int] = dict(conn.execute(select(kind, func.count(Case.id)).group_by(kind)).tuples().all())
            outbox: dict[str, int] = dict(conn.execute(select(OutboxMessage.status, func.count(OutboxMessage.id))
                                       .group_by(OutboxMessage.status)).tuples().all())
            oldest_pending = conn.scalar(select(func.min(OutboxMessage.created_at))
                                         .where(OutboxMessage.status == "pending"))
            last_poll = conn.scalar(select(func.max(MailboxState.last_ok_at)))
            oldest_unacked = conn.scalar(select(func.min(Case.created_at)).where(
                Case.human_ack_at.is_(None), Case.spam.is_(False), Case.auto.is_(False),
                Case.status.not_in(sorted(CLOSED_STATES)),
            ))
            conn.rollback()

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)

        opened = GaugeMetricFamily(f"{PREFIX}_cases_opened", "Cases opened, by kind (normal, auto, spam)",
                                   labels=["kind"])
        for name in ("normal", "auto", "spam"):
            opened.add_metric([name], float(cases.get(name, 0)))
        families: list[Any] = [
            gauge("reports_received", "Reports received (by mail or forwarded with !new) held in the database",
                  float(reports or 0)),
            opened,
            gauge("mails_sent", "Outgoing mails handed to SMTP", float(outbox.get("sent", 0))),
            gauge("mails_failed", "Outgoing mails that failed permanently", float(outbox.get("failed", 0))),
            gauge("outbox_pending", "Outgoing mails not sent yet", float(outbox.get("pending", 0))),
            gauge("outbox_oldest_pending_age_seconds", "Age of the oldest unsent outgoing mail (0: none)",
                  _age(now, oldest_pending)),
            gauge("oldest_unacknowledged_case_age_seconds",
                  "Age of the oldest open case no member has acknowledged yet (0: none)", _age(now, oldest_unacked)),
        ]
        if last_poll is not None:
            families.append(gauge("mailbox_last_poll_success_timestamp_seconds",
                                  "Unix time of the last successful mailbox poll", last_poll.timestamp()))
        return families


class MetricsServer:
    """The /metrics HTTP endpoint on a thread of its own; `close()` stops it and its engine."""

    def __init__(self, listen: str, database_url: str):
        self.host, self.port = parse_listen(listen)
        self.engine = metrics_engine(database_url)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DatabaseCollector(self.engine))
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        log.info("metrics on http://%s/metrics", f"[{self.host}]:{self.port}" if ":" in self.host else
                 f"{self.host}:{self.port}")

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.engine.dispose()
