"""Showing a short-lived user's credentials to the one person they were made for."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import DateTimeField, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from accounts import permissions
from accounts.models import AwsAccount, User
from audit.services import logbook_append
from core.errors import NotAllowed, RequestRuleError
from core.usernames import grant_principal, proxy_principal
from fleet import Fleet, FleetError, ScopedCredentials, fleet_for
from requests_app.iam import iam_check_instances, scoped_role_session_name
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.passwords import unseal_password
from requests_app.services.grant_log import grant_logbook_append
from sshca.errors import CertificateRequestError
from sshca.services import certificate_key_id, certificates_for_key
from ssmchannel.documents import SSH_DOCUMENT

# The portal's own paths to an instance's sshd, which record what they carry: the CLI's
# recording proxy (terminal/proxy) and the browser terminal. Any other caller of an SSH
# session (the CLI speaking the data channel itself) would not be recorded.
RECORDING_VIAS = frozenset({"cli-proxy", "terminal"})
SSH_PORT = 22
# Why a session to a port the account no longer opens was ended (``session.terminated``).
PORT_WITHDRAWN = "port withdrawn"
# Credentials that would die within this much are refused rather than handed out.
SCOPED_CREDENTIALS_MIN_REMAINING = timedelta(seconds=60)


def _check_may_use(access_request: AccessRequest, user: User) -> None:
    """The requester, while still an Admin of the account (``permissions.use_access_refusal``)."""
    refusal = permissions.use_access_refusal(user, access_request)
    if refusal:
        raise NotAllowed(refusal)


def _check_usable(grant: Grant, user: User) -> None:
    access_request = grant.request
    _check_may_use(access_request, user)
    if access_request.status != RequestStatus.ACTIVE or grant.status != GrantStatus.READY:
        raise RequestRuleError(
            "Credentials are issued only while the request is active and the user is ready.", code="conflict"
        )


def certificate_principal(grant: Grant, *, upstream: bool) -> str:
    """The one principal a certificate for this grant names.

    ``upstream``: the portal's own login to the instance's sshd (browser terminal, recording
    proxy), whose key never leaves the web process: the grant's principal, which the grant's
    authorized_keys line names. A person's key on an account whose CLI sessions are recorded
    gets the proxy principal, which only the recording proxy accepts: through an ``ssh -L``
    tunnel to sshd it logs in nowhere. On a direct account the person's key logs in to sshd.
    """
    if upstream or grant.request.account.cli_sessions == AwsAccount.CliSessions.DIRECT:
        return grant_principal(grant.uid)
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
    ``certificate_principal``).
    """
    _check_usable(grant, user)
    if grant.instance.platform != Instance.Platform.LINUX:
        raise RequestRuleError("Windows access uses a password; there is no SSH certificate.")
    access_request = grant.request
    iam_check_instances(
        user=user,
        account=access_request.account,
        instances=[grant.instance],
        purpose="certificate",
        request_id=access_request.pk,
    )
    assert access_request.expires_at is not None  # active requests always have one
    valid_after, valid_before = validity if validity is not None else (None, access_request.expires_at)
    if valid_before > access_request.expires_at:
        raise RequestRuleError({"validity": ["A certificate cannot outlast the request."]})
    try:
        return certificates_for_key(
            public_key=public_key,
            principal=certificate_principal(grant, upstream=upstream),
            valid_before=valid_before,
            valid_after=valid_after,
            key_id=certificate_key_id(
                grant_uid=grant.uid,
                request_id=access_request.pk,
                instance_id=grant.instance.instance_id,
                person=user,
            ),
            actor=user,
            account=access_request.account,
            request_id=access_request.pk,
            instance_ids=[grant.instance.instance_id],
        )
    except CertificateRequestError as exc:
        raise RequestRuleError({"public_key": [str(exc)]}) from exc


