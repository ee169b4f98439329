"""Campaign routes: thin; drafts, launch, lifecycle and the read side do the work."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi import Path as FastPath
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session

from relance.accounts import audit
from relance.accounts.principal import Principal
from relance.campaigns import drafts, lifecycle, queries, results
from relance.campaigns.domain import CampaignStatus
from relance.campaigns.launch import launch_campaign
from relance.campaigns.live import LiveStats, StreamsFull
from relance.campaigns.preview import preview as preview_texts
from relance.campaigns.schemas import (
    BlockingList,
    CampaignCreate,
    CampaignList,
    CampaignOut,
    CampaignUpdate,
    PreviewIn,
    PreviewOut,
    RetryOut,
    StatsOut,
    Timeline,
)
from relance.campaigns.stats_senders import sender_shares, sender_waits
from relance.campaigns.template_endpoints import CatalogDep, find_in
from relance.config import get_settings
from relance.contacts.schemas import MAX_ID
from relance.db import session_scope
from relance.deps import (
    Address,
    CampaignsEditor,
    DbSession,
    FollowupsDep,
    Reader,
    Runner,
    current_principal,
)
from relance.errors import ErrorOut
from relance.models import Campaign, utcnow
from relance.pacing.status import pacing_status

router = APIRouter(
    prefix="/api/campaigns", tags=["campaigns"], dependencies=[Depends(current_principal)]
)
Limit = Annotated[int, Query(ge=1, le=1000)]
CampaignId = Annotated[int, FastPath(ge=1, le=MAX_ID)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
# The dashboard's helpers, under the same key check.
dashboard = APIRouter(prefix="/api", tags=["dashboard"], dependencies=[Depends(current_principal)])


def _done(
    session: Session, who: Principal, address: str, action: str, campaign: Campaign
) -> dict[str, Any]:
    """Record the action in the audit log; the campaign as the API shows it."""
    audit.record(session, who, f"campaign.{action}", f"campaign:{campaign.id}", address)
    return queries.campaign_out(session, campaign)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CampaignOut)
def create(
    data: CampaignCreate, session: DbSession, who: CampaignsEditor, address: Address
) -> dict[str, Any]:
    """Create a draft campaign."""
    campaign = drafts.create_campaign(session, get_settings(), data)
    audit.record(session, who, "campaign.create", f"campaign:{campaign.id}", address)
    return queries.campaign_out(session, campaign)


@router.get("", response_model=CampaignList)
def list_(
    session: DbSession,
    _: Reader,
    limit: Limit = 50,
    offset: Offset = 0,
    status: CampaignStatus | None = None,
) -> dict[str, Any]:
    items, total = queries.list_campaigns(session, limit, offset, status.value if status else None)
    return {
        "items": [queries.campaign_out(session, c) for c in items],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/{campaign_id}", response_model=CampaignOut)
def read(campaign_id: CampaignId, session: DbSession, _: Reader) -> dict[str, Any]:
    return queries.campaign_out(session, queries.get_campaign(session, campaign_id))


@router.patch("/{campaign_id}", response_model=CampaignOut)
def edit(
    campaign_id: CampaignId,
    data: CampaignUpdate,
    session: DbSession,
    who: CampaignsEditor,
    address: Address,
) -> dict[str, Any]:
    """Edit a draft, or a scheduled campaign before it starts (409 once started)."""
    campaign = drafts.update_campaign(session, campaign_id, data, get_settings().provider)
    return _done(session, who, address, "update", campaign)


@router.delete("/{campaign_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove(
    campaign_id: CampaignId, session: DbSession, who: CampaignsEditor, address: Address
) -> Response:
    drafts.delete_campaign(session, campaign_id)
    audit.record(session, who, "campaign.delete", f"campaign:{campaign_id}", address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{campaign_id}/launch", response_model=CampaignOut)
def launch(
    campaign_id: CampaignId,
    session: DbSession,
    followups: FollowupsDep,
    who: Runner,
    address: Address,
) -> dict[str, Any]:
    """Start sending, or schedule (409 unless draft/scheduled).

    422 when no contact is reachable, a placeholder has no value, or a text is too long once
    personalised (4,096 characters a message, 1,024 a template parameter).
    """
    return _done(
        session,
        who,
        address,
        "launch",
        launch_campaign(session, get_settings(), followups, campaign_id),
    )


@router.post("/{campaign_id}/pause", response_model=CampaignOut)
def pause(
    campaign_id: CampaignId, session: DbSession, who: Runner, address: Address
) -> dict[str, Any]:
    return _done(session, who, address, "pause", lifecycle.pause_campaign(session, campaign_id))


@router.post("/{campaign_id}/resume", response_model=CampaignOut)
def resume(
    campaign_id: CampaignId,
    session: DbSession,
    followups: FollowupsDep,
    who: Runner,
    address: Address,
) -> dict[str, Any]:
    return _done(
        session, who, address, "resume", lifecycle.resume_campaign(session, followups, campaign_id)
    )


@router.post("/{campaign_id}/cancel", response_model=CampaignOut)
def cancel(
    campaign_id: CampaignId, session: DbSession, who: Runner, address: Address
) -> dict[str, Any]:
    """Remaining recipients become cancelled; the campaign ends as cancelled."""
    return _done(session, who, address, "cancel", lifecycle.cancel_campaign(session, campaign_id))


@router.post("/{campaign_id}/retry-failed", response_model=RetryOut)
def retry_failed(
    campaign_id: CampaignId,
    session: DbSession,
    followups: FollowupsDep,
    who: Runner,
    address: Address,
) -> dict[str, Any]:
    """Failed recipients (the limited ones too) get a new Message 1 attempt; the campaign goes
    back to sending."""
    n = lifecycle.retry_failed(session, get_settings(), followups, campaign_id)
    audit.record(session, who, "campaign.retry", f"campaign:{campaign_id}", address, retried=n)
    return {
        "campaign_id": campaign_id,
        "retried": n,
        "status": queries.get_campaign(session, campaign_id).status,
    }


@router.post("/{campaign_id}/retry-limited", response_model=RetryOut)
def retry_limited(
    campaign_id: CampaignId,
    session: DbSession,
    followups: FollowupsDep,
    who: Runner,
    address: Address,
) -> dict[str, Any]:
    """Like retry-failed, for the recipients Meta held back only (per-user marketing limit,
    ``limited`` in the stats): Meta advises sending those again later, not at once."""
    n = lifecycle.retry_failed(session, get_settings(), followups, campaign_id, only_limited=True)
    target = f"campaign:{campaign_id}"
    audit.record(session, who, "campaign.retry_limited", target, address, retried=n)
    return {
        "campaign_id": campaign_id,
        "retried": n,
        "status": queries.get_campaign(session, campaign_id).status,
    }


def _stats(session: Any, campaign_id: int, reply_times: bool = False) -> dict[str, Any]:
    campaign = queries.get_campaign(session, campaign_id)
    stats = queries.campaign_stats(campaign)
    settings = get_settings()
    stats["senders"] = sender_shares(session, settings, campaign_id)
    if campaign.status == CampaignStatus.SENDING:
        stats["pacing"] = pacing_status(settings, session)
        stats["sender_waits"] = sender_waits(session, settings, campaign_id)
    stats["rates"] = results.campaign_rates(campaign)
    stats["estimated_finish_at"] = results.finish_estimate(session, settings, campaign, utcnow())
    if reply_times:  # reads the replies: on request, not on every poll of the event streams
        stats["reply_time"] = results.reply_times(session, campaign)
    return stats


@router.get("/{campaign_id}/stats", response_model=StatsOut)
def stats(campaign_id: CampaignId, session: DbSession, _: Reader) -> dict[str, Any]:
    """SPEC section 5 counts (from the campaign's counters, constant time), the rates, the
    estimated finish and the time from Message 1 to reply (median, p90)."""
    return _stats(session, campaign_id, reply_times=True)


@router.get("/{campaign_id}/blocking", response_model=BlockingList)
def blocking(
    campaign_id: CampaignId, session: DbSession, _: Reader, limit: Limit = 100
) -> dict[str, Any]:
    """What still keeps the campaign from completing, and why."""
    campaign = queries.get_campaign(session, campaign_id)
    counts = queries.campaign_stats(campaign)
    pacing = (
        pacing_status(get_settings(), session)
        if campaign.status == CampaignStatus.SENDING
        else None
    )
    waits = (
        sender_waits(session, get_settings(), campaign_id)
        if campaign.status == CampaignStatus.SENDING
        else []
    )
    return {
        "campaign_id": campaign_id,
        "status": campaign.status,
        "open_recipients": counts["total"] - counts["finished"],
        "paused_by": pacing["reason"] if pacing else campaign.status_reason,
        "sender_waits": waits,
        "items": queries.blocking_recipients(session, campaign_id, limit, now=utcnow()),
    }


def read_stats(campaign_id: int) -> dict[str, Any]:
    """The stats in a short transaction of its own (a stream must hold none)."""
    with session_scope() as session:
        return _stats(session, campaign_id)


def live_stats(request: Request) -> LiveStats:
    """This process's streams: one poller per followed campaign, a cap on open streams."""
    state = request.app.state
    if getattr(state, "live_stats", None) is None:
        settings = get_settings()
        state.live_stats = LiveStats(
            read_stats, settings.max_event_streams, settings.event_stream_max_seconds
        )
    live: LiveStats = state.live_stats
    return live


@router.get(
    "/{campaign_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        503: {"model": ErrorOut, "description": "too many open streams; retry later"},
    },
)
async def events(
    campaign_id: CampaignId, live: Annotated[LiveStats, Depends(live_stats)], _: Reader
) -> Response:
    """Server-Sent Events: an ``event: stats`` each time the stats change, ``event: end`` once
    the campaign is completed or cancelled. A stream lasts at most EVENT_STREAM_MAX_SECONDS;
    its ``retry:`` field makes the browser reconnect."""
    try:
        return await live.open(campaign_id)
    except StreamsFull:
        return JSONResponse(
            {"detail": "too many open event streams on this server; retry later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )


@router.get("/{campaign_id}/timeline", response_model=Timeline)
def timeline(campaign_id: CampaignId, session: DbSession, _: Reader) -> dict[str, Any]:
    """Messages sent per minute (last two hours with sends), for the campaign page's chart."""
    return queries.timeline(session, campaign_id)


@dashboard.post("/preview", response_model=PreviewOut)
def preview(data: PreviewIn, session: DbSession, catalog: CatalogDep, _: Reader) -> dict[str, Any]:
    """The messages as the first contact of the chosen categories would read them; a template
    filled from its own texts (the business account's list, with the meta provider)."""
    return preview_texts(session, data, find_in(catalog))
