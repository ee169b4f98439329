"""Provider webhooks: thin. ``relance.providers`` verifies and parses, ``inbound`` applies."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from relance.campaigns.inbound import Receiver, apply_webhook
from relance.config import get_settings
from relance.deps import FollowupsDep
from relance.providers import meta_webhooks
from relance.providers.webhooks import check_route, verify_and_parse

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
    check_route("meta", settings)
    return meta_webhooks.verify_handshake(dict(request.query_params), settings.meta_verify_token)


@router.post("/{provider}")
async def receive(provider: str, request: Request, followups: FollowupsDep) -> dict[str, Any]:
    """Verify the signature on the raw body; store each event once; apply all in one transaction.

    Only the configured provider's route exists: the others answer 404 before the body is read.
    """
    settings = get_settings()
    check_route(provider, settings)
    body = await request.body()
    url = settings.effective_public_url + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    events = verify_and_parse(provider, settings, request.headers, body, url)
    tally = await run_in_threadpool(apply_webhook, Receiver(settings, followups, provider), events)
    return {"received": len(events), **tally}
