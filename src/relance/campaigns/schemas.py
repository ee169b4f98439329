"""Campaign request and response models (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from relance.campaigns.domain import schedule_in_range
from relance.campaigns.template_schemas import TemplateIn, TemplatePreview
from relance.campaigns.template_schemas import check_text as _check_text
from relance.campaigns.templates import TEMPLATE_PARAMETER_MAX, TEMPLATE_PARAMETERS_MAX
from relance.campaigns.texts import DEFAULT_VALUE_MAX, TEXT_MAX
from relance.contacts.schemas import MAX_ID, MAX_IDS, IdList, no_nul
from relance.models import utcnow


def _check_schedule(value: datetime | None) -> datetime | None:
    return None if value is None else schedule_in_range(value, utcnow())


Text = Annotated[str, AfterValidator(no_nul)]
Defaults = Annotated[
    dict[
        Annotated[Text, Field(max_length=100)],
        Annotated[Text, Field(max_length=DEFAULT_VALUE_MAX)],
    ],
    Field(max_length=100),
]


class SenderShare(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender_id: int = Field(ge=1, le=MAX_ID)
    weight: int = Field(default=1, ge=1, le=1000, description="its share of the recipients")


MAX_SENDERS = 50


class CampaignBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_1_template: TemplateIn | None = Field(
        default=None, description="required with the meta provider: Message 1 as a template"
    )
    message_2: str | None = Field(
        default=None, max_length=TEXT_MAX, examples=["Merci {first_name} !"]
    )
    message_2_template: TemplateIn | None = Field(
        default=None,
        description="sent instead of message_2 once the 24 h window the reply opened has "
        "closed (meta provider)",
    )
    category_ids: IdList = Field(default_factory=list, examples=[[1]])
    contact_ids: IdList = Field(default_factory=list)
    scheduled_at: datetime | None = Field(
        default=None, description="when to start; within a year of now (naive means UTC)"
    )
    placeholder_defaults: Defaults = Field(default_factory=dict, examples=[{"first_name": "there"}])
    senders: list[SenderShare] = Field(
        default_factory=list,
        max_length=MAX_SENDERS,
        description="the numbers that send it and their weights; none: the default sender. "
        "Each contact is served by one number: Message 2 leaves from its Message 1's",
    )

    _texts = field_validator("message_2")(_check_text)
    _schedule = field_validator("scheduled_at")(_check_schedule)


class CampaignCreate(CampaignBase):
    name: Text = Field(min_length=1, max_length=200, examples=["Relance printemps"])
    message_1: str = Field(min_length=1, max_length=TEXT_MAX, examples=["Bonjour {first_name} !"])
    reply_window_seconds: int | None = Field(default=None, gt=0, le=30 * 86400)

    _m1 = field_validator("message_1")(_check_text)


class CampaignUpdate(CampaignBase):
    name: Text | None = Field(default=None, min_length=1, max_length=200)
    message_1: str | None = Field(default=None, min_length=1, max_length=TEXT_MAX)
    reply_window_seconds: int | None = Field(default=None, gt=0, le=30 * 86400)
    category_ids: IdList | None = None  # type: ignore[assignment]
    contact_ids: IdList | None = None  # type: ignore[assignment]
    placeholder_defaults: Defaults | None = None  # type: ignore[assignment]
    senders: list[SenderShare] | None = Field(default=None, max_length=MAX_SENDERS)  # type: ignore[assignment]

    _m1 = field_validator("message_1")(_check_text)


class CampaignOut(BaseModel):
    id: int
    name: str
    message_1: str
    message_1_template: dict[str, Any] | None
    message_2: str | None
    message_2_template: dict[str, Any] | None
    reply_window_seconds: int
    placeholder_defaults: dict[str, Any]
    status: str
    status_reason: str | None
    category_ids: list[int]
    contact_ids: list[int]
    senders: list[SenderShare] = Field(default_factory=list)
    total: int
    finished: int
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None


class CampaignList(BaseModel):
    items: list[CampaignOut]
    total: int
    limit: int
    offset: int


class Rates(BaseModel):
    """Shares in [0, 1]; null while nothing to divide by."""

    delivery: float | None = Field(description="delivered / Message 1 sent")
    read: float | None = Field(description="read / Message 1 sent")
    reply: float | None = Field(description="replied / Message 1 sent")
    message_2: float | None = Field(description="Message 2 sent / replied")


class ReplyTime(BaseModel):
    """Seconds from Message 1 (its reply window opening) to the answer."""

    replies: int
    sampled: int = Field(description="replies read (a sample beyond 20,000)")
    median_seconds: float | None
    p90_seconds: float | None


class StatsOut(BaseModel):
    campaign_id: int
    status: str
    status_reason: str | None
    total: int
    pending: int
    message_1_sent: int
    delivered: int
    read: int
    interactions: int
    awaiting_reply: int
    message_2_sent: int
    no_interaction: int
    failed: int
    limited: int = Field(
        description="of the failed, those Meta held back (per-user marketing limit, code "
        "131049): retry-limited sends them again"
    )
    opted_out: int
    cancelled: int
    done: int
    skipped_opted_out: int
    finished: int
    completed: bool
    completed_at: datetime | None = Field(description="set on completed campaigns only")
    cancelled_at: datetime | None = Field(description="set on cancelled campaigns only")
    started_at: datetime | None
    pacing: dict[str, Any] | None = None
    senders: list[dict[str, Any]] = Field(
        default_factory=list,
        description="per number: its recipients and the messages it sent (its share)",
    )
    sender_waits: list[str] = Field(
        default_factory=list,
        description="why some numbers hold their messages: paused, stopped, slowed, or "
        "'messaging limit N per 24 h reached, resumes at T'",
    )
    rates: Rates | None = None
    estimated_finish_at: datetime | None = Field(
        default=None,
        description="when a sending campaign should complete: its last Message 1 by the "
        "pace, the quota and what is left, then that contact's reply window; assumes it has "
        "the sender to itself. Null unless sending",
    )
    reply_time: ReplyTime | None = Field(
        default=None, description="GET /stats only (the event stream leaves it out)"
    )


ERASED = (
    "null when the contact was deleted: its recipient stays, anonymised, so that the "
    "campaign's numbers still add up"
)


class RecipientOut(BaseModel):
    """One contact of a campaign; a deleted contact's shows null contact_id, phone and names."""

    id: int
    contact_id: int | None = Field(description=ERASED)
    phone: str | None = Field(description=ERASED)
    first_name: str | None = Field(description=ERASED)
    last_name: str | None = Field(description=ERASED)
    state: str
    window_closes_at: datetime | None
    queued_at: datetime | None
    awaiting_reply_at: datetime | None
    replied_at: datetime | None
    message_2_sent_at: datetime | None
    no_interaction_at: datetime | None
    failed_at: datetime | None
    cancelled_at: datetime | None
    opted_out_at: datetime | None
    done_at: datetime | None
    last_error: str | None = Field(
        description="why it failed (or opted out with a failure): the reason, then the "
        "provider's code, title and details"
    )
    last_error_code: str | None = Field(description="the provider's code of that failure")
    error_code: str | None = Field(description="the provider's code of the failure (Meta's 131026)")
    error: str | None = Field(
        description="why it failed: the reason, then the provider's code, title and details"
    )
    reply_text: str | None = Field(
        description="what the contact answered: its text, or its kind (a button's title, an "
        'emoji, "image", "voice"); null before an answer'
    )


