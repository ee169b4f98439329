"""Logging: readable lines by default, one JSON object per line with LOG_JSON=true."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from typing import Any

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD)
        base = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}: "
        line = base + record.getMessage() + (f" [{extras}]" if extras else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


# Libraries speak at WARNING unless LOG_LEVEL is DEBUG: Celery's per-task dictionaries every few
# seconds, uvicorn's start-up lines and kombu's notices would bury the campaign events.
LIBRARIES = ("celery", "kombu", "amqp", "uvicorn", "httpx", "httpcore", "alembic", "multipart")


def configure_logging(level: str = "INFO", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    libraries = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(libraries)
    logging.captureWarnings(True)  # a library's warning is a log line, formatted like ours
    # Celery warns against running a worker as root because pickled messages could run code;
    # relance accepts JSON messages only (relance.worker), so the warning says nothing here.
    warnings.filterwarnings("ignore", message="You're running the worker with superuser")
