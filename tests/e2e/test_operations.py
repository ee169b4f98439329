"""What an operator meets: one `relance up` per data directory, one ticking Beat, a quiet
terminal that says where it works."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from relance.processes import Processes, free_port, wait_until
from tests.support.api import campaign_for_phones, wait_completed
from tests.support.engine import phone
from tests.support.stack import UNPACED, cli_api_key, relance_command

REFUSAL_SECONDS = 5.0


def _run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, list[str], float]:
    """Exit code, output lines (stdout and stderr) and seconds of a command run to its end."""
    started = time.monotonic()
    done = subprocess.run(
        args, env={**env}, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return done.returncode, lines, time.monotonic() - started


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    import os

    return {
        **os.environ,
        **UNPACED,
        "RELANCE_DATA_DIR": str(tmp_path / "data"),
        "RELANCE_PROVIDER": "simulator",
        "LOG_LEVEL": "INFO",
        **extra,
    }


@pytest.mark.e2e
def test_a_second_up_on_the_same_data_directory_starts_nothing(
    tmp_path: Path, processes: Processes
) -> None:
    env = _env(tmp_path)
    port = free_port()
    first = processes.start("up", relance_command("up", "--port", str(port)), env, cwd=tmp_path)
    wait_until(
        lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200,
        60,
        "the first relance up",
        watch=[first],
        ignore=(httpx.HTTPError,),
    )
    code, lines, seconds = _run(relance_command("up", "--port", str(free_port())), env, tmp_path)
    assert code != 0 and seconds < REFUSAL_SECONDS, (code, seconds, lines)
    assert len(lines) == 1, lines
    assert f"pid {first.pid}" in lines[0] and "data directory" in lines[0], lines
    first.check_alive()


@pytest.mark.e2e
def test_a_busy_port_is_found_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, lines, seconds = _run(
            relance_command("up", "--port", str(port)), _env(tmp_path), tmp_path
        )
    assert code != 0 and seconds < REFUSAL_SECONDS, (code, seconds, lines)
    assert lines == [f"relance: port {port} on 127.0.0.1 is in use: set PORT or --port"]
    # It started nothing: not even the data directory's database.
    assert not (tmp_path / "data" / "relance.db").exists()


@pytest.mark.e2e
def test_apikey_create_says_which_database_it_wrote_to(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = _env(tmp_path)
    del env["RELANCE_DATA_DIR"]
    code, lines, _ = _run(relance_command("apikey", "create", "--name", "x"), env, elsewhere)
    assert code == 0, lines
    database = elsewhere / ".relance" / "relance.db"
    keys = [line for line in lines if line.startswith("rl_")]
    said = "\n".join(line for line in lines if not line.startswith("rl_"))
    assert len(keys) == 1, lines
    assert "there was no database" in said and "RELANCE_DATA_DIR" in said, said
    assert f"created in SQLite file {database}" in said, said


@pytest.mark.e2e
def test_up_prints_a_short_banner_and_a_line_per_campaign_event(
    tmp_path: Path, processes: Processes
) -> None:
    """A 100-contact campaign on the simulator, start to completion: fewer than 20 lines."""
    port = free_port()
    env = _env(
        tmp_path,
        SIMULATOR_MIN_DELAY_SECONDS="0.05",
        SIMULATOR_MAX_DELAY_SECONDS="0.3",
        CHECK_EXPIRED_INTERVAL_SECONDS="1",
        DISPATCH_INTERVAL_SECONDS="1",
    )
    up = processes.start("up", relance_command("up", "--port", str(port)), env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: httpx.get(f"{base}/health", timeout=1).status_code == 200,
        60,
        "relance up",
        watch=[up],
        ignore=(httpx.HTTPError,),
    )
    key = cli_api_key(env, cwd=tmp_path)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        cid = campaign_for_phones(
            c, [phone(i) for i in range(100)], "quiet", reply_window_seconds=5
        )
        assert c.post(f"/api/campaigns/{cid}/launch").status_code == 200
        wait_completed(c, cid, 180, watch=[up])
    processes.stop_all()
    assert up.log_path is not None
    lines = [line for line in up.log_path.read_text().splitlines() if line.strip()]
    assert len(lines) < 20, "\n".join(lines)
    text = "\n".join(lines)
    assert "dashboard:" in text and "database:" in text and "provider simulator" in text
    assert "campaign launched" in text and "campaign completed" in text
    assert "received [data=" not in text and "SecurityWarning" not in text


def _ticks(client: redis.Redis) -> Counter[str]:
    """Periodic tasks Beat has published so far (no worker consumes them), by task name."""
    names: Counter[str] = Counter()
    for raw in client.lrange("celery", 0, -1):
        names[json.loads(raw)["headers"]["task"]] += 1
    return names


@pytest.mark.e2e
def test_beat_stopped_twice_exits_quietly(
    tmp_path: Path, pg_url: str, redis_url: str, processes: Processes
) -> None:
    """``relance up`` stops its children after their process group got the first SIGTERM: the
    second must not print a SystemExit traceback from inside the first one's exit."""
    env = _env(tmp_path, DATABASE_URL=pg_url, BROKER_URL=redis_url, DISPATCH_INTERVAL_SECONDS="1")
    client = redis.Redis.from_url(redis_url)
    subprocess.run(relance_command("migrate"), env=env, check=True, capture_output=True)
    beat = processes.start("beat", relance_command("beat"), env)
    wait_until(
        lambda: _ticks(client)["relance.send_campaign_messages"] >= 1, 60, "a tick", watch=[beat]
    )
    # SIGTERM again and again until it is gone: some land while it exits from the first.
    deadline = time.monotonic() + 60
    while beat.alive() and time.monotonic() < deadline:
        beat.signal(signal.SIGTERM, group=False)
        with contextlib.suppress(subprocess.TimeoutExpired):
            beat.popen.wait(timeout=0.01)
    assert beat.returncode == 0, beat.log_tail()
    assert "Traceback" not in beat.log_tail(200), beat.log_tail(200)


