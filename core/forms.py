"""Form pieces shared by several apps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms

from core.times import TimeOutOfRange, utc_time


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs=attrs, format="%Y-%m-%dT%H:%M")


class TimeRangeForm(forms.Form):
    """A From/To pair of date-time filters, shared by the Logbook and the recordings search.

    Each cleaned time is in UTC (``core.times.utc_time``): whatever reads it (a page, the API, an
    export, the recordings search) gives the database a time it takes. One PostgreSQL refuses (an
    offset past ±15:59) or that UTC moves out of years 1 to 9999 is the field's error.
    """

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

    def clean_since(self) -> datetime | None:
        return _in_utc(self.cleaned_data.get("since"))

    def clean_until(self) -> datetime | None:
        return _in_utc(self.cleaned_data.get("until"))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "'To' is before 'From'.")
        return cleaned


def _in_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return utc_time(value)
    except TimeOutOfRange as error:
        raise forms.ValidationError(str(error), code="out_of_range") from None
