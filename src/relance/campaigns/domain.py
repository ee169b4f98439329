"""The campaign state machines and the completion rule (SPEC section 2). Pure: no I/O.

Recipient (one contact of one campaign)::

    queued --send M1--> awaiting_reply --reply in window--> replied --send M2--> message_2_sent
       |                      |                                 |                     |
       |                      +--window closes--> no_interaction|                     |
       +--M1 fails for good--> failed <------M2 fails for good--+---reported failed---+
    cancelled: the campaign was cancelled before this recipient finished
    opted_out: the contact opted out (stop keyword or button, marketing preference, API)
    done: Message 1 sent in a campaign that has no Message 2 (-> failed if reported failed)

A message the provider accepted may still be reported ``failed`` later (a status webhook): its
recipient then ends ``failed``, even from ``message_2_sent`` or ``done``. Both are final, so no
campaign reopens for it.

Campaign: draft -> scheduled -> sending <-> paused -> completed | cancelled.
Message: pending -> sending -> sent -> delivered -> read, or failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum


class RecipientState(StrEnum):
    QUEUED = "queued"
    AWAITING_REPLY = "awaiting_reply"
    REPLIED = "replied"
    MESSAGE_2_SENT = "message_2_sent"
    NO_INTERACTION = "no_interaction"
    FAILED = "failed"
    CANCELLED = "cancelled"
    OPTED_OUT = "opted_out"
    DONE = "done"


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class MessageStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class MessageKind(StrEnum):
    MESSAGE_1 = "message_1"
    MESSAGE_2 = "message_2"


R = RecipientState
FINAL_RECIPIENT_STATES: frozenset[RecipientState] = frozenset(
    {R.MESSAGE_2_SENT, R.NO_INTERACTION, R.FAILED, R.CANCELLED, R.OPTED_OUT, R.DONE}
)
OPEN_RECIPIENT_STATES: frozenset[RecipientState] = (
    frozenset(RecipientState) - FINAL_RECIPIENT_STATES
)

RECIPIENT_TRANSITIONS: dict[RecipientState, frozenset[RecipientState]] = {
    R.QUEUED: frozenset({R.AWAITING_REPLY, R.DONE, R.FAILED, R.CANCELLED, R.OPTED_OUT}),
    R.AWAITING_REPLY: frozenset({R.REPLIED, R.NO_INTERACTION, R.FAILED, R.CANCELLED, R.OPTED_OUT}),
    R.REPLIED: frozenset({R.MESSAGE_2_SENT, R.FAILED, R.CANCELLED, R.OPTED_OUT}),
    # retry-failed gives a failed recipient a new Message 1 attempt.
    R.FAILED: frozenset({R.QUEUED}),
    # A sent message reported failed afterwards (final to final: the campaign stays complete).
    R.MESSAGE_2_SENT: frozenset({R.FAILED}),
    R.NO_INTERACTION: frozenset(),
    R.CANCELLED: frozenset(),
    R.OPTED_OUT: frozenset(),
    R.DONE: frozenset({R.FAILED}),
}

C = CampaignStatus
CAMPAIGN_TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    C.DRAFT: frozenset({C.SCHEDULED, C.SENDING, C.CANCELLED}),
    C.SCHEDULED: frozenset({C.SENDING, C.DRAFT, C.CANCELLED}),
    C.SENDING: frozenset({C.PAUSED, C.COMPLETED, C.CANCELLED}),
    C.PAUSED: frozenset({C.SENDING, C.COMPLETED, C.CANCELLED}),
    # retry-failed sends a completed campaign back to sending.
    C.COMPLETED: frozenset({C.SENDING}),
    C.CANCELLED: frozenset(),
}

M = MessageStatus
# Provider statuses only move forward; ``failed`` is final and outranks delivery receipts.
MESSAGE_STATUS_RANK: dict[MessageStatus, int] = {
    M.PENDING: 0,
    M.SENDING: 1,
    M.SENT: 2,
    M.DELIVERED: 3,
    M.READ: 4,
    M.FAILED: 5,
}


# What a failure's effect (``providers.base.FailureEffect``) tells the owner, before the
# provider's own code and words.
FAILURE_REASONS: dict[str, str] = {
    "limited": "limited by Meta: a per-user limit on marketing messages held it back; "
    "retry-limited sends it again later",
    "needs_template": "a template is needed: more than 24 hours since the contact's last "
    "message, so only an approved template may reach them",
    "opted_out": "the contact stopped marketing messages from this business",
}


def failure_reason(code: str, text: str, effect: str | None = None) -> str:
    """A recipient's ``last_error``: why it failed, in the owner's words, then the provider's."""
    own = f"{code}: {text}"
    reason = FAILURE_REASONS.get(effect or "")
    return f"{reason} ({own})" if reason else own


