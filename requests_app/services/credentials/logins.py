"""What logs a person in to a ready grant's instance: SSH certificates for their key (Linux), the
Windows password (Windows)."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from accounts.models import User
from core.errors import RequestRuleError
from core.usernames import direct_principal, grant_principal, proxy_principal
from requests_app.iam import iam_check_grant
from requests_app.models import Grant, GrantStatus, Instance
from requests_app.passwords import unseal_password
from requests_app.services.credentials.common import (
    NOT_USABLE,
    _check_usable,
    check_may_use,
    grant_usable_now,
)
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.provisioning.host_lines import direct_login_allowed
from sshca.errors import CertificateRequestError
from sshca.services import certificate_key_id, certificates_for_key

# What a person is told when the password is refused because the request is not in force or the user not ready.
REVEAL_REFUSED = "The password is shown only while the request is active and the user is ready."


def certificate_principal(grant: Grant, *, upstream: bool) -> str:
    """The one principal a certificate for this grant names.

    ``upstream``: the portal's own login to the instance's sshd (browser terminal, recording
    proxy), whose key never leaves the web process: the grant's principal, which the grant's
    authorized_keys line always names. A person's key never gets that one. On an account whose CLI
    sessions are recorded it gets the proxy principal, which only the recording proxy accepts:
    through an ``ssh -L`` tunnel to sshd it logs in nowhere. On a direct account it gets the direct
    principal, which the grant's lines trust only while the account allows direct logins
    (``direct_login_allowed``): once an admin makes the account recorded or moderated, the hosts'
    lines are rewritten without it (``provisioning.upkeep``), so a certificate issued before logs
    in to no sshd by any route. A moderated account's person gets the proxy principal too (the
    direct path is refused there: ``grant_start_session``).
    """
    if upstream:
        return grant_principal(grant.uid)
    if direct_login_allowed(grant.request.account):
        return direct_principal(grant.uid)
    return proxy_principal(grant.uid)


def grant_issue_certificate(
    *,
    grant: Grant,
    user: User,
    public_key: str,
    upstream: bool = False,
    validity: tuple[datetime, datetime] | None = None,
) -> list[str]:
    """SSH certificates for a public key, valid until the request ends.

    ``validity`` (from, until) gives another key's certificates the window of the ones already
    issued for the same login (the portal's RSA fallback): never past the request's end, nor
    starting long before now (``sshca.services.MAX_BACKDATE``).

    The private key never leaves the person's machine; the portal signs the public half for
    exactly one principal of this grant (``certificate_principal``): only this grant's
    authorized_keys line on this instance, or the recording proxy for this grant, accepts it,
    never another instance's, a later request's, or this one's after it ends. It logs in as
    the grant's username. ``upstream`` is for the portal's own paths to sshd (see
    ``certificate_principal``). Each is signed by the newest still-trusted CA key the grant's lines
    on the host were last written with (``Grant.key_ca_fingerprints``), the active key when none is
    recorded: a rotation locks nobody out while its refresh is on its way to the host.

    Checked first on the grant as loaded, then again just before signing on the request's row as it is
    now, held until the certificate is recorded (``grant_usable_now``): an ending during the IAM check
    refuses it, and its end is the request's current one (a policy's shortening saved meanwhile is kept).
    """
    _check_usable(grant, user, purpose="certificate")
    if grant.platform != Instance.Platform.LINUX:
        raise RequestRuleError("Windows access uses a password; there is no SSH certificate.")
    iam_check_grant(grant=grant, user=user, purpose="certificate")
    with transaction.atomic():
        fresh = grant_usable_now(grant)
        if fresh is None:
            raise RequestRuleError(NOT_USABLE, code="conflict")
        access_request = fresh.request
        assert access_request.expires_at is not None  # active requests always have one
        valid_after, valid_before = validity if validity is not None else (None, access_request.expires_at)
        if valid_before > access_request.expires_at:
            raise RequestRuleError({"validity": ["A certificate cannot outlast the request."]})
        try:
            return certificates_for_key(
                public_key=public_key,
                principal=certificate_principal(fresh, upstream=upstream),
                valid_before=valid_before,
                valid_after=valid_after,
                key_id=certificate_key_id(
                    grant_uid=fresh.uid,
                    request_id=access_request.pk,
                    instance_id=fresh.instance.instance_id,
                    person=user,
                ),
                actor=user,
                account=access_request.account,
                request_id=access_request.pk,
                instance_ids=[fresh.instance.instance_id],
                # Signed by a key the host's lines trust (after a rotation, until its refresh lands there).
                host_ca_fingerprints=fresh.key_ca_fingerprints,
            )
        except CertificateRequestError as exc:
            raise RequestRuleError({"public_key": [str(exc)]}) from exc


def grant_reveal_password(*, grant: Grant, user: User) -> str:
    """The Windows password of a ready grant, for its requester (still an Admin of the account) while
    the request is active. Logged.

    Checked first on the grant as loaded, then again after the IAM check on the request's row as it is
    now, held until the viewing is written down (``grant_usable_now``): the password read is the one
    stored then, so an ending during the IAM check (which wipes it) refuses it, as before."""
    access_request = grant.request
    check_may_use(access_request, user, purpose="password", grant=grant)
    if grant.platform != Instance.Platform.WINDOWS:
        raise RequestRuleError("Linux access uses SSH certificates; there is no password.")
    if not access_request.in_force() or grant.status != GrantStatus.READY:
        raise RequestRuleError(REVEAL_REFUSED, code="conflict")
    iam_check_grant(grant=grant, user=user, purpose="password")
    with transaction.atomic():
        fresh = grant_usable_now(grant)
        if fresh is None:
            raise RequestRuleError(REVEAL_REFUSED, code="conflict")
        password = unseal_password(fresh)
        if password is None:
            raise RequestRuleError("No password is stored for this instance.", code="conflict")
        grant_logbook_append(fresh, "grant.password_viewed", {"username": fresh.username}, actor=user)
    return password
