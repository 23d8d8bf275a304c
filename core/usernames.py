"""Short-lived OS usernames: ``rs-<masked-id>`` and ``rs-<masked-id>-<suffix>`` on domain controllers.

The masked id is a keyed hash of the person's id: stable across requests, short, and not
reversible without the key. Every name is checked against ``USERNAME_RE`` before it may go
near a script, so nothing a person typed can reach a shell.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid

from django.conf import settings

USERNAME_RE = re.compile(r"^rs-[a-z2-7]{8}(-[a-z2-7]{4})?$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


class InvalidUsername(ValueError):
    pass


def masked_id(user_id: int, attempt: int = 0) -> str:
    """The keyed hash of the person's id; ``attempt`` > 0 re-derives it when the first is another
    person's (40 bits collide: ``requests_app.services.os_usernames`` stores who has which)."""
    subject = f"user:{user_id}" if attempt == 0 else f"user:{user_id}:{attempt}"
    digest = hmac.new(settings.PASSPORT_USERNAME_KEY.encode(), subject.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:8]


def username_for(*, user_id: int, domain_controller: bool, attempt: int = 0) -> str:
    """The name derived for a person: not yet theirs alone. Grants take the stored one
    (``requests_app.services.os_usernames.os_username_assign``) through ``grant_username``."""
    return grant_username(validate_username(f"rs-{masked_id(user_id, attempt)}"), domain_controller=domain_controller)


def grant_username(base: str, *, domain_controller: bool) -> str:
    """A grant's username from the person's ``rs-<masked-id>``: on a domain controller with a suffix of its own."""
    name = validate_username(base)
    if domain_controller:
        name += "-" + "".join(secrets.choice(_ALPHABET) for _ in range(4))
    return validate_username(name)


def base_of(name: str) -> str:
    """The person's part of a grant's username (``rs-<masked-id>``, without a domain controller's suffix)."""
    return validate_username(name)[:11]


def validate_username(name: str) -> str:
    """Return ``name`` if it is a Passport username, else raise. Windows caps names at 20 characters."""
    if not isinstance(name, str) or len(name) > 20 or not USERNAME_RE.fullmatch(name):
        raise InvalidUsername(f"{name!r} is not a Passport username")
    return name


# The SSH principal of one grant: certificates name the grant, not the person, so a certificate
# issued for one request and instance is refused by any other grant's authorized_keys line.
GRANT_PRINCIPAL_RE = re.compile(r"^grant-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class InvalidPrincipal(ValueError):
    pass


def grant_principal(grant_uid: object) -> str:
    """The principal of the grant whose uid is ``grant_uid`` (a UUID), e.g. ``grant-0f…``."""
    try:
        canonical = uuid.UUID(str(grant_uid))
    except ValueError:
        raise InvalidPrincipal(f"{grant_uid!r} is not a grant uid") from None
    return validate_principal(f"grant-{canonical}")


def validate_principal(name: str) -> str:
    """Return ``name`` if it is a grant principal, else raise."""
    if not isinstance(name, str) or not GRANT_PRINCIPAL_RE.fullmatch(name):
        raise InvalidPrincipal(f"{name!r} is not a Passport grant principal")
    return name


# Certificates for the portal's recording proxy alone name the grant under this prefix. No
# authorized_keys line on an instance names it, so the instance's own sshd refuses such a
# certificate: a person's key signed for a recorded account cannot log in to sshd past the
# proxy (through an ``ssh -L`` tunnel, say), only to the proxy, which records the session.
PROXY_PRINCIPAL_PREFIX = "proxy-"


def proxy_principal(grant_uid: object) -> str:
    """The principal that only the recording proxy accepts for this grant, e.g. ``proxy-grant-0f…``."""
    return PROXY_PRINCIPAL_PREFIX + grant_principal(grant_uid)


# A person's own key on an account whose CLI sessions are direct names the grant under this
# prefix: the grant's lines on the instance trust it only while the account allows direct logins
# (``fleet.ssh_keys.authorized_keys``), and the switch to recorded rewrites them without it. The
# grant's principal itself is the portal's own login (browser terminal, recording proxy), whose
# key never leaves the web process: a person's certificate never names it, so one issued while
# the account was direct logs in nowhere once the hosts stop trusting this principal.
DIRECT_PRINCIPAL_PREFIX = "direct-"


def direct_principal(grant_uid: object) -> str:
    """The principal of a person's direct login for this grant, e.g. ``direct-grant-0f…``."""
    return DIRECT_PRINCIPAL_PREFIX + grant_principal(grant_uid)


def validate_certificate_principal(name: str) -> str:
    """Return ``name`` if a user certificate may name it (a grant's principal, its proxy principal or
    its direct principal), else raise."""
    if not isinstance(name, str):
        raise InvalidPrincipal(f"{name!r} is not a Passport certificate principal")
    for prefix in (PROXY_PRINCIPAL_PREFIX, DIRECT_PRINCIPAL_PREFIX):
        if name.startswith(prefix):
            validate_principal(name.removeprefix(prefix))
            return name
    validate_principal(name)
    return name
