"""The dispatcher: claim due messages, hand them to the provider within the shared pace,
record what happened.

The provider call must sit between two commits: the claim (``pending -> sending``, or a queued
recipient's Message 1 created ``sending``) is durable before anything leaves, and the outcome
is recorded after (``outcomes.record_outcomes``). A worker killed in between leaves the message
``sending``, where recovery finds it (never resends it blindly). So the dispatcher owns its
transactions, like a task would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import OperationalError

from relance.campaigns import claims, templates
from relance.campaigns.domain import MessageKind
from relance.campaigns.followups import Followups
from relance.campaigns.outcomes import DispatchReport, SendOutcome, record_outcomes
from relance.config import Settings
from relance.contacts.domain import contact_values, render
from relance.db import session_scope
from relance.metrics.recorder import (
    LIMITER_SLEEP,
    LIMITER_WAITS,
    PROVIDER_LATENCY,
    SENDS,
    recorder,
)
from relance.models import utcnow
from relance.pacing.domain import Grant, Wait
from relance.pacing.limiter import AnyLimiter, LimiterUnavailable
from relance.providers.base import (
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    RateLimited,
    RetryableError,
)

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
    """Claim and load up to ``limit`` due messages in one short transaction.

    Due: a pending message whose time has come, or a queued recipient of a sending campaign
    whose Message 1 is created by this claim. ``message_ids`` restricts the claim to those
    pending messages; ``recipient_ids`` to those recipients' messages and Message 1s.
    """
    now = now or utcnow()
    with session_scope(settings) as session:
        ids = claims.claim_messages(
            session,
            now,
            limit,
            message_ids,
            provider=settings.provider,
            recipient_ids=recipient_ids,
        )
        if not ids:
            return []
        rows = claims.outbound_rows(session, ids)
        return [_outbound(row, settings.provider, now) for row in rows]


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


def dispatch(
    settings: Settings,
    provider: Provider,
    limiter: AnyLimiter,
    followups: Followups,
    budget_seconds: float = 20.0,
    batch: int = 100,
    message_ids: Sequence[int] | None = None,
    max_wait: float = 2.0,
    stopping: Callable[[], bool] = lambda: False,
    recipient_ids: Sequence[int] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> DispatchReport:
    """Send due messages within what the shared limiter grants, for up to ``budget_seconds``.

    ``stopping`` is checked between batches: a worker asked to shut down finishes the batch
    it holds (claimed messages are recorded, never abandoned) and claims no more.
    ``message_ids`` and ``recipient_ids`` restrict what is due (see ``claim``); ``clock``
    says when a claim happens (what is due, whether a reply's 24 h window is still open).
    """
    deadline = time.monotonic() + budget_seconds
    total = DispatchReport()
    paced = not limiter.rules.unpaced
    while time.monotonic() < deadline and not stopping():
        # Paced, a reservation spends a slot: look first. Unpaced, the claim itself tells.
        if paced and not _has_due(settings, message_ids, recipient_ids, clock()):
            break
        try:
            decision = limiter.reserve(max_wait=max_wait, wanted=batch)
        except LimiterUnavailable as exc:
            log.warning("pacing store unavailable: not sending", extra={"error": str(exc)})
            total.wait_reason = "limiter_unavailable"
            total.more = True
            recorder.inc(LIMITER_WAITS, sender=settings.sender_key, reason=total.wait_reason)
            break
        if isinstance(decision, Wait):
            total.waiting_until, total.wait_reason = decision.until, decision.reason
            total.more = True
            recorder.inc(LIMITER_WAITS, sender=settings.sender_key, reason=decision.reason)
            break
        assert isinstance(decision, Grant)
        delay = decision.at - time.time()
        if delay > 0:
            recorder.inc(LIMITER_SLEEP, delay, sender=settings.sender_key)
            time.sleep(delay)
        messages = claim(settings, decision.count, message_ids, recipient_ids, clock())
        if len(messages) < decision.count and limiter.rules.unpaced:
            limiter.refund(decision.count - len(messages))
        if not messages:
            break
        outcomes = send_all(provider, messages)
        report = _record(settings, followups, outcomes, limiter)
        count_sends(settings, messages, outcomes)
        total.sent += report.sent
        total.failed += report.failed
        total.retried += report.retried
        total.outcomes.extend(outcomes)
    else:
        total.more = _has_due(settings, message_ids, recipient_ids, clock())
    return total


def send_outcome_label(message: OutboundMessage, outcome: SendOutcome) -> str:
    """What one provider call did: sent, refused (never handed over), failed, rate_limited,
    retry (a transient error)."""
    if isinstance(message, Refused):
        return "refused"
    if outcome.error is None:
        return "sent"
    if isinstance(outcome.error, PermanentError):
        return "failed"
    return "rate_limited" if isinstance(outcome.error, RateLimited) else "retry"


def count_sends(
    settings: Settings, messages: Sequence[OutboundMessage], outcomes: Sequence[SendOutcome]
) -> None:
    for message, outcome in zip(messages, outcomes, strict=True):
        recorder.inc(
            SENDS,
            provider=settings.provider,
            sender=settings.sender_key,
            kind=message.kind,
            outcome=send_outcome_label(message, outcome),
        )


def _record(
    settings: Settings, followups: Followups, outcomes: Sequence[SendOutcome], limiter: AnyLimiter
) -> DispatchReport:
    """Record a batch in one transaction; if that fails, each outcome alone.

    One bad row (say a provider id that collides) must not keep the rest of the batch in
    ``sending``; what still fails stays ``sending`` for recovery, and is logged.
    """
    for attempt in range(3):
        try:
            with session_scope(settings) as session:
                return record_outcomes(session, settings, followups, outcomes, limiter)
        except OperationalError:  # deadlock or lock timeout: the whole batch may go again
            log.warning("recording a batch conflicted; retrying", extra={"attempt": attempt})
        except Exception:
            log.exception("recording a batch failed; recording one by one")
            break
    total = DispatchReport(outcomes=list(outcomes))
    for outcome in outcomes:
        try:
            with session_scope(settings) as session:
                one = record_outcomes(session, settings, followups, [outcome], limiter)
            total.sent += one.sent
            total.failed += one.failed
            total.retried += one.retried
        except Exception:
            log.exception(
                "could not record a send outcome; recovery will see it",
                extra={"message_id": outcome.message_id},
            )
    return total


def _has_due(
    settings: Settings,
    message_ids: Sequence[int] | None,
    recipient_ids: Sequence[int] | None,
    now: datetime,
) -> bool:
    with session_scope(settings) as session:
        return claims.has_due(session, now, message_ids, recipient_ids)
