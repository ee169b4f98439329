"""WhatsApp templates in the API: what a campaign sends (``TemplateIn``), what the business
account offers (``TemplateList``, ``GET /api/templates``), and how the preview shows one.

``TemplateIn`` mirrors the ``template`` object of a Cloud API ``POST /{phone-number-id}/messages``
(header, body parameters by position or by name, button parameters by index) with each text a
relance text: personalised per contact (``{first_name}``, attributes), its placeholders checked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from relance.campaigns.templates import (
    BUTTON_VALUE,
    BUTTONS_MAX,
    DEFAULT_LANGUAGE,
    HEADER_TEXT_MAX,
    TEMPLATE_PARAMETER_MAX,
    TEMPLATE_PARAMETERS_MAX,
)
from relance.contacts.domain import valid_template
from relance.contacts.schemas import no_nul


def check_text(value: str | None) -> str | None:
    """A text personalised per contact: no NUL, and placeholders that parse."""
    if value is None:
        return value
    no_nul(value)
    problem = valid_template(value)
    if problem:
        raise ValueError(problem)
    return value


def _link(value: str) -> str:
    no_nul(value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL that WhatsApp can download")
    return value


Text = Annotated[str, AfterValidator(no_nul)]
TemplateParameter = Annotated[
    str, Field(max_length=TEMPLATE_PARAMETER_MAX), AfterValidator(check_text)
]
# Meta's parameter names: lower-case letters, digits and underscores.
ParameterName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=100)]
MediaLink = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_link)]


class TemplateHeaderIn(BaseModel):
    """The header's parameter: the value of a text header's one ``{{1}}`` / ``{{name}}``, or
    the media of an image, video or document header, by link. A header without a parameter
    (static text) is not given."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["text", "image", "video", "document"]
    text: Annotated[str, Field(max_length=HEADER_TEXT_MAX), AfterValidator(check_text)] | None = (
        Field(default=None, examples=["{first_name}"])
    )
    parameter_name: ParameterName | None = Field(
        default=None, description="the header's parameter name, when the template's are named"
    )
    link: MediaLink | None = Field(default=None, examples=["https://example.com/spring.jpg"])
    filename: Annotated[Text, Field(min_length=1, max_length=240)] | None = Field(
        default=None, description="a document's file name, as the contact sees it"
    )

    @model_validator(mode="after")
    def _fits_its_format(self) -> TemplateHeaderIn:
        if self.format == "text":
            if self.text is None:
                raise ValueError("a text header needs its parameter's value in 'text'")
            if self.link is not None or self.filename is not None:
                raise ValueError("a text header has no 'link' or 'filename'")
            return self
        if self.link is None:
            raise ValueError(f"the {self.format} header needs the media's 'link'")
        if self.text is not None or self.parameter_name is not None:
            raise ValueError(f"the {self.format} header has no 'text' or 'parameter_name'")
        if self.filename is not None and self.format != "document":
            raise ValueError("only a document header has a 'filename'")
        return self


