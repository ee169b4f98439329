"""The dependencies routes declare: the request's unit of work, the key, settings, followups."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from relance.campaigns.followups import Followups
from relance.config import Settings, get_settings
from relance.db import session_scope
from relance.gate import STATE_API_KEY_ID


def get_db() -> Iterator[Session]:
    """One unit of work per request: commit on success, roll back on any error."""
    with session_scope() as session:
        yield session


# scope="function": the transaction commits when the route returns, before the response leaves
# (the default scope runs this exit after the response is sent: a client that read its 201 and
# asked again at once could miss its own write).
DbSession = Annotated[Session, Depends(get_db, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
_bearer = HTTPBearer(auto_error=False)


def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> int:
    """Every /api route needs ``Authorization: Bearer <api key>`` (or the dashboard's cookie).

    ``relance.gate`` checked the key before the body was read; this dependency gives routes its
    id and documents the scheme in the OpenAPI. It holds no session: a long response (the SSE
    stream) must not hold a transaction, which on SQLite would block every writer.
    """
    key_id = getattr(request.state, STATE_API_KEY_ID, None)
    if key_id is None:  # the gate always runs first; this is a second lock on the same door
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return int(key_id)


ApiKeyId = Annotated[int, Depends(require_api_key)]


def get_followups() -> Followups:
    """Celery in production; tests override this dependency with a recording fake.

    Imported when first asked for: ``relance.tasks`` builds the Celery app from the settings,
    which must not happen when this module is imported (tests set them up later).
    """
    from relance.tasks import followups

    return followups


FollowupsDep = Annotated[Followups, Depends(get_followups)]
