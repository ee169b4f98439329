"""The dashboard's preview: the messages as the first contact of the audience would read them.

Rendered within WhatsApp's limits: a long attribute in many placeholders must not build
megabytes; what is too long says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from relance.campaigns.audience_check import audience_where, missing_values
from relance.campaigns.schemas import PreviewIn, SampleContact
from relance.campaigns.template_preview import template_preview
from relance.campaigns.templates import PARAMETER, TEMPLATE_PARAMETER_MAX
from relance.campaigns.texts import CampaignText, campaign_texts
from relance.contacts.domain import (
    contact_values,
    missing_placeholders,
    render_within,
    valid_template,
)
from relance.models import Contact


def _sample_contact(
    session: Session, category_ids: Sequence[int], contact_ids: Sequence[int]
) -> Contact | None:
    """The first reachable contact of the audience: the one the preview is written for."""
    where = audience_where(category_ids, contact_ids)
    if where is None:
        return None
    return session.scalar(select(Contact).where(where).order_by(Contact.id).limit(1))


# A template's texts from the business account's list by (name, language), or None and why.
FindTemplate = Callable[[str, str], tuple[dict[str, Any] | None, str | None]]


def _no_list(name: str, language: str) -> tuple[dict[str, Any] | None, str | None]:
    return None, None


def preview(
    session: Session, data: PreviewIn, find_template: FindTemplate = _no_list
) -> dict[str, Any]:
    """The messages as the first contact of the audience would read them, and which
    placeholders lack a value for how many of its contacts."""
    contact = _sample_contact(session, data.category_ids, data.contact_ids)
    values = (
        contact_values(contact.first_name, contact.last_name, contact.attributes or {})
        if contact
        else {}
    )
    defaults = data.placeholder_defaults
    errors: dict[str, str] = {}
    missing: set[str] = set()
    shown: dict[str, str | None] = {}
    templates = {
        "message_1_template": data.message_1_template.stored() if data.message_1_template else None,
        "message_2_template": data.message_2_template.stored() if data.message_2_template else None,
    }
    texts = campaign_texts(data.message_1, data.message_2, *templates.values())
    texts += [
        CampaignText(f"template_parameters.{i}", p, TEMPLATE_PARAMETER_MAX, PARAMETER)
        for i, p in enumerate(data.template_parameters)
    ]
    for text in texts:
        problem = valid_template(text.text)
        if problem:
            errors[text.field] = problem
            shown[text.field] = None
            continue
        missing |= missing_placeholders(text.text, {**defaults, **values})
        # Cut at the limit: a long attribute in many placeholders must not build megabytes.
        shown[text.field], length = render_within(text.text, values, defaults, text.limit)
        if length > text.limit:
            errors[text.field] = (
                f"too long once personalised for this contact: {length:,} characters; "
                f"{text.limited_by} allows {text.limit:,}"
            )
    parameters = [
        shown[f"template_parameters.{i}"] or "" for i in range(len(data.template_parameters))
    ]
    sample = (
        SampleContact(
            id=contact.id,
            phone=contact.phone,
            first_name=contact.first_name,
            last_name=contact.last_name,
        )
        if contact
        else None
    )
    previews = {
        prefix: template_preview(
            template,
            prefix,
            shown,
            *find_template(str(template["name"]), str(template["language"])),
        )
        for prefix, template in templates.items()
        if template is not None
    }
    audience_missing = missing_values(
        session,
        [t.text for t in texts if t.field not in errors or "too long" in errors[t.field]],
        defaults,
        data.category_ids,
        data.contact_ids,
    )
    return {
        "contact": sample,
        "audience_missing": audience_missing,
        "message_1": shown["message_1"],
        "message_2": shown.get("message_2"),
        "template_parameters": parameters,
        **previews,
        "missing": sorted(missing),
        "errors": errors,
    }