def can_transition(current: RecipientState, target: RecipientState) -> bool:
    return target in RECIPIENT_TRANSITIONS[current]


def can_transition_campaign(current: CampaignStatus, target: CampaignStatus) -> bool:
    return target in CAMPAIGN_TRANSITIONS[current]


def is_final(state: RecipientState) -> bool:
    return state in FINAL_RECIPIENT_STATES


def next_message_status(current: MessageStatus, reported: MessageStatus) -> MessageStatus | None:
    """The status a provider report moves a message to, or None if it changes nothing.

    Statuses never move backwards (a late ``delivered`` after ``read`` is ignored) and a
    duplicate changes nothing. A report about a message still ``sending`` (the worker died
    before recording the provider's answer) proves the send happened, so it applies.
    """
    if current == M.FAILED or current == M.PENDING:
        return None
    if MESSAGE_STATUS_RANK[reported] <= MESSAGE_STATUS_RANK[current]:
        return None
    return reported


def recipient_state_after_message_1(has_message_2: bool) -> RecipientState:
    return R.AWAITING_REPLY if has_message_2 else R.DONE


@dataclass(frozen=True)
class CampaignCounts:
    """Recipients per state of one campaign, plus the plan's message counters."""

    queued: int = 0
    awaiting_reply: int = 0
    replied: int = 0
    message_2_sent: int = 0
    no_interaction: int = 0
    failed: int = 0
    cancelled: int = 0
    opted_out: int = 0
    done: int = 0
    message_1_sent: int = 0

    @property
    def total(self) -> int:
        return sum(getattr(self, s.value) for s in RecipientState)

    @property
    def pending(self) -> int:
        """Recipients that still wait for one of their messages to be sent."""
        return self.queued + self.replied

    @property
    def finished(self) -> int:
        return sum(getattr(self, s.value) for s in FINAL_RECIPIENT_STATES)


def is_complete(counts: CampaignCounts) -> bool:
    """The completion rule (R1.2, R1.4, R2.3; properties P1, P2, P5).

    A campaign is complete when no recipient is in a non-final state. The plan writes it as::

        pending == 0 and (message_2_sent + no_interaction + failed) >= message_1_sent

    which, with the states the plan did not have (opted_out, cancelled, done) and a contact
    still waiting for its window counted as not finished (R1.4), is::

        pending == 0 and awaiting_reply == 0
        and message_2_sent + no_interaction + failed + opted_out + cancelled + done == total
    """
    return counts.total > 0 and counts.finished == counts.total


def plan_formula_holds(counts: CampaignCounts) -> bool:
    """The plan's formula verbatim (task 3.1), kept to prove it agrees with ``is_complete``."""
    finals = (
        counts.message_2_sent
        + counts.no_interaction
        + counts.failed
        + counts.opted_out
        + counts.cancelled
        + counts.done
    )
    return counts.pending == 0 and counts.awaiting_reply == 0 and finals >= counts.message_1_sent


