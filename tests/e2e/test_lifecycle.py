"""A campaign goes from launch to ``completed`` by itself with real processes (SPEC 1, 2).

API (uvicorn), a Celery worker and Celery Beat run as subprocesses on PostgreSQL + Redis; the
simulator answers over HTTP with signed Cloud API webhooks. Nothing but the processes moves
the campaign: the test only launches it and waits, polling with a deadline.

The reply window follows from this machine's speed: a first campaign, of contacts that all reply
or fail, measures how long replies take to land here; the window is a multiple of that.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relance.accounts.keys import create_api_key
from relance.config import Settings, load_settings
from relance.db import session_scope
from relance.processes import free_port
from relance.providers.simulator import reply_dropped, simulated_fate
from relance.runner import running_stack
from tests.support.api import campaign_for_phones, reply_lag, wait_completed
from tests.support.engine import phone
from tests.support.stack import UNPACED

CONTACTS = 200
MIN_WINDOW = 6
WINDOW_PER_REPLY_LAG = 3  # the campaign under test has more webhooks in flight than the probe
FAST = {
    **UNPACED,
    "SIMULATOR_MIN_DELAY_SECONDS": "0.05",
    "SIMULATOR_MAX_DELAY_SECONDS": "0.5",
    "SIMULATOR_REPLY_RATE": "0.4",
    "SIMULATOR_FAILURE_RATE": "0.1",
    "CHECK_EXPIRED_INTERVAL_SECONDS": "1",
    "CHECK_SENDING_INTERVAL_SECONDS": "3",
    "DISPATCH_INTERVAL_SECONDS": "1",
    "RELANCE_PROVIDER": "simulator",
}


def _stack_settings(
    tmp_path: Path, pg_url: str, redis_url: str, extra: dict[str, str]
) -> tuple[Settings, dict[str, str]]:
    env = {
        **FAST,
        **extra,
        "DATABASE_URL": pg_url,
        "BROKER_URL": redis_url,
        "RELANCE_DATA_DIR": str(tmp_path / "data"),
    }
    fields = {
        k.lower(): v for k, v in env.items() if k not in ("RELANCE_DATA_DIR", "RELANCE_PROVIDER")
    }
    settings = load_settings(**fields, data_dir=tmp_path / "data", provider="simulator")
    return settings, env


@pytest.fixture
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, redis_url: str
) -> Iterator[tuple[httpx.Client, Settings]]:
    extra: dict[str, str] = getattr(request, "param", {})
    settings, env = _stack_settings(tmp_path, pg_url, redis_url, extra)
    port = free_port()
    env["PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    with running_stack(settings, "127.0.0.1", port, env, str(tmp_path)) as running:
        with session_scope(settings) as session:
            key = create_api_key(session, "e2e")
        client = httpx.Client(
            base_url=running.base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
        )
        try:
            yield client, settings
        finally:
            client.close()
            for log in sorted(tmp_path.glob("*.log")):
                print(
                    f"--- {log.name} (tail) ---\n"
                    + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                )


def _launch(client: httpx.Client, settings: Settings, n: int, dropped: bool) -> int:
    """Contacts 0..n-1 in a campaign whose reply window outlasts this machine's reply lag."""
    probe = [
        phone(i)
        for i in range(n, 2 * n)
        if _final_state(settings, phone(i), dropped) != "no_interaction"
    ]
    lag = reply_lag(client, probe, "reply lag")
    window = max(MIN_WINDOW, math.ceil(WINDOW_PER_REPLY_LAG * lag))
    print(f"replies landed within {lag:.2f} s: reply window {window} s")
    phones = [phone(i) for i in range(n)]
    cid = campaign_for_phones(client, phones, "e2e", reply_window_seconds=window)
    assert client.post(f"/api/campaigns/{cid}/launch").status_code == 200
    return cid


def _wait_completed(client: httpx.Client, cid: int) -> dict[str, Any]:
    return wait_completed(client, cid, 120, interval=0.25)


def _final_state(settings: Settings, number: str, dropped: bool) -> str:
    """Where the simulator sends this contact (``dropped``: its reply webhook may be lost)."""
    fate = simulated_fate(number, settings.simulator_failure_rate, settings.simulator_reply_rate)
    if fate == "fail":
        return "failed"
    if fate == "reply" and not (dropped and reply_dropped(number, settings.simulator_drop_rate)):
        return "message_2_sent"
    return "no_interaction"


def _expected(settings: Settings, n: int, dropped: bool) -> dict[str, int]:
    out = {"message_2_sent": 0, "no_interaction": 0, "failed": 0}
    for i in range(n):
        out[_final_state(settings, phone(i), dropped)] += 1
    return out


def test_campaign_completes_by_itself(stack: tuple[httpx.Client, Settings]) -> None:
    """R1.1-R1.4, R2.3: some reply, some never, some fail; completed with completed_at set."""
    client, settings = stack
    cid = _launch(client, settings, CONTACTS, dropped=False)
    stats = _wait_completed(client, cid)
    expected = _expected(settings, CONTACTS, dropped=False)
    assert expected["message_2_sent"] > 0 and expected["failed"] > 0
    assert {k: stats[k] for k in expected} == expected
    assert stats["completed_at"] is not None
    assert stats["total"] == stats["message_1_sent"] == CONTACTS
    assert stats["message_2_sent"] + stats["no_interaction"] + stats["failed"] == CONTACTS
    assert stats["pending"] == stats["awaiting_reply"] == 0


@pytest.mark.parametrize("stack", [{"SIMULATOR_DROP_RATE": "0.5"}], indirect=True)
def test_missed_reply_webhooks_do_not_block(stack: tuple[httpx.Client, Settings]) -> None:
    """E3: half the reply webhooks are lost; Beat's sweeps still finish the campaign."""
    client, settings = stack
    cid = _launch(client, settings, CONTACTS, dropped=True)
    stats = _wait_completed(client, cid)
    expected = _expected(settings, CONTACTS, dropped=True)
    lost = (
        _expected(settings, CONTACTS, dropped=False)["message_2_sent"] - expected["message_2_sent"]
    )
    assert lost > 0
    assert {k: stats[k] for k in expected} == expected
    assert stats["completed_at"] is not None
