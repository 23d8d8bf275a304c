"""The From/To pair every time-filtered page shares: one rule, one message, wherever it is used."""

from __future__ import annotations

import pytest
from django import forms

from audit.forms import LogbookFilterForm
from core.forms import TimeRangeForm
from terminal.forms import RecordingSearchForm


@pytest.mark.parametrize("form_class", [TimeRangeForm, LogbookFilterForm, RecordingSearchForm])
def test_to_before_from_is_refused_alike_everywhere(form_class: type[forms.Form]) -> None:
    form = form_class({"since": "2026-11-25T10:00", "until": "2026-11-24T10:00"})
    assert not form.is_valid()
    assert form.errors == {"until": ["'To' is before 'From'."]}


@pytest.mark.parametrize("form_class", [TimeRangeForm, LogbookFilterForm, RecordingSearchForm])
def test_a_range_in_order_or_open_is_accepted(form_class: type[forms.Form]) -> None:
    for data in (
        {"since": "2026-11-24T10:00", "until": "2026-11-25T10:00"},
        {"since": "2026-11-24T10:00", "until": "2026-11-24T10:00"},
        {"since": "2026-11-24T10:00"},
        {"until": "2026-11-24T10:00"},
        {},
    ):
        form = form_class(data)
        assert form.is_valid(), (data, form.errors)