class TemplateButtonIn(BaseModel):
    """A button's parameter, by the button's index in the template: a quick reply's
    ``payload`` (sent back when the contact taps it) or a URL button's ``text`` (the suffix
    appended to the template's URL)."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0, lt=BUTTONS_MAX, description="the button's position, from 0")
    sub_type: Literal["quick_reply", "url"]
    payload: TemplateParameter | None = Field(default=None, examples=["STOP_PROMO"])
    text: TemplateParameter | None = Field(default=None, examples=["{code}"])

    @model_validator(mode="after")
    def _one_value(self) -> TemplateButtonIn:
        wanted = BUTTON_VALUE[self.sub_type]
        other = "text" if wanted == "payload" else "payload"
        if getattr(self, wanted) is None or getattr(self, other) is not None:
            raise ValueError(f"a {self.sub_type} button takes its parameter in '{wanted}' only")
        return self


class TemplateIn(BaseModel):
    """A WhatsApp Cloud API template: what Message 1 (or Message 2 past the 24 h window) sends."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=512, examples=["spring_promo"])
    language: Text = Field(default=DEFAULT_LANGUAGE, min_length=2, max_length=15, examples=["fr"])
    header: TemplateHeaderIn | None = None
    parameters: list[TemplateParameter] = Field(
        default_factory=list,
        max_length=TEMPLATE_PARAMETERS_MAX,
        description="the body's {{1}}, {{2}}... in order",
        examples=[["{first_name}"]],
    )
    named_parameters: dict[ParameterName, TemplateParameter] = Field(
        default_factory=dict,
        max_length=TEMPLATE_PARAMETERS_MAX,
        description="the body's named parameters: {{first_name}} -> 'first_name'",
        examples=[{"first_name": "{first_name}"}],
    )
    buttons: list[TemplateButtonIn] = Field(default_factory=list, max_length=BUTTONS_MAX)

    @model_validator(mode="after")
    def _one_parameter_format(self) -> TemplateIn:
        # A template's parameters are all positional or all named (its parameter_format).
        if self.parameters and self.named_parameters:
            raise ValueError(
                "give the body's parameters by position ('parameters', for {{1}}) or by name "
                "('named_parameters', for {{first_name}}), as the template declares them"
            )
        header = self.header
        if header is not None and header.format == "text":
            if self.parameters and header.parameter_name is not None:
                raise ValueError("positional body parameters go with a positional header")
            if self.named_parameters and header.parameter_name is None:
                raise ValueError("named body parameters need the header's 'parameter_name'")
        indexes = [b.index for b in self.buttons]
        if len(indexes) != len(set(indexes)):
            raise ValueError("each button index may be given once")
        return self

    def stored(self) -> dict[str, Any]:
        """The JSON the campaign keeps (empty lists and unset fields left out)."""
        out = self.model_dump(mode="json", exclude_none=True)
        for key in ("named_parameters", "buttons"):
            if not out.get(key):
                out.pop(key, None)
        return out


# GET /api/templates ---------------------------------------------------------------------------


class TemplateParameterInfo(BaseModel):
    """One value a campaign must (or may) give to send the template."""

    component: Literal["header", "body", "button"]
    field: str = Field(
        description="where the value goes in message_1_template, e.g. 'parameters.0', "
        "'named_parameters.first_name', 'header.link', 'buttons.1.text'",
        examples=["parameters.0"],
    )
    name: str = Field(description="'1' for {{1}}, 'first_name' for {{first_name}}")
    kind: Literal["text", "image", "video", "document", "payload", "url_suffix"]
    button_index: int | None = None
    example: str | None = Field(default=None, description="the example Meta approved")
    required: bool = True


class TemplateHeaderInfo(BaseModel):
    format: str = Field(examples=["TEXT", "IMAGE"])
    text: str | None = None
    example: str | None = None


class TemplateButtonInfo(BaseModel):
    index: int
    type: str = Field(examples=["QUICK_REPLY", "URL", "PHONE_NUMBER"])
    text: str
    url: str | None = None


class TemplateInfo(BaseModel):
    id: str | None
    name: str
    language: str
    status: str = Field(examples=["APPROVED"])
    category: str | None = Field(examples=["MARKETING"])
    parameter_format: Literal["positional", "named"]
    header: TemplateHeaderInfo | None
    body: str
    footer: str | None
    buttons: list[TemplateButtonInfo]
    parameters: list[TemplateParameterInfo]
    unsupported: str | None = Field(
        description="why relance cannot send this template (a component it does not fill)"
    )


class TemplateList(BaseModel):
    provider: str
    items: list[TemplateInfo]
    total: int
    reason: str | None = Field(description="why the list is empty on this provider")
    fetched_at: datetime | None = Field(description="when Meta was asked (the list is cached)")


# The preview ----------------------------------------------------------------------------------


class TemplatePreviewHeader(BaseModel):
    format: str
    text: str | None = None
    link: str | None = None


class TemplatePreviewButton(BaseModel):
    type: str
    text: str
    url: str | None = None
    payload: str | None = None


class TemplatePreview(BaseModel):
    """A template as the sample contact would read it, filled from the template's own text."""

    name: str
    language: str
    found: bool = Field(description="the template is in the business account's list")
    status: str | None = None
    note: str | None = None
    header: TemplatePreviewHeader | None = None
    body: str | None = None
    footer: str | None = None
    buttons: list[TemplatePreviewButton] = Field(default_factory=list)
    values: dict[str, str] = Field(
        default_factory=dict, description="each parameter as personalised, by its field"
    )
