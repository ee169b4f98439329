"""``relance demo``: a real two-step campaign on the simulator, followed live to ``completed``.

It starts the same processes as ``relance up`` (API, worker, Beat) on a fresh data directory,
seeds ~100 contacts in two categories through the HTTP API (CSV import), launches a campaign
and shows its progress until the campaign completes by itself. Pacing runs at demo speed; the
production defaults stay 5 s between sends, batches of 50, 60 s pauses.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from relance.accounts.keys import create_api_key
from relance.config import Settings, load_settings
from relance.db import session_scope
from relance.processes import free_port
from relance.runner import ChildExited, running_stack

CONTACTS = 100
REPLY_WINDOW_SECONDS = 12
DEADLINE_SECONDS = 240
DEMO_ENV = {
    "SEND_DELAY_SECONDS": "0.05",
    "BATCH_SIZE": "50",
    "BATCH_PAUSE_SECONDS": "1",
    "DAILY_QUOTA": "0",
    "MAX_SENDS_PER_SECOND": "40",
    "SIMULATOR_REPLY_RATE": "0.45",
    "SIMULATOR_FAILURE_RATE": "0.05",
    "SIMULATOR_MIN_DELAY_SECONDS": "0.3",
    "SIMULATOR_MAX_DELAY_SECONDS": "2.5",
    "CHECK_EXPIRED_INTERVAL_SECONDS": "1",
    "CHECK_SENDING_INTERVAL_SECONDS": "10",
    "DISPATCH_INTERVAL_SECONDS": "1",
    "RECOVER_INTERVAL_SECONDS": "10",
    "RELANCE_PROVIDER": "simulator",
}


def demo_csv(n: int = CONTACTS) -> str:
    lines = ["phone,first_name,last_name,categories,city"]
    cities = ["Lyon", "Paris", "Nantes", "Lille"]
    for i in range(n):
        category = "clients" if i % 2 == 0 else "prospects"
        lines.append(
            f"06 12 {i // 100:02d} {i % 100:02d} 00,Contact{i},Demo,{category},{cities[i % 4]}"
        )
    return "\n".join(lines) + "\n"


PROGRESS_COLUMNS = (
    "total",
    "message_1_sent",
    "awaiting_reply",
    "message_2_sent",
    "no_interaction",
    "failed",
    "finished",
)


def _progress(stats: dict[str, Any], elapsed: float) -> Table:
    table = Table(title=f"campaign {stats['campaign_id']}: {stats['status']}  ({elapsed:4.1f} s)")
    for name in PROGRESS_COLUMNS:
        table.add_column(name.replace("_", " "), justify="right")
    table.add_row(*(str(stats[k]) for k in PROGRESS_COLUMNS))
    return table


def run_demo(settings: Settings) -> int:
    console = Console()
    data_dir = (settings.data_dir / "demo").resolve()
    if not settings.database_url:
        shutil.rmtree(data_dir, ignore_errors=True)  # a fresh embedded data directory each run
    port = free_port()
    env = {**DEMO_ENV, "RELANCE_DATA_DIR": str(data_dir)}
    demo_settings = load_settings(
        **{
            k.lower(): v
            for k, v in env.items()
            if k not in ("RELANCE_DATA_DIR", "RELANCE_PROVIDER")
        },
        data_dir=data_dir,
        provider="simulator",
        public_url=f"http://127.0.0.1:{port}",
    )
    console.print("[bold]relance demo[/bold]: a two-step campaign on the simulator provider")
    console.print(
        "pacing at [yellow]demo speed[/yellow]: 0.05 s between sends, 1 s pause every 50 "
        "(production defaults: 5 s / batches of 50 / 60 s pause)"
    )
    console.print(f"data directory: {data_dir}")
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir = data_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    try:
        with running_stack(demo_settings, "127.0.0.1", port, env, str(log_dir)) as stack:
            console.print(f"API, worker and Beat are up: {stack.base_url}/docs (logs in {log_dir})")
            return _drive(console, demo_settings, stack)
    except (ChildExited, TimeoutError) as exc:
        console.print(f"[red]relance demo: {exc}[/red]; see the logs in {log_dir}")
        return 1


def _drive(console: Console, settings: Settings, stack: Any) -> int:
    with session_scope(settings) as session:
        key = create_api_key(session, "demo")
    api = httpx.Client(
        base_url=stack.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    imported = api.post(
        "/api/contacts/import", files={"file": ("contacts.csv", demo_csv(), "text/csv")}
    )
    imported.raise_for_status()
    counts = imported.json()
    console.print(
        f"imported contacts: {counts['created']} created, "
        f"{counts['updated']} updated, {counts['rejected_total']} rejected"
    )
    categories = api.get("/api/categories").json()["items"]
    campaign = api.post(
        "/api/campaigns",
        json={
            "name": "Demo: relance de printemps",
            "message_1": "Bonjour {first_name}, nos ateliers reprennent à {city}. Intéressé(e) ?",
            "message_2": "Merci {first_name} ! Voici le programme : https://example.com/ateliers",
            "category_ids": [c["id"] for c in categories],
            "reply_window_seconds": REPLY_WINDOW_SECONDS,
        },
    )
    campaign.raise_for_status()
    cid = campaign.json()["id"]
    api.post(f"/api/campaigns/{cid}/launch").raise_for_status()
    console.print(
        f"campaign {cid} launched; reply window {REPLY_WINDOW_SECONDS} s. "
        "Nobody presses a button from here on:"
    )
    started = time.monotonic()
    stats: dict[str, Any] = {}
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while time.monotonic() - started < DEADLINE_SECONDS:
            stack.check_alive()
            stats = api.get(f"/api/campaigns/{cid}/stats").json()
            live.update(_progress(stats, time.monotonic() - started))
            if stats["completed"]:
                break
            time.sleep(0.5)
    if not stats.get("completed"):
        blocking = api.get(f"/api/campaigns/{cid}/blocking").json()
        console.print(
            f"[red]not completed after {DEADLINE_SECONDS} s[/red]; still open: "
            f"{blocking['open_recipients']}"
        )
        for item in blocking["items"][:10]:
            console.print(f"  {item['phone']}: {item['reason']}")
        return 1
    console.print()
    adds_up = stats["message_2_sent"] + stats["no_interaction"] + stats["failed"]
    console.print(
        f"[green]completed by itself[/green] at {stats['completed_at']} "
        f"after {time.monotonic() - started:.1f} s"
    )
    console.print(
        f"message_2_sent {stats['message_2_sent']} + no_interaction "
        f"{stats['no_interaction']} + failed {stats['failed']} = {adds_up} "
        f"of {stats['total']} recipients"
    )
    return 0 if adds_up == stats["total"] else 1


if __name__ == "__main__":
    sys.exit(run_demo(load_settings()))
