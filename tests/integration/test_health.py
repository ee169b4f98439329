"""/health on SQLite and PostgreSQL: a status for anyone, details with a key, probes cached."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from relance import health
from relance.api import create_app
from relance.config import Settings, get_settings, load_settings
from tests.support.api import new_api_key


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the probes that really run."""
    calls: list[str] = []
    real_broker, real_database = health.broker_ok, health.database_ok

    def broker(settings: Settings) -> dict[str, Any]:
        calls.append("broker")
        return real_broker(settings)

    def database(settings: Settings) -> dict[str, Any]:
        calls.append("database")
        return real_database(settings)

    monkeypatch.setattr(health, "broker_ok", broker)
    monkeypatch.setattr(health, "database_ok", database)
    return calls


@pytest.fixture
def broker_down(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    get_settings.cache_clear()
    yield load_settings()
    get_settings.cache_clear()


def test_anyone_gets_the_status_only(settings: Settings, probes: list[str]) -> None:
    with TestClient(create_app(settings)) as client:
        r = client.get("/health")
        assert (r.status_code, r.json()) == (200, {"status": "ok"})
        wrong = client.get("/health", headers={"Authorization": "Bearer rl_wrong"})
        assert wrong.json() == {"status": "ok"}
        key = new_api_key(settings)
        detailed = client.get("/health", headers={"Authorization": f"Bearer {key}"}).json()
    assert detailed["status"] == "ok"
    assert detailed["database"] == {
        "ok": True,
        "backend": settings.effective_database_url.split("+")[0].split(":")[0],
        "webhook_inbox_lag_seconds": 0.0,  # nothing waits in the inbox
    }
    assert detailed["broker"] == {"ok": True, "backend": "memory"}
    assert "version" in detailed


def test_probes_run_at_most_once_per_cache_period(settings: Settings, probes: list[str]) -> None:
    with TestClient(create_app(settings)) as client:
        for _ in range(30):
            assert client.get("/health").status_code == 200
        assert probes == ["database", "broker"]
        client.app.state.health.ttl = 0  # type: ignore[attr-defined]
        client.get("/health")
    assert probes == ["database", "broker"] * 2


def test_a_broker_down_is_503_without_its_error_text_in_public(
    broker_down: Settings, probes: list[str]
) -> None:
    with TestClient(create_app(broker_down)) as client:
        public = [client.get("/health") for _ in range(5)]
        key = new_api_key(broker_down)
        detailed = client.get("/health", headers={"Authorization": f"Bearer {key}"})
    for r in public:
        assert (r.status_code, r.json()) == (503, {"status": "degraded"})
    assert probes.count("broker") == 1  # an unreachable broker is not asked on every call
    body = detailed.json()
    assert detailed.status_code == 503
    assert body["broker"]["ok"] is False and body["broker"]["error"]
    assert body["database"]["ok"] is True
    assert "folder" not in body["broker"]
