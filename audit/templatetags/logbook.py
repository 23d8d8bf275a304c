"""Rendering Logbook entries compactly: detail as key/value chips, actions as badges."""

from __future__ import annotations

import json
import re
from typing import Any

from django import template

from core.text import visible

register = template.Library()

DETAIL_CHIPS = 4
VALUE_CHARS = 60
# The last word of an action picks its colour: request.approved -> badge-approved.
_ACTION_TONES = {
    "approved": "approved",
    "active": "active",
    "ready": "ready",
    "completed": "completed",
    "created": "pending",
    "requested": "pending",
    "pending": "pending",
    "provisioning": "provisioning",
    "removing": "removing",
    "removed": "removed",
    "cancelled": "cancelled",
    "expired": "expired",
    "extended": "provisioning",
    "failed": "failed",
    "rejected": "rejected",
    "denied": "rejected",
    "refused": "rejected",
    "retry": "pending",
    "completing": "completing",
    "expiring": "expired",
    "synced": "ready",
}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"
    return visible(text)  # a file name or command from a host: what is there, escapes included


@register.filter
def detail_chips(detail: Any) -> list[tuple[str, str]]:
    """The first few detail fields as (key, short value) pairs."""
    if not isinstance(detail, dict):
        return [("value", _short(detail))] if detail not in (None, "") else []
    return [(str(key), _short(value)) for key, value in list(detail.items())[:DETAIL_CHIPS]]


@register.filter
def detail_is_long(detail: Any) -> bool:
    """True when the chips leave something out, so the full JSON is worth a disclosure."""
    if not isinstance(detail, dict):
        return False
    return len(detail) > DETAIL_CHIPS or any(_short(value) != visible(_plain(value)) for value in detail.values())


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


@register.filter
def pretty_json(detail: Any) -> str:
    text = json.dumps(detail, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    # JSON strings hold no raw newline, so every newline here is the layout's; the rest made visible.
    return "\n".join(visible(line) for line in text.split("\n"))


@register.filter
def action_tone(action: str) -> str:
    last = re.split(r"[._:/ -]", action or "")[-1].lower()
    tone = _ACTION_TONES.get(last)
    return f"badge-{tone}" if tone else ""


@register.filter
def lookup(mapping: dict[str, Any] | None, key: Any) -> Any:
    return (mapping or {}).get(key, "")
