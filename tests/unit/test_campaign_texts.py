"""A campaign's texts against WhatsApp's limits (campaigns.texts), pure and property-tested."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from relance.campaigns.templates import TEMPLATE_PARAMETER_MAX, TEMPLATE_PARAMETERS_MAX
from relance.campaigns.texts import (
    TEXT_MAX,
    campaign_texts,
    form_problems,
    longest,
    may_exceed,
    too_long_message,
    value_bound,
)
from relance.contacts.domain import contact_values, render
from relance.contacts.schemas import ATTRIBUTE_VALUE_MAX, NAME_MAX

NAMES = ["first_name", "last_name", "city", "bio"]


def test_every_personalised_text_with_its_field_and_limit() -> None:
    texts = campaign_texts("Hi {first_name}", "Thanks", {"name": "t", "parameters": ["a", "b"]})
    assert [(t.field, t.limit) for t in texts] == [
        ("message_1", TEXT_MAX),
        ("message_2", TEXT_MAX),
        ("message_1_template.parameters.0", TEMPLATE_PARAMETER_MAX),
        ("message_1_template.parameters.1", TEMPLATE_PARAMETER_MAX),
    ]
    assert [t.field for t in campaign_texts("Hi", None, None)] == ["message_1"]


def test_form_problems_name_the_field() -> None:
    """What the request schemas refuse, found again on a campaign stored before they did."""
    template = {"name": "t", "parameters": ["{first_name}", "{"]}
    problems = form_problems(campaign_texts("Hi {0}", None, template), template)
    assert [p["field"] for p in problems] == ["message_1", "message_1_template.parameters.1"]
    assert all(p["msg"].startswith(p["field"] + ": ") for p in problems)
    many = {"name": "t", "parameters": ["x"] * (TEMPLATE_PARAMETERS_MAX + 1)}
    assert form_problems(campaign_texts("Hi", None, many), many)[0]["field"] == (
        "message_1_template.parameters"
    )
    assert form_problems(campaign_texts("Hi {first_name}", "ok", None), None) == []


def test_value_bounds() -> None:
    assert value_bound("first_name", {}) == NAME_MAX
    assert value_bound("city", {}) == ATTRIBUTE_VALUE_MAX
    assert value_bound("first_name", {"first_name": "x" * 900}) == 900
    assert value_bound("city", {"city": "Lyon"}) == ATTRIBUTE_VALUE_MAX


def test_only_a_text_that_could_exceed_its_limit_needs_the_audience() -> None:
    names = "{first_name} {last_name} "
    fits = campaign_texts(names * 10, None, {"parameters": ["{first_name}"] * 5})
    assert may_exceed(fits, {}) == []
    over = campaign_texts(names * 11, "{bio}", {"parameters": ["{first_name}" * 6]})
    assert [t.field for t in may_exceed(over, {})] == [
        "message_1",
        "message_2",
        "message_1_template.parameters.0",
    ]
    assert may_exceed(campaign_texts("{x}", None, None), {"x": "y" * 10}) != []


def test_too_long_message() -> None:
    text = campaign_texts("{bio}", None, None)[0]
    assert too_long_message(text, 10_012, 3, 17) == (
        "message_1 is up to 10,012 characters once personalised for 3 recipient(s) "
        "(contact 17 first); WhatsApp allows 4,096"
    )
    parameter = campaign_texts("", None, {"parameters": ["{bio}"]})[1]
    assert too_long_message(parameter, 2000, 1, 4).endswith(
        "a WhatsApp template parameter allows 1,024"
    )


@st.composite
def contacts(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    """A contact the API accepts: names up to NAME_MAX, attribute values up to
    ATTRIBUTE_VALUE_MAX, and attributes that may carry the names' keys too."""

    def text(most: int) -> str:
        return "v" * draw(st.sampled_from([0, 1, most // 2, most]))

    attributes = {
        name: draw(
            st.one_of(
                st.none(),
                st.integers(-(10**9), 10**9),
                st.builds(text, st.just(ATTRIBUTE_VALUE_MAX)),
            )
        )
        for name in draw(st.sets(st.sampled_from(NAMES)))
    }
    return text(NAME_MAX), text(NAME_MAX), attributes


TEXTS = st.lists(
    st.one_of(
        st.text(max_size=5).map(lambda t: t.replace("{", "{{").replace("}", "}}")),
        st.sampled_from(NAMES).map(lambda n: "{" + n + "}"),
    ),
    max_size=6,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(
    TEXTS,
    contacts(),
    st.dictionaries(
        st.sampled_from(NAMES),
        st.text(max_size=1000).map(lambda t: t.replace("\x00", "")),
        max_size=3,
    ),
)
def test_no_contact_renders_longer_than_the_longest_rendering(
    template: str, contact: tuple[str, str, dict[str, Any]], defaults: dict[str, str]
) -> None:
    """The bound the launch trusts to skip reading the audience holds for every contact."""
    text = campaign_texts(template, None, None)[0]
    values = contact_values(*contact)
    assert len(render(template, values, defaults)) <= longest(text, defaults)
