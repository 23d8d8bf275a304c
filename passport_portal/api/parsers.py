"""Request bodies: DRF's JSON parser, with JSON nested past Python's recursion limit a 400."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class BoundedJSONParser(JSONParser):
    """DRF answers a malformed body with a ParseError (400) but lets the ``RecursionError`` of a
    deeply nested one through, a 500 for a few kilobytes of ``[`` from anyone, signed in or not."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
