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
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import OperationalError

from relance.campaigns import claims
from relance.campaigns.followups import Followups
from relance.campaigns.handover import Claimed, Refused, claim, claim_for, send_all
from relance.campaigns.outcomes import DispatchReport, SendOutcome, record_outcomes
from relance.campaigns.team import Team
from relance.config import Settings
from relance.db import session_scope
from relance.metrics.recorder import LIMITER_SLEEP, LIMITER_WAITS, SENDS, recorder
from relance.models import utcnow
from relance.pacing.domain import Grant, Wait
from relance.pacing.limiter import AnyLimiter, LimiterUnavailable
from relance.providers.base import OutboundMessage, PermanentError, Provider, RateLimited
from relance.senders.identity import SenderInfo, pacing_key

# claim and send_all are the dispatcher's halves; tests and callers import them from here.
__all__ = ["Claimed", "Refused", "claim", "claim_for", "dispatch", "send_all"]

log = logging.getLogger(__name__)
MAX_SENDERS_AT_ONCE = 32  # senders served side by side by one dispatch
NEW_WORK_CHECK_SECONDS = 1.0


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
                with guard:
                    _wait(total, *held)
            if plan is None:
                return
            outcomes = _send_at_slot(plan)
            report = _record(settings, followups, outcomes, plan.limiter)
            count_sends(plan, outcomes)
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
    label = pacing_key(sender, settings)
    try:  # ask before claiming: a claim that must then wait is churn
        waiting = limiter.peek(ask.max_wait)
    except LimiterUnavailable as exc:
        log.warning("pacing store unavailable: not sending", extra={"error": str(exc)})
        recorder.inc(LIMITER_WAITS, sender=label, reason="limiter_unavailable")
        return None, (None, "limiter_unavailable")
    if waiting is not None:
        team.rest(sender, waiting.until)
        recorder.inc(LIMITER_WAITS, sender=label, reason=waiting.reason)
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
        recorder.inc(LIMITER_WAITS, sender=label, reason="limiter_unavailable")
        return None, (None, "limiter_unavailable")
    if isinstance(decision, Wait):
        _release(settings, claimed.messages, decision.until)
        team.rest(sender, decision.until)
        recorder.inc(LIMITER_WAITS, sender=label, reason=decision.reason)
        return None, (decision.until, decision.reason)
    assert isinstance(decision, Grant)
    keep, rest = claimed.messages[: decision.count], claimed.messages[decision.count :]
    if rest:  # a batch boundary or the daily quota granted fewer
        _release(settings, rest, decision.at)
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
