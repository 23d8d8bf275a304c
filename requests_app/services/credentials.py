"""Showing a short-lived user's credentials to the one person they were made for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from accounts import permissions
from accounts.models import AwsAccount, User
from audit.refusals import logbook_append_aggregated
from core.errors import NotAllowed, RequestRuleError
from core.usernames import grant_principal, proxy_principal
from fleet import Fleet, FleetError, ScopedCredentials
from requests_app.iam import iam_check_grant, scoped_role_session_name
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance
from requests_app.passwords import unseal_password
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.lifecycle.common import instance_region_problem
from requests_app.services.provisioning.common import ACCOUNT_CHANGED, request_fleet
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
# Why an SSH session the CLI held itself on the direct path was ended once the account's CLI sessions
# became recorded (``session.terminated``).
NOW_RECORDED = "the account's CLI sessions are now recorded"
# Why a session or AWS credentials were refused (``session.refused``, ``credentials.refused``): the
# instance's region was taken off the account; the account's row names another AWS account than the
# request was made in.
REGION_TAKEN_OFF = "region"
ACCOUNT_NAMES_ANOTHER = "account changed"
# Why a session or AWS credentials were refused on an account whose sessions are moderated
# (``AwsAccount.require_session_join``): only the portal's recording paths hold a session until an
# approver watches it (``session.refused``, ``credentials.refused``). And why a session the CLI held
# itself, or one started with the request's AWS credentials, was ended once the account became
# moderated (``session.terminated``).
MODERATED = "moderated"
MODERATION_ON = "moderation on"


def request_fleet_or_refuse(access_request: AccessRequest, *, refused: Callable[[dict[str, object]], object]) -> Fleet:
    """The gateway to the AWS account the request was made in (``request_fleet``). When the account's row
    names another AWS account now, nothing is sent to either: ``refused`` writes the refusal down (given
    the Logbook's detail) and the person gets a conflict saying so."""
    try:
        return request_fleet(access_request)
    except FleetError as error:
        if error.code != ACCOUNT_CHANGED:
            raise
        refused(
            {
                "reason": ACCOUNT_NAMES_ANOTHER,
                "made_in": access_request.aws_account_id,
                "account_id": access_request.account.account_id,
            }
        )
        raise RequestRuleError(str(error), code="conflict") from error


def check_may_use(
    access_request: AccessRequest, user: User, *, purpose: str, grant: Grant | None = None, record: bool = True
) -> None:
    """The requester, while still an Admin of the account (``permissions.use_access_refusal``).

    A refusal is on record (``credentials.use_denied``: ``purpose``, the grant, why), written at
    once, outside any transaction of the caller's that the refusal rolls back; the same refusal of
    the same person again in the window is only counted (``audit.refusals``). ``record=False`` for
    a re-check whose ending writes its own entry.
    """
    refusal = permissions.use_access_refusal(user, access_request)
    if not refusal:
        return
    if record:
        instance_ids = [grant.instance.instance_id] if grant is not None else []
        logbook_append_aggregated(
            action="credentials.use_denied",
            source=f"user:{user.pk}",
            reason=f"{purpose}:{access_request.pk}:{grant.pk if grant is not None else ''}",
            actor=user,
            account=access_request.account,
            request_id=access_request.pk,
            instance_ids=instance_ids,
            detail={"purpose": purpose, "grant": grant.pk if grant is not None else None, "reason": refusal},
            capped=False,
        )
    raise NotAllowed(refusal)


def _check_usable(grant: Grant, user: User, *, purpose: str, record: bool = True) -> None:
    access_request = grant.request
    check_may_use(access_request, user, purpose=purpose, grant=grant, record=record)
    if not access_request.in_force() or grant.status != GrantStatus.READY:
        raise RequestRuleError(
            "Credentials are issued only while the request is active and the user is ready.", code="conflict"
        )


def is_moderated(account: AwsAccount) -> bool:
    """Whether nothing may reach the account's instances unless an approver watches
    (``require_session_join``), as the account row was read. It wins over the CLI sessions' mode:
    a row saved moderated and direct (``AwsAccount.clean`` refuses that now) is refused every direct
    path all the same."""
    return bool(account.require_session_join)


def certificate_principal(grant: Grant, *, upstream: bool) -> str:
    """The one principal a certificate for this grant names.

    ``upstream``: the portal's own login to the instance's sshd (browser terminal, recording
    proxy), whose key never leaves the web process: the grant's principal, which the grant's
    authorized_keys line names. A person's key on an account whose CLI sessions are recorded
    gets the proxy principal, which only the recording proxy accepts: through an ``ssh -L``
    tunnel to sshd it logs in nowhere. On a direct account the person's key logs in to sshd, unless the
    account is moderated: then it gets the proxy principal too, and logs in to no sshd by any route
    (the direct path is refused there: ``grant_start_session``).
    """
    account = grant.request.account
    if upstream or (account.cli_sessions == AwsAccount.CliSessions.DIRECT and not is_moderated(account)):
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
    _check_usable(grant, user, purpose="certificate")
    if grant.platform != Instance.Platform.LINUX:
        raise RequestRuleError("Windows access uses a password; there is no SSH certificate.")
    access_request = grant.request
    iam_check_grant(grant=grant, user=user, purpose="certificate")
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
    check_may_use(access_request, user, purpose="password", grant=grant)
    if grant.platform != Instance.Platform.WINDOWS:
        raise RequestRuleError("Linux access uses SSH certificates; there is no password.")
    if not access_request.in_force() or grant.status != GrantStatus.READY:
        raise RequestRuleError(
            "The password is shown only while the request is active and the user is ready.", code="conflict"
        )
    iam_check_grant(grant=grant, user=user, purpose="password")
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


def _bypasses_recording(account: AwsAccount, *, document: str, port: int, via: str) -> bool:
    """Whether the account records its CLI sessions and this is SSH on a path that records nothing."""
    recorded = account.cli_sessions == AwsAccount.CliSessions.RECORD
    return recorded and via not in RECORDING_VIAS and _is_ssh(document, port)


def _check_recorded(grant: Grant, user: User, *, document: str, port: int, via: str) -> None:
    """Refuse, and write down, an SSH session that would bypass the account's recording.

    On an account whose ``cli_sessions`` is "record", SSH to an instance goes only through
    the portal's recording proxy or the browser terminal; an older CLI that opens the data
    channel itself is told to update. Port forwards to other ports (RDP, databases) are not
    SSH and stay direct.
    """
    if not _bypasses_recording(grant.request.account, document=document, port=port, via=via):
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


def _held_unwatched(account: AwsAccount, *, via: str) -> bool:
    """Whether this session would run on a moderated account with no approver able to hold it: any
    caller but the portal's recording paths (the browser terminal, the CLI proxy), which hold it."""
    return is_moderated(account) and via not in RECORDING_VIAS


def moderated_refusal(account: AwsAccount, what: str) -> str:
    """What the person is told when ``what`` (a session, AWS credentials) is refused on a moderated account."""
    told = (
        f"Sessions on {account.name} ({account.account_id}) are moderated: nothing reaches its instances unless an "
        f"approver watches, and {what} would not pass the portal, so it is refused."
    )
    if account.cli_sessions == AwsAccount.CliSessions.DIRECT:
        return (
            f"{told} The account's CLI sessions are direct, which no approver can watch: use the browser terminal, "
            "or ask a site admin to record its CLI sessions through the portal."
        )
    return (
        f"{told} Shells, commands and file transfers through Passport (passport connect, ssh with `passport "
        "ssh-config`, the browser terminal) start once an approver joins them; port forwards, Remote Desktop and "
        "AWS credentials are not available on this account."
    )


def _check_moderated(grant: Grant, user: User, *, document: str, port: int, via: str) -> None:
    """Refuse, and write down (``session.refused``, ``"reason": "moderated"``), a session the portal could
    not hold under an approver's watch on a moderated account: the CLI's own data channel (direct SSH,
    ``passport forward``, ``connect`` to Windows) passes nothing through the portal."""
    account = grant.request.account
    if not _held_unwatched(account, via=via):
        return
    grant_logbook_append(
        grant,
        "session.refused",
        {"reason": MODERATED, "document": document, "port": port, "via": via},
        actor=user,
    )
    raise RequestRuleError(moderated_refusal(account, "this session"), code="conflict")


def _session_fleet(grant: Grant, user: User, *, document: str, port: int, via: str) -> Fleet:
    """The gateway for a session to the grant's instance; refused, and written down (``session.refused``),
    when the instance's region was taken off the account or the account's row names another AWS account
    than the request was made in (``request_fleet``): then nothing is asked of AWS, IAM's simulator either."""
    access_request = grant.request
    asked = {"document": document, "port": port, "via": via}
    problem = instance_region_problem(grant.instance, account=access_request.account)
    if problem is not None:
        detail = {"reason": REGION_TAKEN_OFF, "region": grant.instance.region, **asked}
        grant_logbook_append(grant, "session.refused", detail, actor=user)
        raise RequestRuleError(f"{problem.removesuffix('.')}: no session is started there.", code="conflict")
    return request_fleet_or_refuse(
        access_request,
        refused=lambda detail: grant_logbook_append(grant, "session.refused", {**detail, **asked}, actor=user),
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
    An instance whose region was taken off the account, or a request made in another AWS account
    than its account's row names now (``request_fleet``), is refused before anything else is asked
    (``session.refused`` with ``"reason": "region"`` or ``"account changed"``).
    On a moderated account (``require_session_join``) only the portal's recording paths, which hold a
    session until an approver watches it, get one; any other caller (the CLI's own data channel: direct
    SSH, ``passport forward``, ``connect`` to Windows) gets a conflict and ``session.refused`` with
    ``"reason": "moderated"``, whatever the account's CLI sessions say.
    On an account whose CLI sessions are recorded, SSH (the SSH document, or port 22) is only
    started for the portal's recording paths (``RECORDING_VIAS``); anyone else gets a conflict
    and a ``session.refused`` entry. An SSH session started for anyone else (an account with
    direct CLI sessions) says ``"recorded": false`` in its ``session.started`` entry.
    Returns StartSession's SessionId, StreamUrl and TokenValue.
    """
    _check_usable(grant, user, purpose="session")
    access_request = grant.request
    windows = grant.platform == Instance.Platform.WINDOWS
    port = port or (3389 if windows else 22)
    fleet = _session_fleet(grant, user, document=document, port=port, via=via)
    _check_moderated(grant, user, document=document, port=port, via=via)
    _check_forward_port(grant, user, document=document, port=port, via=via)
    _check_recorded(grant, user, document=document, port=port, via=via)
    # AWS checks StartSession on the document too: the person's policy must allow this one.
    iam_check_grant(grant=grant, user=user, purpose="session", document=document)
    try:
        # Started with credentials that reach this one instance only: a portal bug cannot open another.
        scoped = assume_scoped(fleet, access_request, user, [grant])
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
    """The request may have ended, its port or its instance's region been taken off the account, the
    account become moderated, or its CLI sessions recorded, while AWS started the session. Removal lists the
    instance's sessions after the ending commits, and the change's task reads the ``session.started``
    entries after the change commits (services.withdrawn); this session's entry is committed before
    this re-read, so either they see it or this re-read sees the change: then the session is ended
    here, on record, and the caller is refused."""
    fresh = Grant.objects.select_related("request__account", "request__requester", "instance").get(pk=grant.pk)
    try:
        # Its ending below is the record (session.terminated, why).
        _check_usable(fresh, user, purpose="session", record=False)
    except (RequestRuleError, NotAllowed):
        _end_started(fleet, fresh, user, {"session_id": session_id, "reason": "the access ended as it started"})
        raise RequestRuleError("The access ended as the session started: it was ended.", code="conflict") from None
    account = fresh.request.account
    allowed = account.forward_ports
    detail: dict[str, object] = {"session_id": session_id, "port": port, "document": document, "via": via}
    problem = instance_region_problem(fresh.instance, account=account)
    if problem is not None:
        _end_started(fleet, fresh, user, {**detail, "reason": REGION_TAKEN_OFF, "region": fresh.instance.region})
        raise RequestRuleError(f"{problem.removesuffix('.')}: the session was ended as it started.", code="conflict")
    if port not in allowed:
        _end_started(fleet, fresh, user, {**detail, "reason": PORT_WITHDRAWN, "allowed": list(allowed)})
        raise RequestRuleError(
            f"Port {port} was taken off {account.name} ({account.account_id}) as the session started: it was ended.",
            code="conflict",
        )
    if _held_unwatched(account, via=via):
        _end_started(fleet, fresh, user, {**detail, "reason": MODERATION_ON})
        raise RequestRuleError(
            f"Sessions on {account.name} ({account.account_id}) became moderated as the session started: it was "
            "ended. An approver watches every session there; only those through Passport's terminal or recording "
            "proxy can be held for one.",
            code="conflict",
        )
    if _bypasses_recording(account, document=document, port=port, via=via):
        _end_started(fleet, fresh, user, {**detail, "reason": NOW_RECORDED})
        raise RequestRuleError(
            f"SSH sessions on {account.name} ({account.account_id}) became recorded as the session started: it was "
            "ended. Connect again: ssh now goes through the portal's recording proxy.",
            code="conflict",
        )


def _end_started(fleet: Fleet, grant: Grant, user: User, detail: dict[str, object]) -> None:
    """TerminateSession, and ``session.terminated`` with ``detail`` (and AWS's error, if it refused)."""
    try:
        fleet.terminate_session(str(detail["session_id"]), grant.instance.region)
    except FleetError as error:
        detail = {**detail, "error": str(error)[:500]}
    grant_logbook_append(grant, "session.terminated", detail, actor=user)


def assume_scoped(fleet: Fleet, access_request: AccessRequest, user: User, grants: list[Grant]) -> ScopedCredentials:
    """Credentials of the account's role that reach ``grants``' instances only, until the request's end."""
    assert access_request.expires_at is not None  # active requests always have one
    return fleet.assume_scoped(
        instances=[(grant.instance.region, grant.instance.instance_id) for grant in grants],
        role_session_name=scoped_role_session_name(request_id=access_request.pk, user=user),
        not_after=access_request.expires_at,
    )
