"""Reachability of the database and the broker, for /health and for start-up.

``/health`` is open to anyone (load balancers, Compose healthchecks), so what it costs and what
it tells are bounded: the probes run at most once every ``CACHE_SECONDS`` whatever the rate of
calls (a broker that is down costs its connect timeout once, not on every call), and their
details (backends, error texts) are for callers with an API key only.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from relance import __version__
from relance.config import Settings

CACHE_SECONDS = 5.0
BROKER_TIMEOUT_SECONDS = 2.0


def broker_ok(settings: Settings) -> dict[str, Any]:
    url = settings.effective_broker_url
    scheme = url.split(":", 1)[0]
    if scheme == "filesystem":
        from relance.worker import broker_options

        broker_options(settings)  # creates the folders if they are missing
        return {"ok": True, "backend": "filesystem"}
    try:
        from kombu.connection import Connection

        with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as conn:
            conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        return {"ok": True, "backend": scheme}
    except Exception as exc:  # health must report, not raise
        return {"ok": False, "backend": scheme, "error": str(exc)[:200]}


def database_ok(settings: Settings) -> dict[str, Any]:
    from relance.db import get_engine

    engine = get_engine(settings)
    try:
        with engine.connect() as conn:
            # The inbox lag: the age of the oldest webhook accepted and not applied yet.
            oldest = conn.execute(
                text("SELECT min(received_at) FROM webhook_inbox WHERE applied_at IS NULL")
            ).scalar()
        lag = 0.0 if oldest is None else _age_seconds(oldest)
        return {"ok": True, "backend": engine.dialect.name, "webhook_inbox_lag_seconds": lag}
    except Exception as exc:  # health must report, not raise
        return {"ok": False, "backend": engine.dialect.name, "error": str(exc)[:200]}


def _age_seconds(at: Any) -> float:
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    if when.tzinfo is None:  # SQLite keeps naive UTC
        when = when.replace(tzinfo=UTC)
    return round(max(0.0, (datetime.now(UTC) - when).total_seconds()), 3)


class HealthProbe:
    """The last probe results, renewed at most once every ``ttl`` seconds (thread-safe)."""

    def __init__(self, settings: Settings, ttl: float = CACHE_SECONDS) -> None:
        self.settings = settings
        self.ttl = ttl
        self._lock = threading.Lock()
        self._checked_at = -float("inf")
        self._checks: dict[str, dict[str, Any]] = {}

    def checks(self) -> dict[str, dict[str, Any]]:
        # One caller probes; the others wait for its answer instead of probing too.
        with self._lock:
            if time.monotonic() - self._checked_at >= self.ttl:
                self._checks = {
                    "database": database_ok(self.settings),
                    "broker": broker_ok(self.settings),
                }
                self._checked_at = time.monotonic()
            return self._checks

    def report(self, detailed: bool) -> tuple[dict[str, Any], int]:
        """The body and status code of /health: 200 when every probe is ok, else 503."""
        checks = self.checks()
        healthy = all(check["ok"] for check in checks.values())
        body: dict[str, Any] = {"status": "ok" if healthy else "degraded"}
        if detailed:
            from relance import heartbeats

            try:
                alive: dict[str, Any] = heartbeats.report(self.settings)
            except Exception:  # the database probe says why
                alive = {}
            body.update(version=__version__, **checks, **alive)
        return body, 200 if healthy else 503
