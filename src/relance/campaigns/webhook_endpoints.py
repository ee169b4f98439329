"""Provider webhooks: thin. ``relance.providers`` verifies and parses, ``inbound`` applies."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.exc import SQLAlchemyError

from relance.campaigns.inbound import Receiver, apply_webhook
from relance.campaigns.inbox import Entry
from relance.campaigns.inbox_writer import writer_for
from relance.config import Settings, get_settings
from relance.deps import FollowupsDep
from relance.models import utcnow
from relance.providers import meta_webhooks
from relance.providers.events import InteractionEvent
from relance.providers.webhooks import check_route, needs_url, verify, verify_and_parse

log = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'  # "do nothing now"

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
    check_route("meta", settings)
    return meta_webhooks.verify_handshake(dict(request.query_params), settings.meta_verify_token)


@router.post(
    "/{provider}",
    response_model=None,
    responses={
        200: {
            "description": "a tally of the events; to a Twilio incoming message, empty TwiML",
            "content": {"application/json": {}, "text/xml": {"example": EMPTY_TWIML}},
        }
    },
)
async def receive(provider: str, request: Request, followups: FollowupsDep) -> Response:
    """Verify the signature on the raw body; then append it to the inbox and answer, or (inline
    mode) store each event once and apply all in one transaction.

    Only the configured provider's route exists: the others answer 404 before the body is read.
    Twilio takes the answer to an incoming message as TwiML instructions: it gets an empty
    ``<Response/>`` (relance replies later, through the API, if at all).
    """
    settings = get_settings()
    check_route(provider, settings)
    body = await request.body()
    url = settings.effective_public_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    if settings.ingest_mode == "inbox":
        return await _append(provider, settings, request, body, url)
    events = verify_and_parse(provider, settings, request.headers, body, url)
    tally = await run_in_threadpool(apply_webhook, Receiver(settings, followups, provider), events)
    if provider == "twilio" and any(isinstance(e, InteractionEvent) for e in events):
        return Response(EMPTY_TWIML, media_type="text/xml")
    return JSONResponse({"received": len(events), **tally})


async def _append(
    provider: str,
    settings: Settings,
    request: Request,
    body: bytes,
    url: str,
) -> Response:
    """Verified, appended (group commit), acknowledged: a worker applies it (``inbox``)."""
    verify(provider, settings, request.headers, body, url)
    entry = Entry(provider, body, url if needs_url(provider) else None, utcnow())
    try:
        await writer_for(settings).append(entry)
    except SQLAlchemyError:
        log.exception("could not append a webhook to the inbox")
        # Not a 200: the provider keeps it and retries, so nothing is lost.
        return JSONResponse(
            {"detail": "the webhook inbox is unavailable; retry later"}, status_code=503
        )
    if provider == "twilio":  # Twilio ignores the answer to a status callback
        return Response(EMPTY_TWIML, media_type="text/xml")
    return JSONResponse({"accepted": True})
