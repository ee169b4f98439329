"""Passwords: Argon2id through argon2-cffi (its defaults follow RFC 9106), never stored plain."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
MAX_LENGTH = 1000  # hashing a megabyte of password is a denial of service, not a password
_hasher = PasswordHasher()
# A hash to verify against when the account does not exist: the answer then takes as long as
# for a real one, so the timing does not tell which emails have accounts.
_DUMMY = _hasher.hash("not a password of anyone")


def problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify(stored: str | None, password: str) -> bool:
    """Does ``password`` match the stored hash? A missing hash (an account that cannot sign in)
    never matches, after the same work as a real check."""
    try:
        return _hasher.verify(stored or _DUMMY, password[:MAX_LENGTH]) and stored is not None
    except (VerificationError, InvalidHashError):
        return False
