"""Contact rules with no I/O: phone numbers, stop keywords, message personalisation, and
how a refused deletion names the campaigns in its way."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import phonenumbers


class InvalidPhone(ValueError):
    """A phone number that is not one."""


def normalize_phone(raw: str, default_region: str) -> str:
    """Parse ``raw`` and return it in E.164, or raise InvalidPhone saying why."""
    text = (raw or "").strip()
    if not text:
        raise InvalidPhone("phone number is empty")
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"not a phone number: {raw!r}") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"not a valid phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def fold_keyword(text: str) -> str:
    """Upper-case, accent-free, trimmed: ``Arrêt `` and ``ARRET`` are the same keyword."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


def is_stop_keyword(text: str, keywords: Iterable[str]) -> bool:
    folded = fold_keyword(re.sub(r"[\s.!]+$", "", text))
    return folded in set(keywords)


_FORMATTER = string.Formatter()


def placeholders(template: str) -> set[str]:
    """The ``{name}`` placeholders a message text uses."""
    names: set[str] = set()
    for _, field, _, _ in _FORMATTER.parse(template):
        if field:
            names.add(field)
    return names


def contact_values(
    first_name: str, last_name: str, attributes: Mapping[str, Any]
) -> dict[str, str]:
    values = {str(k): str(v) for k, v in attributes.items() if v is not None and v != ""}
    if first_name:
        values["first_name"] = first_name
    if last_name:
        values["last_name"] = last_name
    return values


def missing_placeholders(template: str, values: Mapping[str, str]) -> set[str]:
    return {p for p in placeholders(template) if p not in values}


def render(template: str, values: Mapping[str, str], defaults: Mapping[str, Any]) -> str:
    """Fill the placeholders; a value missing for the contact takes the campaign's default."""
    merged = {str(k): str(v) for k, v in defaults.items()}
    merged.update(values)
    out: list[str] = []
    for literal, field, _, _ in _FORMATTER.parse(template):
        out.append(literal)
        if field is not None:
            out.append(merged.get(field, ""))
    return "".join(out)


def valid_template(template: str) -> str | None:
    """None if the text's placeholders parse, else why not."""
    try:
        for _, field, _, _ in _FORMATTER.parse(template):
            if field is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field):
                return f"placeholder {{{field}}} is not a plain name"
    except ValueError as exc:
        return str(exc)
    return None


MAX_NAMED_CAMPAIGNS = 20


def name_campaigns(campaigns: Sequence[tuple[int, str]], limit: int = MAX_NAMED_CAMPAIGNS) -> str:
    """``7 'Spring', 9 'Summer'``: the first ``limit`` by id and name, then how many more.

    The cap keeps an error short when hundreds of drafts share a category.
    """
    named = ", ".join(f"{campaign_id} {name!r}" for campaign_id, name in campaigns[:limit])
    more = len(campaigns) - limit
    return f"{named} and {more} more" if more > 0 else named
