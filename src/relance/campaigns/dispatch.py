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
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.exc import OperationalError

from relance.campaigns import claims, templates
from relance.campaigns.domain import MessageKind
from relance.campaigns.followups import Followups
from relance.campaigns.outcomes import DispatchReport, SendOutcome, record_outcomes
from relance.campaigns.team import Team
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
from relance.senders.domain import limit_reason
from relance.senders.identity import SenderInfo, pacing_key
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


@dataclass(frozen=True)
class _Ask:
    """What one dispatch asks of each sender's round."""

    batch: int
    max_wait: float
    message_ids: Sequence[int] | None
    recipient_ids: Sequence[int] | None
    clock: Callable[[], datetime]


@dataclass
class _Plan:
    """One sender's claimed messages, to hand over at its granted time."""

    sender: SenderInfo
    label: str  # the sender's pacing key, in metrics
    limiter: AnyLimiter
    provider: Provider
    at: float
    messages: list[OutboundMessage]


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
    providers: Callable[[SenderInfo], Provider] | None = None,
) -> DispatchReport:
    """Send due messages within what each sender's shared limiter grants, for up to
    ``budget_seconds``.

    Each round takes every sender with something due: reserve its next slot, claim its
    messages (a committed transaction), then wait for the slot and send; the senders' waits
    run side by side. Claiming before the wait keeps the claim's latency out of the gap
    between two sends of a number. ``provider`` and ``limiter`` are the default sender's;
    the others send through ``providers`` (default: the registry, with their own number) and
    limiters on the same store as ``limiter``, under their own keys.

    ``stopping`` is checked between rounds: a worker asked to shut down finishes the round
    it holds (claimed messages are recorded, never abandoned) and claims no more.
    ``message_ids`` and ``recipient_ids`` restrict what is due (see ``claim``); ``clock``
    says when a claim happens (what is due, whether a reply's 24 h window is still open).
    """
    deadline = time.monotonic() + budget_seconds
    total = DispatchReport()
    team = Team(settings, provider, limiter, providers)
    ask = _Ask(batch, max_wait, message_ids, recipient_ids, clock)
    while time.monotonic() < deadline and not stopping():
        plans: list[_Plan] = []
        for sender in team.due(message_ids, recipient_ids, clock()):
            plan = _plan(settings, team, sender, total, ask)
            if plan is not None:
                plans.append(plan)
            if total.wait_reason == "limiter_unavailable":
                break
        if not plans:
            break
        for plan, outcomes in zip(plans, _send_plans(plans), strict=True):
            report = _record(settings, followups, outcomes, plan.limiter)
            count_sends(plan, outcomes)
            total.sent += report.sent
            total.failed += report.failed
            total.retried += report.retried
            total.outcomes.extend(outcomes)
    else:
        total.more = bool(team.due(message_ids, recipient_ids, clock()))
    return total


def _plan(
    settings: Settings,
    team: Team,
    sender: SenderInfo,
    total: DispatchReport,
    ask: _Ask,
) -> _Plan | None:
    """Reserve the sender's next slot and claim its messages; None when it must wait."""
    message_ids, recipient_ids, clock = ask.message_ids, ask.recipient_ids, ask.clock
    if sender.status == "stopped":
        _wait(total, None, "sender_stopped")  # never retry into a ban: a person or Meta says
        return None
    # A paused sender (a person, or quality red with QUALITY_RED_ACTION=pause) still answers.
    scope = claims.SenderScope(sender.stored_id, message_1=sender.status != "paused")
    limiter = team.limiter(sender)
    label = pacing_key(sender, settings)
    if not scope.message_1 and not team.has_due(message_ids, recipient_ids, clock(), scope):
        return None  # only held Message 1s: don't spend a slot
    try:
        decision = limiter.reserve(max_wait=ask.max_wait, wanted=ask.batch)
    except LimiterUnavailable as exc:
        log.warning("pacing store unavailable: not sending", extra={"error": str(exc)})
        _wait(total, None, "limiter_unavailable")
        recorder.inc(LIMITER_WAITS, sender=label, reason="limiter_unavailable")
        return None
    if isinstance(decision, Wait):
        _wait(total, decision.until, decision.reason)
        recorder.inc(LIMITER_WAITS, sender=label, reason=decision.reason)
        return None
    assert isinstance(decision, Grant)
    claimed = claim_for(
        settings, decision.count, message_ids, recipient_ids, clock(), sender, scope
    )
    if claimed.limit_until is not None:
        _wait(total, claimed.limit_until.timestamp(), "messaging_limit")
    if len(claimed.messages) < decision.count and limiter.rules.unpaced:
        limiter.refund(decision.count - len(claimed.messages))
    if not claimed.messages:
        return None
    return _Plan(sender, label, limiter, team.provider(sender), decision.at, claimed.messages)


def _wait(total: DispatchReport, until: float | None, reason: str) -> None:
    total.more = True
    if total.wait_reason != "limiter_unavailable":
        total.wait_reason = reason
    if until is not None and (total.waiting_until is None or until < total.waiting_until):
        total.waiting_until = until


def _send_plans(plans: Sequence[_Plan]) -> list[list[SendOutcome]]:
    """Each sender's messages at its granted time; the senders side by side."""

    def one(plan: _Plan) -> list[SendOutcome]:
        delay = plan.at - time.time()
        if delay > 0:
            recorder.inc(LIMITER_SLEEP, delay, sender=plan.label)
            time.sleep(delay)  # the slot the limiter granted: the pace itself, not a poll
        return send_all(plan.provider, plan.messages)

    if len(plans) == 1:
        return [one(plans[0])]
    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        return list(pool.map(one, plans))


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


def count_sends(plan: _Plan, outcomes: Sequence[SendOutcome]) -> None:
    for message, outcome in zip(plan.messages, outcomes, strict=True):
        recorder.inc(
            SENDS,
            provider=plan.sender.provider,
            sender=plan.label,
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