def grant_reveal_password(*, grant: Grant, user: User) -> str:
    """The Windows password of a ready grant, for its requester (still an Admin of the account) while
    the request is active. Logged."""
    access_request = grant.request
    _check_may_use(access_request, user)
    if grant.instance.platform != Instance.Platform.WINDOWS:
        raise RequestRuleError("Linux access uses SSH certificates; there is no password.")
    if access_request.status != RequestStatus.ACTIVE or grant.status != GrantStatus.READY:
        raise RequestRuleError(
            "The password is shown only while the request is active and the user is ready.", code="conflict"
        )
    iam_check_instances(
        user=user,
        account=access_request.account,
        instances=[grant.instance],
        purpose="password",
        request_id=access_request.pk,
    )
    password = unseal_password(grant)
    if password is None:
        raise RequestRuleError("No password is stored for this instance.", code="conflict")
    grant_logbook_append(grant, "grant.password_viewed", {"username": grant.username}, actor=user)
    return password


def _check_forward_port(grant: Grant, user: User, *, document: str, port: int, via: str) -> None:
    """Refuse, and write down, a session to a port the account does not open (``AwsAccount.forward_ports``).

    Either session document reaches any TCP port on the instance, a database's as readily as
    sshd's, so the port is the account admin's decision, not the requester's.
    """
    account = grant.request.account
    allowed = account.forward_ports
    if port in allowed:
        return
    grant_logbook_append(
        grant,
        "session.port_refused",
        {"port": port, "document": document, "via": via, "allowed": list(allowed)},
        actor=user,
    )
    listed = ", ".join(str(item) for item in allowed)
    raise RequestRuleError(
        {
            "port": [
                f"Port {port} is not open for sessions on {account.name} ({account.account_id}): "
                f"the allowed ports are {listed}. An administrator can add ports to the account."
            ]
        }
    )


def _is_ssh(document: str, port: int) -> bool:
    """An SSH session: the SSH document (to any port), or any session to port 22."""
    return document == SSH_DOCUMENT or port == SSH_PORT


def _check_recorded(grant: Grant, user: User, *, document: str, port: int, via: str) -> None:
    """Refuse, and write down, an SSH session that would bypass the account's recording.

    On an account whose ``cli_sessions`` is "record", SSH to an instance goes only through
    the portal's recording proxy or the browser terminal; an older CLI that opens the data
    channel itself is told to update. Port forwards to other ports (RDP, databases) are not
    SSH and stay direct.
    """
    account = grant.request.account
    if account.cli_sessions != AwsAccount.CliSessions.RECORD or via in RECORDING_VIAS:
        return
    if not _is_ssh(document, port):
        return
    grant_logbook_append(
        grant,
        "session.refused",
        {"reason": "recorded", "document": document, "port": port, "via": via},
        actor=user,
    )
    raise RequestRuleError(
        f"SSH sessions on this account are recorded: update the passport CLI (passport version --self-update), "
        f"whose ssh goes through the portal's recording proxy. A direct Session Manager session to port {port} "
        f"of {grant.instance.instance_id} is refused (for a tunnel, use ssh -L with `passport ssh-config`).",
        code="conflict",
    )


def grant_start_session(
    *, grant: Grant, user: User, document: str, port: int | None = None, via: str
) -> dict[str, str]:
    """Start a Session Manager session to a ready grant's instance for its requester.

    The IAM check runs again here, for this session's document: a policy changed since the
    request was made takes effect at the next connection, and a Deny on the document (a
    person's "no tunnels") refuses it as AWS would refuse them (``requests_app.iam``).
    StartSession is called with the account's role narrowed by a session policy to this one
    instance and the session documents, until the request ends
    (``fleet.aws.credentials.scoped_session_policy``), so AWS itself refuses any other target.
    The remote port must be one the account opens (22, 3389 and its admin's extra ports); another
    is refused before AWS is asked, and the refusal is in the Logbook (``session.port_refused``).
    On an account whose CLI sessions are recorded, SSH (the SSH document, or port 22) is only
    started for the portal's recording paths (``RECORDING_VIAS``); anyone else gets a conflict
    and a ``session.refused`` entry. An SSH session started for anyone else (an account with
    direct CLI sessions) says ``"recorded": false`` in its ``session.started`` entry.
    Returns StartSession's SessionId, StreamUrl and TokenValue.
    """
    _check_usable(grant, user)
    access_request = grant.request
    windows = grant.instance.platform == Instance.Platform.WINDOWS
    port = port or (3389 if windows else 22)
    _check_forward_port(grant, user, document=document, port=port, via=via)
    _check_recorded(grant, user, document=document, port=port, via=via)
    # AWS checks StartSession on the document too: the person's policy must allow this one.
    iam_check_instances(
        user=user,
        account=access_request.account,
        instances=[grant.instance],
        purpose="session",
        document=document,
        request_id=access_request.pk,
    )
    fleet = fleet_for(access_request.account)
    try:
        # Started with credentials that reach this one instance only: a portal bug cannot open another.
        scoped = _assume_scoped(fleet, access_request, user, [grant])
        started = fleet.start_session(
            grant.instance.instance_id,
            grant.instance.region,
            document,
            {"portNumber": [str(port)]},
            credentials=scoped,
        )
    except FleetError as error:
        # On record too: a session asked for and refused by AWS (the agent gone, a throttle).
        grant_logbook_append(
            grant,
            "session.start_failed",
            {"document": document, "port": port, "via": via, "error": str(error)[:500]},
            actor=user,
        )
        raise RequestRuleError(f"Systems Manager could not start a session: {error}", code="unavailable") from error
    detail: dict[str, object] = {"session_id": started["SessionId"], "document": document, "port": port, "via": via}
    if _is_ssh(document, port) and via not in RECORDING_VIAS:
        detail["recorded"] = False  # the CLI's own data channel: nothing of it passes the portal
    grant_logbook_append(grant, "session.started", detail, actor=user)
    _end_if_no_longer_allowed(fleet, grant, user, started["SessionId"], document=document, port=port, via=via)
    return started


