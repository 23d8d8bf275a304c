"""Small pieces the SSM and IAM handlers share."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import TypeVar

from moto.core.exceptions import ServiceException

Item = TypeVar("Item")

_PAGE_MARK = "devcloud:"


def paginate(
    items: list[Item], *, limit: int, token: str | None, error: type[ServiceException]
) -> tuple[list[Item], str | None]:
    """One page of ``items`` and the token for the next, or None on the last page.

    Tokens are opaque offsets: listings are rebuilt on every call, like AWS's eventually
    consistent ones, so an item may shift between pages when the set changes meanwhile.
    """
    start = 0
    if token:
        try:
            decoded = base64.urlsafe_b64decode(token.encode()).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if not decoded.startswith(_PAGE_MARK) or not decoded[len(_PAGE_MARK) :].isdigit():
            raise error(f"The token {token} is not valid.")
        start = int(decoded[len(_PAGE_MARK) :])
    end = start + max(limit, 1)
    following = base64.urlsafe_b64encode(f"{_PAGE_MARK}{end}".encode()).decode() if end < len(items) else None
    return items[start:end], following


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time from a filter value, UTC when it names no zone (ValueError if bad)."""
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
