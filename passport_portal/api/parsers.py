"""Request bodies: DRF's JSON parser, with JSON nested past Python's recursion limit a 400, and
so is a string or a key that is not Unicode text."""

from __future__ import annotations

import re
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# JSON may escape half of a surrogate pair on its own ("\ud800"); no UTF-8 text can hold one.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
NOT_TEXT = "JSON parse error - a string is not Unicode text (it holds a lone surrogate, \\ud800 to \\udfff)."


class BoundedJSONParser(JSONParser):
    """DRF answers a malformed body with a ParseError (400) but lets the ``RecursionError`` of a
    deeply nested one through, a 500 for a few kilobytes of ``[`` from anyone, signed in or not.

    It also hands views strings with a lone surrogate, which nothing can write out as UTF-8: a
    serializer's error quoting the input (a ChoiceField's "... is not a valid choice"), the JSON
    renderer, the database, the Logbook. Such a body is refused here, so no view ever sees one.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
        if not _is_text_throughout(data):
            raise ParseError(NOT_TEXT)
        return data


def _is_text_throughout(data: Any) -> bool:
    """Whether every string and key in the parsed document is Unicode text. Iterative: the
    document may be nested nearly as deep as the recursion limit."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return False
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True
