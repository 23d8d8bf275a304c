"""Which remote ports a Session Manager session may reach on an account's instances.

SSH (22) and Remote Desktop (3389) are open on every account; an admin adds others per account
(``AwsAccount.extra_forward_ports``). The rule itself is enforced in
``requests_app.services.grant_start_session``; this module only holds the values and their
validation, shared by the model, the admin's form and the service.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError

from accounts.text_lists import TextListFormField

DEFAULT_FORWARD_PORTS: tuple[int, ...] = (22, 3389)
MIN_PORT, MAX_PORT = 1, 65535
# More than this is not a short list of services any more: ask for a different design.
MAX_EXTRA_FORWARD_PORTS = 50


def is_port(value: object) -> bool:
    # bool is an int subclass: True must not pass for port 1.
    return isinstance(value, int) and not isinstance(value, bool) and MIN_PORT <= value <= MAX_PORT


def validate_forward_ports(value: object) -> None:
    """Model validator: a JSON list of whole numbers 1-65535, each once."""
    if not isinstance(value, list):
        raise ValidationError("Enter a list of port numbers.", code="invalid")
    bad = [item for item in value if not is_port(item)]
    if bad:
        shown = ", ".join(repr(item) for item in bad[:5])
        raise ValidationError(
            "Ports are whole numbers from %(min)s to %(max)s; not %(bad)s.",
            code="invalid_port",
            params={"min": MIN_PORT, "max": MAX_PORT, "bad": shown},
        )
    if len(set(value)) != len(value):
        raise ValidationError("Each port may be listed once.", code="duplicate_port")
    if len(value) > MAX_EXTRA_FORWARD_PORTS:
        raise ValidationError(
            "At most %(limit)s extra ports.", code="too_many_ports", params={"limit": MAX_EXTRA_FORWARD_PORTS}
        )


def allowed_forward_ports(extra: Iterable[object]) -> tuple[int, ...]:
    """The defaults and the account's extra ports, sorted. A stored value that is not a port is ignored."""
    ports = {*DEFAULT_FORWARD_PORTS}
    for port in extra:
        if is_port(port):
            assert isinstance(port, int)  # is_port said so; for the type checker
            ports.add(port)
    return tuple(sorted(ports))


class PortListFormField(TextListFormField):
    """``5432, 8443`` in a text box, a list of ints in the model."""

    separator = re.compile(r"[\s,;]+")
    default_error_messages = {
        "not_a_number": "“%(value)s” is not a port number: enter whole numbers separated by commas, e.g. 5432, 8443.",
        "out_of_range": "Port %(value)s is out of range: ports are %(min)s to %(max)s.",
    }

    def item(self, token: str) -> int:
        if not token.isascii() or not token.isdigit():
            raise ValidationError(
                self.error_messages["not_a_number"], code="not_a_number", params={"value": token[:20]}
            )
        port = int(token)
        if not MIN_PORT <= port <= MAX_PORT:
            raise ValidationError(
                self.error_messages["out_of_range"],
                code="out_of_range",
                params={"value": token[:20], "min": MIN_PORT, "max": MAX_PORT},
            )
        return port

    def finish(self, items: list[Any]) -> list[Any]:
        return sorted(items)
