"""What a person's record takes from an assertion's attributes: names, email, a username.

Every value is the identity provider's word about a person anyone may have typed: names lose the
characters that hide or reorder text, an email that is not one address is dropped, and a username
is made of plain ASCII lower-case letters, digits and ``_.@+-``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import unicodedata
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from accounts.models import User
from core.text import unsafe_characters, without_unsafe_characters

logger = logging.getLogger(__name__)

_USERNAME_UNSAFE = re.compile(r"[^a-z0-9_.@+-]+")


def username_fold(wanted: str) -> str:
    """The username ``wanted`` stands for, in plain ASCII: case and compatibility forms folded (as
    Django folds a local username with NFKC, and further), accents dropped, and anything but
    ``[a-z0-9_.@+-]`` replaced by "-". A username is shown beside the names of others who may
    approve or watch: "sam" in fullwidth letters, or with a long s (U+017F), must not sit beside
    "sam" as another person, so it becomes "sam" and then a free form of it."""
    return _USERNAME_UNSAFE.sub("-", _username_plain(wanted))[:120].strip("-.")


def _username_plain(wanted: str) -> str:
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", wanted).casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _readable_username(wanted: str) -> str:
    """``wanted`` folded, or "" when the fold left too little of it to tell people apart: fewer than
    three characters once some were replaced ("张伟" leaves nothing; "jo" stays "jo")."""
    folded = username_fold(wanted)
    if len(folded) < 3 and _USERNAME_UNSAFE.search(_username_plain(wanted)):
        return ""
    return folded


def new_username(attributes: dict[str, Any], *, name_id: str, address: str, store: str) -> str:
    """A new person's username: the IdP's username attribute, else the NameID's local part, folded
    to ASCII. A name with too little ASCII in it (Chinese, Cyrillic) takes the local part of the
    person's email or NameID, else "user-" and a digest of the store and NameID: readable, the same
    at every try, and still made free by ``free_username``."""
    candidates = [
        str(attributes.get("username") or name_id.split("@")[0]),
        address.rpartition("@")[0],
        name_id.rpartition("@")[0],
    ]
    for wanted in candidates:
        if base := _readable_username(wanted):
            return free_username(base, store)
    digest = hashlib.sha256(f"{store}\n{name_id}".encode()).hexdigest()[:8]
    return free_username(f"user-{digest}", store)


def free_username(base: str, store: str) -> str:
    """A username nobody has, in any case, near ``base`` (plain ASCII): itself, then with the store's name."""
    candidates = [base, f"{base}-{store}"] + [f"{base}-{store}-{n}" for n in range(2, 50)]
    for candidate in candidates:
        if not User.objects.filter(username__iexact=candidate).exists():
            return candidate
    return f"{base}-{secrets.token_hex(4)}"


def names(attributes: dict[str, Any]) -> tuple[str, str]:
    first, last = str(attributes.get("first_name") or ""), str(attributes.get("last_name") or "")
    if not (first or last) and attributes.get("display_name"):
        first, _, last = str(attributes["display_name"]).partition(" ")
    # Shown to approvers in pages, mails and the CLI: no characters that hide or reorder text, and
    # one line (a newline in a name would start a line of its own in a mail).
    return _one_line(first), _one_line(last)


def _one_line(name: str) -> str:
    return " ".join(without_unsafe_characters(name).split())[:150].strip()


def email(attributes: dict[str, Any]) -> str:
    """The IdP's address for the person, or "" when it is not one address (a list, a newline
    with a header after it): it goes into mail headers, where one bad address stops the mail."""
    value = str(attributes.get("email") or "").strip()
    if not value:
        return ""
    try:
        validate_email(value)  # lets through a domain holding a bidi override
        if unsafe_characters(value):
            raise ValidationError("hidden characters")
    except ValidationError:
        logger.warning("the identity provider sent an email attribute that is not one address: %s", value[:254])
        return ""
    return value if len(value) <= 254 else ""
