"""Campaign drafts: create, edit while draft, delete, list, read (no sending here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from relance.campaigns import repository as repo
from relance.campaigns.domain import CampaignStatus, RecipientState
from relance.campaigns.schemas import CampaignCreate, CampaignUpdate
from relance.campaigns.service import get_campaign
from relance.config import Settings
from relance.errors import Conflict, Invalid
from relance.models import (
    Campaign,
    Category,
    Contact,
    Recipient,
    campaign_categories,
    campaign_contacts,
)

C = CampaignStatus


def _check_ids(
    session: Session, model: type[Category] | type[Contact], ids: Sequence[int], field: str
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


def create_campaign(session: Session, settings: Settings, data: CampaignCreate) -> Campaign:
    campaign = Campaign(
        name=data.name,
        message_1=data.message_1,
        message_1_template=data.message_1_template.model_dump()
        if data.message_1_template
        else None,
        message_2=data.message_2 or None,
        reply_window_seconds=data.reply_window_seconds or settings.reply_window_seconds,
        placeholder_defaults=data.placeholder_defaults,
        scheduled_at=data.scheduled_at,
        status=C.DRAFT.value,
    )
    session.add(campaign)
    session.flush()
    _set_audience(session, campaign.id, data.category_ids, data.contact_ids)
    return campaign


def update_campaign(session: Session, campaign_id: int, data: CampaignUpdate) -> Campaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status != C.DRAFT:
        raise Conflict(f"campaign {campaign_id} is {campaign.status}: only a draft can be edited")
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
    if "message_1_template" in fields:
        campaign.message_1_template = fields["message_1_template"]
    _set_audience(session, campaign_id, fields.get("category_ids"), fields.get("contact_ids"))
    session.flush()
    return campaign


def delete_campaign(session: Session, campaign_id: int) -> None:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status in (C.SENDING, C.PAUSED):
        raise Conflict(f"campaign {campaign_id} is {campaign.status}: cancel it before deleting")
    session.delete(campaign)
    session.flush()


def campaign_out(session: Session, campaign: Campaign) -> dict[str, Any]:
    category_ids = list(
        session.scalars(
            select(campaign_categories.c.category_id)
            .where(campaign_categories.c.campaign_id == campaign.id)
            .order_by(campaign_categories.c.category_id)
        )
    )
    contact_ids = list(
        session.scalars(
            select(campaign_contacts.c.contact_id)
            .where(campaign_contacts.c.campaign_id == campaign.id)
            .order_by(campaign_contacts.c.contact_id)
        )
    )
    counts = repo.counts_of(campaign)
    return {
        **{
            name: getattr(campaign, name)
            for name in (
                "id",
                "name",
                "message_1",
                "message_1_template",
                "message_2",
                "reply_window_seconds",
                "placeholder_defaults",
                "status",
                "status_reason",
                "total",
                "created_at",
                "scheduled_at",
                "started_at",
                "completed_at",
                "cancelled_at",
            )
        },
        "category_ids": category_ids,
        "contact_ids": contact_ids,
        "finished": counts.finished,
    }


def list_campaigns(
    session: Session, limit: int, offset: int, status: str | None
) -> tuple[list[Campaign], int]:
    query = select(Campaign)
    if status:
        query = query.where(Campaign.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(Campaign.id.desc()).limit(limit).offset(offset)).all()
    return list(items), total


def list_recipients(
    session: Session, campaign_id: int, state: RecipientState | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    get_campaign(session, campaign_id)
    where = [Recipient.campaign_id == campaign_id]
    if state is not None:
        where.append(Recipient.state == state.value)
    total = session.scalar(select(func.count()).select_from(Recipient).where(*where)) or 0
    rows = session.execute(
        select(Recipient, Contact.phone, Contact.first_name, Contact.last_name)
        # Outer: a deleted contact's recipient stays, anonymised (phone and names null).
        .outerjoin(Contact, Contact.id == Recipient.contact_id)
        .where(*where)
        .order_by(Recipient.id)
        .limit(limit)
        .offset(offset)
    )
    items = []
    for recipient, phone, first, last in rows:
        data = {c.key: getattr(recipient, c.key) for c in Recipient.__table__.columns}
        items.append({**data, "phone": phone, "first_name": first, "last_name": last})
    return items, total
