"""Campaign drafts: create, edit while draft, delete, list, read (no sending here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from relance.campaigns.domain import CampaignStatus
from relance.campaigns.launch import check_launch
from relance.campaigns.queries import get_campaign
from relance.campaigns.schemas import CampaignCreate, CampaignUpdate, SenderShare
from relance.campaigns.template_schemas import TemplateIn
from relance.config import Settings
from relance.errors import Conflict, Invalid
from relance.models import (
    Campaign,
    Category,
    Contact,
    Sender,
    campaign_categories,
    campaign_contacts,
    campaign_senders,
    utcnow,
)

C = CampaignStatus


def _check_ids(
    session: Session,
    model: type[Category] | type[Contact] | type[Sender],
    ids: Sequence[int],
    field: str,
) -> None:
    if not ids:
        return
    found = set(session.scalars(select(model.id).where(model.id.in_(set(ids)))))
    unknown = sorted(set(ids) - found)
    if unknown:
        raise Invalid([{"field": field, "msg": f"unknown ids: {unknown[:20]}"}])


def _set_audience(
    session: Session,
    campaign_id: int,
    category_ids: Sequence[int] | None,
    contact_ids: Sequence[int] | None,
) -> None:
    """Replace the audience lists that are given (None leaves a list as it is)."""
    lists = (
        (category_ids, Category, campaign_categories, "category_id", "category_ids"),
        (contact_ids, Contact, campaign_contacts, "contact_id", "contact_ids"),
    )
    for ids, model, link, column, field in lists:
        if ids is None:
            continue
        _check_ids(session, model, ids, field)
        session.execute(delete(link).where(link.c.campaign_id == campaign_id))
        if ids:
            rows = [{"campaign_id": campaign_id, column: i} for i in sorted(set(ids))]
            session.execute(insert(link), rows)


def _set_senders(session: Session, campaign_id: int, shares: Sequence[SenderShare] | None) -> None:
    """Replace the campaign's senders (None leaves them; empty: the default sender)."""
    if shares is None:
        return
    ids = [s.sender_id for s in shares]
    if len(set(ids)) != len(ids):
        raise Invalid([{"field": "senders", "msg": "a sender is named twice"}])
    _check_ids(session, Sender, ids, "senders")
    session.execute(delete(campaign_senders).where(campaign_senders.c.campaign_id == campaign_id))
    if shares:
        rows = [
            {"campaign_id": campaign_id, "sender_id": s.sender_id, "weight": s.weight}
            for s in shares
        ]
        session.execute(insert(campaign_senders), rows)


def _stored(template: TemplateIn | None) -> dict[str, Any] | None:
    return template.stored() if template is not None else None


def create_campaign(session: Session, settings: Settings, data: CampaignCreate) -> Campaign:
    campaign = Campaign(
        name=data.name,
        message_1=data.message_1,
        message_1_template=_stored(data.message_1_template),
        message_2=data.message_2 or None,
        message_2_template=_stored(data.message_2_template),
        reply_window_seconds=data.reply_window_seconds or settings.reply_window_seconds,
        placeholder_defaults=data.placeholder_defaults,
        scheduled_at=data.scheduled_at,
        status=C.DRAFT.value,
    )
    session.add(campaign)
    session.flush()
    _set_audience(session, campaign.id, data.category_ids, data.contact_ids)
    _set_senders(session, campaign.id, data.senders)
    return campaign


def update_campaign(
    session: Session, campaign_id: int, data: CampaignUpdate, provider: str = ""
) -> Campaign:
    """Edit a draft, or a scheduled campaign before it starts.

    A scheduled campaign stays scheduled only if it still has a time ahead and would still
    launch (the launch's checks run again: 422 and nothing changed otherwise); without a time
    it goes back to draft.
    """
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in (C.DRAFT, C.SCHEDULED):
        raise Conflict(
            f"campaign {campaign_id} is {campaign.status}: only a draft or a campaign "
            "scheduled and not started yet can be edited"
        )
    fields = data.model_dump(exclude_unset=True)
    for name in (
        "name",
        "message_1",
        "message_2",
        "reply_window_seconds",
        "scheduled_at",
        "placeholder_defaults",
    ):
        if name in fields and (fields[name] is not None or name in ("message_2", "scheduled_at")):
            setattr(campaign, name, fields[name])
    # From the model, not the partial dump: a template's own defaults (language) are kept.
    if "message_1_template" in fields:
        campaign.message_1_template = _stored(data.message_1_template)
    if "message_2_template" in fields:
        campaign.message_2_template = _stored(data.message_2_template)
    _set_audience(session, campaign_id, fields.get("category_ids"), fields.get("contact_ids"))
    if "senders" in fields:
        _set_senders(session, campaign_id, data.senders)
    session.flush()
    if campaign.status == C.SCHEDULED:
        if campaign.scheduled_at is None or campaign.scheduled_at <= utcnow():
            campaign.status = C.DRAFT.value
        else:
            check_launch(session, campaign, provider)
        session.flush()
    return campaign


def delete_campaign(session: Session, campaign_id: int) -> None:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status in (C.SENDING, C.PAUSED):
        raise Conflict(f"campaign {campaign_id} is {campaign.status}: cancel it before deleting")
    session.delete(campaign)
    session.flush()
