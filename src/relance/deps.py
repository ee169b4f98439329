"""The dependencies routes declare: the request's unit of work, the key, settings, followups."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from relance.accounts.principal import Principal
from relance.accounts.roles import Permission
from relance.campaigns.followups import Followups
from relance.config import Settings, get_settings
from relance.db import session_scope
from relance.errors import Invalid
from relance.gate import STATE_PRINCIPAL


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


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Who the request acts as: an API key (``Authorization: Bearer``) or a signed-in user.

    ``relance.gate`` found it before the body was read; this dependency hands it to routes and
    documents the scheme in the OpenAPI. It holds no session: a long response (the SSE stream)
    must not hold a transaction, which on SQLite would block every writer.
    """
    principal = getattr(request.state, STATE_PRINCIPAL, None)
    if not isinstance(principal, Principal):  # the gate runs first: a second lock on the door
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "not signed in", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission) -> Callable[[Principal], Principal]:
    """A dependency: the principal, if its role has ``permission`` (else 403 naming it)."""

    def check(principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"forbidden: this needs the permission '{permission}', "
                f"which the role {principal.role} has not",
            )
        return principal

    check.permission = permission  # type: ignore[attr-defined]  # read by the OpenAPI
    return check


def address(request: Request) -> str:
    """The client's address, for the audit log (uvicorn applies a local proxy's headers)."""
    return request.client.host if request.client else ""


Address = Annotated[str, Depends(address)]
# What each route needs, by the one table of relance.accounts.roles.
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Exporter = Annotated[Principal, Depends(require(Permission.EXPORT))]
ContactsEditor = Annotated[Principal, Depends(require(Permission.MANAGE_CONTACTS))]
CampaignsEditor = Annotated[Principal, Depends(require(Permission.MANAGE_CAMPAIGNS))]
Runner = Annotated[Principal, Depends(require(Permission.RUN_CAMPAIGNS))]
SendersAdmin = Annotated[Principal, Depends(require(Permission.MANAGE_SENDERS))]
UsersAdmin = Annotated[Principal, Depends(require(Permission.MANAGE_USERS))]
KeysOwner = Annotated[Principal, Depends(require(Permission.OWN_KEYS))]
AuditReader = Annotated[Principal, Depends(require(Permission.READ_AUDIT))]


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _known_query(route: APIRoute) -> frozenset[str]:
    """The query parameters a route (its dependencies included) declares, by their names."""
    known = getattr(route, "_relance_known_query", None)
    if known is None:
        known = frozenset(_query_names(route.dependant))
        route._relance_known_query = known  # type: ignore[attr-defined]  # computed once
    return known


def known_query_only(request: Request) -> None:
    """422 naming a query parameter the route does not take: a misspelt filter (``?q=Anne``
    where the route takes ``search``) must not silently answer everything."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    unknown = sorted(set(request.query_params) - _known_query(route))
    if unknown:
        takes = ", ".join(sorted(_known_query(route))) or "none"
        raise Invalid(
            [
                {"field": name, "msg": f"unknown query parameter (this route takes: {takes})"}
                for name in unknown[:20]
            ]
        )


async def get_followups() -> Followups:
    """Celery in production; tests override this dependency with a recording fake.

    ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop for
    every webhook request, which need nothing of a thread.

    Imported when first asked for: ``relance.tasks`` builds the Celery app from the settings,
    which must not happen when this module is imported (tests set them up later).
    """
    from relance.tasks import followups

    return followups


FollowupsDep = Annotated[Followups, Depends(get_followups)]
