"""Claiming what is due and handing it to the provider: the dispatcher's two halves
around the limiter's slot (``dispatch`` waits for the slot between them).

``claim_for`` takes one sender's due messages in one short transaction, within its
messaging limit; ``send_all`` hands each to the provider once and never raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from relance.campaigns import claims, templates
from relance.campaigns.domain import MessageKind
from relance.campaigns.outcomes import SendOutcome
from relance.config import Settings
from relance.contacts.domain import contact_values, render
from relance.db import session_scope
from relance.metrics.recorder import PROVIDER_LATENCY, recorder
from relance.models import utcnow
from relance.providers.base import (
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    RetryableError,
)
from relance.senders.domain import limit_reason
from relance.senders.identity import SenderInfo
from relance.senders.limits import limit_of, limit_room

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refused(OutboundMessage):
    """A claimed message that must not reach the provider: it fails for good with ``reason``."""

    code: str = "refused"
    reason: str = ""


def claim(
    settings: Settings,
    limit: int,
    message_ids: Sequence[int] | None = None,
    recipient_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> list[OutboundMessage]:
    """Claim and load up to ``limit`` due messages of every sender in one short transaction.

    Due: a pending message whose time has come, or a queued recipient of a sending campaign
    whose Message 1 is created by this claim. ``message_ids`` restricts the claim to those
    pending messages; ``recipient_ids`` to those recipients' messages and Message 1s.
    """
    return claim_for(settings, limit, message_ids, recipient_ids, now).messages


@dataclass
class Claimed:
    messages: list[OutboundMessage] = field(default_factory=list)
    # The sender's messaging limit held its Message 1s: when room opens again, and why.
    limit_until: datetime | None = None
    limit_reason: str | None = None


def claim_for(
    settings: Settings,
    limit: int,
    message_ids: Sequence[int] | None = None,
    recipient_ids: Sequence[int] | None = None,
    now: datetime | None = None,
    sender: SenderInfo | None = None,
    scope: claims.SenderScope = claims.EVERY_SENDER,
) -> Claimed:
    """``claim`` for one sender (``scope``), within its messaging limit.

    With a limit, the sender's row is locked for the claim: two dispatchers counting the
    moving 24 h at once would each see room for the last user and pass the limit together.
    """
    now = now or utcnow()
    out = Claimed()
    with session_scope(settings) as session:
        limit_24h = limit_of(sender, settings) if sender is not None else 0
        if sender is not None and limit_24h and scope.message_1 and message_ids is None:
            room = limit_room(session, sender, limit_24h, now)
            scope = replace(scope, message_1_room=room.room)
            if room.resumes_at is not None:
                out.limit_until = room.resumes_at
                out.limit_reason = limit_reason(limit_24h, room.resumes_at)
        ids = claims.claim_messages(
            session,
            now,
            limit,
            message_ids,
            provider=settings.provider,
            recipient_ids=recipient_ids,
            scope=scope,
        )
        if ids:
            rows = claims.outbound_rows(session, ids)
            out.messages = [_outbound(row, settings.provider, now) for row in rows]
    return out


def _outbound(row: Any, provider: str, now: datetime) -> OutboundMessage:
    """One claimed message, personalised for its contact, as the provider must send it now."""
    values = contact_values(row.first_name, row.last_name, row.attributes or {})
    defaults = row.placeholder_defaults or {}

    def fill(text: templates.TemplateText) -> str:
        return render(text.text, values, defaults)

    if row.kind == MessageKind.MESSAGE_2:
        template = None
        route = templates.message_2_route(
            provider, row.replied_at, now, bool(row.message_2_template)
        )
        if route == "refuse":
            reason = templates.window_closed_reason(row.replied_at)
            return Refused(
                row.id, row.phone, "", kind="message_2", code="service_window_closed", reason=reason
            )
        if route == "template":
            template = templates.render_template(row.message_2_template, "message_2_template", fill)
        text = render(row.message_2 or "", values, defaults)
        return OutboundMessage(row.id, row.phone, text, template, kind="message_2")
    template = row.message_1_template
    if template:
        template = templates.render_template(template, "message_1_template", fill)
    text = render(row.message_1, values, defaults)
    return OutboundMessage(row.id, row.phone, text, template)


def send_all(provider: Provider, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
    """Hand each message to the provider once; never raise (errors become outcomes).

    A refused message is not handed over: it becomes its permanent failure."""

    def one(message: OutboundMessage) -> SendOutcome:
        if isinstance(message, Refused):
            error = PermanentError(message.code, message.reason)
            return SendOutcome(message.message_id, error=error)
        started = time.perf_counter()
        try:
            result = provider.send(message)
            return SendOutcome(message.message_id, provider_message_id=result.provider_message_id)
        except ProviderError as exc:
            return SendOutcome(message.message_id, error=exc)
        except Exception as exc:  # a bug or a network oddity must not lose the claim
            log.exception("provider send crashed", extra={"message_id": message.message_id})
            return SendOutcome(message.message_id, error=RetryableError("exception", repr(exc)))
        finally:
            recorder.observe(
                PROVIDER_LATENCY, time.perf_counter() - started, provider=provider.name
            )

    if len(messages) <= 1:
        return [one(m) for m in messages]
    with ThreadPoolExecutor(max_workers=min(16, len(messages))) as pool:
        return list(pool.map(one, messages))
