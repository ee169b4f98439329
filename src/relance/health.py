"""Reachability checks for /health and for start-up."""

from __future__ import annotations

from typing import Any

from relance.config import Settings


def broker_ok(settings: Settings) -> dict[str, Any]:
    url = settings.effective_broker_url
    scheme = url.split(":", 1)[0]
    if scheme == "filesystem":
        from relance.worker import broker_options

        folder = broker_options(settings)["data_folder_in"]
        return {"ok": True, "backend": "filesystem", "folder": folder}
    try:
        from kombu.connection import Connection

        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "backend": scheme}
    except Exception as exc:  # health must report, not raise
        return {"ok": False, "backend": scheme, "error": str(exc)[:200]}
