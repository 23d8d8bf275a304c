"""Second factors' secrets sealed at rest.

allauth stores a TOTP secret and the seed of the recovery codes in ``Authenticator.data``
and hands them to the MFA adapter's ``encrypt`` first, which by default returns them as
they are: anyone who reads the table (a backup, a site admin's page) could make a person's
codes. Passport seals them under their own key (``core.sealing``, purpose "mfa").
Values stored before sealing are read as they are; migration accounts 0010 seals them.
"""

from __future__ import annotations

import base64

from allauth.mfa.adapter import DefaultMFAAdapter

from core.sealing import seal, unseal

SEALED_PREFIX = "passport-sealed:v1:"
_PURPOSE = "mfa"
_ASSOCIATED_DATA = b"allauth mfa authenticator secret"


def seal_mfa_secret(text: str) -> str:
    blob = seal(text, purpose=_PURPOSE, associated_data=_ASSOCIATED_DATA)
    return SEALED_PREFIX + base64.b64encode(blob).decode()


def open_mfa_secret(stored: str) -> str:
    if not stored.startswith(SEALED_PREFIX):
        return stored  # written before sealing (the migration seals every such value)
    blob = base64.b64decode(stored[len(SEALED_PREFIX) :])
    return unseal(blob, purpose=_PURPOSE, associated_data=_ASSOCIATED_DATA)


class PassportMFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        return seal_mfa_secret(text)

    def decrypt(self, encrypted_text: str) -> str:
        return open_mfa_secret(encrypted_text)
