"""What counts as an answer (campaigns.answer_rule): examples from the table, and properties."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relance.campaigns.answer_rule import (
    ANSWER_TYPES,
    NOT_ANSWERS,
    NOTICES,
    Effect,
    Verdict,
    judge,
    judge_notice,
    stop_phrases,
)
from relance.campaigns.domain import OptSource
from relance.config import Settings
from relance.providers.events import InteractionKind

DEFAULTS = Settings()
PHRASES = stop_phrases(DEFAULTS.stop_keywords, DEFAULTS.stop_buttons)
PROPS = settings(max_examples=400, deadline=None)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=60)
KINDS: tuple[InteractionKind, ...] = InteractionKind.__args__  # type: ignore[attr-defined]
SAID_KINDS = ("text", "button", "interactive", "other")  # where a stop can be said
WITHDRAWALS_AND_NOTICES = ("revoke", "edit", "request_welcome", "unknown")


KEYWORDS = ["STOP", "ARRET", "UNSUBSCRIBE"]
BUTTONS = DEFAULTS.stop_buttons.split(",")
# Texts that are, or look like, a stop phrase, among any texts.
SAID = st.one_of(
    ANY_TEXT,
    st.sampled_from([*KEYWORDS, *BUTTONS, "Arrêt !", "stop promotions.", "STOP PLEASE", ""]),
)


def _is_stop(text: str, payload: str) -> bool:
    """The oracle: a keyword as the whole text, or a button's label as its text or payload
    (case, accents, surrounding spaces and a final . or ! ignored)."""

    def folded(said: str) -> str:
        plain = unicodedata.normalize("NFKD", said.strip().rstrip(".! \n\t").strip())
        return "".join(c for c in plain if not unicodedata.combining(c)).upper()

    buttons = {folded(b) for b in BUTTONS}
    return folded(text) in {folded(k) for k in KEYWORDS} or bool(
        {folded(text), folded(payload)} & buttons
    )


@pytest.mark.parametrize(
    ("kind", "subtype", "text", "payload", "expected"),
    [
        ("text", "", "Oui, avec plaisir", "", Verdict(Effect.ANSWER)),
        ("button", "", "Ça m'intéresse", "INTERESSE", Verdict(Effect.ANSWER)),
        ("interactive", "button_reply", "Oui", "yes", Verdict(Effect.ANSWER)),
        ("interactive", "list_reply", "Samedi 10 h", "sat-10", Verdict(Effect.ANSWER)),
        ("interactive", "nfm_reply", "Sent", "flow", Verdict(Effect.ANSWER)),
        ("audio", "voice", "", "", Verdict(Effect.ANSWER)),
        ("unsupported", "poll_update", "", "", Verdict(Effect.ANSWER)),
        ("reaction", "", "👍", "", Verdict(Effect.ANSWER)),
        ("reaction", "", "", "", Verdict(Effect.NOT_AN_ANSWER, "reaction removed")),
        (
            "system",
            "user_changed_number",
            "User Ana changed from 336 to 337",
            "",
            Verdict(Effect.NOT_AN_ANSWER, "system notice (user_changed_number)"),
        ),
        (
            "interactive",
            "call_permission_reply",
            "",
            "",
            Verdict(Effect.NOT_AN_ANSWER, "interactive call_permission_reply"),
        ),
        ("text", "", " arrêt. ", "", Verdict(Effect.OPT_OUT, source=OptSource.KEYWORD)),
        ("button", "", "STOP", "STOP", Verdict(Effect.OPT_OUT, source=OptSource.BUTTON)),
        (
            "button",
            "",
            "Stop promotions",
            "Stop promotions",
            Verdict(Effect.OPT_OUT, source=OptSource.BUTTON),
        ),
        ("button", "", "Parar promoções", "", Verdict(Effect.OPT_OUT, source=OptSource.BUTTON)),
        (
            "button",
            "",
            "x",
            "DETENER PROMOCIONES",
            Verdict(Effect.OPT_OUT, source=OptSource.BUTTON),
        ),
        ("text", "", "stop promotions", "", Verdict(Effect.OPT_OUT, source=OptSource.KEYWORD)),
        ("text", "", "Stop promotions please", "", Verdict(Effect.ANSWER)),
        (
            "user_preferences",
            "marketing_messages",
            "User requested to stop marketing messages",
            "stop",
            Verdict(Effect.OPT_OUT, source=OptSource.PREFERENCE),
        ),
        (
            "user_preferences",
            "marketing_messages",
            "",
            "resume",
            Verdict(Effect.OPT_IN, source=OptSource.PREFERENCE),
        ),
        (
            "system",
            "user_preference_changed",
            "User requested to stop marketing messages",
            "stop",
            Verdict(Effect.OPT_OUT, source=OptSource.PREFERENCE),
        ),
        (
            "user_preferences",
            "utility_messages",
            "",
            "stop",
            Verdict(Effect.NOT_AN_ANSWER, "utility_messages preference"),
        ),
        (
            "revoke",
            "",
            "",
            "wamid.X",
            Verdict(Effect.NOT_AN_ANSWER, "the contact deleted a message"),
        ),
        (
            "edit",
            "text",
            "",
            "wamid.X",
            Verdict(Effect.NOT_AN_ANSWER, "edit of an earlier message"),
        ),
        (
            "unknown",
            "hologram",
            "",
            "",
            Verdict(Effect.NOT_AN_ANSWER, "message type unknown to relance (hologram)"),
        ),
    ],
)
def test_the_table(kind: str, subtype: str, text: str, payload: str, expected: Verdict) -> None:
    assert judge(kind, subtype, text, payload, PHRASES) == expected


@PROPS
@given(st.sampled_from(KINDS), ANY_TEXT, ANY_TEXT, ANY_TEXT)
def test_the_rule_is_total_and_a_source_comes_with_an_opt_change_only(
    kind: str, subtype: str, text: str, payload: str
) -> None:
    verdict = judge(kind, subtype, text, payload, PHRASES)

    assert (verdict.source is not None) == (verdict.effect in (Effect.OPT_OUT, Effect.OPT_IN))
    assert (verdict.why != "") == (verdict.effect == Effect.NOT_AN_ANSWER)
    assert len(verdict.why) < 120  # what lands in the stored outcome stays short


@PROPS
@given(st.sampled_from(("system", *WITHDRAWALS_AND_NOTICES)), ANY_TEXT, ANY_TEXT, ANY_TEXT)
def test_what_whatsapp_wrote_or_a_withdrawal_is_never_an_answer(
    kind: str, subtype: str, text: str, payload: str
) -> None:
    """Whatever it says (even STOP or "Stop promotions"): only a marketing preference in a
    system message changes anything, and then only the contact's consent."""
    verdict = judge(kind, subtype, text, payload, PHRASES)

    assert verdict.effect != Effect.ANSWER
    if verdict.effect != Effect.NOT_AN_ANSWER:
        assert (kind, subtype, verdict.source) == (
            "system",
            "user_preference_changed",
            OptSource.PREFERENCE,
        )


