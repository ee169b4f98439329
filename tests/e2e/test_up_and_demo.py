"""``relance up`` and ``relance demo`` as a new user runs them: no configuration at all."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import psutil

from relance.processes import free_port, wait_until
from tests.support.stack import cli_api_key, relance_command


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """The user's environment without any relance setting: the embedded default."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "SYSTEMROOT", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep} | {"PYTHONUNBUFFERED": "1"}


def test_relance_up_runs_a_campaign_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = _clean_env(tmp_path) | {
        "SEND_DELAY_SECONDS": "0",
        "BATCH_PAUSE_SECONDS": "0",
        "CHECK_EXPIRED_INTERVAL_SECONDS": "1",
        "DISPATCH_INTERVAL_SECONDS": "1",
        "SIMULATOR_MAX_DELAY_SECONDS": "0.5",
    }
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        relance_command("up", "--port", str(port)),
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            try:
                return httpx.get(f"{base}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 60, "relance up to answer /health")
        assert (tmp_path / ".relance" / "relance.db").exists()
        key = cli_api_key(env, tmp_path, inherit_env=False)
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        contact = api.post("/api/contacts", json={"phone": "06 12 34 56 78", "first_name": "Ada"})
        assert contact.status_code == 201, contact.text
        campaign = api.post(
            "/api/campaigns",
            json={
                "name": "up",
                "message_1": "Bonjour {first_name}",
                "message_2": "Merci",
                "contact_ids": [contact.json()["id"]],
                "reply_window_seconds": 3,
            },
        ).json()
        assert api.post(f"/api/campaigns/{campaign['id']}/launch").status_code == 200
        wait_until(
            lambda: api.get(f"/api/campaigns/{campaign['id']}/stats").json()["completed"],
            60,
            "the campaign to complete",
        )
        children = psutil.Process(up.pid).children(recursive=True)
        assert len(children) >= 3  # api, worker, beat
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "up.log").read_text()
    wait_until(
        lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
        10,
        "every child process to exit",
    )
    assert "stopping" in (tmp_path / "up.log").read_text()


def test_relance_demo_exits_0_and_reruns(tmp_path: Path) -> None:
    """The README's first command: the demo campaign completes by itself, twice in a row."""
    for _ in range(2):
        proc = subprocess.run(
            relance_command("demo"),
            cwd=tmp_path,
            env=_clean_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "completed by itself" in proc.stdout
        assert "of 100 recipients" in proc.stdout
