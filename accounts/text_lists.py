"""A JSON list in the model, edited in the admin as text: the shared part of the port and
destination boxes (``accounts.ports``, ``accounts.destinations``)."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError


class TextListFormField(forms.CharField):
    """Items split by ``separator``, each read (and checked) by ``item``, each kept once, then
    ``finish``; shown joined by ``joiner``."""

    separator = re.compile(r"[\s,]+")
    joiner = ", "

    def __init__(self, **kwargs: Any) -> None:
        # The JSONField's formfield() passes its JSON encoder/decoder: this field does its own parsing.
        kwargs.pop("encoder", None)
        kwargs.pop("decoder", None)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def item(self, token: str) -> Any:
        raise NotImplementedError

    def finish(self, items: list[Any]) -> list[Any]:
        return items

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return self.joiner.join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[Any]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        items: list[Any] = []
        for token in self.separator.split(text.strip()):
            if not token:
                continue
            item = self.item(token)
            if item not in items:
                items.append(item)
        return self.finish(items)

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.to_python(initial or []) != self.to_python(data)
        except ValidationError:
            return True
