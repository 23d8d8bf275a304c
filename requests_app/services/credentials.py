"""Showing a short-lived user's credentials to the one person they were made for."""

from __future__ import annotations

from accounts.iam import iam_check_instances
from accounts.models import User
from requests_app.errors import NotAllowed, RequestRuleError
from requests_app.models import Grant, GrantStatus, Instance, RequestStatus
from requests_app.passwords import unseal_password
from requests_app.services.grant_log import grant_logbook_append
from sshca.errors import CertificateRequestError
from sshca.services import certificate_key_id, certificates_for_key
from workers.fleet import FleetError, fleet_for


def _check_usable(grant: Grant, user: User) -> None:
    access_request = grant.request
    if user.pk != access_request.requester_id:
        raise NotAllowed("Only the requester can use this access.")
    if access_request.status != RequestStatus.ACTIVE or grant.status != GrantStatus.READY:
        raise RequestRuleError(
            "Credentials are issued only while the request is active and the user is ready.", code="conflict"
        )


def grant_issue_certificate(*, grant: Grant, user: User, public_key: str) -> list[str]:
    """SSH certificates for the person's own public key, valid until the request ends.

    The private key never leaves the person's machine; the portal signs the public half for
    exactly one principal, this grant's username.
    """
    _check_usable(grant, user)
    if grant.instance.platform != Instance.Platform.LINUX:
        raise RequestRuleError("Windows access uses a password; there is no SSH certificate.")
    access_request = grant.request
    iam_check_instances(user=user, account=access_request.account, instances=[grant.instance], purpose="certificate")
    assert access_request.expires_at is not None  # active requests always have one
    try:
        return certificates_for_key(
            public_key=public_key,
            principal=grant.username,
            valid_before=access_request.expires_at,
            key_id=certificate_key_id(request_id=access_request.pk, person=user),
            actor=user,
            account=access_request.account,
            request_id=access_request.pk,
        )
    except CertificateRequestError as exc:
        raise RequestRuleError({"public_key": [str(exc)]}) from exc


def grant_reveal_password(*, grant: Grant, user: User) -> str:
    """The Windows password of a ready grant, for its requester while the request is active. Logged."""
    access_request = grant.request
    if user.pk != access_request.requester_id:
        raise NotAllowed("Only the requester can read this password.")
    if grant.instance.platform != Instance.Platform.WINDOWS:
        raise RequestRuleError("Linux access uses SSH certificates; there is no password.")
    if access_request.status != RequestStatus.ACTIVE or grant.status != GrantStatus.READY:
        raise RequestRuleError(
            "The password is shown only while the request is active and the user is ready.", code="conflict"
        )
    iam_check_instances(user=user, account=access_request.account, instances=[grant.instance], purpose="password")
    password = unseal_password(grant)
    if password is None:
        raise RequestRuleError("No password is stored for this instance.", code="conflict")
    grant_logbook_append(grant, "grant.password_viewed", {"username": grant.username}, actor=user)
    return password


def grant_start_session(
    *, grant: Grant, user: User, document: str, port: int | None = None, via: str
) -> dict[str, str]:
    """Start a Session Manager session to a ready grant's instance for its requester.

    The IAM check runs again here: a policy changed since the request was made takes effect
    at the next connection. Returns StartSession's SessionId, StreamUrl and TokenValue.
    """
    _check_usable(grant, user)
    access_request = grant.request
    iam_check_instances(user=user, account=access_request.account, instances=[grant.instance], purpose="session")
    windows = grant.instance.platform == Instance.Platform.WINDOWS
    port = port or (3389 if windows else 22)
    try:
        started = fleet_for(access_request.account).start_session(
            grant.instance.instance_id, grant.instance.region, document, {"portNumber": [str(port)]}
        )
    except FleetError as error:
        raise RequestRuleError(f"Systems Manager could not start a session: {error}", code="unavailable") from error
    grant_logbook_append(
        grant,
        "session.started",
        {"session_id": started["SessionId"], "document": document, "port": port, "via": via},
        actor=user,
    )
    return started
