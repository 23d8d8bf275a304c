"""Driving the real Django admin as a browser would: read the form a page shows, post it back.

`form_data` collects what a browser would submit from the admin's change form (its inputs,
checked boxes and radios, selected options, textareas), so a test changes only the fields it
names and everything else goes back as the page showed it.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from django.test import Client

from accounts.models import User
from audit.models import LogbookEntry
from tests.factories import make_user

SKIPPED_INPUTS = {"submit", "button", "file", "image", "reset"}


class _AdminFormParser(HTMLParser):
    """The fields of the admin's model form (<form id="<model>_form">), as a browser would post them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.in_form = False
        self.pairs: list[tuple[str, str]] = []
        self._select: str | None = None
        self._textarea: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag == "form" and attributes.get("id", "").endswith("_form"):
            self.in_form = True
        if not self.in_form:
            return
        name = attributes.get("name")
        if tag == "input" and name and "disabled" not in attributes:
            kind = attributes.get("type", "text").lower()
            if kind in SKIPPED_INPUTS or (kind in ("checkbox", "radio") and "checked" not in attributes):
                return
            self.pairs.append((name, attributes.get("value", "on" if kind in ("checkbox", "radio") else "")))
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and "selected" in attributes:
            self.pairs.append((self._select, attributes.get("value", "")))
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_form = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            # A browser drops the one newline that follows <textarea>.
            self.pairs.append((self._textarea, "".join(self._text).removeprefix("\n")))
            self._textarea = None


def form_data(client: Client, url: str, **changes: Any) -> dict[str, Any]:
    """The form at url as shown, with `changes` applied (a list for several values, None to leave out)."""
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    parser = _AdminFormParser()
    parser.feed(response.content.decode())
    assert parser.pairs, f"no admin form on {url}"
    data: dict[str, Any] = {}
    for name, value in parser.pairs:
        # Inline "__prefix__" rows are the template the page's script copies; posted, and ignored, like a browser's.
        data.setdefault(name, []).append(value)
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value if isinstance(value, list) else [value]
    return data


def add_inline_row(data: dict[str, Any], prefix: str, **values: str) -> None:
    """What "Add another" does: copy the inline's template row as the next form, then fill it in."""
    index = int(data[f"{prefix}-TOTAL_FORMS"][0])
    template = f"{prefix}-__prefix__-"
    for name, template_values in list(data.items()):
        if name.startswith(template):
            data[f"{prefix}-{index}-{name.removeprefix(template)}"] = list(template_values)
    for name, value in values.items():
        data[f"{prefix}-{index}-{name}"] = [value]
    data[f"{prefix}-TOTAL_FORMS"] = [str(index + 1)]


def superuser_client() -> tuple[Client, User]:
    root = make_user("root", is_superuser=True, is_staff=True)
    client = Client()
    client.force_login(root)
    return client, root


def admin_entries(action: str | None = None, model: str | None = None) -> list[LogbookEntry]:
    entries = LogbookEntry.objects.filter(action__startswith="admin.").order_by("id")
    if action:
        entries = entries.filter(action=action)
    if model:
        entries = entries.filter(detail__model=model)
    return list(entries)


def only_entry(action: str, model: str) -> LogbookEntry:
    entries = admin_entries(action, model)
    assert len(entries) == 1, [(entry.action, entry.detail) for entry in admin_entries()]
    return entries[0]


def post_ok(client: Client, url: str, data: dict[str, Any]) -> None:
    response = client.post(url, data)
    assert response.status_code == 302, _errors(response.content.decode())


def _errors(page: str) -> str:
    """The form's error messages, with the field each belongs to."""
    found = re.findall(r'<ul class="errorlist[^"]*"(?: id="([^"]*)")?>(.*?)</ul>', page, re.DOTALL)
    return (
        "; ".join(f"{field or 'form'}: {re.sub(r'<[^>]+>', ' ', text).strip()}" for field, text in found) or page[:2000]
    )
