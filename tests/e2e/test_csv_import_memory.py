"""A large CSV file of bad rows keeps the real API process's memory bounded.

The rejected rows used to be kept and answered in full: a 1.6 MB file of bad rows grew the
server by 575 MB. Only the real server shows that: its peak resident memory (VmHWM) is read
from /proc before and after the upload.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from relance.processes import Processes, free_port, wait_for_port
from tests.support.stack import cli_api_key, relance_command

FILE_BYTES = 20 * 1024 * 1024
MAX_GROWTH_BYTES = 100 * 1024 * 1024
# More fields than the header's two: rejected before any phone parsing, so a 20 MB file is
# 200,000 rejections answered in a few seconds (the old code grew by 250 MB on it).
BAD_ROW = "x;y;z;" + "w" * 100 + "\n"


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def test_a_large_file_of_bad_rows_keeps_the_api_process_bounded(
    processes: Processes, tmp_path: Path
) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("reads the server's peak memory from /proc (Linux)")
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'relance.db'}",
        "RELANCE_DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "WARNING",
    }
    key = cli_api_key(env)  # migrates the database first
    port = free_port()
    api = processes.start(
        "api",
        relance_command("api", "--host", "127.0.0.1", "--port", str(port)),
        env,
    )
    wait_for_port("127.0.0.1", port, watch=[api])
    header = "phone;first_name\n"
    rows = (FILE_BYTES - len(header)) // len(BAD_ROW)
    content = (header + BAD_ROW * rows).encode()
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    ) as client:
        warm = client.post(
            "/api/contacts/import", files={"file": ("c.csv", header + BAD_ROW, "text/csv")}
        )
        assert warm.status_code == 200, warm.text
        before = _peak_rss_bytes(api.pid)
        response = client.post(
            "/api/contacts/import", files={"file": ("c.csv", content, "text/csv")}
        )
        after = _peak_rss_bytes(api.pid)
    growth = after - before
    print(f"{rows} bad rows ({len(content) / 1e6:.1f} MB): peak RSS +{growth / 1e6:.1f} MB")
    assert response.status_code == 200, response.text[:500]
    assert growth < MAX_GROWTH_BYTES, f"the API process grew by {growth / 1e6:.0f} MB"
    body = response.json()
    assert (body["rejected_total"], len(body["rejected"])) == (rows, 1000)