@pytest.mark.e2e
def test_two_beats_never_tick_the_same_period_twice(
    tmp_path: Path, pg_url: str, redis_url: str, processes: Processes
) -> None:
    """Two Beats on one database: one ticks, the other waits; it takes over when the first dies."""
    interval = 1.0
    env = _env(
        tmp_path,
        DATABASE_URL=pg_url,
        BROKER_URL=redis_url,
        DISPATCH_INTERVAL_SECONDS=str(interval),
        CHECK_EXPIRED_INTERVAL_SECONDS="3600",
        RECOVER_INTERVAL_SECONDS="3600",
        CHECK_SENDING_INTERVAL_SECONDS="3600",
    )
    client = redis.Redis.from_url(redis_url)
    subprocess.run(relance_command("migrate"), env=env, check=True, capture_output=True)
    first = processes.start(
        "beat-1", relance_command("beat"), {**env, "RELANCE_DATA_DIR": str(tmp_path / "b1")}
    )
    wait_until(
        lambda: _ticks(client)["relance.send_campaign_messages"] >= 1,
        60,
        "a first tick",
        watch=[first],
    )
    second = processes.start(
        "beat-2", relance_command("beat"), {**env, "RELANCE_DATA_DIR": str(tmp_path / "b2")}
    )
    wait_until(
        lambda: "holds the lease" in second.log_tail(),
        60,
        "the second Beat to wait",
        watch=[second],
    )
    started = time.monotonic()
    before = _ticks(client)["relance.send_campaign_messages"]
    wait_until(
        lambda: _ticks(client)["relance.send_campaign_messages"] >= before + 10,
        60,
        "ten more ticks",
        watch=[first, second],
    )
    elapsed = time.monotonic() - started
    ticked = _ticks(client)["relance.send_campaign_messages"] - before
    # One Beat ticks once per interval; two would tick about twice as often.
    assert ticked <= elapsed / interval + 2, (ticked, elapsed)
    first.kill()
    after_kill = _ticks(client)["relance.send_campaign_messages"]
    wait_until(
        lambda: _ticks(client)["relance.send_campaign_messages"] >= after_kill + 3,
        60,
        "the second Beat to take over",
        watch=[second],
    )
    assert "lease taken over" in second.log_tail()


@pytest.mark.e2e
def test_workers_and_beat_beat_and_health_tells_their_age(
    tmp_path: Path, processes: Processes
) -> None:
    env = _env(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    up = processes.start("up", relance_command("up", "--port", str(port)), env, cwd=tmp_path)
    wait_until(
        lambda: httpx.get(f"{base}/health", timeout=1).status_code == 200,
        60,
        "relance up",
        watch=[up],
        ignore=(httpx.HTTPError,),
    )
    key = cli_api_key(env, cwd=tmp_path)

    def detail() -> dict[str, Any] | None:
        body: dict[str, Any] = httpx.get(
            f"{base}/health", headers={"Authorization": f"Bearer {key}"}, timeout=5
        ).json()
        return body if body.get("workers") and body.get("beat") else None

    body = wait_until(detail, 60, "a worker and Beat heartbeat", watch=[up], interval=1)
    assert all(p["alive"] for p in [*body["workers"], *body["beat"]]), body
    assert "workers" not in httpx.get(f"{base}/health", timeout=5).json()  # public: status only
    for role in ("worker", "beat"):
        code, lines, _ = _run(relance_command("check", role), env, tmp_path)
        assert code == 0, (role, lines)
    processes.stop_all()
    code, lines, _ = _run(relance_command("check", "worker"), env, tmp_path)
    assert code == 1 and "no worker" in lines[-1], lines  # a clean stop said it was gone
