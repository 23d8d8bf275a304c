"""Filters for the recordings pages."""

from __future__ import annotations

import unicodedata

from django import template

register = template.Library()

# Control, format (bidi overrides, zero-width), separator and surrogate characters: shown as escapes,
# so a command line cannot hide or reorder what the reviewer reads.
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}


@register.filter
def visible(value: object) -> str:
    """The text with every invisible or reordering character as a ``\\xNN``/``\\uNNNN`` escape (HTML escaping
    is still the template's)."""
    text = str(value)
    return "".join(
        char
        if unicodedata.category(char) not in _HIDDEN_CATEGORIES
        else (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
        for char in text
    )
