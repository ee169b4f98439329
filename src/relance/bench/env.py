"""Where the bench runs: a scratch database, a broker, the settings and the subprocesses.

The bench never writes into an existing database: on the PostgreSQL server named by
``--database-url`` (else ``DATABASE_URL`` when it is PostgreSQL, else the local server) it
creates ``relance_bench_<random>``, migrates it, and drops it at the end, whatever happens.
The broker is ``--redis-url`` (else ``BROKER_URL`` when it is Redis), used as it is; without
one, the run claims a local Redis database of its own (``redis_db.py``) and flushes it after.
``--embedded`` runs on a SQLite file and the filesystem broker in a temporary folder instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from relance.bench.errors import BenchError
from relance.bench.redis_db import ClaimedRedis
from relance.bench.seed import M2_MARKER
from relance.config import Settings, get_settings, load_settings
from relance.fakes.graph import STATS_PATH
from relance.processes import Process, Processes, free_port, wait_for_port

DEFAULT_PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
APP_SECRET = "relance-bench-secret"
PHONE_NUMBER_ID = "bench"


@dataclass(frozen=True)
class Options:
    quick: bool
    embedded: bool
    recipients: int  # fan-out and status-check campaign size
    messages: int  # dispatch campaign size (also the webhook and reply population)
    workers: int
    replies: int  # reply -> Message 2 samples
    campaigns: int  # small campaigns of the completion-lag figure
    database_url: str | None
    redis_url: str | None


def _pg_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class BenchEnv:
    """Owns every resource of one run; each is registered on ``stack`` to be released."""

    def __init__(self, opts: Options, stack: ExitStack) -> None:
        self.opts = opts
        self.stack = stack
        self.tmp = Path(tempfile.mkdtemp(prefix="relance-bench-"))
        stack.callback(shutil.rmtree, self.tmp, True)
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        # SIGTERM to each leader alone (a warm shutdown: Celery finishes its tasks), then
        # SIGKILL to its group; a Ctrl-C in the terminal reaches the bench, which stops them.
        self.processes = Processes(self.logs, grace=15.0, terminate_group=False)
        self.graph_port = free_port()
        self.api_port = free_port()
        self.redis_url = ""
        self.database_url = self._database()
        self.broker_url = self._broker()
        self.env = self._environment()
        self.settings = self._apply_environment()
        self._celery: Any = None

    # Database and broker ---------------------------------------------------------------------

    def _database(self) -> str:
        if self.opts.embedded:
            return f"sqlite:///{self.tmp / 'data' / 'relance.db'}"
        server = self.opts.database_url or os.environ.get("DATABASE_URL", "")
        server = _pg_url(server) if server.startswith("postgres") else DEFAULT_PG_SERVER
        name = f"relance_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            raise BenchError(f"cannot create a scratch database on {server}: {exc}") from exc
        finally:
            admin.dispose()
        self.stack.callback(self._drop_database, server, name)
        return make_url(server).set(database=name).render_as_string(hide_password=False)

    def _drop_database(self, server: str, name: str) -> None:
        from relance.db import engine_for

        engine_for(self.database_url).dispose()
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()

    def _broker(self) -> str:
        if self.opts.embedded:
            return "filesystem://localhost/"
        given = self.opts.redis_url or os.environ.get("BROKER_URL", "")
        if given.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(given, socket_connect_timeout=3)
            try:
                client.ping()
            except redis.RedisError as exc:
                raise BenchError(f"Redis is not reachable at {given}: {exc}") from exc
            finally:
                client.close()
            self.redis_url = given
            return given
        # No broker given: a local Redis database of this run's own, flushed at the end.
        claimed = ClaimedRedis()
        self.stack.callback(claimed.release)
        self.redis_url = claimed.url
        return claimed.url

    def redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.redis_url)

    # Settings --------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "BROKER_URL": self.broker_url,
                "REDIS_URL": self.redis_url,
                "RELANCE_DATA_DIR": str(self.tmp / "data"),
                "RELANCE_PROVIDER": "meta",
                "META_GRAPH_URL": f"http://127.0.0.1:{self.graph_port}",
                "META_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
                "META_ACCESS_TOKEN": "bench-token",
                "META_APP_SECRET": APP_SECRET,
                "META_VERIFY_TOKEN": "bench-verify-token",
                # Pacing off: the figure is the engine's, not the anti-ban pace.
                "SEND_DELAY_SECONDS": "0",
                "BATCH_PAUSE_SECONDS": "0",
                "MAX_SENDS_PER_SECOND": "0",
                "DAILY_QUOTA": "0",
                "HOST": "127.0.0.1",
                "PORT": str(self.api_port),
                "PUBLIC_URL": f"http://127.0.0.1:{self.api_port}",
                # Every process logs warnings only: the same for the figures and their limits.
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _apply_environment(self) -> Settings:
        """This process reads the same settings as its subprocesses (restored at the end)."""
        saved = dict(os.environ)

        def restore() -> None:
            os.environ.clear()
            os.environ.update(saved)
            get_settings.cache_clear()

        self.stack.callback(restore)
        os.environ.update(self.env)
        get_settings.cache_clear()
        return load_settings()

    def migrate(self) -> None:
        from relance.migrate import upgrade

        upgrade(url=self.database_url)

    def engine(self) -> Engine:
        from relance.db import engine_for

        return engine_for(self.database_url)

    def versions(self) -> tuple[str, str]:
        with self.engine().connect() as conn:
            if self.opts.embedded:
                db = "sqlite " + str(conn.exec_driver_sql("select sqlite_version()").scalar())
            else:
                db = str(conn.exec_driver_sql("show server_version").scalar())
        if not self.redis_url:
            return db, "none (filesystem broker)"
        client = self.redis()
        try:
            return db, str(client.info("server").get("redis_version", "unknown"))
        finally:
            client.close()

    def server_settings(self) -> dict[str, str]:
        """PostgreSQL settings that move the figures (autovacuum off keeps planner statistics
        stale after a big fan-out; synchronous_commit prices every commit)."""
        if self.opts.embedded:
            return {}
        names = ("autovacuum", "synchronous_commit", "fsync", "shared_buffers", "work_mem")
        with self.engine().connect() as conn:
            rows = conn.execute(
                text("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(:names)"),
                {"names": list(names)},
            )
            return {name: f"{value}{' x ' + unit if unit else ''}" for name, value, unit in rows}

    # Celery ----------------------------------------------------------------------------------

    def celery(self) -> Any:
        """A publisher on the bench's broker (the worker's own app, built from these settings)."""
        if self._celery is None:
            from relance.worker import make_celery

            # The filesystem transport has no host; kombu warns about it on every connection.
            logging.getLogger("kombu.connection").setLevel(logging.ERROR)
            self._celery = make_celery(self.settings)
            self.stack.callback(self._celery.close)
        return self._celery

    def send_task(self, name: str, *args: Any) -> None:
        self.celery().send_task(name, args=list(args))

    # Subprocesses ----------------------------------------------------------------------------

    @property
    def procs(self) -> dict[str, Process]:
        return {p.name: p for p in self.processes.started}

    def start(self, name: str, *args: str) -> Process:
        if not self.processes.started:  # stopped before the database and broker go
            self.stack.callback(self.processes.stop_all)
        return self.processes.start(name, [sys.executable, "-m", *args], self.env)

    def start_graph(self) -> None:
        proc = self.start(
            "fake-graph", "relance.fakes.graph", str(self.graph_port), "--mark", M2_MARKER
        )
        wait_for_port("127.0.0.1", self.graph_port, 15, watch=[proc], error=BenchError)

    def start_worker(self) -> Process:
        return self.start(
            "worker",
            "relance",
            "worker",
            f"--concurrency={self.opts.workers}",
            "-I",
            "relance.bench.noop",
        )

    def start_api(self) -> str:
        proc = self.start("api", "relance", "api", "--port", str(self.api_port))
        wait_for_port("127.0.0.1", self.api_port, 60, watch=[proc], error=BenchError)
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def graph_url(self) -> str:
        return f"http://127.0.0.1:{self.graph_port}"

    def graph_stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.graph_url}{STATS_PATH}", timeout=10)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def check_alive(self) -> None:
        self.processes.check_alive()

    def logs_tail(self) -> str:
        return self.processes.logs(30)


def sleep_until(deadline: float) -> None:
    delay = deadline - time.time()
    if delay > 0:
        time.sleep(delay)