@PROPS
@given(ANY_TEXT, ANY_TEXT)
def test_a_reaction_is_an_answer_exactly_when_it_carries_an_emoji(subtype: str, emoji: str) -> None:
    verdict = judge("reaction", subtype, emoji, "", PHRASES)

    assert (verdict.effect == Effect.ANSWER) == (emoji.strip() != "")


@PROPS
@given(st.sampled_from(sorted(ANSWER_TYPES - {"reaction"})), SAID, SAID)
def test_a_message_of_an_answer_type_answers_unless_it_says_stop(
    kind: str, text: str, payload: str
) -> None:
    verdict = judge(kind, "", text, payload, PHRASES)

    if kind in SAID_KINDS and _is_stop(text, payload):
        assert verdict.effect == Effect.OPT_OUT
        assert verdict.source == (
            OptSource.KEYWORD if kind in ("text", "other") else OptSource.BUTTON
        )
    else:
        assert verdict == Verdict(Effect.ANSWER)


@PROPS
@given(
    st.sampled_from(["STOP", "ARRET", "UNSUBSCRIBE", *DEFAULTS.stop_buttons.split(",")]),
    st.sampled_from([str.upper, str.lower, str.title, lambda s: s]),
    st.sampled_from(["", " ", ".", "!", " !", "\n"]),
)
def test_any_case_accent_or_trailing_punctuation_of_a_stop_phrase_opts_out(
    phrase: str, case: object, tail: str
) -> None:
    said = case(phrase) + tail  # type: ignore[operator]
    for kind in ("text", "button", "interactive"):
        assert judge(kind, "button_reply", said, "", PHRASES).effect == Effect.OPT_OUT


@PROPS
@given(
    st.sampled_from(["marketing_messages"]),
    st.sampled_from(["stop", "STOP", " Stop ", "resume", "Resume", "pause", ""]),
)
def test_a_marketing_preference_stops_or_resumes_and_nothing_else(
    category: str, value: str
) -> None:
    verdict = judge("user_preferences", category, "", value, PHRASES)

    expected = {"stop": Effect.OPT_OUT, "resume": Effect.OPT_IN}.get(
        value.strip().lower(), Effect.NOT_AN_ANSWER
    )
    assert verdict.effect == expected


@PROPS
@given(st.sampled_from([*NOTICES, "smb_app_state_sync", "history"]), ANY_TEXT)
def test_a_notice_is_never_an_answer(kind: str, detail: str) -> None:
    verdict = judge_notice(kind, detail)

    assert verdict.effect == Effect.NOT_AN_ANSWER
    assert verdict.why.startswith(NOTICES.get(kind, "update of a field"))


def test_the_table_names_every_kind() -> None:
    """No kind falls through unsaid: each is an answer type, a named non-answer, or handled."""
    handled = {"user_preferences", "system", "interactive", "reaction"}
    assert set(KINDS) <= ANSWER_TYPES | set(NOT_ANSWERS) | handled
