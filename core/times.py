"""A time a person or a client wrote, as the database is given it: in UTC, years 1 to 9999.

Python reads offsets up to a day and any year 1 to 9999 in the offset's own clock; PostgreSQL refuses
offsets past ±15:59 ("time zone displacement out of range", a DataError) and ``astimezone(UTC)``
overflows on a time that UTC moves out of those years (9999-12-31T23:59-05:00). Every time read from
input goes to a query, a filter echoed back or an export only as ``utc_time`` gives it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

# The widest offset PostgreSQL takes (real time zones stay within ±14:00).
MAX_OFFSET = timedelta(hours=15, minutes=59)
OFFSET_MESSAGE = "Enter a time zone offset between -15:59 and +15:59."
YEARS_MESSAGE = "Enter a time between the years 1 and 9999 in UTC."


class TimeOutOfRange(ValueError):
    """The time cannot be stored or compared by the database; ``str()`` is the message to show."""


def utc_time(value: datetime, *, offset_limit: bool = True) -> datetime:
    """``value`` in UTC; a naive time is read in the current time zone, as Django does.

    TimeOutOfRange when UTC moves it out of years 1 to 9999, or (``offset_limit``) when its offset is
    past what PostgreSQL takes: a person's filter is refused, since no clock shows such an offset. A
    cursor (``core.api``) passes ``offset_limit=False``: only its UTC form reaches the query.
    """
    if timezone.is_naive(value):
        value = timezone.make_aware(value)
    offset = value.utcoffset()
    if offset_limit and offset is not None and abs(offset) > MAX_OFFSET:
        raise TimeOutOfRange(OFFSET_MESSAGE)
    try:
        return value.astimezone(UTC)  # a datetime holds only years 1 to 9999: past them, OverflowError
    except OverflowError:
        raise TimeOutOfRange(YEARS_MESSAGE) from None
