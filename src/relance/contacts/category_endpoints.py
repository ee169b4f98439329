"""HTTP routes of categories and of the audience count (thin: one service call each)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from sqlalchemy.orm import Session

from relance.accounts import audit
from relance.contacts import service
from relance.contacts.endpoints import Limit, Offset
from relance.contacts.schemas import (
    MAX_ID,
    MAX_QUERY_IDS,
    AudienceCount,
    CategoryContactsAdd,
    CategoryCreate,
    CategoryOut,
    CategoryPage,
    CategoryUpdate,
    Id,
)
from relance.deps import Address, ContactsEditor, DbSession, Reader, current_principal
from relance.errors import ErrorOut, error_responses
from relance.models import Category

router = APIRouter(prefix="/api", dependencies=[Depends(current_principal)])

CategoryId = Annotated[int, Path(ge=1, le=MAX_ID)]
IdsQuery = Annotated[list[Id] | None, Query(max_length=MAX_QUERY_IDS)]


def category_out(category: Category, contact_count: int) -> CategoryOut:
    return CategoryOut(
        id=category.id,
        name=category.name,
        description=category.description,
        contact_count=contact_count,
        created_at=category.created_at,
    )


def _with_count(session: Session, category: Category) -> CategoryOut:
    return category_out(category, service.contact_count(session, category.id))


@router.post(
    "/categories",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422),
    tags=["categories"],
    summary="Create a category",
)
def create_category(
    data: CategoryCreate, session: DbSession, who: ContactsEditor, address: Address
) -> CategoryOut:
    category = service.create_category(session, data)
    audit.record(session, who, "category.create", f"category:{category.id}", address)
    return category_out(category, 0)


@router.get(
    "/categories", responses=error_responses(422), tags=["categories"], summary="List categories"
)
def list_categories(
    session: DbSession, _: Reader, limit: Limit = 100, offset: Offset = 0
) -> CategoryPage:
    rows, total = service.list_categories(session, limit=limit, offset=offset)
    items = [category_out(category, n) for category, n in rows]
    return CategoryPage(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/categories/{category_id}",
    responses=error_responses(404, 422),
    tags=["categories"],
    summary="Get a category",
)
def get_category(category_id: CategoryId, session: DbSession, _: Reader) -> CategoryOut:
    return _with_count(session, service.get_category(session, category_id))


@router.patch(
    "/categories/{category_id}",
    responses=error_responses(404, 409, 422),
    tags=["categories"],
    summary="Update a category",
)
def update_category(
    category_id: CategoryId,
    data: CategoryUpdate,
    session: DbSession,
    who: ContactsEditor,
    address: Address,
) -> CategoryOut:
    category = service.update_category(session, category_id, data)
    audit.record(session, who, "category.update", f"category:{category_id}", address)
    return _with_count(session, category)


@router.delete(
    "/categories/{category_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **error_responses(404, 422),
        409: {
            "model": ErrorOut,
            "description": "A draft or scheduled campaign targets the category; the detail "
            "names them by id and name: remove the category from them first",
        },
    },
    tags=["categories"],
    summary="Delete a category (its contacts stay)",
)
def delete_category(
    category_id: CategoryId, session: DbSession, who: ContactsEditor, address: Address
) -> Response:
    service.delete_category(session, category_id)
    audit.record(session, who, "category.delete", f"category:{category_id}", address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/categories/{category_id}/contacts",
    responses=error_responses(404, 422),
    tags=["categories"],
    summary="Add contacts to a category",
)
def add_contacts(
    category_id: CategoryId,
    data: CategoryContactsAdd,
    session: DbSession,
    who: ContactsEditor,
    address: Address,
) -> CategoryOut:
    category = service.add_contacts_to_category(session, category_id, data.contact_ids)
    target = f"category:{category_id}"
    audit.record(
        session, who, "category.add_contacts", target, address, added=len(data.contact_ids)
    )
    return _with_count(session, category)


@router.get(
    "/audience/count",
    responses=error_responses(422),
    tags=["audience"],
    summary="How many distinct contacts a campaign audience would reach",
)
def audience_count(
    session: DbSession, _: Reader, category_ids: IdsQuery = None, contact_ids: IdsQuery = None
) -> AudienceCount:
    reachable, opted_out = service.count_audience(session, category_ids or [], contact_ids or [])
    return AudienceCount(reachable=reachable, opted_out=opted_out, total=reachable + opted_out)
