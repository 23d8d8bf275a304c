"""The recordings search as a form: bad input is named, never silently ignored."""

from __future__ import annotations

from django import forms

from core.forms import TimeRangeForm
from terminal.selectors import RecordingFilters


class RecordingSearchForm(TimeRangeForm):
    field_order = ["q", "person", "instance", "since", "until"]
    q = forms.CharField(
        required=False,
        max_length=200,
        strip=False,
        label="Text",
        widget=forms.TextInput(attrs={"placeholder": "typed or printed, e.g. sudo", "type": "search"}),
    )
    person = forms.CharField(
        required=False, max_length=150, label="Person", widget=forms.TextInput(attrs={"placeholder": "username"})
    )
    instance = forms.CharField(
        required=False,
        max_length=64,
        label="Instance",
        widget=forms.TextInput(attrs={"placeholder": "i-0abc… or name"}),
    )

    def clean_q(self) -> str:
        text = self.cleaned_data.get("q") or ""
        if text.strip() and len(text.strip()) < 2:
            raise forms.ValidationError("Search for at least 2 characters.")
        # Inner spaces count ("rm -rf"); only the outer ones are dropped.
        return text.strip()

    def to_filters(self) -> RecordingFilters:
        data = self.cleaned_data
        return RecordingFilters(
            text=data.get("q") or "",
            person=(data.get("person") or "").strip(),
            instance=(data.get("instance") or "").strip(),
            since=data.get("since"),
            until=data.get("until"),
        )
