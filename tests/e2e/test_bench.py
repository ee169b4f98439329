"""``relance bench --quick`` runs end to end and writes a valid report (SPEC section 8).

Figures belong to the report, never to a test: this checks the report's shape only, and that
the bench left nothing behind (its scratch database is gone).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_URL, REDIS_URL, require_server
from tests.support.stack import relance_command

FIGURES = {
    "fanout_recipients_per_s",
    "dispatch_messages_per_s",
    "dispatch_4_senders_messages_per_s",
    "webhook_events_per_s",
    "webhook_single_requests_per_s",
    "webhook_single_p99_s",
    "webhook_apply_lag_p99_s",
    "reply_to_m2_p99_s",
    "completion_lag_p99_s",
    "status_check_ms_at_1m",
    "worker_rss_growth_mb",
    "recipients_page_p99_ms",
    "export_rows_per_s",
}
FIELDS = {"name", "value", "unit", "limit", "limit_name", "ratio", "target", "met"}


def _database_exists(name: str) -> bool:
    engine = create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            return found.first() is not None
    finally:
        engine.dispose()


@pytest.mark.timeout(960)
def test_quick_bench_writes_a_complete_report(tmp_path: Path) -> None:
    require_server("PostgreSQL", PG_URL, 5432)
    require_server("Redis", REDIS_URL, 6379)
    out = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BROKER_URL")}
    result = subprocess.run(
        # The quick run at a fifth of its sizes: this checks the report, not the figures.
        relance_command(
            "bench",
            "--quick",
            "--recipients",
            "20000",
            "--messages",
            "1000",
            "--campaigns",
            "20",
            "--json",
            str(out),
        ),
        cwd=tmp_path,
        env={**env, "RELANCE_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=900,  # a deadline, not a target: the quick run takes < 3 min on 2 idle cores
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())

    machine = report["machine"]
    for key in ("cpu_count", "cpu_model", "python", "postgres", "redis", "platform"):
        assert machine.get(key), key
    figures = {f["name"]: f for f in report["figures"]}
    assert set(figures) == FIGURES
    for name, figure in figures.items():
        assert set(figure) == FIELDS, name
        for key in ("value", "limit", "ratio"):
            assert isinstance(figure[key], int | float), (name, key)
            assert math.isfinite(figure[key]), (name, key)
        assert figure["limit"] > 0, name
        assert isinstance(figure["met"], bool), name
        assert figure["target"] and figure["unit"] and figure["limit_name"], name
    assert report["errors"] == []
    scratch = re.search(r"scratch database (relance_bench_\w+)", result.stdout)
    assert scratch, result.stdout[-3000:]
    assert not _database_exists(scratch.group(1)), "the bench left its database behind"
