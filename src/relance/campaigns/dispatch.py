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
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import OperationalError

from relance.campaigns import claims, templates
from relance.campaigns.domain import MessageKind
from relance.campaigns.followups import Followups
from relance.campaigns.handover import Refused, count_sends, send_all
from relance.campaigns.outcomes import DispatchReport, SendOutcome, record_outcomes
from relance.campaigns.team import Team
from relance.config import Settings
from relance.contacts.domain import contact_values, render
from relance.db import session_scope
from relance.metrics.recorder import LIMITER_SLEEP, LIMITER_WAITS, recorder
from relance.models import utcnow
from relance.pacing.domain import Grant, Wait
from relance.pacing.limiter import AnyLimiter, LimiterUnavailable
from relance.providers.base import (
    OutboundMessage,
    Provider,
)
from relance.senders.domain import limit_reason
from relance.senders.identity import SenderInfo, pacing_key
from relance.senders.limits import limit_of, limit_room

log = logging.getLogger(__name__)
MAX_SENDERS_AT_ONCE = 32  # senders served side by side by one dispatch
NEW_WORK_CHECK_SECONDS = 1.0


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
    label: str  # its pacing key, in metrics
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

    Each sender with something due gets its own loop, beside the others': claim its next
    messages (a committed transaction), reserve their slot, wait for it, send, record. So a
    slowed or waiting number never holds the others back, and the claim's latency never eats
    into the gap between two sends of a number. ``provider`` and ``limiter`` are the default
    sender's; the others send through ``providers`` (default: the registry, with their own
    number) and limiters on the same store as ``limiter``, under their own keys.

    ``stopping`` is checked between sends: a worker asked to shut down finishes the batch
    it holds (claimed messages are recorded, never abandoned) and claims no more.
    ``message_ids`` and ``recipient_ids`` restrict what is due (see ``claim``); ``clock``
    says when a claim happens (what is due, whether a reply's 24 h window is still open).
    """
    deadline = time.monotonic() + budget_seconds
    total = DispatchReport()
    guard = threading.Lock()
    team = Team(settings, provider, limiter, providers)
    ask = _Ask(batch, max_wait, message_ids, recipient_ids, clock)

    def over() -> bool:
        return (
            time.monotonic() >= deadline or stopping() or total.wait_reason == "limiter_unavailable"
        )

    def serve(sender: SenderInfo) -> None:
        """One sender's loop, beside the others': claim, wait for its slot, send, record."""
        while not over():
            plan, held = _plan(settings, team, sender, ask)
            if held is not None:
                recorder.inc(LIMITER_WAITS, sender=pacing_key(sender, settings), reason=held[1])
                with guard:
                    _wait(total, *held)
            if plan is None:
                return
            outcomes = _send_at_slot(plan)
            report = _record(settings, followups, outcomes, plan.limiter)
            sends = [(m.kind, isinstance(m, Refused)) for m in plan.messages]
            count_sends(sender.provider, plan.label, sends, outcomes)
            with guard:
                total.sent += report.sent
                total.failed += report.failed
                total.retried += report.retried
                total.outcomes.extend(outcomes)
            if message_ids is not None:
                return  # the messages asked for: claimed in one go (a Message 2, its reply)
            sender = team.refreshed(sender)  # Meta may have slowed or stopped it meanwhile

    if message_ids is not None:
        # A handful of messages (a Message 2 right after its reply, at once): one pass, in
        # this thread; what must wait goes with the next full dispatch.
        for sender in team.due(message_ids, recipient_ids, clock()):
            serve(sender)
        return total
    served: set[int] = set()
    started: list[Future[None]] = []
    running: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=MAX_SENDERS_AT_ONCE) as pool:
        while not over():
            # Each sender once per dispatch: one that stopped has nothing more, or must wait.
            fresh = [s for s in team.due(message_ids, recipient_ids, clock()) if s.id not in served]
            served.update(s.id for s in fresh)
            started += [pool.submit(serve, s) for s in fresh]
            running = [f for f in started if not f.done()]
            if not running:
                break
            # A sender whose first work arrives meanwhile (a reply to its number) joins within
            # NEW_WORK_CHECK seconds; a sender done sooner wakes this loop at once.
            wait(running, timeout=NEW_WORK_CHECK_SECONDS, return_when=FIRST_COMPLETED)
    for future in started:
        future.result()  # a bug in a sender's loop must not pass unseen
    if time.monotonic() >= deadline or stopping():
        total.more = bool(team.due(message_ids, recipient_ids, clock()))
    return total


Held = tuple[float | None, str]


def _plan(
    settings: Settings, team: Team, sender: SenderInfo, ask: _Ask
) -> tuple[_Plan | None, Held | None]:
    """Claim the sender's next messages, then reserve their slot; no plan when it must wait
    (and why, until when).

    Claim first: the claim's transaction then never eats into the gap between two sends of
    the number (reserved first, a slow claim sent one late, right before the next slot). What
    the limiter does not let go now is released (back to ``pending`` until its time, no
    attempt counted), and the sender rests for the rest of this dispatch.
    """
    if sender.status == "stopped":
        return None, (None, "sender_stopped")  # never retry into a ban: a person or Meta says
    resting = team.resting_until(sender)
    if resting is not None:
        return None, (resting, "delay")
    # A paused sender (a person, or quality red with QUALITY_RED_ACTION=pause) still answers.
    scope = claims.SenderScope(sender.stored_id, message_1=sender.status != "paused")
    limiter = team.limiter(sender)
    try:  # ask before claiming: a claim that must then wait is churn
        waiting = limiter.peek(ask.max_wait)
    except LimiterUnavailable as exc:
        log.warning("pacing store unavailable: not sending", extra={"error": str(exc)})
        return None, (None, "limiter_unavailable")
    if waiting is not None:
        team.rest(sender, waiting.until)
        return None, (waiting.until, waiting.reason)
    wanted = ask.batch if limiter.rules.unpaced else 1
    now = ask.clock()
    claimed = claim_for(settings, wanted, ask.message_ids, ask.recipient_ids, now, sender, scope)
    held: Held | None = None
    if claimed.limit_until is not None:
        held = (claimed.limit_until.timestamp(), "messaging_limit")
    elif not scope.message_1 and not claimed.messages:
        held = (None, "sender_paused")
    if not claimed.messages:
        return None, held
    try:
        decision = limiter.reserve(max_wait=ask.max_wait, wanted=len(claimed.messages))
    except LimiterUnavailable as exc:
        log.warning("pacing store unavailable: not sending", extra={"error": str(exc)})
        _release(settings, claimed.messages, time.time())
        return None, (None, "limiter_unavailable")
    if isinstance(decision, Wait):
        _release(settings, claimed.messages, decision.until)
        team.rest(sender, decision.until)
        return None, (decision.until, decision.reason)
    assert isinstance(decision, Grant)
    keep, rest = claimed.messages[: decision.count], claimed.messages[decision.count :]
    if rest:  # a batch boundary or the daily quota granted fewer
        _release(settings, rest, decision.at)
    label = pacing_key(sender, settings)
    return _Plan(sender, label, limiter, team.provider(sender), decision.at, keep), held


def _release(settings: Settings, messages: Sequence[OutboundMessage], until: float) -> None:
    with session_scope(settings) as session:
        claims.release(
            session, [m.message_id for m in messages], datetime.fromtimestamp(until, UTC)
        )


def _wait(total: DispatchReport, until: float | None, reason: str) -> None:
    total.more = True
    if total.wait_reason != "limiter_unavailable":
        total.wait_reason = reason
    if until is not None and (total.waiting_until is None or until < total.waiting_until):
        total.waiting_until = until


def _send_at_slot(plan: _Plan) -> list[SendOutcome]:
    """The sender's messages at the time its limiter granted."""
    delay = plan.at - time.time()
    if delay > 0:
        recorder.inc(LIMITER_SLEEP, delay, sender=plan.label)
        time.sleep(delay)  # the slot the limiter granted: the pace itself, not a poll
    return send_all(plan.provider, plan.messages)


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
