"""Webhook endpoints: thin; verification and application live in relance.providers.webhooks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from relance.campaigns.endpoints import get_followups
from relance.campaigns.followups import Followups
from relance.config import get_settings
from relance.db import session_scope
from relance.providers import meta_webhooks
from relance.providers.base import WebhookRejected
from relance.providers.webhooks import apply_each, apply_events, check_route, verify_and_parse

log = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks", tags=["webhooks"])


_JSON_ERROR = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
}


@router.get(
    "/meta",
    response_class=PlainTextResponse,
    responses={400: _JSON_ERROR, 403: _JSON_ERROR, 404: _JSON_ERROR},
)
def meta_handshake(request: Request) -> str:
    """Meta's subscription handshake: echo ``hub.challenge`` when the verify token matches.

    Only when the provider is ``meta``: elsewhere there is no Meta webhook (404)."""
    settings = get_settings()
    try:
        check_route("meta", settings)
        return meta_webhooks.verify_handshake(
            dict(request.query_params), settings.meta_verify_token
        )
    except WebhookRejected as exc:
        raise HTTPException(exc.status_code, exc.detail) from None


@router.post("/{provider}")
async def receive(
    provider: str, request: Request, followups: Annotated[Followups, Depends(get_followups)]
) -> dict[str, Any]:
    """Verify the signature on the raw body; store each event once; apply all in one transaction.

    Only the configured provider's route exists: the others answer 404 before the body is read.
    """
    settings = get_settings()
    try:
        check_route(provider, settings)
        body = await request.body()
        url = settings.effective_public_url + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        events = verify_and_parse(provider, settings, request.headers, body, url)
    except WebhookRejected as exc:
        raise HTTPException(exc.status_code, exc.detail) from None

    def in_transaction(work: Callable[[Session], dict[str, int]]) -> dict[str, int]:
        for attempt in range(3):
            try:
                with session_scope(settings) as session:
                    return work(session)
            except OperationalError:  # a deadlock or lock timeout: the whole batch goes again
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def apply() -> dict[str, int]:
        try:
            return in_transaction(
                lambda session: apply_events(session, settings, followups, provider, events)
            )
        except OperationalError:
            raise
        except SQLAlchemyError:
            # One event the database refuses must not hold back the rest of its batch.
            log.exception("the database refused a webhook batch: applying it event by event")
            return in_transaction(
                lambda session: apply_each(session, settings, followups, provider, events)
            )

    tally = await run_in_threadpool(apply)
    return {"received": len(events), **tally}
