"""A campaign's template as its sample contact would read it. Pure: no I/O.

The template's own texts (header, body, footer, buttons, from the business account's list:
``providers/meta_templates.py``) are filled with the campaign's parameters once personalised
for the contact. Without the template's texts (another provider, a template not in the list),
the preview shows the personalised parameters alone, and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relance.campaigns.templates import BUTTON_VALUE
from relance.providers.meta_templates import fill, names_in


def _given(template: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, str]:
    """The personalised values by the field ``TemplateInfo.parameters`` names them
    (``parameters.0``, ``named_parameters.x``, ``header.text``, ``header.link``,
    ``buttons.<button index>.<payload|text>``)."""
    given = {k: v for k, v in values.items() if not k.startswith("buttons.")}
    header = template.get("header") or {}
    if header.get("link"):
        given["header.link"] = str(header["link"])
    for k, button in enumerate(template.get("buttons") or []):
        key = BUTTON_VALUE.get(str(button.get("sub_type")), "")
        if f"buttons.{k}.{key}" in values:
            given[f"buttons.{button.get('index')}.{key}"] = values[f"buttons.{k}.{key}"]
    return given


def _header(definition: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, Any] | None:
    header = definition.get("header")
    if not header:
        return None
    kind = str(header["format"]).lower()
    if kind == "text":
        text = header.get("text") or ""
        names = names_in(text)
        value = given.get("header.text")
        shown = fill(text, {names[0]: value}) if names and value is not None else text
        return {"format": kind, "text": shown}
    return {"format": kind, "link": given.get("header.link") or header.get("example")}


def _body(definition: Mapping[str, Any], given: Mapping[str, str]) -> str:
    values = {}
    for field, value in given.items():
        if field.startswith("parameters."):
            values[str(int(field.split(".")[1]) + 1)] = value
        elif field.startswith("named_parameters."):
            values[field.split(".", 1)[1]] = value
    return fill(str(definition.get("body") or ""), values)


def _buttons(definition: Mapping[str, Any], given: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for button in definition.get("buttons") or []:
        url = button.get("url")
        suffix = given.get(f"buttons.{button['index']}.text")
        if url and suffix is not None and names_in(url):
            url = fill(url, {names_in(url)[0]: suffix})
        payload = given.get(f"buttons.{button['index']}.payload")
        out.append({"type": button["type"], "text": button["text"], "url": url, "payload": payload})
    return out


def template_preview(
    template: Mapping[str, Any],
    prefix: str,
    shown: Mapping[str, str | None],
    definition: Mapping[str, Any] | None,
    note: str | None,
) -> dict[str, Any]:
    """``template`` (as stored) previewed: ``shown`` holds its texts personalised, by field
    (``prefix.parameters.0``...); ``definition`` is the template's ``TemplateInfo``, if known."""
    values = {
        field.removeprefix(prefix + "."): value or ""
        for field, value in shown.items()
        if field.startswith(prefix + ".")
    }
    given = _given(template, values)
    out: dict[str, Any] = {
        "name": template.get("name"),
        "language": template.get("language"),
        "found": definition is not None,
        "note": note,
        "values": given,
    }
    if definition is None:
        header = template.get("header")
        if header:
            text = given.get("header.text")
            out["header"] = {"format": header["format"], "text": text, "link": header.get("link")}
        return out
    lacking = [
        p["field"]
        for p in definition.get("parameters") or []
        if p["required"] and p["field"] not in given
    ]
    if lacking:
        out["note"] = f"the template needs a value for: {', '.join(lacking)}"
    unexpected = sorted(set(given) - {p["field"] for p in definition.get("parameters") or []})
    if unexpected:
        extra = f"the template has no parameter for: {', '.join(unexpected)}"
        out["note"] = f"{out['note']}; {extra}" if out["note"] else extra
    out.update(
        status=definition.get("status"),
        header=_header(definition, given),
        body=_body(definition, given),
        footer=definition.get("footer"),
        buttons=_buttons(definition, given),
    )
    return out
