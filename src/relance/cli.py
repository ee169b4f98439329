"""The ``relance`` command: up | api | worker | beat | migrate | demo | bench | user | apikey."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from relance import heartbeats, leases
from relance.account_cli import apikey_cli, user_cli
from relance.cli_settings import settings_for
from relance.config import ConfigError, Settings
from relance.sender_cli import sender_cli

cli = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="relance: two-step WhatsApp campaigns that finish by themselves.",
)
cli.add_typer(user_cli, name="user")
cli.add_typer(apikey_cli, name="apikey")
cli.add_typer(sender_cli, name="sender")


Host = Annotated[str | None, typer.Option(help="listen address (HOST)")]
Port = Annotated[int | None, typer.Option(help="listen port (PORT)")]


@cli.command()
def migrate() -> None:
    """Apply the database migrations (safe to run twice)."""
    from relance.migrate import upgrade

    settings = settings_for()
    upgrade(settings)
    typer.echo(f"database is up to date: {settings.database_shown}")


@cli.command()
def api(host: Host = None, port: Port = None) -> None:
    """Run the HTTP server (uvicorn)."""
    import uvicorn

    from relance.api import SERVER_OPTIONS

    settings = settings_for("api")
    from relance.metrics.http import serve_privately

    serve_privately(settings)  # /metrics on METRICS_HOST:METRICS_PORT, if set
    uvicorn.run(
        "relance.api:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        **SERVER_OPTIONS,
    )


def _quiet(settings: Settings) -> list[str]:
    """Celery's start-up banner only at DEBUG (the settings are in /health and the logs)."""
    return [] if settings.log_level == "DEBUG" else ["--quiet"]


@cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a Celery worker (extra arguments go to celery)."""
    settings = settings_for("worker")
    from relance.worker import celery_app

    pool = ["--pool=threads", "--concurrency=4"] if settings.is_embedded else []
    celery_app.worker_main(
        [*_quiet(settings), "worker", "--loglevel", settings.log_level, *pool, *ctx.args]
    )


@cli.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat(ctx: typer.Context) -> None:
    """Run Celery Beat: exactly one per deployment (two would tick every task twice)."""
    settings = settings_for("beat")
    from relance import beat_scheduler
    from relance.worker import celery_app

    settings.data_dir.mkdir(parents=True, exist_ok=True)  # the schedule file lives there
    lease = leases.beat_lease(settings)
    leases.wait_for(lease, "beat")  # a second Beat waits here instead of ticking
    leases.watch(lease, on_lost=_beat_lost)
    beat_scheduler.hold(lease)
    heartbeats.start(settings, "beat")
    celery_app.Beat = celery_app.subclass_with_self(beat_scheduler.StopOnceBeat)
    scheduler = ["--scheduler", "relance.beat_scheduler:LeasedScheduler"]
    argv = [*_quiet(settings), "beat", "--loglevel", settings.log_level, *scheduler, *ctx.args]
    celery_app.start(argv)


@cli.command()
def check(role: Annotated[str, typer.Argument(help="worker or beat")]) -> None:
    """Exit 0 if this host's worker (or Beat) beat lately: a container healthcheck."""
    if role not in ("worker", "beat"):
        typer.echo("relance check: the role is 'worker' or 'beat'", err=True)
        raise typer.Exit(2)
    if not heartbeats.alive_here(settings_for(), role):
        typer.echo(f"relance check: no {role} of this host beat lately", err=True)
        raise typer.Exit(1)


def _beat_lost() -> None:
    """Another Beat took the lease while ours was away: stop at once, it is ticking now."""
    typer.echo("relance beat: another Beat took the lease; stopping", err=True)
    os._exit(3)


@cli.command()
def up(host: Host = None, port: Port = None) -> None:
    """API + worker + Beat in one process group; migrations applied first."""
    settings = settings_for()
    from relance.runner import run_stack

    raise typer.Exit(run_stack(settings, host=host, port=port))


@cli.command()
def demo() -> None:
    """Seed contacts, launch a campaign on the simulator, follow it to completed."""
    settings = settings_for()
    from relance.demo import run_demo

    raise typer.Exit(run_demo(settings))


@cli.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,  # --help goes to the harness, which lists its own options
)
def bench(ctx: typer.Context) -> None:
    """The benchmark harness of SPEC section 8; relance bench --help lists its options."""
    settings_for()
    try:
        from relance.bench import harness
    except ModuleNotFoundError as exc:
        if exc.name != "psutil":
            raise
        typer.echo(
            "relance bench needs psutil, an optional dependency: pip install 'relance[bench]'",
            err=True,
        )
        raise typer.Exit(2) from None
    raise typer.Exit(harness.main(ctx.args))


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        cli()
    except ConfigError as exc:
        print(f"relance: {exc}", file=sys.stderr)
        sys.exit(2)
