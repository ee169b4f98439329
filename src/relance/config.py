"""One Settings class: every environment variable of SPEC section 4, all optional.

With nothing set, relance runs embedded: a SQLite file and a filesystem broker under
``RELANCE_DATA_DIR`` (default ``./.relance``) and the ``simulator`` provider.
"""

from __future__ import annotations

import functools
import zoneinfo
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderName = Literal["simulator", "meta", "wassenger", "twilio"]
# Signs the simulator's webhooks; public, so it never authenticates a real Meta webhook.
SIMULATOR_APP_SECRET = "relance-simulator-secret"
# What each real provider cannot work without: sends fail, or every webhook is refused and the
# replies are lost. Start-up stops instead when one is missing.
REQUIRED_BY_PROVIDER: dict[str, tuple[str, ...]] = {
    "meta": ("META_ACCESS_TOKEN", "META_PHONE_NUMBER_ID", "META_APP_SECRET", "META_VERIFY_TOKEN"),
    "twilio": ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM"),
    "wassenger": ("WASSENGER_API_KEY", "WASSENGER_WEBHOOK_SECRET"),
}


class ConfigError(Exception):
    """An invalid environment variable; the message is one line naming it."""


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    serverless = parts.scheme in ("filesystem", "memory")
    if parts.scheme not in schemes or not (parts.netloc or parts.path or serverless):
        raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, frozen=True, populate_by_name=True
    )

    data_dir: Path = Field(default=Path(".relance"), validation_alias="RELANCE_DATA_DIR")
    database_url: str = ""
    broker_url: str = ""
    redis_url: str = Field(default="", description="pacing store; defaults to BROKER_URL if redis")
    provider: ProviderName = Field(default="simulator", validation_alias="RELANCE_PROVIDER")

    meta_graph_url: str = "https://graph.facebook.com"
    meta_api_version: str = "v21.0"
    meta_phone_number_id: str = ""
    meta_access_token: str = ""
    meta_app_secret: str = SIMULATOR_APP_SECRET
    meta_verify_token: str = ""
    # The WhatsApp Business Account whose templates GET /api/templates lists (that route only).
    meta_waba_id: str = ""
    wassenger_api_url: str = "https://api.wassenger.com"
    wassenger_api_key: str = ""
    # The Wassenger device (number) the default sender sends from; empty: the account's default.
    wassenger_device: str = ""
    wassenger_webhook_secret: str = ""
    twilio_api_url: str = "https://api.twilio.com"
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from: str = ""

    # Anti-ban pacing, per sender (one WhatsApp number), across all workers.
    send_delay_seconds: float = Field(default=5.0, ge=0)
    batch_size: int = Field(default=50, ge=1)
    batch_pause_seconds: float = Field(default=60.0, ge=0)
    daily_quota: int = Field(default=1000, ge=0, description="0 means no quota")
    max_sends_per_second: float = Field(default=80.0, ge=0, description="0 means no ceiling")
    pacing_timezone: str = "UTC"
    # Meta's messaging limit: unique users messaged outside their 24 h service window per
    # moving 24 h. 0: none (until configured, per sender or here, or read from Meta).
    messaging_limit: int = Field(default=0, ge=0, description="0 means no limit")
    # A sender whose quality turns red or flagged: its Message 1s go at this fraction of its
    # pace (``slow``), or wait until Meta says it recovered (``pause``).
    quality_red_action: Literal["slow", "pause"] = "slow"
    quality_slow_fraction: float = Field(default=0.5, gt=0, le=1)
    # How often Beat reads each Cloud API number's messaging limit, quality and throughput
    # from the Graph API (RELANCE_PROVIDER=meta). 0: never (the webhooks still update them).
    meta_refresh_seconds: float = Field(default=3600.0, ge=0, description="0 means never")
    max_attempts: int = Field(default=5, ge=1)
    sending_grace_seconds: float = Field(default=600.0, ge=0)
    # Unset: the provider's default (``outcome_policy``); an explicit setting wins.
    unknown_outcome_policy: Literal["fail", "resend"] | None = None

    # Webhooks: ``inbox`` answers once the verified body is appended to the inbox, and workers
    # apply the inbox in batches; ``inline`` applies inside the request. Unset: the inbox on
    # PostgreSQL, inline in embedded mode (``ingest_mode``).
    webhook_ingest: Literal["inbox", "inline"] | None = None
    webhook_apply_batch: int = Field(default=500, ge=1, le=10000)
    webhook_apply_interval_seconds: float = Field(default=2.0, gt=0)
    # Applied inbox entries (raw bodies: phone numbers, reply texts) are deleted after this
    # long; what they did stays in the messages and their events. Meta retries for up to 7 days,
    # but a retry is recognised by its events' keys (inbound_events), not by the inbox.
    webhook_inbox_keep_hours: float = Field(default=72.0, gt=0)

    reply_window_seconds: int = Field(default=86400, gt=0)
    check_sending_interval_seconds: float = Field(default=120.0, gt=0)
    check_expired_interval_seconds: float = Field(default=60.0, gt=0)
    recover_interval_seconds: float = Field(default=60.0, gt=0)
    dispatch_interval_seconds: float = Field(default=5.0, gt=0)
    status_check_countdown_seconds: float = Field(default=5.0, ge=0, le=10)

    # What one HTTP request may cost (every route is on the internet).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="request body cap")
    max_import_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="CSV upload cap")
    max_event_streams: int = Field(default=200, ge=1, description="open SSE streams per process")
    event_stream_max_seconds: float = Field(
        default=900.0, gt=0, description="an SSE stream then ends; browsers reconnect by themselves"
    )

    # Dashboard sessions: idle and absolute expiry.
    session_idle_seconds: int = Field(default=8 * 3600, ge=60)
    session_max_seconds: int = Field(default=14 * 86400, ge=60)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # /metrics: with a token, on the API behind ``Authorization: Bearer``; without one, only on
    # its own METRICS_HOST:METRICS_PORT (a private address) if set, else not at all.
    metrics_token: str = ""
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    public_url: str = ""
    default_region: str = "FR"
    stop_keywords: str = "STOP,ARRET,UNSUBSCRIBE"
    # Meta's marketing opt-out quick-reply button sends its label, in the template's language,
    # as the reply's text and payload: these labels (case and accents ignored) opt out.
    stop_buttons: str = "Stop promotions,Parar promoções,Detener promociones,Остановить рекламу"

    simulator_webhook_url: str = Field(
        default="", description="where the simulator posts; default PUBLIC_URL/webhooks/simulator"
    )
    simulator_reply_rate: float = Field(default=0.5, ge=0, le=1)
    simulator_failure_rate: float = Field(default=0.05, ge=0, le=1)
    simulator_min_delay_seconds: float = Field(default=0.2, ge=0)
    simulator_max_delay_seconds: float = Field(default=2.0, ge=0)
    simulator_drop_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of webhooks never delivered (tests E3)"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        return v and _check_url(v, ("sqlite", "postgresql", "postgresql+psycopg", "postgres"))

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, v: str) -> str:
        schemes = ("filesystem", "redis", "rediss", "amqp", "pyamqp", "memory")
        return v and _check_url(v, schemes)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str) -> str:
        return v and _check_url(v, ("redis", "rediss"))

    @field_validator(
        "meta_graph_url",
        "wassenger_api_url",
        "twilio_api_url",
        "public_url",
        "simulator_webhook_url",
    )
    @classmethod
    def _http_url(cls, v: str) -> str:
        return v and _check_url(v, ("http", "https"))

    @field_validator("unknown_outcome_policy", mode="before")
    @classmethod
    def _policy(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v  # empty: the provider's

    @field_validator("pacing_timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("unknown time zone") from exc
        return v

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str) -> str:
        import phonenumbers

        v = v.upper()
        if v not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("unknown region code (expected e.g. FR, US, GB)")
        return v

    @model_validator(mode="after")
    def _simulator_delays(self) -> Settings:
        if self.simulator_max_delay_seconds < self.simulator_min_delay_seconds:
            raise ValueError("SIMULATOR_MAX_DELAY_SECONDS: must be >= SIMULATOR_MIN_DELAY_SECONDS")
        return self

    @model_validator(mode="after")
    def _provider_credentials(self) -> Settings:
        problems = [
            f"{name}: must be set when RELANCE_PROVIDER={self.provider}"
            for name in REQUIRED_BY_PROVIDER.get(self.provider, ())
            if not str(getattr(self, name.lower())).strip()
        ]
        if self.provider == "meta" and self.meta_app_secret == SIMULATOR_APP_SECRET:
            problems.append(
                "META_APP_SECRET: must be your Meta app's secret when RELANCE_PROVIDER=meta, "
                "not the simulator's public default"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # Derived values -------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{(self.data_dir / 'relance.db').resolve()}"

    @property
    def database_shown(self) -> str:
        """The database, for people: the SQLite file, or the URL without its password."""
        from sqlalchemy.engine import make_url

        url = make_url(self.effective_database_url)
        if url.get_backend_name() == "sqlite":
            return f"SQLite file {url.database}"
        return url.render_as_string(hide_password=True)

    @property
    def data_dir_shown(self) -> str:
        """The data directory, absolute, saying when it is the current folder's default."""
        where = str(self.data_dir.resolve())
        if "data_dir" in self.model_fields_set:
            return where
        return f"{where} (./.relance of the current folder: RELANCE_DATA_DIR sets another)"

    @property
    def effective_broker_url(self) -> str:
        # A host, though the filesystem broker has none: kombu warns at every start without one.
        return self.broker_url or "filesystem://localhost/"

    @property
    def pacing_redis_url(self) -> str:
        """Redis holds the shared limiter when there is one; else the database does."""
        if self.redis_url:
            return self.redis_url
        if self.effective_broker_url.startswith(("redis://", "rediss://")):
            return self.effective_broker_url
        return ""

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_simulator_webhook_url(self) -> str:
        """Browsers and the simulator may reach the API by different names (Compose: the
        dashboard on localhost, the worker's simulator on the api service)."""
        return self.simulator_webhook_url or f"{self.effective_public_url}/webhooks/simulator"

    @property
    def public_url_is_https(self) -> bool:
        """Behind an HTTPS proxy the app sees http: PUBLIC_URL says what browsers see."""
        return self.effective_public_url.startswith("https://")

    @property
    def outcome_policy(self) -> Literal["fail", "resend"]:
        """What crash recovery does with a message of unknown outcome (UNKNOWN_OUTCOME_POLICY).

        ``resend`` where the provider always sends a status webhook for a message it accepted,
        matched to our message even without its id (the Cloud API's biz_opaque_callback_data,
        and the simulator, which speaks it): none after the grace period means it never took
        the message. ``fail`` where a status may never come (Wassenger; Twilio does not retry a
        status callback we missed): resending could send the message twice.
        """
        if self.unknown_outcome_policy is not None:
            return self.unknown_outcome_policy
        return "resend" if self.provider in ("meta", "simulator") else "fail"

    @property
    def ingest_mode(self) -> Literal["inbox", "inline"]:
        """Where webhooks are applied (WEBHOOK_INGEST): embedded mode has one SQLite writer
        at a time, so an inbox there would only add a second write per webhook."""
        if self.webhook_ingest is not None:
            return self.webhook_ingest
        return "inline" if self.is_embedded else "inbox"

    @property
    def is_embedded(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def sender_key(self) -> str:
        """The WhatsApp number whose pace is shared by every worker."""
        number = {
            "meta": self.meta_phone_number_id,
            "twilio": self.twilio_from,
            "wassenger": self.wassenger_api_key[:8],
        }.get(self.provider, "")
        return f"{self.provider}:{number or 'default'}"


_FIELD_TO_ENV = {"data_dir": "RELANCE_DATA_DIR", "provider": "RELANCE_PROVIDER"}


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = err.get("loc") or ()
        name = str(loc[0]) if loc else ""
        env = _FIELD_TO_ENV.get(name, name.upper())
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        got = err.get("input")
        shown = f" (got {got!r})" if isinstance(got, str | int | float) and env else ""
        parts.append(f"{env}: {msg}{shown}" if env else msg)
    return "invalid configuration: " + "; ".join(parts)


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise ConfigError with one line naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


@functools.cache
def get_settings() -> Settings:
    return load_settings()
