"""Request and response models of the contacts, categories and audience API."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)


def with_example(example: Any, forbid_extra: bool = False) -> ConfigDict:
    """A model's config with one example for the OpenAPI document (and unknown fields refused)."""
    if forbid_extra:
        return ConfigDict(json_schema_extra={"examples": [example]}, extra="forbid")
    return ConfigDict(json_schema_extra={"examples": [example]})


# Ids are INTEGER (int4) columns: a bigger number can only be unknown, and would overflow
# SQLite's int64 or PostgreSQL's int4 comparison into a server error instead of a 4xx.
MAX_ID = 2**31 - 1
MAX_LIMIT = 1000
MAX_IDS = 10_000
# Ids in a query string: two such lists must fit the request head the HTTP server accepts
# (relance api raises h11's 16 KiB to 64 KiB); past this bound the answer is a documented 422.
MAX_QUERY_IDS = 500
ATTRIBUTE_VALUE_MAX = 10_000
MAX_REJECTED_LISTED = 1000
NAME_MAX = 200


def no_nul(value: str) -> str:
    """PostgreSQL refuses NUL characters in text and JSONB: say so before it does."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _category_name(value: str) -> str:
    if ";" in value:
        raise ValueError("must not contain ';' (it separates category names in CSV imports)")
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=NAME_MAX), AfterValidator(no_nul)
]
CategoryName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(no_nul),
    AfterValidator(_category_name),
]
Description = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(no_nul)]
AttributeKey = Annotated[
    str, StringConstraints(min_length=1, max_length=100), AfterValidator(no_nul)
]


def _attribute_value(value: Any) -> Any:
    """A scalar usable in a message text; one validator keeps its error message short."""
    if isinstance(value, str):
        if len(value) > ATTRIBUTE_VALUE_MAX:
            raise ValueError(f"must be at most {ATTRIBUTE_VALUE_MAX} characters")
        return no_nul(value)
    # NaN and infinities are not JSON: PostgreSQL's JSONB would refuse them.
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value is None or isinstance(value, bool | int | float):
        return value
    raise ValueError("must be a string, a number, a boolean or null")


AttributeValue = Annotated[
    Any,
    AfterValidator(_attribute_value),
    WithJsonSchema({"type": ["string", "number", "boolean", "null"]}),
]
Attributes = Annotated[dict[AttributeKey, AttributeValue], Field(max_length=100)]
IdList = Annotated[list[Id], Field(max_length=MAX_IDS)]

_CONTACT_EXAMPLE: dict[str, Any] = {
    "phone": "06 12 34 56 78",
    "first_name": "Camille",
    "last_name": "Martin",
    "attributes": {"city": "Lyon", "plan": "gold"},
    "category_ids": [1],
}


class ContactCreate(BaseModel):
    """A new contact; the phone is normalised to E.164 with DEFAULT_REGION."""

    model_config = with_example(_CONTACT_EXAMPLE, forbid_extra=True)

    phone: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    first_name: Name = ""
    last_name: Name = ""
    attributes: Attributes = Field(default_factory=dict)
    category_ids: IdList = Field(default_factory=list)


class ContactUpdate(BaseModel):
    """Fields to change; an absent or null field keeps its value."""

    model_config = with_example(
        {"first_name": "Camille", "opted_out": True, "category_ids": [1, 2]}, forbid_extra=True
    )

    phone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    attributes: Attributes | None = Field(
        default=None, description="replaces the whole attribute set"
    )
    category_ids: IdList | None = Field(
        default=None, description="replaces the contact's categories"
    )
    opted_out: bool | None = Field(
        default=None,
        description="true opts the contact out like a STOP reply (its open recipients end "
        "opted_out; opted_out_at kept if already set); false opts it back in; source: api",
    )


class ContactOut(BaseModel):
    model_config = with_example(
        {
            "id": 1,
            "phone": "+33612345678",
            "first_name": "Camille",
            "last_name": "Martin",
            "attributes": {"city": "Lyon"},
            "category_ids": [1],
            "opted_out": True,
            "opted_out_at": "2026-01-09T18:02:11Z",
            "opt_source": "button",
            "opt_changed_at": "2026-01-09T18:02:11Z",
            "created_at": "2026-01-05T09:30:00Z",
            "updated_at": "2026-01-05T09:30:00Z",
        }
    )

    id: int
    phone: str = Field(description="E.164")
    first_name: str
    last_name: str
    attributes: dict[str, Any]
    category_ids: list[int]
    opted_out: bool
    opted_out_at: datetime | None
    opt_source: str | None = Field(
        description="what the last opt-out or opt-in came from: keyword, button (Meta's "
        "'Stop promotions'), preference (WhatsApp's marketing setting), api, send_error; "
        "null if never, or before relance recorded it"
    )
    opt_changed_at: datetime | None = Field(description="when the last opt-out or opt-in came")
    created_at: datetime
    updated_at: datetime


class OptChangeOut(BaseModel):
    opted_out: bool = Field(description="true: an opt-out; false: an opt-in")
    source: str = Field(
        description="keyword, button, preference, api, send_error, or suppressed (made again "
        "with the number of an erased opted-out contact)"
    )
    changed_at: datetime


class ContactDetail(ContactOut):
    """A contact with its opt-out and opt-in history."""

    opt_history: list[OptChangeOut] = Field(
        description="its opt-outs and opt-ins, newest first (the latest 50)"
    )


class ContactPage(BaseModel):
    items: list[ContactOut]
    total: int
    limit: int
    offset: int


class RejectedRow(BaseModel):
    row: int = Field(description="line number in the file; the header is line 1")
    error: str


class ImportResult(BaseModel):
    model_config = with_example(
        {
            "created": 120,
            "updated": 3,
            "rejected": [
                {"row": 7, "error": "phone: not a valid phone number: '123'"},
                {"row": 9, "error": "duplicate of row 2"},
            ],
            "rejected_total": 2,
        }
    )

    created: int
    updated: int
    rejected: list[RejectedRow] = Field(
        description=f"the first {MAX_REJECTED_LISTED} rejected rows, in file order"
    )
    rejected_total: int = Field(description="all the rejected rows, listed or not")


class CategoryCreate(BaseModel):
    model_config = with_example({"name": "VIP", "description": "best customers"}, forbid_extra=True)

    name: CategoryName
    description: Description = ""


class CategoryUpdate(BaseModel):
    """Fields to change; an absent or null field keeps its value."""

    model_config = with_example({"description": "customers since 2020"}, forbid_extra=True)

    name: CategoryName | None = None
    description: Description | None = None


class CategoryOut(BaseModel):
    model_config = with_example(
        {
            "id": 1,
            "name": "VIP",
            "description": "best customers",
            "contact_count": 42,
            "created_at": "2026-01-05T09:30:00Z",
        }
    )

    id: int
    name: str
    description: str
    contact_count: int = Field(description="linked contacts, opted out or not")
    created_at: datetime


class CategoryPage(BaseModel):
    items: list[CategoryOut]
    total: int
    limit: int
    offset: int


class CategoryContactsAdd(BaseModel):
    model_config = with_example({"contact_ids": [1, 2, 3]}, forbid_extra=True)

    contact_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_IDS)]


class AudienceCount(BaseModel):
    model_config = with_example({"reachable": 118, "opted_out": 4, "total": 122})

    reachable: int = Field(description="distinct contacts of the audience not opted out")
    opted_out: int = Field(description="distinct contacts of the audience that opted out")
    total: int
