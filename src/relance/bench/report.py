"""Figures, their limits, the machine they ran on: the table and the JSON report.

Every figure is reported beside a limit measured in the same run on the same machine, and
``ratio = value / limit``: for a rate it is the share of the machine's limit reached (1.0 is
the ceiling), for a latency or a size it is how many times the floor it costs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

FIGURE_NAMES = (
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
)


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    limit: float
    limit_name: str
    target: str
    met: bool

    @property
    def ratio(self) -> float:
        return self.value / self.limit if self.limit else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _finite(self.value),
            "unit": self.unit,
            "limit": _finite(self.limit),
            "limit_name": self.limit_name,
            "ratio": _finite(self.ratio),
            "target": self.target,
            "met": self.met,
        }


@dataclass
class Report:
    machine: dict[str, Any]
    config: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    limits: dict[str, float] = field(default_factory=dict)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    elapsed_seconds: float = 0.0

    def add(self, figure: Figure, **details: Any) -> None:
        self.figures.append(figure)
        if details:
            self.details[figure.name] = details

    def as_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "config": self.config,
            "figures": [f.as_json() for f in self.figures],
            "limits": {k: _finite(v) for k, v in self.limits.items()},
            "details": self.details,
            "errors": self.errors,
            "elapsed_seconds": round(self.elapsed_seconds, 1),
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_json(), indent=2, default=str) + "\n")

    def print_table(self, console: Console) -> None:
        table = Table(title="relance bench (SPEC section 8): figure beside the machine's limit")
        for column in ("figure", "value", "limit", "ratio", "target", "met"):
            table.add_column(column, justify="right" if column in ("value", "ratio") else "left")
        for f in self.figures:
            table.add_row(
                f.name,
                f"{_fmt(f.value)} {f.unit}",
                f"{_fmt(f.limit)} ({f.limit_name})",
                f"{f.ratio:.2f}",
                f.target,
                "[green]yes[/green]" if f.met else "[red]no[/red]",
            )
        console.print(table)
        for error in self.errors:
            console.print(f"[red]error:[/red] {error}")


def _finite(value: float) -> float:
    """JSON has no NaN or infinity; a figure that could not be measured reads -1."""
    return round(value, 6) if math.isfinite(value) else -1.0


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def code_version() -> dict[str, Any]:
    """The relance version, and the git commit when run from a checkout (dirty if edited)."""
    from relance import __version__

    out: dict[str, Any] = {"relance": __version__}
    src = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return out
    if commit.returncode == 0:
        out["commit"] = commit.stdout.strip()
        out["dirty"] = bool(dirty.stdout.strip())
    return out


def machine_info(postgres: str, redis: str) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "postgres": postgres,
        "redis": redis,
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