def _end_if_no_longer_allowed(
    fleet: Fleet, grant: Grant, user: User, session_id: str, *, document: str, port: int, via: str
) -> None:
    """The request may have ended, or its port been taken off the account, while AWS started the
    session. Removal lists the instance's sessions after the ending commits, and the withdrawal's
    task reads the ``session.started`` entries after the change commits (services.withdrawn); this
    session's entry is committed before this re-read, so either they see it or this re-read sees
    the change: then the session is ended here, on record, and the caller is refused."""
    fresh = Grant.objects.select_related("request__account", "request__requester", "instance").get(pk=grant.pk)
    try:
        _check_usable(fresh, user)
    except (RequestRuleError, NotAllowed):
        _end_started(fleet, fresh, user, {"session_id": session_id, "reason": "the access ended as it started"})
        raise RequestRuleError("The access ended as the session started: it was ended.", code="conflict") from None
    account = fresh.request.account
    allowed = account.forward_ports
    if port not in allowed:
        detail: dict[str, object] = {"session_id": session_id, "port": port, "document": document, "via": via}
        _end_started(fleet, fresh, user, {**detail, "reason": PORT_WITHDRAWN, "allowed": list(allowed)})
        raise RequestRuleError(
            f"Port {port} was taken off {account.name} ({account.account_id}) as the session started: it was ended.",
            code="conflict",
        )


def _end_started(fleet: Fleet, grant: Grant, user: User, detail: dict[str, object]) -> None:
    """TerminateSession, and ``session.terminated`` with ``detail`` (and AWS's error, if it refused)."""
    try:
        fleet.terminate_session(str(detail["session_id"]), grant.instance.region)
    except FleetError as error:
        detail = {**detail, "error": str(error)[:500]}
    grant_logbook_append(grant, "session.terminated", detail, actor=user)


def _assume_scoped(fleet: Fleet, access_request: AccessRequest, user: User, grants: list[Grant]) -> ScopedCredentials:
    assert access_request.expires_at is not None  # active requests always have one
    return fleet.assume_scoped(
        instances=[(grant.instance.region, grant.instance.instance_id) for grant in grants],
        role_session_name=scoped_role_session_name(request_id=access_request.pk, user=user),
        not_after=access_request.expires_at,
    )


def _check_credentials_recorded(access_request: AccessRequest, user: User, instances: list[Instance]) -> None:
    """Refuse, and write down, AWS credentials on an account whose CLI sessions are recorded.

    They would start AWS-StartSSHSession (or a forward to port 22) themselves, which no IAM
    condition can stop, and so reach the instances without passing the recording proxy.
    """
    account = access_request.account
    if account.cli_sessions != AwsAccount.CliSessions.RECORD:
        return
    logbook_append(
        action="credentials.refused",
        actor=user,
        account=account,
        request_id=access_request.pk,
        instance_ids=[instance.instance_id for instance in instances],
        detail={"reason": "recorded"},
    )
    raise RequestRuleError(
        "Sessions on this account are recorded: AWS credentials would open Session Manager sessions that "
        "bypass the recording, so none are issued. Use passport connect, ssh-config or forward; a site admin "
        "can set the account's CLI sessions to direct.",
        code="conflict",
    )


