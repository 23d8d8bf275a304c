"""Which email addresses name one person: ``email_key``, the canonical form ``User.email_key`` stores.

Two addresses are one person when they read alike (compatibility forms, case, invisible format
characters, spaces around) or when mail to them reaches one mailbox. For the second, only what the
mail's own way normalizes counts, never a provider's rules (dots, +tags): a quoted local part names
the mailbox its content does (RFC 5321 4.1.2; Django's mail sends ``"deniz"@x`` as ``deniz@x``), and
Django writes the domain with Python's idna codec (IDNA 2003), whose nameprep maps RFC 3454 table B.1
to nothing (some of those are marks, not format characters: U+034F, U+180B-U+180D, U+FE00-U+FE0F),
whose label separators include U+3002, and whose A-labels (``xn--...``) are the Unicode forms' own.
"""

from __future__ import annotations

import hashlib
import re
import stringprep
import unicodedata

# RFC 3490 3.1: what separates the labels of a domain, as Python's idna codec splits them.
_LABEL_SEPARATORS = re.compile("[\u002e\u3002\uff0e\uff61]")
# RFC 5322 3.2.4: a quoted string, its quoted pairs (a backslash and the character it quotes) inside.
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def email_key(email: str) -> str:
    """The one form under which two email addresses name one person (``User.email_key``); "" for none.

    Compared in Python and in the database alike (``accounts.permissions.same_person``), so it is
    computed once, here, and stored: PostgreSQL's lower() and Python's disagree on some letters
    (U+0130), and an identity provider's email is stored as it was sent while Django lowers a local
    user's domain. Compatibility forms are folded (fullwidth letters, ligatures: NFKC), case is
    folded fully (casefold: "STRASSE" and "straße" alike), invisible format characters (a soft
    hyphen, a zero-width joiner) are dropped and spaces around trimmed; then the address is taken as
    mail to it is sent (the module's docstring). Folding may make two addresses one that a mail
    server tells apart; that is the safe side: a person wrongly taken for another is kept from
    deciding their requests, while two forms of one address not taken as one would let a person
    approve their own access. Stored as a SHA-256 digest: one short indexed value, whatever an
    identity provider sends (folding can make an address many times longer)."""
    text = unicodedata.normalize("NFKC", email or "")
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    text = unicodedata.normalize("NFKC", text.casefold()).strip()
    if not text:
        return ""
    local_part, at, domain = text.rpartition("@")
    if at:
        text = f"{_mail_local_part(local_part)}@{_mail_domain(domain)}"
    return hashlib.sha256(text.encode()).hexdigest()


def _mail_local_part(local_part: str) -> str:
    """A quoted local part as its content (the quoted pairs undone); any other as it is."""
    quoted = _QUOTED.fullmatch(local_part)
    return _QUOTED_PAIR.sub(r"\1", quoted.group(1)) if quoted else local_part


def _mail_domain(domain: str) -> str:
    """The domain as mail to it is addressed (IDNA's ASCII form, case folded); one the codec refuses
    (no mail goes there) with what it would have mapped all the same: table B.1 dropped, separators dots."""
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        kept = "".join(char for char in domain if not stringprep.in_table_b1(char))
        return _LABEL_SEPARATORS.sub(".", kept)
