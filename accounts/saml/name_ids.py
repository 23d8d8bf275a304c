"""Which NameIDs name one person: ``name_id_key``, the form a SAML link (``SamlIdentity``) is found by.

Three kinds of link, whose keys cannot meet (each has its own prefix):

- ``folded:`` an email-address or unspecified NameID (a NameID sent without a Format is unspecified,
  SAML core 8.3.1) is most often what the person typed at their identity provider (an email, a UPN),
  which some IdPs echo back in the case it was typed (ADFS). It is folded only as far as one mailbox
  is one: ASCII letters lower-cased (no mail system tells "Carol@" from "carol@" in practice) and the
  domain in its IDNA form (IDNA 2008 with UTS 46, as resolvers look it up). Nothing more: "straße@"
  and "strasse@", or a fullwidth letter, are other addresses a mail server may deliver elsewhere,
  so they never find each other's person. Reading alike (``name_id_lookalike``, the folding of
  ``accounts.email_keys``) only ever refuses a new link (``accounts.saml.services``).
- ``exact:`` any other Format (persistent, ...) is an opaque value compared exactly (SAML core
  8.3.7): two that differ only in case are two people.
- ``legacy:`` a link made before Passport kept the Format (Format ""; migration 0015, and links a
  site admin adds) is found only by its exact NameID, as all links were before; its key only keeps
  it unique. Its first sign-in records the Format and it becomes a link of that kind.

A transient NameID names one session, not a person: it never links (``accounts.saml.services``).
The digests are SHA-256 (as ``User.email_key``): one short indexed value whatever the NameID's length.
"""

from __future__ import annotations

import contextlib
import hashlib

import idna
from onelogin.saml2.constants import OneLogin_Saml2_Constants

from accounts.email_keys import email_key

TRANSIENT = OneLogin_Saml2_Constants.NAMEID_TRANSIENT
UNSPECIFIED = OneLogin_Saml2_Constants.NAMEID_UNSPECIFIED
EMAIL_ADDRESS = OneLogin_Saml2_Constants.NAMEID_EMAIL_ADDRESS
PERSISTENT = OneLogin_Saml2_Constants.NAMEID_PERSISTENT
FOLDED_FORMATS = frozenset({EMAIL_ADDRESS, UNSPECIFIED})
# The Format of a link made before Passport kept it.
LEGACY_FORMAT = ""
# SamlIdentity's columns: longer is refused at sign-in (accounts.saml.services), never truncated.
NAME_ID_MAX_LENGTH = 500
NAME_ID_FORMAT_MAX_LENGTH = 256
# "folded:" or "legacy:" and 64 hex digits.
KEY_MAX_LENGTH = 71

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def name_id_key(name_id: str, name_id_format: str) -> str:
    """The key a link is found by (``SamlIdentity.name_id_key``); "" for no NameID."""
    if not name_id:
        return ""
    if name_id_format == LEGACY_FORMAT:
        return "legacy:" + _digest(name_id)
    if name_id_format in FOLDED_FORMATS:
        return "folded:" + _digest(name_id_fold(name_id))
    return "exact:" + _digest(name_id)


def name_id_fold(name_id: str) -> str:
    """An email-like NameID as one mailbox: ASCII letters lower-cased, the domain in its IDNA form."""
    text = name_id.translate(_ASCII_LOWER)
    local_part, at, domain = text.rpartition("@")
    if not at or domain.isascii():
        return text
    with contextlib.suppress(idna.IDNAError, UnicodeError):  # one no mail goes to is compared as sent
        domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    return f"{local_part}@{domain}"


def name_id_lookalike(name_id: str) -> str:
    """What the NameID reads as (``accounts.email_keys``: compatibility forms, full case folding,
    invisible characters): never finds a person, only refuses a new link beside one that reads alike."""
    return email_key(name_id)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
