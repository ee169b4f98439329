"""Contact rules with no I/O: phone numbers, stop keywords, message personalisation, and
how a refused deletion names the campaigns in its way."""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import phonenumbers

QUOTE_MAX = 40


class InvalidPhone(ValueError):
    """A phone number that is not one."""


def quoted(text: str, limit: int = QUOTE_MAX) -> str:
    """``text`` as a Python literal for an error message, cut to ``limit`` characters.

    An error message must not echo an unbounded input back (a CSV cell can be 128 KiB).
    """
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


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
        raise InvalidPhone(f"not a phone number: {quoted(raw)}") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"not a valid phone number: {quoted(raw)}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def fold_keyword(text: str) -> str:
    """Upper-case, accent-free, trimmed: ``Arrêt `` and ``ARRET`` are the same keyword."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


@functools.cache
def stop_keywords(setting: str) -> frozenset[str]:
    """``STOP_KEYWORDS`` (comma-separated) as folded keywords."""
    return frozenset(fold_keyword(k) for k in setting.split(",") if k.strip())


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


NAME_FIELDS = ("first_name", "last_name")


def contact_values(
    first_name: str, last_name: str, attributes: Mapping[str, Any]
) -> dict[str, str]:
    """What fills a contact's placeholders.

    The names come from the contact's own fields only: an attribute called ``first_name``
    never stands in for an empty name, so a ``{first_name}`` is never longer than a name.
    """
    values = {
        str(k): str(v)
        for k, v in attributes.items()
        if v is not None and v != "" and k not in NAME_FIELDS
    }
    if first_name:
        values["first_name"] = first_name
    if last_name:
        values["last_name"] = last_name
    return values


def missing_placeholders(template: str, values: Mapping[str, str]) -> set[str]:
    return {p for p in placeholders(template) if p not in values}


def _pieces(template: str, values: Mapping[str, str], defaults: Mapping[str, Any]) -> Iterator[str]:
    """The literal parts and placeholder values of a rendering, in order."""
    for literal, field, _, _ in _FORMATTER.parse(template):
        yield literal
        if field is not None:
            if field in values:
                yield values[field]
            elif field in defaults:
                yield str(defaults[field])


def render(template: str, values: Mapping[str, str], defaults: Mapping[str, Any]) -> str:
    """Fill the placeholders; a value missing for the contact takes the campaign's default."""
    return "".join(_pieces(template, values, defaults))


def rendered_length(template: str, values: Mapping[str, str], defaults: Mapping[str, Any]) -> int:
    """``len(render(...))`` without building the text."""
    return sum(len(piece) for piece in _pieces(template, values, defaults))


def render_within(
    template: str, values: Mapping[str, str], defaults: Mapping[str, Any], limit: int
) -> tuple[str, int]:
    """The rendering cut at ``limit`` characters, and its whole length.

    Never builds more than ``limit`` characters, whatever the values' sizes.
    """
    kept: list[str] = []
    room = limit
    total = 0
    for piece in _pieces(template, values, defaults):
        total += len(piece)
        if room > 0:
            kept.append(piece[:room])
            room -= len(kept[-1])
    return "".join(kept), total


def longest_rendering(template: str, bound: Callable[[str], int]) -> int:
    """The length of the longest rendering when no placeholder ``p`` gets more than
    ``bound(p)`` characters (a placeholder without value renders empty)."""
    total = 0
    for literal, field, _, _ in _FORMATTER.parse(template):
        total += len(literal)
        if field is not None:
            total += bound(field)
    return total


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
