"""How every ``relance`` command reads its settings: one line naming a bad variable, exit 2."""

from __future__ import annotations

import os

import typer

from relance.config import ConfigError, Settings, get_settings
from relance.logs import configure_logging
from relance.runner import CHILD_ENV


def settings_for(command: str | None = None) -> Settings:
    """Read the configuration or stop with one line naming the bad variable.

    With ``command``, say on stderr which database and data directory it works on: a command
    run from another folder with the embedded default uses another database.
    """
    try:
        settings = get_settings()
    except ConfigError as exc:
        typer.echo(f"relance: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_json)
    if command and not os.environ.get(CHILD_ENV):
        typer.echo(f"relance {command}: database {settings.database_shown}", err=True)
    return settings
