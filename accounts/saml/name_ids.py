"""Which NameIDs name one person: ``name_id_key``, the form a SAML link (``SamlIdentity``) is found by.

An email-address or unspecified NameID is most often what the person typed at their identity
provider (an email, a UPN), which some IdPs echo back in the case it was typed (ADFS): it is
folded as email addresses are (``accounts.email_keys``: compatibility forms, case, invisible
characters), so that "Carol@Customer.test" finds the person "carol@customer.test" made, and a
deactivated person stays deactivated. A persistent NameID is an opaque value compared exactly
(SAML core 8.3.7): two that differ only in case may be two people. A transient NameID names one
session, not a person: it never links (``accounts.saml.services``).

The key is a SHA-256 digest, as ``User.email_key`` is, so that a folded and an exact NameID of
the same lower-case text give one key: an IdP that changes the Format it sends still finds them.
"""

from __future__ import annotations

import hashlib

from onelogin.saml2.constants import OneLogin_Saml2_Constants

from accounts.email_keys import email_key

TRANSIENT = OneLogin_Saml2_Constants.NAMEID_TRANSIENT
# "" is a NameID without a Format (and a link made before Passport kept it): unspecified.
FOLDED_FORMATS = frozenset(
    {"", OneLogin_Saml2_Constants.NAMEID_EMAIL_ADDRESS, OneLogin_Saml2_Constants.NAMEID_UNSPECIFIED}
)


def name_id_key(name_id: str, name_id_format: str) -> str:
    """The key two NameIDs of one person share (``SamlIdentity.name_id_key``); "" for none."""
    if name_id_format in FOLDED_FORMATS:
        return email_key(name_id)
    return hashlib.sha256(name_id.encode()).hexdigest() if name_id else ""
