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

from relance.contacts.domain import NAME_FIELDS, longest_rendering, valid_template
from relance.contacts.schemas import ATTRIBUTE_VALUE_MAX, NAME_MAX

# A WhatsApp text message body (Cloud API ``text.body``).
TEXT_MAX = 4096
# A template body parameter: Meta allows 1,024 characters when the template has components
# other than its body (32,768 when the body is the only one); relance does not know the
# template's other components, so it holds every parameter to the lower limit.
TEMPLATE_PARAMETER_MAX = 1024
TEMPLATE_PARAMETERS_MAX = 20
DEFAULT_VALUE_MAX = 1000


@dataclass(frozen=True)
class CampaignText:
    """One text a recipient receives: where it is in the campaign, and its limit."""

    field: str
    text: str
    limit: int
    limited_by: str = "WhatsApp"


def campaign_texts(
    message_1: str, message_2: str | None, template: Mapping[str, Any] | None
) -> list[CampaignText]:
    """Every text of a campaign that is personalised and sent."""
    texts = [CampaignText("message_1", message_1, TEXT_MAX)]
    if message_2:
        texts.append(CampaignText("message_2", message_2, TEXT_MAX))
    parameters = (template or {}).get("parameters") or []
    for i, parameter in enumerate(parameters):
        field = f"message_1_template.parameters.{i}"
        texts.append(
            CampaignText(
                field, str(parameter), TEMPLATE_PARAMETER_MAX, "a WhatsApp template parameter"
            )
        )
    return texts


def form_problems(
    texts: list[CampaignText], template: Mapping[str, Any] | None
) -> list[dict[str, str]]:
    """What is wrong with the texts as written, as ``{field, msg}`` (empty when nothing).

    The request schemas refuse these already; a campaign stored before they did is refused
    here, at launch, instead of failing later.
    """
    problems = []
    parameters = (template or {}).get("parameters") or []
    if len(parameters) > TEMPLATE_PARAMETERS_MAX:
        problems.append(
            {
                "field": "message_1_template.parameters",
                "msg": f"message_1_template has {len(parameters)} parameters; "
                f"at most {TEMPLATE_PARAMETERS_MAX} are allowed",
            }
        )
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
