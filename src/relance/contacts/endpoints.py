"""HTTP routes of contacts: CRUD, listing and CSV import (thin: one service call each)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator
from sqlalchemy.orm import Session

from relance import csv_export
from relance.accounts import audit
from relance.campaigns.answers import opt_in, opt_out
from relance.campaigns.domain import OptSource
from relance.contacts import csv_import, export, service
from relance.contacts.consent import opt_history
from relance.contacts.schemas import (
    MAX_ID,
    MAX_LIMIT,
    ContactCreate,
    ContactDetail,
    ContactOut,
    ContactPage,
    ContactUpdate,
    ImportResult,
    OptChangeOut,
    no_nul,
)
from relance.deps import (
    Address,
    ContactsEditor,
    DbSession,
    Exporter,
    Reader,
    SettingsDep,
    current_principal,
)
from relance.errors import ErrorOut, error_responses
from relance.models import Contact

router = APIRouter(prefix="/api", tags=["contacts"], dependencies=[Depends(current_principal)])

ContactId = Annotated[int, Path(ge=1, le=MAX_ID)]
CategoryIdParam = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]
Search = Annotated[
    str | None,
    Query(max_length=200, description="part of a name or phone, case-insensitive"),
    AfterValidator(lambda v: v if v is None else no_nul(v)),
]


def contact_out(session: Session, contacts: list[Contact]) -> list[ContactOut]:
    categories = service.category_ids_of(session, contacts)
    return [
        ContactOut(
            id=c.id,
            phone=c.phone,
            first_name=c.first_name,
            last_name=c.last_name,
            attributes=c.attributes,
            category_ids=categories[c.id],
            opted_out=c.opted_out_at is not None,
            opted_out_at=c.opted_out_at,
            opt_source=c.opt_source,
            opt_changed_at=c.opt_changed_at,
            created_at=c.created_at,
            updated_at=c.updated_at,
        )
        for c in contacts
    ]


def contact_detail(session: Session, contact: Contact) -> ContactDetail:
    history = [
        OptChangeOut(opted_out=h.opted_out, source=h.source, changed_at=h.changed_at)
        for h in opt_history(session, contact.id)
    ]
    return ContactDetail(**contact_out(session, [contact])[0].model_dump(), opt_history=history)


@router.post(
    "/contacts",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422),
    summary="Create a contact",
)
def create_contact(
    data: ContactCreate,
    session: DbSession,
    settings: SettingsDep,
    who: ContactsEditor,
    address: Address,
) -> ContactDetail:
    contact = service.create_contact(session, settings, data)
    audit.record(session, who, "contact.create", f"contact:{contact.id}", address)
    return contact_detail(session, contact)


@router.get("/contacts", responses=error_responses(422), summary="List contacts")
def list_contacts(
    session: DbSession,
    settings: SettingsDep,
    _: Reader,
    limit: Limit = 50,
    offset: Offset = 0,
    category_id: CategoryIdParam = None,
    search: Search = None,
) -> ContactPage:
    query = service.ContactQuery(limit, offset, category_id, search)
    items, total = service.list_contacts(session, settings, query)
    return ContactPage(items=contact_out(session, items), total=total, limit=limit, offset=offset)


@router.get(
    "/contacts.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **error_responses(422)},
    summary="Export contacts as CSV",
)
def export_contacts(
    session: DbSession,
    settings: SettingsDep,
    who: Exporter,
    address: Address,
    category_id: CategoryIdParam = None,
    search: Search = None,
) -> StreamingResponse:
    """The contacts (same filters as the list) as CSV: UTF-8 with a BOM, formula-like cells
    quoted, streamed in batches (constant memory)."""
    audit.record(
        session,
        who,
        "export",
        "contacts",
        address,
        what="contacts",
        category_id=category_id,
        search=search,
    )
    rows = export.contact_rows(settings, service.ContactQuery(export.BATCH, 0, category_id, search))
    return StreamingResponse(
        (chunk.encode() for chunk in csv_export.lines(export.COLUMNS, rows)),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="contacts.csv"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/contacts/import", responses=error_responses(422), summary="Import contacts from CSV")
def import_contacts(
    session: DbSession,
    settings: SettingsDep,
    who: ContactsEditor,
    address: Address,
    file: Annotated[UploadFile, File(description="CSV, UTF-8, ',' or ';' separated")],
    category_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="put every imported contact in it")
    ] = None,
    category_id_form: Annotated[
        int | None, Form(alias="category_id", ge=1, le=MAX_ID, description="same, as a form field")
    ] = None,
) -> ImportResult:
    # The import commits batch by batch in sessions of its own: end the request's
    # transaction first, or on SQLite the import's transactions would wait for this one's
    # write lock until they time out.
    session.commit()
    # The upload is a spooled temporary file: the import streams it rather than reading it whole.
    result = csv_import.import_contacts(
        settings,
        file.file,
        category_id=category_id if category_id is not None else category_id_form,
    )
    audit.record(
        session,
        who,
        "contacts.import",
        "contacts",
        address,
        created=result.created,
        updated=result.updated,
    )
    return result


@router.get("/contacts/{contact_id}", responses=error_responses(404, 422), summary="Get a contact")
def get_contact(contact_id: ContactId, session: DbSession, _: Reader) -> ContactDetail:
    return contact_detail(session, service.get_contact(session, contact_id))


@router.patch(
    "/contacts/{contact_id}", responses=error_responses(404, 409, 422), summary="Update a contact"
)
def update_contact(
    contact_id: ContactId,
    data: ContactUpdate,
    session: DbSession,
    settings: SettingsDep,
    who: ContactsEditor,
    address: Address,
) -> ContactDetail:
    contact = service.update_contact(session, settings, contact_id, data)
    changed = sorted(data.model_dump(exclude_unset=True))
    audit.record(session, who, "contact.update", f"contact:{contact_id}", address, fields=changed)
    if data.opted_out is True:
        # Same path as a STOP reply: its open recipients end opted_out, nothing more is sent.
        opt_out(session, contact.phone, source=OptSource.API)
    elif data.opted_out is False:
        opt_in(session, contact.phone, source=OptSource.API)
    if data.opted_out is not None:
        session.flush()
        session.refresh(contact)
    return contact_detail(session, contact)


@router.delete(
    "/contacts/{contact_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **error_responses(404, 422),
        409: {
            "model": ErrorOut,
            "description": "A sending or paused campaign still waits on the contact, or a "
            "draft or scheduled campaign lists it (the detail names them)",
        },
    },
    summary="Delete a contact, erasing its personal data",
    description="The contact, its categories and what webhooks stored about it are erased. "
    "The campaigns it finished keep its recipient, anonymised (contact_id, phone and names "
    "null), so that their numbers still add up.",
)
def delete_contact(
    contact_id: ContactId, session: DbSession, who: ContactsEditor, address: Address
) -> Response:
    service.delete_contact(session, contact_id)
    audit.record(session, who, "contact.delete", f"contact:{contact_id}", address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
