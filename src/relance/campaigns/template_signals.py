"""What Meta's template status updates do to campaigns.

A campaign whose Message 1 template Meta pauses, disables, rejects or archives cannot send: it
pauses by itself, with Meta's word for it in ``status_reason`` (the stats and the blocking list
show it) and the template in ``paused_for``. When Meta approves, reinstates or unarchives that
template again, the campaigns it paused resume by themselves; a campaign a person paused stays
paused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from relance.campaigns.domain import CampaignStatus
from relance.campaigns.followups import Followups, after_commit_dispatch
from relance.models import Campaign
from relance.providers.events import TemplateEvent

log = logging.getLogger(__name__)
# Meta's ``message_template_status_update`` events after which the template cannot be sent.
BLOCKING = frozenset({"PAUSED", "DISABLED", "REJECTED", "ARCHIVED", "PENDING_DELETION"})
# ...and those after which it can again (a paused template comes back APPROVED).
CLEARING = frozenset({"APPROVED", "REINSTATED", "UNARCHIVED"})
C = CampaignStatus


def template_key(name: str, language: str) -> str:
    return f"template:{name}:{language}"


def _using(session: Session, status: CampaignStatus, key: str) -> Iterable[Campaign]:
    """The campaigns in ``status`` whose Message 1 is the template ``key`` names."""
    campaigns = session.scalars(
        select(Campaign).where(Campaign.status == status.value).with_for_update()
    )
    for campaign in campaigns:
        template = campaign.message_1_template or {}
        if template_key(str(template.get("name")), str(template.get("language"))) == key:
            yield campaign


def apply_template_status(
    session: Session, followups: Followups, event: TemplateEvent, now: datetime
) -> str:
    """Pause or resume the campaigns of the template; what was done, for the stored outcome."""
    if event.signal != "status":
        return ""
    key = template_key(event.name, event.language)
    if event.value in BLOCKING:
        why = f": {event.reason}" if event.reason else ""
        template = f"{event.name} ({event.language})"
        reason = f"Meta {event.value.lower()} the Message 1 template {template}{why}"
        paused = [c.id for c in _using(session, C.SENDING, key)]
        for campaign in session.scalars(select(Campaign).where(Campaign.id.in_(paused))):
            campaign.status = C.PAUSED.value
            campaign.paused_at = now
            campaign.status_reason = reason[:1000]
            campaign.paused_for = key
        if paused:
            log.warning("campaigns paused: %s", reason, extra={"campaign_ids": paused})
            return f"paused campaigns {paused}"
        return ""
    if event.value in CLEARING:
        resumed = []
        for campaign in _using(session, C.PAUSED, key):
            if campaign.paused_for != key:
                continue  # a person paused it: a person resumes it
            campaign.status = C.SENDING.value
            campaign.status_reason = None
            campaign.paused_for = None
            resumed.append(campaign.id)
        if resumed:
            after_commit_dispatch(session, followups)
            log.info(
                "campaigns resumed: Meta approved their template again",
                extra={"campaign_ids": resumed},
            )
            return f"resumed campaigns {resumed}"
    return ""
