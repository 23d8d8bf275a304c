"""Form pieces shared by several apps."""

from __future__ import annotations

from typing import Any

from django import forms


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs=attrs, format="%Y-%m-%dT%H:%M")


class TimeRangeForm(forms.Form):
    """A From/To pair of date-time filters, shared by the Logbook and the recordings search."""

    since = forms.DateTimeField(
        required=False,
        label="From",
        error_messages={"invalid": "Enter a date and time, e.g. 2026-11-24T09:30."},
        widget=DateTimeLocalInput(),
    )
    until = forms.DateTimeField(
        required=False,
        label="To",
        error_messages={"invalid": "Enter a date and time, e.g. 2026-11-24T17:00."},
        widget=DateTimeLocalInput(),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "'To' is before 'From'.")
        return cleaned
