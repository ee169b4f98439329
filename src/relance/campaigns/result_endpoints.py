"""A campaign's results: its recipients filtered, in keyset pages, and as a CSV file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as FastPath
from fastapi.responses import StreamingResponse

from relance import csv_export
from relance.accounts import audit
from relance.campaigns import paging, queries
from relance.campaigns.domain import RecipientState
from relance.campaigns.recipient_list import MAX_SEARCH, RecipientFilter, page
from relance.campaigns.schemas import RecipientList
from relance.contacts.schemas import MAX_ID
from relance.db import session_scope
from relance.deps import Address, DbSession, Exporter, Reader, current_principal
from relance.errors import Invalid

router = APIRouter(
    prefix="/api/campaigns", tags=["results"], dependencies=[Depends(current_principal)]
)
CampaignId = Annotated[int, FastPath(ge=1, le=MAX_ID)]
EXPORT_BATCH = 1000
CSV_COLUMNS = (
    "id",
    "contact_id",
    "phone",
    "first_name",
    "last_name",
    "state",
    "error_code",
    "error",
    "reply_text",
    *paging.TIMESTAMPS,
)


def recipient_filter(
    state: Annotated[
        list[RecipientState] | None,
        Query(description="repeatable: any of these states", max_length=len(RecipientState)),
    ] = None,
    error_code: Annotated[
        list[Annotated[str, Query(max_length=50)]] | None,
        Query(description="repeatable: the provider's failure code (Meta's 131026...)"),
    ] = None,
    search: Annotated[
        str | None,
        Query(
            max_length=MAX_SEARCH,
            description="text found in the phone, names, answer or failure (any case)",
        ),
    ] = None,
    sort: Annotated[
        str,
        Query(
            max_length=40,
            description="id or a timestamp (replied_at...), '-' first for newest first; rows "
            "without the timestamp come last",
        ),
    ] = "id",
) -> RecipientFilter:
    """The filters of the recipients' listing and of their export, checked."""
    try:
        order = paging.Sort.parse(sort)
    except ValueError as exc:
        raise Invalid([{"field": "sort", "msg": str(exc)}]) from exc
    codes = sorted({c for c in error_code or () if c})
    text = (search or "").replace("\x00", "").strip() or None
    return RecipientFilter(tuple(dict.fromkeys(state or ())), tuple(codes), text, order)


Filter = Annotated[RecipientFilter, Depends(recipient_filter)]


@router.get("/{campaign_id}/recipients", response_model=RecipientList)
def recipients(
    campaign_id: CampaignId,
    session: DbSession,
    _: Reader,
    where: Filter,
    after: Annotated[
        str | None, Query(max_length=paging.MAX_CURSOR, description="the previous page's next")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """Per-recipient states, answers and failures, filtered, sorted, in keyset pages."""
    queries.get_campaign(session, campaign_id)
    key = None
    if after is not None:
        try:
            key = paging.decode(where.sort, after)
        except paging.BadCursor as exc:
            raise Invalid([{"field": "after", "msg": str(exc)}]) from exc
    items, next_key = page(session, campaign_id, where, key, limit)
    return {
        "items": items,
        "next": paging.encode(where.sort, next_key) if next_key else None,
    }


def recipient_rows(campaign_id: int, where: RecipientFilter) -> Iterator[list[list[Any]]]:
    """Batches of CSV rows, each read in a short transaction of its own (a long download must
    hold none), one keyset page at a time: memory stays flat at any size."""
    after = None
    while True:
        with session_scope() as session:
            rows, after = page(session, campaign_id, where, after, EXPORT_BATCH)
        yield [[row[c] for c in CSV_COLUMNS] for row in rows]
        if after is None:
            return


def csv_response(chunks: Iterator[str], filename: str) -> StreamingResponse:
    return StreamingResponse(
        (chunk.encode() for chunk in chunks),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get(
    "/{campaign_id}/recipients.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
def recipients_csv(
    campaign_id: CampaignId, session: DbSession, who: Exporter, address: Address, where: Filter
) -> StreamingResponse:
    """The recipients (same filters) as CSV: UTF-8 with a BOM, formula-like cells quoted."""
    queries.get_campaign(session, campaign_id)
    audit.record(
        session,
        who,
        "export",
        f"campaign:{campaign_id}",
        address,
        what="recipients",
        state=[s.value for s in where.states],
        error_code=list(where.error_codes),
        search=where.search,
    )
    chunks = csv_export.lines(CSV_COLUMNS, recipient_rows(campaign_id, where))
    return csv_response(chunks, f"campaign-{campaign_id}-recipients.csv")
