"""Configuration (SPEC section 4): embedded defaults, one-line errors naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relance.config import ConfigError, load_settings

SPEC_VARIABLES = [
    "DATABASE_URL",
    "BROKER_URL",
    "RELANCE_PROVIDER",
    "META_GRAPH_URL",
    "META_PHONE_NUMBER_ID",
    "META_ACCESS_TOKEN",
    "META_APP_SECRET",
    "META_VERIFY_TOKEN",
    "WASSENGER_API_URL",
    "WASSENGER_API_KEY",
    "TWILIO_API_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM",
    "SEND_DELAY_SECONDS",
    "BATCH_SIZE",
    "BATCH_PAUSE_SECONDS",
    "DAILY_QUOTA",
    "REPLY_WINDOW_SECONDS",
    "CHECK_SENDING_INTERVAL_SECONDS",
    "STATUS_CHECK_COUNTDOWN_SECONDS",
    "HOST",
    "PORT",
    "PUBLIC_URL",
    "DEFAULT_REGION",
]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*SPEC_VARIABLES, "RELANCE_DATA_DIR"]:
        monkeypatch.delenv(name, raising=False)


def test_embedded_defaults() -> None:
    s = load_settings()
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.effective_database_url.endswith("/.relance/relance.db")
    assert s.effective_broker_url == "filesystem://"
    assert s.provider == "simulator"
    assert (s.send_delay_seconds, s.batch_size, s.batch_pause_seconds) == (5.0, 50, 60.0)
    assert s.reply_window_seconds == 86400
    assert s.check_sending_interval_seconds == 120
    assert s.status_check_countdown_seconds == 5
    assert s.effective_public_url == "http://127.0.0.1:8000"
    assert s.default_region == "FR"
    assert s.is_embedded


def test_every_spec_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db:5432/relance")
    monkeypatch.setenv("BROKER_URL", "redis://cache:6379/0")
    monkeypatch.setenv("RELANCE_PROVIDER", "meta")
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("PUBLIC_URL", "https://relance.example.com/")
    s = load_settings()
    assert s.effective_database_url == "postgresql+psycopg://u@db:5432/relance"
    assert s.pacing_redis_url == "redis://cache:6379/0"
    assert s.provider == "meta"
    assert s.effective_public_url == "https://relance.example.com"
    assert not s.is_embedded


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SEND_DELAY_SECONDS", "-1", "greater than or equal to 0"),
        ("RELANCE_PROVIDER", "whatsapp-web", "'simulator', 'meta', 'wassenger' or 'twilio'"),
        ("DATABASE_URL", "mysql://x", "must be a URL"),
        ("META_GRAPH_URL", "graph.facebook.com", "must be a URL"),
        ("BATCH_SIZE", "many", "valid integer"),
        ("PORT", "70000", "less than or equal to 65535"),
        ("DEFAULT_REGION", "XX", "unknown region"),
        ("STATUS_CHECK_COUNTDOWN_SECONDS", "30", "less than or equal to 10"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert name in message
    assert says in message


def test_cli_stops_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "SEND_DELAY_SECONDS": "-5", "RELANCE_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "relance", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("relance: invalid configuration: SEND_DELAY_SECONDS")
    assert not (tmp_path / "relance.db").exists()
