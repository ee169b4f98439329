"""Configuration (SPEC section 4): embedded defaults, one-line errors naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relance.config import SIMULATOR_APP_SECRET, ConfigError, load_settings

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
    "WASSENGER_WEBHOOK_SECRET",
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
    "UNKNOWN_OUTCOME_POLICY",
]


# Everything each real provider needs (start-up stops without one of them).
PROVIDER_SECRETS = {
    "meta": {
        "META_ACCESS_TOKEN": "EAAG-token",
        "META_PHONE_NUMBER_ID": "106540352242922",
        "META_APP_SECRET": "the-meta-app-secret",
        "META_VERIFY_TOKEN": "the-verify-token",
    },
    "twilio": {
        "TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef",
        "TWILIO_AUTH_TOKEN": "twilio-auth-token",
        "TWILIO_FROM": "whatsapp:+14155238886",
    },
    "wassenger": {
        "WASSENGER_API_KEY": "wassenger-api-key",
        "WASSENGER_WEBHOOK_SECRET": "wassenger-webhook-secret",
    },
}
MISSING = [(provider, name) for provider, env in PROVIDER_SECRETS.items() for name in env]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*SPEC_VARIABLES, "RELANCE_DATA_DIR"]:
        monkeypatch.delenv(name, raising=False)


def test_embedded_defaults() -> None:
    s = load_settings()
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.effective_database_url.endswith("/.relance/relance.db")
    assert s.effective_broker_url == "filesystem://localhost/"
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
    for name, value in PROVIDER_SECRETS["meta"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("PUBLIC_URL", "https://relance.example.com/")
    s = load_settings()
    assert s.effective_database_url == "postgresql+psycopg://u@db:5432/relance"
    assert s.pacing_redis_url == "redis://cache:6379/0"
    assert s.provider == "meta"
    assert s.effective_public_url == "https://relance.example.com"
    assert not s.is_embedded


@pytest.mark.parametrize(
    ("provider", "policy"),
    [("simulator", "resend"), ("meta", "resend"), ("wassenger", "fail"), ("twilio", "fail")],
)
def test_the_unknown_outcome_policy_defaults_per_provider_and_a_setting_wins(
    monkeypatch: pytest.MonkeyPatch, provider: str, policy: str
) -> None:
    """``resend`` where a status webhook always comes for an accepted message (the Cloud API,
    the simulator), ``fail`` where one may never come (a resend could send twice)."""
    monkeypatch.setenv("RELANCE_PROVIDER", provider)
    for name, value in PROVIDER_SECRETS.get(provider, {}).items():
        monkeypatch.setenv(name, value)
    assert load_settings().outcome_policy == policy
    monkeypatch.setenv("UNKNOWN_OUTCOME_POLICY", "")  # as a .env file writes it unset
    assert load_settings().outcome_policy == policy
    for explicit in ("fail", "resend"):
        monkeypatch.setenv("UNKNOWN_OUTCOME_POLICY", explicit)
        assert load_settings().outcome_policy == explicit
    monkeypatch.setenv("UNKNOWN_OUTCOME_POLICY", "maybe")
    with pytest.raises(ConfigError, match="UNKNOWN_OUTCOME_POLICY"):
        load_settings()


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


@pytest.mark.parametrize("provider", sorted(PROVIDER_SECRETS))
def test_a_real_provider_starts_with_all_it_needs(
    monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    monkeypatch.setenv("RELANCE_PROVIDER", provider)
    for name, value in PROVIDER_SECRETS[provider].items():
        monkeypatch.setenv(name, value)

    assert load_settings().provider == provider


@pytest.mark.parametrize("blank", ["", "   "])
@pytest.mark.parametrize(("provider", "missing"), MISSING)
def test_a_real_provider_without_one_secret_does_not_start(
    monkeypatch: pytest.MonkeyPatch, provider: str, missing: str, blank: str
) -> None:
    monkeypatch.setenv("RELANCE_PROVIDER", provider)
    for name, value in PROVIDER_SECRETS[provider].items():
        monkeypatch.setenv(name, blank if name == missing else value)

    with pytest.raises(ConfigError) as info:
        load_settings()

    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f"invalid configuration: {missing}: must be set when RELANCE_PROVIDER={provider}"
    )


@pytest.mark.parametrize("secret", [None, SIMULATOR_APP_SECRET])
def test_meta_with_the_simulators_public_secret_does_not_start(
    monkeypatch: pytest.MonkeyPatch, secret: str | None
) -> None:
    """Unset, META_APP_SECRET is the simulator's public default: anyone could sign for Meta."""
    monkeypatch.setenv("RELANCE_PROVIDER", "meta")
    for name, value in PROVIDER_SECRETS["meta"].items():
        monkeypatch.setenv(name, value)
    if secret is None:
        monkeypatch.delenv("META_APP_SECRET")
    else:
        monkeypatch.setenv("META_APP_SECRET", secret)

    with pytest.raises(ConfigError) as info:
        load_settings()

    assert str(info.value).startswith("invalid configuration: META_APP_SECRET: must be your Meta")


def _start(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``relance migrate`` in a subprocess: it reads the configuration first, like every command."""
    clean = {k: v for k, v in os.environ.items() if k not in SPEC_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "relance", "migrate"],
        env={**clean, "RELANCE_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("provider", "missing"), [*MISSING, ("meta", "META_APP_SECRET=" + SIMULATOR_APP_SECRET)]
)
def test_cli_stops_when_the_provider_lacks_a_secret(
    tmp_path: Path, provider: str, missing: str
) -> None:
    name, _, value = missing.partition("=")
    env = {**PROVIDER_SECRETS[provider], "RELANCE_PROVIDER": provider}
    if value:
        env[name] = value
    else:
        del env[name]

    proc = _start(env, tmp_path)

    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"relance: invalid configuration: {name}: must "), lines[0]
    assert not (tmp_path / "relance.db").exists()


def test_browsers_and_the_simulator_may_reach_relance_by_different_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Compose: the dashboard is on localhost, the worker posts to the api service."""
    monkeypatch.setenv("PUBLIC_URL", "https://relance.example.com")
    s = load_settings()
    assert s.effective_simulator_webhook_url == "https://relance.example.com/webhooks/simulator"
    assert s.public_url_is_https
    monkeypatch.setenv("SIMULATOR_WEBHOOK_URL", "http://api:8000/webhooks/simulator")
    assert load_settings().effective_simulator_webhook_url == "http://api:8000/webhooks/simulator"
    monkeypatch.setenv("PUBLIC_URL", "http://localhost:8000")
    assert not load_settings().public_url_is_https
