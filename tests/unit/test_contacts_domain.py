"""Contact rules with no I/O: phone numbers, stop keywords, personalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relance.contacts.domain import (
    InvalidPhone,
    contact_values,
    fold_keyword,
    is_stop_keyword,
    longest_rendering,
    missing_placeholders,
    name_campaigns,
    normalize_phone,
    placeholders,
    render,
    render_within,
    rendered_length,
    valid_template,
)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("06.12.34.56.78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "US", "+33612345678"),
        ("0033612345678", "FR", "+33612345678"),
        ("  +33612345678  ", "FR", "+33612345678"),
        ("(650) 253-0000", "US", "+16502530000"),
        ("+1 650 253 0000", "FR", "+16502530000"),
        ("020 7946 0958", "GB", "+442079460958"),
    ],
)
def test_normalize_phone_gives_e164(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("not a number", "not a phone number"),
        ("12345", "not a valid phone number"),
        ("+336123456789", "not a valid phone number"),
        ("(650) 253-0000", "not a valid phone number"),  # a US number read as French
    ],
)
def test_normalize_phone_refuses_what_is_not_a_number(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhone, match=reason):
        normalize_phone(raw, "FR")


@pytest.mark.parametrize("raw", ["x" * 100_000, "6" * 100_000])
def test_the_reason_quotes_a_bounded_part_of_the_number(raw: str) -> None:
    with pytest.raises(InvalidPhone) as caught:
        normalize_phone(raw, "FR")
    assert str(caught.value).endswith(f"{raw[:40]!r}... (100,000 characters)")


@given(
    st.integers(min_value=10_000_000, max_value=38_999_999), st.sampled_from(["", " ", ".", "-"])
)
def test_normalize_phone_is_idempotent_on_french_mobiles(n: int, sep: str) -> None:
    # 06 10 .. 06 38 are all allocated mobile ranges.
    digits = f"06{n:08d}"
    written = sep.join(digits[i : i + 2] for i in range(0, 10, 2))
    e164 = normalize_phone(written, "FR")
    assert e164 == f"+336{n:08d}"
    assert normalize_phone(e164, "US") == e164


def test_fold_keyword_ignores_case_accents_and_spaces() -> None:
    assert fold_keyword(" Arrêt ") == "ARRET"
    assert fold_keyword("stop") == "STOP"


def test_is_stop_keyword_accepts_trailing_punctuation_only() -> None:
    keywords = {"STOP", "ARRET"}
    assert is_stop_keyword("stop", keywords)
    assert is_stop_keyword("Arrêt !", keywords)
    assert is_stop_keyword("STOP.", keywords)
    assert not is_stop_keyword("please stop", keywords)
    assert not is_stop_keyword("stopped", keywords)


def test_placeholders_and_rendering() -> None:
    template = "Bonjour {first_name}, votre code {code} expire"
    assert placeholders(template) == {"first_name", "code"}
    values = contact_values("Camille", "", {"code": 42, "empty": "", "none": None})
    assert values == {"first_name": "Camille", "code": "42"}
    assert missing_placeholders(template, values) == set()
    assert missing_placeholders(template, {"first_name": "x"}) == {"code"}
    assert render(template, values, {}) == "Bonjour Camille, votre code 42 expire"
    # A value missing for the contact takes the campaign's default, else nothing.
    assert render("Hi {first_name}{x}", {}, {"first_name": "there"}) == "Hi there"


def test_valid_template() -> None:
    assert valid_template("Hi {first_name}") is None
    assert valid_template("no placeholders") is None
    assert valid_template("broken {first_name") is not None
    assert valid_template("Hi {first name}") is not None
    assert valid_template("Hi {0}") is not None


@given(st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.text(max_size=10)))
def test_rendering_with_every_value_leaves_no_placeholder(values: dict[str, str]) -> None:
    template = " ".join(f"{{{name}}}" for name in values)
    rendered = render(template, values, {})
    assert rendered == " ".join(values.values())


def test_names_come_from_the_contact_fields_only() -> None:
    """An attribute called first_name never stands in for the name: a {first_name} is never
    longer than a name may be."""
    long = "x" * 10_000
    values = contact_values("", "", {"first_name": long, "last_name": long, "city": "Lyon"})
    assert values == {"city": "Lyon"}
    assert contact_values("Ada", "L", {"first_name": long}) == {
        "first_name": "Ada",
        "last_name": "L",
    }


NAMES = st.sampled_from(["first_name", "last_name", "city", "code", "x"])
# Texts made of literal runs and placeholders, braces escaped as a user would write them.
LITERALS = st.text(max_size=12).map(lambda t: t.replace("{", "{{").replace("}", "}}"))
TEMPLATES = st.lists(st.one_of(LITERALS, NAMES.map(lambda n: "{" + n + "}")), max_size=8).map(
    "".join
)
VALUES = st.dictionaries(NAMES, st.text(max_size=30), max_size=5)


@given(TEMPLATES, VALUES, VALUES, st.integers(min_value=0, max_value=200))
def test_render_within_is_the_rendering_cut_at_the_limit(
    template: str, values: dict[str, str], defaults: dict[str, str], limit: int
) -> None:
    full = render(template, values, defaults)
    assert rendered_length(template, values, defaults) == len(full)
    assert render_within(template, values, defaults, limit) == (full[:limit], len(full))


@given(TEMPLATES, VALUES, VALUES, st.dictionaries(NAMES, st.integers(0, 40)))
def test_longest_rendering_bounds_every_rendering_and_is_reached(
    template: str,
    values: dict[str, str],
    defaults: dict[str, str],
    extra: dict[str, int],
) -> None:
    """With each placeholder's bound at least what can fill it, no rendering is longer than
    longest_rendering; filling every placeholder to its bound reaches it exactly."""

    def bound(name: str) -> int:
        return max(len(values.get(name, "")), len(defaults.get(name, ""))) + extra.get(name, 0)

    longest = longest_rendering(template, bound)
    assert len(render(template, values, defaults)) <= longest
    widest = {name: "w" * bound(name) for name in placeholders(template)}
    assert len(render(template, widest, {})) == longest


def test_name_campaigns_quotes_each_name() -> None:
    assert name_campaigns([(7, "Spring"), (9, "Summer")]) == "7 'Spring', 9 'Summer'"
    assert name_campaigns([(3, "l'été")]) == '3 "l\'été"'


@given(
    st.lists(st.tuples(st.integers(1, 10**9), st.text(max_size=30)), max_size=40),
    st.integers(1, 25),
)
def test_name_campaigns_names_the_first_ones_and_counts_the_rest(
    campaigns: list[tuple[int, str]], limit: int
) -> None:
    """The 409 stays short whatever the number of campaigns, and loses none of them."""
    text = name_campaigns(campaigns, limit)
    shown = campaigns[:limit]
    assert text.startswith(", ".join(f"{i} {name!r}" for i, name in shown))
    rest = len(campaigns) - len(shown)
    assert text.endswith(f" and {rest} more") == (rest > 0)
    assert "\n" not in text and "\r" not in text  # names cannot break the message's line
