"""Meta's template list read (providers.meta_templates), on Meta's documented response bodies."""

from __future__ import annotations

from functools import partial
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from relance.campaigns.template_schemas import TemplateInfo
from relance.fakes.graph import cursor, offset_of
from relance.providers.meta_templates import fill, names_in, parse_template
from tests.support.providers import recorded

fixture = partial(recorded, "meta")


def _page(name: str) -> dict[str, dict[str, Any]]:
    return {t["name"]: parse_template(t) for t in fixture(name)["data"]}


def test_the_graph_reference_sample() -> None:
    [(name, parsed)] = _page("message_templates.json").items()
    TemplateInfo.model_validate(parsed)  # what GET /api/templates promises
    assert (name, parsed["status"], parsed["category"], parsed["language"]) == (
        "order_delivery_update",
        "APPROVED",
        "UTILITY",
        "en_US",
    )
    assert parsed["parameter_format"] == "positional"
    assert parsed["footer"] == "To stop receiving delivery updates, tap the button below."
    assert parsed["parameters"] == [
        {"component": "body", "field": "parameters.0", "name": "1", "kind": "text",
         "button_index": None, "example": "Mark", "required": True},
        {"component": "body", "field": "parameters.1", "name": "2", "kind": "text",
         "button_index": None, "example": "566701", "required": True},
        {"component": "button", "field": "buttons.0.payload", "name": "Stop Delivery Updates",
         "kind": "payload", "button_index": 0, "example": None, "required": False},
    ]  # fmt: skip
    # A location header needs a location parameter relance does not give.
    assert parsed["unsupported"] is not None
    assert "LOCATION header" in parsed["unsupported"]


def test_each_component_kind_of_the_components_reference() -> None:
    page = _page("message_templates_components.json")
    for parsed in page.values():
        TemplateInfo.model_validate(parsed)

    promo = page["seasonal_promotion"]
    assert promo["header"] == {
        "format": "TEXT",
        "text": "Our {{1}} is on!",
        "example": "Summer Sale",
    }
    assert [(p["field"], p["example"]) for p in promo["parameters"]] == [
        ("header.text", "Summer Sale"),
        ("parameters.0", "the end of August"),
        ("parameters.1", "25OFF"),
        ("parameters.2", "25%"),
        ("buttons.0.payload", None),
        ("buttons.1.payload", None),
    ]
    assert [b["text"] for b in promo["buttons"]] == [
        "Unsubscribe from Promos",
        "Unsubscribe from All",
    ]
    assert promo["unsupported"] is None

    named = page["order_confirmation"]
    assert named["parameter_format"] == "named"
    assert [(p["field"], p["name"], p["example"]) for p in named["parameters"]] == [
        ("header.text", "sale_start_date", "December 1st"),
        ("named_parameters.first_name", "first_name", "Pablo"),
        ("named_parameters.order_number", "order_number", "860198-230332"),
    ]

    catalogue = page["summer_catalogue"]
    assert catalogue["status"] == "PAUSED"
    assert catalogue["parameters"][0] == {
        "component": "header",
        "field": "header.link",
        "name": "image",
        "kind": "image",
        "button_index": None,
        "example": "https://scontent.whatsapp.net/v/t61.29466-34/summer_catalogue.jpg",
        "required": True,
    }
    suffix = catalogue["parameters"][2]
    assert (suffix["field"], suffix["kind"], suffix["button_index"]) == (
        "buttons.0.text",
        "url_suffix",
        0,
    )
    assert suffix["example"] == "https://www.luckyshrub.com/shop?promo=summer2023"
    assert catalogue["buttons"][1] == {
        "index": 1,
        "type": "PHONE_NUMBER",
        "text": "Call",
        "url": None,
    }
    assert catalogue["unsupported"] is None  # a phone button needs no parameter

    coupon = page["coupon_code"]
    assert [p["field"] for p in coupon["parameters"]] == ["header.link"]
    assert "COPY_CODE button" in (coupon["unsupported"] or "")


def test_junk_in_a_template_is_read_without_failing() -> None:
    parsed = parse_template({"name": "x", "components": [None, {"type": "BODY"}, "y"]})
    assert TemplateInfo.model_validate(parsed).body == ""
    assert parse_template({})["status"] == "UNKNOWN"


def test_placeholders_in_order() -> None:
    assert names_in("{{2}} then {{1}} then {{2}}") == ["1", "2"]
    assert names_in("Hi {{ first_name }}, order {{order}}") == ["first_name", "order"]
    assert fill("Hi {{1}}, {{2}}", {"1": "Ada"}) == "Hi Ada, {{2}}"


@given(st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), max_size=5))
def test_fill_replaces_every_placeholder_it_has_a_value_for(names: list[str]) -> None:
    text = " ".join("{{" + n + "}}" for n in names)
    assert fill(text, {n: "v" for n in names}) == " ".join("v" for _ in names)
    assert fill(text, {}) == text


@given(st.integers(min_value=0, max_value=10**9))
def test_graph_cursors_round_trip(offset: int) -> None:
    assert offset_of(cursor(offset)) == offset
    assert cursor(0) == "MAZDZD"
    assert cursor(24) == "MjQZD"
