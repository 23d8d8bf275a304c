"""Which hosts beyond the instance ``ssh -L`` may reach through it, per account
(``AwsAccount.forward_destinations``): the model's validator and the admin's text box.

The spelling and its rules are ``core.destinations``'. A request keeps the list as it was when it
was made (``AccessRequest.forward_destinations``); the recording proxy (terminal.proxy.server)
and the grant's authorized_keys lines (fleet.ssh_keys) reach only those still on the account.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from accounts.text_lists import TextListFormField
from core.destinations import (
    MAX_FORWARD_DESTINATIONS,
    InvalidDestination,
    canonical_destination,
    is_canonical_destination,
)


def validate_forward_destinations(value: object) -> None:
    """Model validator: a JSON list of distinct destinations, each in its one spelling."""
    if not isinstance(value, list):
        raise ValidationError("Enter a list of host:port destinations.", code="invalid")
    bad = [item for item in value if not is_canonical_destination(item)]
    if bad:
        shown = ", ".join(repr(item)[:80] for item in bad[:5])
        raise ValidationError(
            "Destinations are host:port, the host lowercase (an IPv6 address in brackets); not %(bad)s.",
            code="invalid_destination",
            params={"bad": shown},
        )
    if len(set(value)) != len(value):
        raise ValidationError("Each destination may be listed once.", code="duplicate_destination")
    if len(value) > MAX_FORWARD_DESTINATIONS:
        raise ValidationError(
            "At most %(limit)s destinations.", code="too_many_destinations", params={"limit": MAX_FORWARD_DESTINATIONS}
        )


class DestinationListFormField(TextListFormField):
    """``mydb.example.internal:5432`` one per line in a text box, a list of strings in the model."""

    # One per line; a comma between them is taken as a line break too (and so never reaches an entry).
    separator = re.compile(r"[\s,]+")
    joiner = "\n"
    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})
    default_error_messages = {
        "invalid_destination": "%(problem)s. Enter one host:port per line, "
        "e.g. mydb.abc123.eu-west-1.rds.amazonaws.com:3306.",
        "too_many": "At most %(limit)s destinations.",
    }

    def item(self, token: str) -> str:
        try:
            return str(canonical_destination(token))
        except InvalidDestination as problem:
            raise ValidationError(
                self.error_messages["invalid_destination"],
                code="invalid_destination",
                params={"problem": str(problem)[:200]},
            ) from None

    def finish(self, items: list[Any]) -> list[Any]:
        if len(items) > MAX_FORWARD_DESTINATIONS:
            raise ValidationError(
                self.error_messages["too_many"], code="too_many", params={"limit": MAX_FORWARD_DESTINATIONS}
            )
        return items
