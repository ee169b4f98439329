"""Launching a campaign: the checks a launch needs, the fan-out, scheduled starts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from relance.campaigns import repository as repo
from relance.campaigns import templates, texts
from relance.campaigns.domain import CampaignStatus
from relance.campaigns.followups import Followups, after_commit_dispatch
from relance.campaigns.queries import get_campaign
from relance.config import Settings
from relance.contacts.domain import contact_values, missing_placeholders, rendered_length
from relance.db import savepoint
from relance.errors import Conflict, Invalid
from relance.models import Campaign, Contact, campaign_senders, utcnow
from relance.senders.domain import Share
from relance.senders.service import default_info

log = logging.getLogger(__name__)
C = CampaignStatus
EMPTY_AUDIENCE = "the audience is empty once opted-out contacts are removed"


@dataclass
class _TooLong:
    """Recipients for whom one text is too long once personalised."""

    recipients: int = 0
    longest: int = 0
    first_contact: int | None = None

    def add(self, contact_id: int, length: int) -> None:
        self.recipients += 1
        self.longest = max(self.longest, length)
        if self.first_contact is None or contact_id < self.first_contact:
            self.first_contact = contact_id


def check_texts(session: Session, campaign: Campaign) -> None:
    """422 unless every recipient gets texts that parse, fill and fit WhatsApp's limits.

    The audience is read only when a placeholder lacks a default or when a text could
    exceed its limit with the longest values a contact may hold: a launch with neither
    reads no contact, whatever its audience's size.
    """
    template, template_2 = campaign.message_1_template, campaign.message_2_template
    all_texts = texts.campaign_texts(campaign.message_1, campaign.message_2, template, template_2)
    problems = texts.form_problems(all_texts, template, template_2)
    if problems:
        raise Invalid(problems)
    defaults = campaign.placeholder_defaults or {}
    needed = set().union(*(missing_placeholders(t.text, {}) for t in all_texts)) - set(defaults)
    at_risk = texts.may_exceed(all_texts, defaults)
    if not needed and not at_risk:
        return  # nothing to look up: don't read the whole audience
    lacking: dict[str, int] = {}
    too_long = {t.field: _TooLong() for t in at_risk}
    rows = session.execute(
        select(Contact.id, Contact.first_name, Contact.last_name, Contact.attributes)
        .where(repo.audience_query(campaign.id), Contact.opted_out_at.is_(None))
        .execution_options(yield_per=1000)
    )
    for contact_id, first, last, attributes in rows:
        values = contact_values(first, last, attributes or {})
        for name in needed - set(values):
            lacking[name] = lacking.get(name, 0) + 1
        for text in at_risk:
            length = rendered_length(text.text, values, defaults)
            if length > text.limit:
                too_long[text.field].add(contact_id, length)
    if lacking:
        parts = ", ".join(
            f"{{{k}}} missing for {v} recipient(s)" for k, v in sorted(lacking.items())
        )
        raise Invalid(
            [
                {
                    "field": "placeholder_defaults",
                    "msg": f"message placeholders without a value: {parts}; "
                    "fill the contacts' attributes or give placeholder_defaults",
                }
            ]
        )
    errors = [
        {
            "field": text.field,
            "msg": texts.too_long_message(
                text, seen.longest, seen.recipients, seen.first_contact or 0
            ),
        }
        for text in at_risk
        if (seen := too_long[text.field]).recipients
    ]
    if errors:
        raise Invalid(errors)


def check_templates(campaign: Campaign, provider: str) -> None:
    """422 when the provider cannot deliver the campaign's messages as they are written."""
    problems = []
    problem = templates.message_1_problem(provider, campaign.message_1_template)
    if problem:
        problems.append({"field": "message_1_template", "msg": f"message_1_template: {problem}"})
    if campaign.message_2_template and not campaign.message_2:
        problems.append(
            {
                "field": "message_2_template",
                "msg": "message_2_template stands in for message_2 past the 24 h window: "
                "set message_2 too",
            }
        )
    if problems:
        raise Invalid(problems)


def check_launch(session: Session, campaign: Campaign, provider: str) -> None:
    """What a launch needs, checked at launch and again when a scheduled campaign starts."""
    check_templates(campaign, provider)
    if not repo.has_reachable_contact(session, campaign.id):
        raise Invalid([{"field": "category_ids", "msg": EMPTY_AUDIENCE}])
    check_texts(session, campaign)


