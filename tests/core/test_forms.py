"""The From/To pair every time-filtered page shares: one rule, one message, wherever it is used."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


# Times Python reads that the database cannot take: an offset past PostgreSQL's ±15:59 (DataError,
# "time zone displacement out of range"), a calendar edge that UTC moves out of years 1 to 9999
# (OverflowError in astimezone). Each is the field's own error, not a 500 further on.
OFFSET_REFUSED = "Enter a time zone offset between -15:59 and +15:59."
YEARS_REFUSED = "Enter a time between the years 1 and 9999 in UTC."
TIMES_REFUSED = [
    pytest.param("2026-06-01T12:00:00+20:00", OFFSET_REFUSED, id="offset-east"),
    pytest.param("2026-06-01T12:00:00-23:59", OFFSET_REFUSED, id="offset-west"),
    pytest.param("2026-06-01T12:00:00+16:00", OFFSET_REFUSED, id="offset-just-past"),
    pytest.param("9999-12-31T23:59:00-05:00", YEARS_REFUSED, id="after-year-9999"),
    pytest.param("0001-01-01T00:00:00+05:00", YEARS_REFUSED, id="before-year-1"),
]


@pytest.mark.parametrize("form_class", [TimeRangeForm, LogbookFilterForm, RecordingSearchForm])
@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize(("value", "message"), TIMES_REFUSED)
def test_a_time_the_database_cannot_take_is_refused_alike_everywhere(
    form_class: type[forms.Form], name: str, value: str, message: str
) -> None:
    form = form_class({name: value})
    assert not form.is_valid()
    assert form.errors == {name: [message]}


@pytest.mark.parametrize(
    ("value", "utc"),
    [
        ("2026-06-01T12:00:00+15:59", datetime(2026, 5, 31, 20, 1, tzinfo=UTC)),
        ("2026-06-01T12:00:00-15:59", datetime(2026, 6, 2, 3, 59, tzinfo=UTC)),
        ("9999-12-31T23:59:00+05:00", datetime(9999, 12, 31, 18, 59, tzinfo=UTC)),
        ("0001-01-01T00:00:00-05:00", datetime(1, 1, 1, 5, 0, tzinfo=UTC)),
        ("9999-12-31T23:59", datetime(9999, 12, 31, 23, 59, tzinfo=UTC)),
    ],
)
def test_a_time_is_given_on_in_utc(value: str, utc: datetime) -> None:
    form = TimeRangeForm({"since": value, "until": value})
    assert form.is_valid(), form.errors
    for name in ("since", "until"):
        assert form.cleaned_data[name] == utc
        assert form.cleaned_data[name].utcoffset() == timedelta(0)
