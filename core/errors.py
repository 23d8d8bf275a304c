from __future__ import annotations


class RequestRuleError(Exception):
    """A rule of the access-request lifecycle was broken.

    ``errors`` maps a field name (or ``"__all__"``) to the messages for it, so forms and the
    API can show each message beside the input it concerns.
    """

    def __init__(self, errors: dict[str, list[str]] | str, *, code: str = "invalid") -> None:
        self.errors = {"__all__": [errors]} if isinstance(errors, str) else errors
        self.code = code
        super().__init__("; ".join(m for msgs in self.errors.values() for m in msgs))


class NotAllowed(RequestRuleError):
    """The person may see the object but may not do this to it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="forbidden")