def status_after_check(status: CampaignStatus, counts: CampaignCounts) -> CampaignStatus:
    """What ``update_campaign_status`` moves a campaign to (R1.2, R1.4)."""
    if status in (C.SENDING, C.PAUSED) and is_complete(counts):
        return C.COMPLETED
    return status


# A schedule further than this from now is a mistake (a wrong year), not a plan.
SCHEDULE_HORIZON = timedelta(days=366)


def schedule_in_range(at: datetime, now: datetime) -> datetime:
    """``at`` in UTC (naive means UTC), or ValueError when it overflows or lies absurdly far."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        utc = at.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None
    if abs(utc - now) > SCHEDULE_HORIZON:
        raise ValueError(f"must lie within {SCHEDULE_HORIZON.days} days of now")
    return utc


class Outcome(StrEnum):
    """What an inbound event did; stored with it (``inbound_events.outcome``)."""

    UNMATCHED = "unmatched"  # a status about no message of ours
    UNKNOWN_CONTACT = "unknown_contact"  # a message from a number we do not know
    REJECTED = "rejected"  # not applied: ids no provider would send, or the database refused it
    NO_CAMPAIGN_AWAITING = "no_campaign_awaiting"
    LATE_REPLY = "late_reply"
    ALREADY_ANSWERED = "already_answered"
    MESSAGE_2_QUEUED = "message_2_queued"
    OPTED_OUT = "opted_out"
    OPTED_IN = "opted_in"
    NOT_AN_ANSWER = "not_an_answer"  # a system notice, a withdrawal, an echo, a call... (why)
    TEMPLATE_SIGNAL = "template_signal"  # a template's new status, quality or category
    SENDER_SIGNAL = "sender_signal"  # a number's quality or limit, the account's restriction
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    IGNORED = "ignored"  # a status that would move a message backwards, or a duplicate

    @property
    def matched(self) -> bool:
        """Did the event concern one of our messages or contacts?"""
        return self not in _NOT_MATCHED

    @property
    def tally(self) -> str:
        """How a webhook's answer counts it: matched, unmatched, noted or rejected."""
        if self == Outcome.REJECTED:
            return "rejected"
        if self in (Outcome.NOT_AN_ANSWER, Outcome.TEMPLATE_SIGNAL, Outcome.SENDER_SIGNAL):
            return "noted"  # stored, and by the rule nothing else to do
        return "matched" if self.matched else "unmatched"


# Asked once per event of every webhook batch: a set built once, not a tuple at each call.
_NOT_MATCHED = frozenset(
    {
        Outcome.UNMATCHED,
        Outcome.UNKNOWN_CONTACT,
        Outcome.REJECTED,
        Outcome.NOT_AN_ANSWER,
        Outcome.TEMPLATE_SIGNAL,
        Outcome.SENDER_SIGNAL,
    }
)


class OptSource(StrEnum):
    """Where a contact's opt-out or opt-in came from."""

    KEYWORD = "keyword"  # a stop keyword written as a whole message
    BUTTON = "button"  # a stop button tapped (Meta's "Stop promotions")
    PREFERENCE = "preference"  # WhatsApp's marketing preference (user_preferences stop/resume)
    API = "api"  # PATCH /api/contacts/{id}
    SEND_ERROR = "send_error"  # the provider refused a send: the user stopped marketing (131050)
    SUPPRESSED = "suppressed"  # made again with the number of an erased opted-out contact


@dataclass(frozen=True)
class Applied:
    """An outcome, with what it was about (the recipient) and why, when it says more."""

    outcome: Outcome
    recipient_id: int | None = None
    detail: str = ""

    @property
    def text(self) -> str:
        """As stored: ``ignored (read after delivered)``, ``rejected: <why>``, ``sent``."""
        if not self.detail:
            return self.outcome.value
        if self.outcome in (Outcome.REJECTED, Outcome.NOT_AN_ANSWER):
            return f"{self.outcome.value}: {self.detail}"
        return f"{self.outcome.value} ({self.detail})"
