"""Meta's message templates, read: what a template says and what a send must give it. Pure.

A template of ``GET /{WABA_ID}/message_templates`` is ``{"name", "language", "status",
"category", "id", "parameter_format", "components": [...]}``; its components are a ``HEADER``
(``format`` TEXT with an optional ``{{1}}`` / ``{{name}}``, or IMAGE, VIDEO, DOCUMENT,
LOCATION), a ``BODY`` (``{{1}}``... or ``{{first_name}}``...), a ``FOOTER`` and ``BUTTONS``
(QUICK_REPLY, URL with an optional ``{{1}}`` suffix, PHONE_NUMBER, COPY_CODE, FLOW...), with
the examples Meta approved in ``example``. ``parse_template`` turns one into the
``TemplateInfo`` of ``GET /api/templates``: each parameter with where its value goes in a
campaign's template (``campaigns/templates.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
MEDIA = ("IMAGE", "VIDEO", "DOCUMENT")
# Buttons sent without a parameter, or with one relance fills (quick-reply payload, URL suffix).
SENDABLE_BUTTONS = ("QUICK_REPLY", "URL", "PHONE_NUMBER")


def names_in(text: str) -> list[str]:
    """The placeholders of a template text, each once, in order (``{{2}} {{1}}`` -> 1, 2)."""
    seen = list(dict.fromkeys(PLACEHOLDER.findall(text)))
    if all(name.isdigit() for name in seen):
        return sorted(seen, key=int)
    return seen


def fill(text: str, values: Mapping[str, str]) -> str:
    """The template text with each ``{{name}}`` replaced by its value (kept when it has none)."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def as_object(value: Any) -> dict[str, Any]:
    """A JSON object, or {} for anything else (Meta's optional fields)."""
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _first(value: Any) -> Any:
    """``example`` values come as lists (and the body's as a list of lists)."""
    while isinstance(value, list):
        value = value[0] if value else None
    return value


def _named_examples(example: Mapping[str, Any], key: str) -> dict[str, str]:
    pairs = example.get(key) or []
    return {
        str(p.get("param_name")): str(p.get("example", ""))
        for p in pairs
        if isinstance(p, Mapping) and p.get("param_name")
    }


def _parameter(
    component: str,
    field: str,
    name: str,
    kind: str,
    example: Any = None,
    required: bool = True,
    button_index: int | None = None,
) -> dict[str, Any]:
    shown = example if isinstance(example, str) else None
    return {
        "component": component,
        "field": field,
        "name": name,
        "kind": kind,
        "button_index": button_index,
        "example": shown,
        "required": required,
    }


def _header(component: Mapping[str, Any], out: dict[str, Any]) -> str | None:
    kind = str(component.get("format") or "TEXT").upper()
    example = as_object(component.get("example"))
    text = _str(component.get("text"))
    out["header"] = {"format": kind, "text": text, "example": None}
    if kind == "TEXT":
        names = names_in(text or "")
        if names:
            named = _named_examples(example, "header_text_named_params")
            shown = named.get(names[0]) or _first(example.get("header_text"))
            out["header"]["example"] = shown
            out["parameters"].append(_parameter("header", "header.text", names[0], "text", shown))
        return None
    if kind in MEDIA:
        shown = _first(example.get("header_handle"))
        out["header"]["example"] = shown
        out["parameters"].append(
            _parameter("header", "header.link", kind.lower(), kind.lower(), shown)
        )
        return None
    return f"a {kind} header"


def _body(component: Mapping[str, Any], out: dict[str, Any]) -> None:
    text = _str(component.get("text")) or ""
    out["body"] = text
    example = as_object(component.get("example"))
    named = _named_examples(example, "body_text_named_params")
    rows = example.get("body_text") or [[]]
    positional = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], list) else []
    for name in names_in(text):
        if name.isdigit():
            i = int(name) - 1
            shown = positional[i] if 0 <= i < len(positional) else None
            out["parameters"].append(_parameter("body", f"parameters.{i}", name, "text", shown))
        else:
            field = f"named_parameters.{name}"
            out["parameters"].append(_parameter("body", field, name, "text", named.get(name)))


def _buttons(component: Mapping[str, Any], out: dict[str, Any]) -> str | None:
    problem = None
    buttons = component.get("buttons")
    for index, button in enumerate(buttons if isinstance(buttons, list) else []):
        if not isinstance(button, Mapping):
            continue
        kind = str(button.get("type", "")).upper()
        url = _str(button.get("url"))
        text = _str(button.get("text")) or ""
        out["buttons"].append({"index": index, "type": kind, "text": text, "url": url})
        if kind == "QUICK_REPLY":
            # Optional: without one, the reply's payload is the button's text.
            field = f"buttons.{index}.payload"
            out["parameters"].append(
                _parameter("button", field, text, "payload", None, False, index)
            )
        elif kind == "URL" and url and names_in(url):
            shown = _first(button.get("example"))
            field = f"buttons.{index}.text"
            name = names_in(url)[0]
            out["parameters"].append(
                _parameter("button", field, name, "url_suffix", shown, True, index)
            )
        elif kind not in SENDABLE_BUTTONS:
            problem = problem or f"a {kind} button"
    return problem


def parse_template(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One template of Meta's list as ``TemplateInfo``: its texts and the parameters it needs."""
    out: dict[str, Any] = {
        "id": _str(raw.get("id")),
        "name": str(raw.get("name") or ""),
        "language": str(raw.get("language") or ""),
        "status": str(raw.get("status") or "UNKNOWN"),
        "category": _str(raw.get("category")),
        "header": None,
        "body": "",
        "footer": None,
        "buttons": [],
        "parameters": [],
    }
    problems = []
    components = raw.get("components")
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, Mapping):
            continue
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            problems.append(_header(component, out))
        elif kind == "BODY":
            _body(component, out)
        elif kind == "FOOTER":
            out["footer"] = _str(component.get("text"))
        elif kind == "BUTTONS":
            problems.append(_buttons(component, out))
        else:
            problems.append(f"a {kind} component")
    declared = str(raw.get("parameter_format") or "").lower()
    named = any(not p["name"].isdigit() for p in out["parameters"] if p["kind"] == "text")
    out["parameter_format"] = (
        declared if declared in ("positional", "named") else ("named" if named else "positional")
    )
    found = [p for p in problems if p]
    out["unsupported"] = (
        f"relance cannot fill {', '.join(found)}; it sends text and media headers, body "
        "parameters, quick-reply payloads and URL suffixes"
        if found
        else None
    )
    return out
