"""A campaign's message texts against WhatsApp's limits. Pure: no I/O.

Each text is checked twice: its own form when the campaign is written (its placeholders parse,
it is not too long), and its length once personalised, at launch. The launch first asks how
long each text can get at most, from the bounds of what may fill its placeholders: only a text
whose longest rendering exceeds its limit makes the launch read the audience.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relance.campaigns.templates import template_problems, template_texts
from relance.contacts.domain import NAME_FIELDS, longest_rendering, valid_template
from relance.contacts.schemas import ATTRIBUTE_VALUE_MAX, NAME_MAX

# A WhatsApp text message body (Cloud API ``text.body``).
TEXT_MAX = 4096
DEFAULT_VALUE_MAX = 1000


@dataclass(frozen=True)
class CampaignText:
    """One text a recipient receives: where it is in the campaign, and its limit."""

    field: str
    text: str
    limit: int
    limited_by: str = "WhatsApp"


def campaign_texts(
    message_1: str,
    message_2: str | None,
    template: Mapping[str, Any] | None,
    message_2_template: Mapping[str, Any] | None = None,
) -> list[CampaignText]:
    """Every text of a campaign that is personalised and sent."""
    texts = [CampaignText("message_1", message_1, TEXT_MAX)]
    if message_2:
        texts.append(CampaignText("message_2", message_2, TEXT_MAX))
    for prefix, value in (
        ("message_1_template", template),
        ("message_2_template", message_2_template),
    ):
        texts.extend(
            CampaignText(t.field, t.text, t.limit, t.limited_by)
            for t in template_texts(value, prefix)
        )
    return texts


def form_problems(
    texts: list[CampaignText], template: Any, message_2_template: Any = None
) -> list[dict[str, str]]:
    """What is wrong with the texts as written, as ``{field, msg}`` (empty when nothing).

    The request schemas refuse these already; a campaign stored before they did is refused
    here, at launch, instead of failing later.
    """
    problems = template_problems(template, "message_1_template")
    problems += template_problems(message_2_template, "message_2_template")
    for text in texts:
        problem = valid_template(text.text)
        if problem:
            problems.append({"field": text.field, "msg": f"{text.field}: {problem}"})
    return problems


def value_bound(name: str, defaults: Mapping[str, Any]) -> int:
    """The most characters that can fill ``{name}`` for any contact.

    A contact's own value (a name, or an attribute) when it has one, else the default.
    """
    contact = NAME_MAX if name in NAME_FIELDS else ATTRIBUTE_VALUE_MAX
    if name in defaults:
        return max(contact, len(str(defaults[name])))
    return contact


def longest(text: CampaignText, defaults: Mapping[str, Any]) -> int:
    return longest_rendering(text.text, lambda name: value_bound(name, defaults))


def may_exceed(texts: list[CampaignText], defaults: Mapping[str, Any]) -> list[CampaignText]:
    """The texts that some contact could make too long: only these need the audience read."""
    return [t for t in texts if longest(t, defaults) > t.limit]


def too_long_message(text: CampaignText, longest_seen: int, recipients: int, first: int) -> str:
    return (
        f"{text.field} is up to {longest_seen:,} characters once personalised for "
        f"{recipients:,} recipient(s) (contact {first} first); "
        f"{text.limited_by} allows {text.limit:,}"
    )
