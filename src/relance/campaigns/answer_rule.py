"""What counts as an answer: one rule over what a contact, or WhatsApp, sent. Pure: no I/O.

A contact who answers inside its reply window gets Message 2, so only what the person wrote or
tapped counts. What WhatsApp wrote about them (a changed number), a withdrawal (a reaction
removed, a message deleted, an edit of an earlier message), what the business itself sent, calls
and account, template or preference updates are not answers: they change no recipient. A stop
keyword, Meta's "Stop promotions" button and a ``user_preferences`` stop opt the contact out; a
``resume`` opts it back in. Every one of them is stored, with the verdict as its outcome.

    message type / update field          verdict
    text, button, interactive reply      answer (a stop keyword or stop button: opt-out)
    image video audio document sticker   answer
    location contacts order unsupported  answer
    reaction with an emoji               answer
    reaction without emoji               not an answer: reaction removed
    system (changed number, identity)    not an answer: system notice
    system user_preference_changed       opt-out (stop) / opt-in (resume)
    user_preferences marketing_messages  opt-out (stop) / opt-in (resume)
    revoke, edit, request_welcome        not an answer
    errors, smb_message_echoes, calls,   not an answer
    account_update, template updates,
    statuses we do not track, unknown
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import get_args

from relance.campaigns.domain import OptSource
from relance.contacts.domain import is_stop_keyword, stop_keywords
from relance.providers.events import InteractionKind


class Effect(StrEnum):
    ANSWER = "answer"
    NOT_AN_ANSWER = "not_an_answer"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"


@dataclass(frozen=True)
class Verdict:
    """What an inbound event does; for a non-answer, why; for an opt change, from what."""

    effect: Effect
    why: str = ""
    source: OptSource | None = None


ANSWER = Verdict(Effect.ANSWER)


def _not(why: str) -> Verdict:
    return Verdict(Effect.NOT_AN_ANSWER, why)


NOT_ANSWERS: dict[str, str] = {
    "system": "system notice",
    "revoke": "the contact deleted a message",
    "edit": "edit of an earlier message",
    "request_welcome": "the contact opened the chat, wrote nothing",
    "unknown": "message type unknown to relance",
}
# The answers: every other type of message is a person writing, tapping, sending something or
# reacting (``other``: Twilio's and Wassenger's other types; ``unsupported``: a type the Cloud
# API cannot show us, still theirs). A preference update is a consent change, never an answer.
ANSWER_TYPES = frozenset(get_args(InteractionKind)) - set(NOT_ANSWERS) - {"user_preferences"}
# interactive replies that are answers; another subtype (a call permission reply...) is not.
ANSWER_INTERACTIVE = frozenset({"", "button_reply", "list_reply", "nfm_reply"})
# Update fields and other notices (``NoticeEvent.kind``) and why none is an answer.
NOTICES: dict[str, str] = {
    "errors": "error report",
    "smb_message_echoes": "echo of a message the business sent",
    "calls": "call",
    "account_update": "account update",
    "status": "status relance does not track",
    "messages": "empty messages update",
}
MARKETING = "marketing_messages"
PREFERENCE_CHANGED = "user_preference_changed"


@dataclass(frozen=True)
class StopPhrases:
    """Folded stop keywords (a whole message) and stop button texts or payloads."""

    keywords: frozenset[str]
    buttons: frozenset[str]


def _preference(value: str) -> Verdict:
    folded = value.strip().lower()
    if folded == "stop":
        return Verdict(Effect.OPT_OUT, source=OptSource.PREFERENCE)
    if folded == "resume":
        return Verdict(Effect.OPT_IN, source=OptSource.PREFERENCE)
    return _not(f"marketing preference {value[:40]!r}")


def _asks_to_stop(kind: str, text: str, payload: str, phrases: StopPhrases) -> Verdict | None:
    if kind not in ("text", "button", "interactive", "other"):
        return None
    source = OptSource.KEYWORD if kind in ("text", "other") else OptSource.BUTTON
    if is_stop_keyword(text, phrases.keywords):
        return Verdict(Effect.OPT_OUT, source=source)
    # Meta's button sends its label, localised, as text and payload; a typed label counts too.
    if any(is_stop_keyword(said, phrases.buttons) for said in (text, payload) if said):
        return Verdict(Effect.OPT_OUT, source=source)
    return None


def judge(kind: str, subtype: str, text: str, payload: str, phrases: StopPhrases) -> Verdict:
    """The verdict on a contact's message or preference update (``InteractionEvent``)."""
    if kind == "user_preferences":
        return _preference(payload) if subtype == MARKETING else _not(f"{subtype[:40]} preference")
    if kind == "system":
        if subtype == PREFERENCE_CHANGED:
            return _preference(payload)
        return _not(f"system notice ({subtype[:40]})" if subtype else "system notice")
    stop = _asks_to_stop(kind, text, payload, phrases)
    if stop is not None:
        return stop
    if kind == "reaction" and not text.strip():
        return _not("reaction removed")
    if kind == "interactive" and subtype not in ANSWER_INTERACTIVE:
        return _not(f"interactive {subtype[:40]}")
    if kind in ANSWER_TYPES:
        return ANSWER
    if kind == "unknown":
        return _not(f"{NOT_ANSWERS['unknown']} ({subtype[:40]})")
    return _not(NOT_ANSWERS.get(kind, NOT_ANSWERS["unknown"]))


def judge_notice(kind: str, detail: str) -> Verdict:
    """The verdict on a notice (``NoticeEvent``): never an answer; why, by its kind."""
    why = NOTICES.get(kind, "update of a field relance does not handle")
    return _not(f"{why} ({detail})" if detail else why)


def stop_phrases(keywords: str, buttons: str) -> StopPhrases:
    """``STOP_KEYWORDS`` and ``STOP_BUTTONS`` (comma-separated) as folded phrases."""
    return StopPhrases(stop_keywords(keywords), stop_keywords(buttons))


REPLY_TEXT_MAX = 1000
# What an answer without words was, as the results table says it.
WORDLESS: dict[str, str] = {"audio": "audio", "contacts": "contact card", "unsupported": "message"}


def reply_text(kind: str, subtype: str, text: str) -> str:
    """What an answer said, for the results: its text (a button's title, an emoji, a flow's
    body), or its kind ("image", "voice", "location") with a caption when it has one."""
    said = " ".join(text.split())
    if kind in ("text", "button", "interactive", "reaction", "other", "order") and said:
        return said[:REPLY_TEXT_MAX]
    name = "voice" if subtype == "voice" else WORDLESS.get(kind, kind)
    return f"{name}: {said}"[:REPLY_TEXT_MAX] if said else name
