"""Typed service errors, mapped once to HTTP codes by relance.api."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code = 400

    def __init__(self, detail: Any) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    """The object is not in a state that allows this (409)."""

    status_code = 409


class Invalid(DomainError):
    """Well-formed input that the rules refuse (422)."""

    status_code = 422


def not_found(kind: str, ident: object) -> NotFound:
    return NotFound(f"{kind} {ident} not found")
