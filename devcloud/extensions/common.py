"""Small pieces the SSM and IAM handlers share."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any, TypeVar

from moto.core.exceptions import ServiceException
from moto.core.responses import BaseResponse

from devcloud import errors

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


def json_body(self: BaseResponse) -> dict[str, Any]:
    """A JSON protocol request's body (SSM's), refused unless it is an object."""
    parsed = json.loads(self.body or "{}")
    if not isinstance(parsed, dict):
        raise errors.SsmValidation("The request body must be a JSON object.")
    return parsed