class RecipientList(BaseModel):
    """One page; ``next`` is the ``after`` of the following page (null: this was the last)."""

    items: list[RecipientOut]
    next: str | None = Field(description="pass as ?after= for the next page; null at the end")


class BlockingOut(BaseModel):
    recipient_id: int
    contact_id: int | None = Field(description=ERASED)
    phone: str | None = Field(description=ERASED)
    state: str
    reason: str
    window_closes_at: datetime | None


class BlockingList(BaseModel):
    campaign_id: int
    status: str
    open_recipients: int
    paused_by: str | None = None
    sender_waits: list[str] = Field(default_factory=list)
    items: list[BlockingOut]


class RetryOut(BaseModel):
    campaign_id: int
    retried: int
    status: str


class Bucket(BaseModel):
    start: datetime
    message_1: int
    message_2: int


class Timeline(BaseModel):
    campaign_id: int
    bucket_seconds: int = 60
    buckets: list[Bucket]


class PreviewIn(BaseModel):
    message_1: str = Field(default="", max_length=TEXT_MAX)
    message_2: str | None = Field(default=None, max_length=TEXT_MAX)
    template_parameters: list[Annotated[str, Field(max_length=TEMPLATE_PARAMETER_MAX)]] = Field(
        default_factory=list, max_length=TEMPLATE_PARAMETERS_MAX
    )
    message_1_template: TemplateIn | None = None
    message_2_template: TemplateIn | None = None
    category_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default_factory=list, max_length=MAX_IDS
    )
    contact_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default_factory=list, max_length=MAX_IDS
    )
    placeholder_defaults: dict[
        Annotated[str, Field(max_length=100)], Annotated[str, Field(max_length=DEFAULT_VALUE_MAX)]
    ] = Field(default_factory=dict, max_length=100)


class SampleContact(BaseModel):
    id: int
    phone: str
    first_name: str
    last_name: str


class MissingExample(BaseModel):
    id: int
    phone: str
    name: str


class MissingValue(BaseModel):
    """A placeholder without a value (nor a fallback) for ``contacts`` of the audience."""

    placeholder: str
    contacts: int
    examples: list[MissingExample]


class PreviewOut(BaseModel):
    contact: SampleContact | None
    audience_missing: list[MissingValue] = Field(
        default_factory=list,
        description="over every contact of the audience: placeholders without a value",
    )
    message_1: str | None
    message_2: str | None
    template_parameters: list[str]
    message_1_template: TemplatePreview | None = None
    message_2_template: TemplatePreview | None = None
    missing: list[str]
    errors: dict[str, str]
