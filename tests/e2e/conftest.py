"""End-to-end tests start real processes (uvicorn, Celery worker and Beat)."""

from __future__ import annotations

from pathlib import Path

import pytest

from relance.processes import Processes


@pytest.fixture
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Processes:
    """The test's processes, logs under tmp_path/logs, all stopped even when it fails half-way."""
    procs = Processes(tmp_path / "logs")
    request.addfinalizer(procs.stop_all)
    return procs
