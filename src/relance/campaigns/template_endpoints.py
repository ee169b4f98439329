"""``GET /api/templates``: the business account's WhatsApp templates, for the campaign form."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from relance.campaigns.preview import FindTemplate
from relance.campaigns.template_schemas import TemplateList
from relance.deps import Reader, current_principal
from relance.errors import ErrorOut
from relance.providers.template_catalog import TemplateCatalog, TemplatesUnavailable

router = APIRouter(prefix="/api", tags=["templates"], dependencies=[Depends(current_principal)])


def template_catalog(request: Request) -> TemplateCatalog:
    """This process's catalog: its cache is shared by every request the process serves."""
    state = request.app.state
    if getattr(state, "template_catalog", None) is None:
        state.template_catalog = TemplateCatalog(state.settings)
    catalog: TemplateCatalog = state.template_catalog
    return catalog


CatalogDep = Annotated[TemplateCatalog, Depends(template_catalog)]


def find_in(catalog: TemplateCatalog) -> FindTemplate:
    """The preview's lookup: a template's texts by name and language, or None and why."""

    def find(name: str, language: str) -> tuple[dict[str, Any] | None, str | None]:
        try:
            listing = catalog.listing()
        except TemplatesUnavailable as exc:
            return None, f"the template's texts are unknown: {exc.detail}"
        if listing.reason:
            return None, listing.reason
        found = catalog.find(name, language)
        if found is None:
            return None, f"no template {name!r} in {language!r} in the business account"
        return found, None

    return find


@router.get(
    "/templates",
    response_model=TemplateList,
    responses={
        502: {"model": ErrorOut, "description": "Meta refused or failed the template list"},
        503: {"model": ErrorOut, "description": "META_WABA_ID is not set"},
    },
)
def list_templates(catalog: CatalogDep, _: Reader) -> Any:
    """The business account's templates (Graph API ``/{META_WABA_ID}/message_templates``,
    cached a few minutes), each with the parameters a campaign must give to send it. Other
    providers send plain text: an empty list, and ``reason`` says so."""
    try:
        listing = catalog.listing()
    except TemplatesUnavailable as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    return {
        "provider": listing.provider,
        "items": listing.items,
        "total": len(listing.items),
        "reason": listing.reason,
        "fetched_at": listing.fetched_at,
    }
