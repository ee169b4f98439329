"""The whole system over HTTP: uvicorn, a Celery worker and Celery Beat, each its own process.

PostgreSQL and Redis underneath; the simulator provider, inside the worker, answers every send
with signed Cloud API webhooks posted to the API over HTTP. The test only talks HTTP: it creates
50 contacts and a campaign, launches it and polls the stats until the campaign completes by
itself (SPEC 1: R1.2, R1.3, R2.3; E3 for the windows that close with no answer). Each contact's
fate is known in advance (``simulated_fate``), so the counts are checked exactly. The reply
window is a multiple of how long replies took to land on this machine, measured first.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from relance.processes import Processes, free_port, wait_for_http, wait_until
from relance.providers.simulator import simulated_fate
from tests.support.api import reply_lag
from tests.support.engine import phone
from tests.support.stack import UNPACED, cli_api_key, relance_command

CONTACTS = 50
MIN_WINDOW_SECONDS = 8
WINDOW_PER_REPLY_LAG = 3  # the probe campaign has fewer webhooks in flight than this one
FAILURE_RATE = 0.1
REPLY_RATE = 0.5
FINAL_STATE = {"fail": "failed", "reply": "message_2_sent", "silent": "no_interaction"}


def _env(tmp_path: Path, pg_url: str, redis_url: str, port: int) -> dict[str, str]:
    data_dir = tmp_path / "data"  # private Beat schedule file and nothing of the repo's .relance
    data_dir.mkdir()
    return {
        "DATABASE_URL": pg_url,
        "BROKER_URL": redis_url,
        "RELANCE_DATA_DIR": str(data_dir),
        "RELANCE_PROVIDER": "simulator",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        **UNPACED,
        "SIMULATOR_MIN_DELAY_SECONDS": "0.05",
        "SIMULATOR_MAX_DELAY_SECONDS": "0.3",
        "SIMULATOR_FAILURE_RATE": str(FAILURE_RATE),
        "SIMULATOR_REPLY_RATE": str(REPLY_RATE),
        "SIMULATOR_DROP_RATE": "0",
        "CHECK_EXPIRED_INTERVAL_SECONDS": "1",
    }


def _created(response: httpx.Response) -> int:
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _phones_in(client: httpx.Client, campaign_id: int, state: str) -> set[str]:
    r = client.get(
        f"/api/campaigns/{campaign_id}/recipients", params={"state": state, "limit": 1000}
    )
    assert r.status_code == 200, r.text
    return {item["phone"] for item in r.json()["items"]}


def test_a_campaign_on_the_simulator_completes_by_itself_over_http(
    processes: Processes, tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    started = time.monotonic()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = _env(tmp_path, pg_url, redis_url, port)
    api = processes.start("api", relance_command("api", "--port", str(port)), env, cwd=tmp_path)
    worker = processes.start(
        "worker", relance_command("worker", "--hostname", f"e2e-{port}@%h"), env, cwd=tmp_path
    )
    beat = processes.start("beat", relance_command("beat"), env, cwd=tmp_path)
    running = (api, worker, beat)
    wait_for_http(f"{base_url}/health", timeout=60, watch=running)
    key = cli_api_key(env, tmp_path)

    with httpx.Client(
        base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        probe = [
            phone(i)
            for i in range(CONTACTS, 2 * CONTACTS)
            if simulated_fate(phone(i), FAILURE_RATE, REPLY_RATE) != "silent"
        ]
        lag = reply_lag(client, probe, "reply lag")
        window = max(MIN_WINDOW_SECONDS, math.ceil(WINDOW_PER_REPLY_LAG * lag))
        print(f"replies landed within {lag:.2f} s: reply window {window} s")
        category = _created(client.post("/api/categories", json={"name": "e2e simulator"}))
        for i in range(CONTACTS):
            contact = {"phone": phone(i), "first_name": f"Ada{i}", "category_ids": [category]}
            _created(client.post("/api/contacts", json=contact))
        campaign = _created(
            client.post(
                "/api/campaigns",
                json={
                    "name": "e2e simulator over HTTP",
                    "message_1": "Bonjour {first_name}, une offre pour vous ?",
                    "message_2": "Merci {first_name} !",
                    "category_ids": [category],
                    "reply_window_seconds": window,
                },
            )
        )
        r = client.post(f"/api/campaigns/{campaign}/launch")
        assert r.status_code == 200, r.text

        def completed_stats() -> dict[str, Any] | None:
            stats: dict[str, Any] = client.get(f"/api/campaigns/{campaign}/stats").json()
            return stats if stats["completed"] else None

        stats = wait_until(
            completed_stats,
            timeout=120,
            interval=0.25,
            what=f"campaign {campaign} to complete by itself",
            watch=running,
            ignore=(httpx.HTTPError,),
        )

        fates = {
            phone(i): simulated_fate(phone(i), FAILURE_RATE, REPLY_RATE) for i in range(CONTACTS)
        }
        expected = Counter(FINAL_STATE[fate] for fate in fates.values())
        assert all(expected[state] > 0 for state in FINAL_STATE.values()), expected  # all paths
        # R2.3: every contact sent Message 1 is counted once, in exactly one final state.
        assert stats["message_2_sent"] + stats["no_interaction"] + stats["failed"] == CONTACTS
        assert {state: stats[state] for state in expected} == dict(expected)
        assert (stats["total"], stats["message_1_sent"]) == (CONTACTS, CONTACTS)
        assert (stats["pending"], stats["awaiting_reply"], stats["interactions"]) == (
            0,
            0,
            expected["message_2_sent"],
        )
        assert stats["completed_at"] is not None  # R1.3
        # Not only the counts: each contact ended where the simulator sent it.
        for fate, state in FINAL_STATE.items():
            want = {p for p, f in fates.items() if f == fate}
            assert _phones_in(client, campaign, state) == want, state
        blocking = client.get(f"/api/campaigns/{campaign}/blocking").json()
        assert blocking["open_recipients"] == 0

    processes.check_alive()  # nobody crashed on the way
    print(f"e2e simulator over HTTP: completed in {time.monotonic() - started:.1f} s")