def launch_campaign(
    session: Session,
    settings: Settings,
    followups: Followups,
    campaign_id: int,
    now: datetime | None = None,
) -> Campaign:
    """Start sending now, or schedule it when ``scheduled_at`` lies ahead (409/422 otherwise)."""
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in (C.DRAFT, C.SCHEDULED):
        raise Conflict(
            f"campaign {campaign_id} is {campaign.status}: only a draft or a "
            "scheduled campaign can be launched"
        )
    check_launch(session, campaign, settings.provider)
    if campaign.status == C.DRAFT and campaign.scheduled_at and campaign.scheduled_at > now:
        campaign.status = C.SCHEDULED.value
        session.flush()
        return campaign
    return start_sending(session, settings, followups, campaign, now)


def start_sending(
    session: Session, settings: Settings, followups: Followups, campaign: Campaign, now: datetime
) -> Campaign:
    inserted, skipped = repo.fan_out(
        session, campaign.id, now, campaign_shares(session, settings, campaign.id)
    )
    if inserted == 0:
        # The audience emptied between the check and the fan-out (a contact opted out or was
        # deleted meanwhile): a campaign of no recipient would never complete.
        raise Invalid([{"field": "category_ids", "msg": EMPTY_AUDIENCE}])
    campaign.status = C.SENDING.value
    campaign.started_at = now
    campaign.total = inserted
    campaign.n_queued = inserted
    campaign.skipped_opted_out = skipped
    session.flush()
    log.info(
        "campaign launched",
        extra={"campaign_id": campaign.id, "recipients": inserted, "skipped_opted_out": skipped},
    )
    after_commit_dispatch(session, followups)
    return campaign


def campaign_shares(session: Session, settings: Settings, campaign_id: int) -> list[Share]:
    """The campaign's senders and weights as recipients store them (None: the default)."""
    default_id = default_info(session, settings).id
    rows = session.execute(
        select(campaign_senders.c.sender_id, campaign_senders.c.weight)
        .where(campaign_senders.c.campaign_id == campaign_id)
        .order_by(campaign_senders.c.sender_id)
    )
    shares: list[Share] = [(None if sid == default_id else sid, weight) for sid, weight in rows]
    return shares or [(None, 1)]


def _reason(detail: Any) -> str:
    """One sentence out of an Invalid's detail (a text, or a list of ``{field, msg}``)."""
    if isinstance(detail, list):
        return "; ".join(str(item.get("msg", item)) for item in detail)
    return str(detail)


def start_due_scheduled(
    session: Session, settings: Settings, followups: Followups, now: datetime | None = None
) -> list[int]:
    """Scheduled campaigns whose time has come start sending, checked again like a launch.

    One that cannot start (its audience emptied, a contact's values make a text too long...)
    ends ``cancelled`` with the reason in ``status_reason``. Each campaign runs in its own
    savepoint, so one that fails leaves the others to start. Returns the started ids.
    """
    now = now or utcnow()
    due = session.scalars(
        select(Campaign)
        .where(Campaign.status == C.SCHEDULED.value, Campaign.scheduled_at <= now)
        .order_by(Campaign.id)
        .with_for_update(skip_locked=True)
    ).all()
    started = []
    for campaign in due:
        try:
            with savepoint(session):
                check_launch(session, campaign, settings.provider)
                start_sending(session, settings, followups, campaign, now)
            started.append(campaign.id)
        except Invalid as exc:
            reason = f"not started at its scheduled time: {_reason(exc.detail)}"
            _cancel_unstarted(session, campaign, reason, now)
        except Exception:
            # Left scheduled: the next dispatcher run tries it again.
            log.exception("scheduled campaign failed to start", extra={"campaign_id": campaign.id})
    return started


def _cancel_unstarted(session: Session, campaign: Campaign, reason: str, now: datetime) -> None:
    session.refresh(campaign)  # the savepoint's rollback expired it
    campaign.status = C.CANCELLED.value
    campaign.status_reason = reason
    campaign.cancelled_at = now  # completed_at stays for completed campaigns only
    session.flush()
    log.warning(
        "scheduled campaign cancelled", extra={"campaign_id": campaign.id, "reason": reason}
    )
