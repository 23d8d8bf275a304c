"""Filters for the recordings pages."""

from __future__ import annotations

from django import template

from core.text import visible as visible_text

register = template.Library()


@register.filter
def visible(value: object) -> str:
    """The text with every invisible or reordering character as an escape (``core.text.visible``)."""
    return visible_text(value)


@register.filter
def visible_lines(value: object) -> str:
    """As ``visible``, keeping newlines and tabs: for output shown in a ``<pre>``."""
    return visible_text(value, keep="\n\t")
