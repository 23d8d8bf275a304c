"""Filters every template has (settings TEMPLATES builtins): text from people, clouds and hosts as
a reviewer must read it."""

from __future__ import annotations

from django import template

from core.text import visible as visible_text

register = template.Library()


@register.filter
def visible(value: object) -> str:
    """The text with every invisible or reordering character as an escape (``core.text.visible``):
    an instance's Name tag with a bidi override cannot reorder what follows it on a page."""
    return visible_text(value)


@register.filter
def visible_lines(value: object) -> str:
    """As ``visible``, keeping newlines and tabs: for output shown in a ``<pre>``."""
    return visible_text(value, keep="\n\t")
