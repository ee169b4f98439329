"""The bench's one error: what could not be measured, and why."""

from __future__ import annotations


class BenchError(Exception):
    """The bench could not measure something; the message says what and why."""
