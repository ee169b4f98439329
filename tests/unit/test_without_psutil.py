"""psutil is the bench's optional extra (``relance[bench]``): relance works without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# ``None`` in sys.modules makes every ``import psutil`` fail, as when it is not installed.
WITHOUT_PSUTIL = "import sys; sys.modules['psutil'] = None\n"


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_PSUTIL + code],
        cwd=tmp_path,
        env={**os.environ, "RELANCE_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_relance_bench_without_psutil_says_how_to_install_it_in_one_line(
    tmp_path: Path,
) -> None:
    done = _python(
        "from relance.cli import main\nsys.argv = ['relance', 'bench']\nmain()", tmp_path
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        "relance bench needs psutil, an optional dependency: pip install 'relance[bench]'"
    ]


def test_every_module_but_the_bench_imports_without_psutil(tmp_path: Path) -> None:
    code = """
import importlib, pkgutil, relance
skip = ("relance.bench", "relance.migrations", "relance.__main__")
for module in pkgutil.walk_packages(relance.__path__, "relance."):
    if not module.name.startswith(skip):
        importlib.import_module(module.name)
print("imported")
"""
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"