def _record_credentials_until(access_request: AccessRequest, expiration: datetime) -> None:
    """Keep the request's latest credentials expiry, so that removal watches for the sessions they
    may start until then (``provisioning.sessions``); refuse them if the request ended meanwhile.

    One conditional UPDATE of the request's row: an end that got there first leaves nothing to
    update (and the credentials are never handed out); one that comes after waits for this row,
    so the removal that follows it reads the expiry.
    """
    until = Value(expiration, output_field=DateTimeField())
    recorded = AccessRequest.objects.filter(pk=access_request.pk, status=RequestStatus.ACTIVE).update(
        aws_credentials_until=Greatest(Coalesce("aws_credentials_until", until), until)
    )
    if not recorded:
        raise RequestRuleError("The access ended as the credentials were issued: none are handed out.", code="conflict")


def access_request_issue_aws_credentials(*, access_request: AccessRequest, user: User) -> ScopedCredentials:
    """AWS credentials for the requester that open Session Manager sessions on the request's ready instances.

    The account's role is assumed with a session policy (``fleet.aws.credentials.scoped_session_policy``):
    ssm:StartSession on those instances with the SSH and port-forwarding documents,
    ssm:TerminateSession on the sessions these credentials start, nothing else, and only until
    the request's end. AWS's shortest role session is 900 s; when less remains the credentials
    outlive the request, but the policy's ``aws:CurrentTime`` cut-off makes them useless at
    its end, and their reported expiration is that end. With under a minute left they are
    refused. They are returned once and never stored; the Logbook records the access key id
    and the expiration, never the secret or the session token.

    Completing a request early does not revoke them (STS cannot revoke one role session), so
    they are short: ``PASSPORT_SCOPED_CREDENTIALS_SECONDS`` (15 minutes by default, renewed
    through credential_process while the request is active). Removal ends the person's
    sessions on each instance, where the short-lived user no longer exists, and the sweep looks
    for new ones until the last credentials' expiry (``AccessRequest.aws_credentials_until``).

    Known gap: they do not enforce the account's forwarding ports. IAM offers no condition key
    on StartSession's document parameters (``portNumber``), so with these credentials a person
    can start AWS-StartPortForwardingSession or AWS-StartSSHSession to any port of the
    request's instances; ``grant_start_session`` enforces the ports only on the portal's path.
    """
    _check_may_use(access_request, user)
    if access_request.status != RequestStatus.ACTIVE or access_request.expires_at is None:
        raise RequestRuleError("AWS credentials are issued only while the request is active.", code="conflict")
    if access_request.expires_at - timezone.now() < SCOPED_CREDENTIALS_MIN_REMAINING:
        raise RequestRuleError("The access ends in less than a minute: no AWS credentials for it.", code="conflict")
    grants = list(
        access_request.grants.select_related("instance")
        .filter(status=GrantStatus.READY)
        .order_by("instance__instance_id")
    )
    if not grants:
        raise RequestRuleError("None of the request's instances is ready yet.", code="conflict")
    instances = [grant.instance for grant in grants]
    _check_credentials_recorded(access_request, user, instances)
    iam_check_instances(
        user=user,
        account=access_request.account,
        instances=instances,
        purpose="credentials",
        request_id=access_request.pk,
    )
    try:
        scoped = _assume_scoped(fleet_for(access_request.account), access_request, user, grants)
    except FleetError as error:
        raise RequestRuleError(f"AWS could not issue credentials: {error}", code="unavailable") from error
    _record_credentials_until(access_request, scoped.expiration)
    logbook_append(
        action="credentials.issued",
        actor=user,
        account=access_request.account,
        request_id=access_request.pk,
        instance_ids=[instance.instance_id for instance in instances],
        detail={
            "access_key_id": scoped.access_key_id,
            "role_session_name": scoped.role_session_name,
            "expiration": scoped.expiration.isoformat(),
        },
    )
    return scoped
