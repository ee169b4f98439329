"""The Celery app and its one Beat schedule (``celery -A relance.worker``)."""

from __future__ import annotations

import contextlib
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from relance.config import Settings, get_settings
from relance.logs import configure_logging


def broker_options(settings: Settings) -> dict[str, Any]:
    url = settings.effective_broker_url
    if url.startswith("filesystem"):
        # A broker that needs no server: queues are files under the data directory.
        folder = (settings.data_dir / "broker").resolve()
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            # kombu's default control folder is ./control in the current directory.
            "control_folder": str(folder / "control"),
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "polling_interval": 0.05,
        }
    if url.startswith(("redis", "rediss")):
        return {"visibility_timeout": 3600, "polling_interval": 0.05}
    return {}


PURGE_INTERVAL_SECONDS = 3600.0


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Beat only ticks; each tick claims due work from the database (idempotent if doubled)."""
    dispatch = settings.dispatch_interval_seconds
    schedule: dict[str, dict[str, Any]] = {
        # R2.1: the plan's safety net, every 2 minutes by default.
        "check-sending-campaigns": {
            "task": "relance.check_sending_campaigns",
            "schedule": settings.check_sending_interval_seconds,
            "options": {"expires": settings.check_sending_interval_seconds},
        },
        # E3: a window closes within one interval of its deadline.
        "check-expired-interactions": {
            "task": "relance.check_expired_interactions",
            "schedule": settings.check_expired_interval_seconds,
            "options": {"expires": settings.check_expired_interval_seconds},
        },
        "recover-interrupted-campaigns": {
            "task": "relance.recover_interrupted_campaigns",
            "schedule": settings.recover_interval_seconds,
            "options": {"expires": settings.recover_interval_seconds},
        },
        # The webhook inbox's safety net: the API wakes an applier after every append.
        "apply-webhooks": {
            "task": "relance.apply_webhooks",
            "schedule": settings.webhook_apply_interval_seconds,
            "options": {"expires": settings.webhook_apply_interval_seconds},
        },
        "purge-webhook-inbox": {
            "task": "relance.purge_webhook_inbox",
            "schedule": PURGE_INTERVAL_SECONDS,
            "options": {"expires": PURGE_INTERVAL_SECONDS},
        },
        "dispatch-due-messages": {
            "task": "relance.send_campaign_messages",
            "schedule": dispatch,
            "options": {"expires": dispatch},
        },
    }
    if settings.provider == "meta" and settings.meta_refresh_seconds:
        # Meta's limit, quality and throughput of each number (the webhooks say most of it).
        schedule["refresh-meta-senders"] = {
            "task": "relance.refresh_meta_senders",
            "schedule": settings.meta_refresh_seconds,
            "options": {"expires": settings.meta_refresh_seconds},
        }
    return schedule


def make_celery(settings: Settings) -> Celery:
    app = Celery("relance", broker=settings.effective_broker_url, include=["relance.tasks"])
    embedded_broker = settings.effective_broker_url.startswith("filesystem")
    app.conf.update(
        broker_transport="relance.broker:AtomicFilesystemTransport" if embedded_broker else None,
        broker_transport_options=broker_options(settings),
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(settings),
        beat_schedule_filename=str((settings.data_dir / "celerybeat-schedule").resolve()),
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return app


settings = get_settings()
celery_app = make_celery(settings)
app = celery_app


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # A forked pool process must not reuse the parent's database connections.
    from relance.db import dispose_engines

    dispose_engines()
    configure_logging(settings.log_level, settings.log_json)


@worker_ready.connect
def _start_heartbeat(**_: Any) -> None:
    from relance import heartbeats

    heartbeats.start(settings, "worker")


@worker_shutdown.connect
def _say_stopped(**_: Any) -> None:
    from relance import heartbeats

    with contextlib.suppress(Exception):  # stopping anyway; a stale row says the same, later
        heartbeats.forget(settings, "worker")
