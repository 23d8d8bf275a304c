"""Filters for the recordings pages: ``visible`` and ``visible_lines`` are every template's
(core/templatetags/text.py); this library stays for the templates that load it."""

from __future__ import annotations

from django import template

register = template.Library()
