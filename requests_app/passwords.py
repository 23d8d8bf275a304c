"""Windows passwords for short-lived users: generated here, stored only sealed, wiped at the end."""

from __future__ import annotations

import secrets
import string

from core.sealing import seal, unseal
from requests_app.models import Grant

PURPOSE = "windows-password"
_SYMBOLS = "!#%+-=?@^_"
_ALPHABET = string.ascii_letters + string.digits + _SYMBOLS


def generate_password(length: int = 24) -> str:
    """A password meeting Windows' complexity rules (all four character classes)."""
    while True:
        password = "".join(secrets.choice(_ALPHABET) for _ in range(length))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
            and any(c in _SYMBOLS for c in password)
        ):
            return password


def _associated_data(grant: Grant) -> bytes:
    # Bound to the grant: a sealed password copied onto another grant does not open.
    return f"grant:{grant.uid}".encode()


def seal_password(grant: Grant, password: str) -> bytes:
    return seal(password, purpose=PURPOSE, associated_data=_associated_data(grant))


def unseal_password(grant: Grant) -> str | None:
    if not grant.password_sealed:
        return None
    return unseal(bytes(grant.password_sealed), purpose=PURPOSE, associated_data=_associated_data(grant))
