"""Campaign templates (campaigns.templates, template_schemas): texts, rendering, the 24 h window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from relance.campaigns.template_schemas import TemplateIn
from relance.campaigns.templates import (
    HEADER_TEXT_MAX,
    MESSAGE_1_NEEDS_A_TEMPLATE,
    SERVICE_WINDOW,
    TEMPLATE_PARAMETER_MAX,
    TemplateText,
    message_1_problem,
    message_2_route,
    render_template,
    template_problems,
    template_texts,
    window_closed_reason,
)
from relance.campaigns.texts import campaign_texts, form_problems

RICH: dict[str, Any] = {
    "name": "spring_promo",
    "language": "fr",
    "header": {"format": "text", "text": "{first_name}", "parameter_name": "customer"},
    "named_parameters": {"city": "{city}", "code": "PRINTEMPS"},
    "buttons": [
        {"index": 0, "sub_type": "quick_reply", "payload": "STOP_{city}"},
        {"index": 2, "sub_type": "url", "text": "{code}"},
    ],
}
MEDIA: dict[str, Any] = {
    "name": "catalogue",
    "language": "en_US",
    "header": {"format": "document", "link": "https://example.com/{x}.pdf", "filename": "a.pdf"},
    "parameters": ["{first_name}", "{last_name}"],
}


def test_every_text_of_a_template_with_its_field_and_limit() -> None:
    fields = [(t.field, t.limit) for t in template_texts(RICH, "message_1_template")]
    assert fields == [
        ("message_1_template.header.text", HEADER_TEXT_MAX),
        ("message_1_template.named_parameters.city", TEMPLATE_PARAMETER_MAX),
        ("message_1_template.named_parameters.code", TEMPLATE_PARAMETER_MAX),
        ("message_1_template.buttons.0.payload", TEMPLATE_PARAMETER_MAX),
        ("message_1_template.buttons.1.text", TEMPLATE_PARAMETER_MAX),
    ]
    # A media link is sent as written: it is not a text to personalise.
    assert [t.field for t in template_texts(MEDIA, "m")] == ["m.parameters.0", "m.parameters.1"]
    assert template_texts(None, "m") == []


def test_campaign_texts_include_both_templates() -> None:
    texts = campaign_texts("Hi", "Thanks", MEDIA, RICH)
    assert [t.field for t in texts][:4] == [
        "message_1",
        "message_2",
        "message_1_template.parameters.0",
        "message_1_template.parameters.1",
    ]
    assert "message_2_template.buttons.1.text" in [t.field for t in texts]
    header = next(t for t in texts if t.field.endswith("header.text"))
    assert header.limited_by == "a WhatsApp template header"


def test_render_fills_every_text_and_keeps_the_rest() -> None:
    def fill(text: TemplateText) -> str:
        return text.text.replace("{first_name}", "Ada").replace("{city}", "Lyon").upper()

    assert render_template(RICH, "message_1_template", fill) == {
        "name": "spring_promo",
        "language": "fr",
        "header": {"format": "text", "text": "ADA", "parameter_name": "customer"},
        "parameters": [],
        "named_parameters": {"city": "LYON", "code": "PRINTEMPS"},
        "buttons": [
            {"index": 0, "sub_type": "quick_reply", "payload": "STOP_LYON"},
            {"index": 2, "sub_type": "url", "text": "{CODE}"},
        ],
    }
    rendered = render_template(MEDIA, "x", fill)
    assert rendered["header"] == MEDIA["header"]  # the link is not personalised
    assert rendered["parameters"] == ["ADA", "{LAST_NAME}"]


def test_a_template_stored_before_headers_and_buttons_reads_the_same() -> None:
    old = {"name": "relance_1", "parameters": ["{first_name}"]}  # an old edit lost "language"
    assert [t.field for t in template_texts(old, "p")] == ["p.parameters.0"]
    assert render_template(old, "p", lambda t: "Ana") == {
        "name": "relance_1",
        "language": "fr",
        "parameters": ["Ana"],
    }
    assert template_problems(old, "message_1_template") == []


@pytest.mark.parametrize(
    ("stored", "field"),
    [
        ("spring", "message_1_template"),
        ({"language": "fr"}, "message_1_template.name"),
        ({"name": "t", "parameters": "x"}, "message_1_template.parameters"),
        (
            {"name": "t", "named_parameters": {str(i): "x" for i in range(21)}},
            "message_1_template.named_parameters",
        ),
        ({"name": "t", "header": {"format": "location"}}, "message_1_template.header"),
        (
            {"name": "t", "buttons": [{"index": 0, "sub_type": "copy_code"}]},
            "message_1_template.buttons.0",
        ),
        ({"name": "t", "buttons": ["x"]}, "message_1_template.buttons.0"),
    ],
)
def test_stored_junk_is_refused_at_launch_naming_the_field(stored: Any, field: str) -> None:
    problems = form_problems(campaign_texts("Hi", None, None), stored)
    assert field in [p["field"] for p in problems]


def test_message_1_needs_a_template_on_meta_only() -> None:
    assert message_1_problem("meta", None) == MESSAGE_1_NEEDS_A_TEMPLATE
    assert "message_1_template" in MESSAGE_1_NEEDS_A_TEMPLATE
    assert "24 h" in MESSAGE_1_NEEDS_A_TEMPLATE
    assert message_1_problem("meta", {"name": "t", "language": "fr"}) is None
    for provider in ("simulator", "twilio", "wassenger"):
        assert message_1_problem(provider, None) is None


REPLIED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@given(
    provider=st.sampled_from(["meta", "simulator", "twilio", "wassenger"]),
    elapsed=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
    has_template=st.booleans(),
)
def test_message_2_goes_as_text_inside_the_window_only(
    provider: str, elapsed: timedelta, has_template: bool
) -> None:
    route = message_2_route(provider, REPLIED, REPLIED + elapsed, has_template)
    if provider != "meta" or elapsed < SERVICE_WINDOW:
        assert route == "text"
    else:
        assert route == ("template" if has_template else "refuse")


def test_the_window_closes_exactly_24_hours_after_the_reply() -> None:
    just_before = REPLIED + SERVICE_WINDOW - timedelta(microseconds=1)
    assert message_2_route("meta", REPLIED, just_before, False) == "text"
    assert message_2_route("meta", REPLIED, REPLIED + SERVICE_WINDOW, False) == "refuse"
    assert message_2_route("meta", None, REPLIED + timedelta(days=9), False) == "text"
    reason = window_closed_reason(REPLIED)
    assert "2026-03-01T12:00:00+00:00" in reason
    assert "2026-03-02T12:00:00+00:00" in reason
    assert "message_2_template" in reason


# The request schema ----------------------------------------------------------------------------


def test_a_full_template_is_accepted_and_stored_compactly() -> None:
    template = TemplateIn.model_validate(
        {
            "name": "spring_promo",
            "header": {"format": "image", "link": "https://example.com/spring.jpg"},
            "parameters": ["{first_name}"],
            "buttons": [{"index": 1, "sub_type": "url", "text": "{code}"}],
        }
    )
    assert template.stored() == {
        "name": "spring_promo",
        "language": "fr",
        "header": {"format": "image", "link": "https://example.com/spring.jpg"},
        "parameters": ["{first_name}"],
        "buttons": [{"index": 1, "sub_type": "url", "text": "{code}"}],
    }
    assert TemplateIn(name="hello_world").stored() == {
        "name": "hello_world",
        "language": "fr",
        "parameters": [],
    }


def _locations(value: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        TemplateIn.model_validate({"name": "t", **value})
    return [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]


@pytest.mark.parametrize(
    ("value", "location"),
    [
        ({"header": {"format": "text"}}, "header"),
        ({"header": {"format": "text", "text": "x" * 61}}, "header.text"),
        ({"header": {"format": "text", "text": "{first"}}, "header.text"),
        ({"header": {"format": "text", "text": "x", "link": "https://a.b/c"}}, "header"),
        ({"header": {"format": "image"}}, "header"),
        ({"header": {"format": "image", "link": "ftp://a.b/c.jpg"}}, "header.link"),
        ({"header": {"format": "image", "link": "https://a.b/c", "filename": "c"}}, "header"),
        ({"header": {"format": "location"}}, "header.format"),
        ({"parameters": ["a"], "named_parameters": {"b": "b"}}, ""),
        ({"named_parameters": {"First Name": "x"}}, "named_parameters.First Name.[key]"),
        ({"named_parameters": {"x": "{"}}, "named_parameters.x"),
        (
            {
                "header": {"format": "text", "text": "x"},
                "named_parameters": {"x": "y"},
            },
            "",
        ),
        ({"buttons": [{"index": 0, "sub_type": "url"}]}, "buttons.0"),
        ({"buttons": [{"index": 0, "sub_type": "url", "payload": "x"}]}, "buttons.0"),
        ({"buttons": [{"index": 10, "sub_type": "url", "text": "x"}]}, "buttons.0.index"),
        (
            {"buttons": [{"index": 0, "sub_type": "quick_reply", "payload": "{"}]},
            "buttons.0.payload",
        ),
        (
            {
                "buttons": [
                    {"index": 0, "sub_type": "url", "text": "a"},
                    {"index": 0, "sub_type": "quick_reply", "payload": "b"},
                ]
            },
            "",
        ),
        ({"headr": {}}, "headr"),
    ],
)
def test_a_bad_template_is_refused_naming_where(value: dict[str, Any], location: str) -> None:
    assert location in _locations(value)


# utf-8: no lone surrogates, which pydantic (like JSON) refuses before any rule of ours is asked.
TEXT = st.text(st.characters(blacklist_characters="{}\x00", codec="utf-8"), max_size=8)
NAME = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)


@st.composite
def stored_templates(draw: st.DrawFn) -> dict[str, Any]:
    """What TemplateIn.stored() can give: any mix of header, body parameters and buttons."""
    named = draw(st.booleans())
    template: dict[str, Any] = {"name": "t", "language": "fr"}
    header = draw(st.sampled_from(["none", "text", "image"]))
    if header == "text":
        template["header"] = {"format": "text", "text": draw(TEXT)}
        if named:
            template["header"]["parameter_name"] = draw(NAME)
    elif header == "image":
        template["header"] = {"format": "image", "link": "https://example.com/a.jpg"}
    if named:
        template["parameters"] = []
        template["named_parameters"] = draw(st.dictionaries(NAME, TEXT, max_size=4))
    else:
        template["parameters"] = draw(st.lists(TEXT, max_size=4))
    indexes = draw(st.lists(st.integers(0, 9), unique=True, max_size=3))
    template["buttons"] = [
        {"index": i, "sub_type": "url", "text": draw(TEXT)}
        if draw(st.booleans())
        else {"index": i, "sub_type": "quick_reply", "payload": draw(TEXT)}
        for i in indexes
    ]
    TemplateIn.model_validate(template)  # a template the API accepts
    return template


def _at(value: Any, path: list[str]) -> Any:
    for part in path:
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


@given(stored_templates())
def test_rendering_fills_each_text_in_its_place_and_nothing_else(template: dict[str, Any]) -> None:
    rendered = render_template(template, "p", lambda t: f"<{t.field}>")
    texts = template_texts(template, "p")
    for text in texts:
        assert _at(rendered, text.field.split(".")[1:]) == f"<{text.field}>"
        assert _at(template, text.field.split(".")[1:]) == text.text
    # Everything else is kept: the same template once each text is put back (empty
    # named_parameters and buttons are left out, as TemplateIn.stored() leaves them).
    restored = render_template(rendered, "p", lambda t: _at(template, t.field.split(".")[1:]))
    assert restored == {k: v for k, v in template.items() if v or k == "parameters"}
