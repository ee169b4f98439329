"""Typed errors and their one schema; relance.api maps them to HTTP codes in one place."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


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


def found(value: T | None, kind: str, ident: object) -> T:
    """``value``, or NotFound (404) naming what was looked for."""
    if value is None:
        raise not_found(kind, ident)
    return value


class FieldError(BaseModel):
    """What is wrong with one field (``category_ids.0``, ``after``, ``body``)."""

    field: str = Field(examples=["phone"])
    message: str = Field(examples=["not a phone number"])


class ErrorOut(BaseModel):
    """Every 4xx (and 503): ``{"detail": "..."}``, or ``{"detail": [{"field", "message"}]}``
    when fields are at fault (every 422 names its field)."""

    detail: str | list[FieldError] = Field(examples=["contact 7 not found"])


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed request"},
    401: {"model": ErrorOut, "description": "Missing or invalid API key, or bad signature"},
    403: {"model": ErrorOut, "description": "Wrong signature or verify token, or another site"},
    404: {"model": ErrorOut, "description": "Unknown id"},
    409: {"model": ErrorOut, "description": "Not allowed in the object's current state"},
    413: {"model": ErrorOut, "description": "Request body over MAX_BODY_BYTES"},
    422: {"model": ErrorOut, "description": "Invalid input; the detail names the field"},
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that may answer these codes (401 always)."""
    return {code: ERROR_RESPONSES[code] for code in (401, *codes)}
