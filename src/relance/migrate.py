"""Apply or revert the Alembic migrations shipped inside the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from relance.config import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings | None = None, url: str | None = None) -> None:
    command.upgrade(
        alembic_config(url or (settings or get_settings()).effective_database_url), "head"
    )


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
