"""Session Manager sessions started for a person (``grant_start_session``): the account's rules
checked before AWS is asked (its ports, its moderation, its recording, the instance's region), and
checked again once the session started, which is ended at once, on record, if one changed meanwhile."""

from __future__ import annotations

from django.utils import timezone

from accounts.cli_tokens import api_tokens_expire_at
from accounts.models import AwsAccount, User
from audit.origin import logbook_cli_token
from core.errors import NotAllowed, RequestRuleError
from fleet import Fleet, FleetError
from requests_app.iam import iam_check_grant
from requests_app.models import Grant, Instance
from requests_app.rules import instance_region_problem
from requests_app.services.credentials.common import (
    MODERATED,
    MODERATION_ON,
    NOW_RECORDED,
    PORT_WITHDRAWN,
    RECORDING_VIAS,
    REGION_TAKEN_OFF,
    SIGN_IN_EXPIRED,
    SIGN_IN_REVOKED,
    SSH_PORT,
    _check_usable,
    assume_scoped,
    is_moderated,
    moderated_refusal,
    request_fleet_or_refuse,
)
from requests_app.services.grant_log import grant_logbook_append
from ssmchannel.documents import SSH_DOCUMENT


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
    Started with a CLI sign-in (a bearer token), the entry names it (``cli_token``): revoking it ends
    the session (``services.withdrawn.tokens``), which the CLI would otherwise hold until the request ends.
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
    token_id = logbook_cli_token()
    token_ends = None if token_id is None else api_tokens_expire_at(pks=[token_id]).get(token_id)
    if token_id is not None and token_ends is None:
        # Revoked while AWS started it, after the revocation's run read the Logbook (its entry names it).
        _end_started(fleet, fresh, user, {**detail, "reason": SIGN_IN_REVOKED, "token": token_id})
        raise RequestRuleError("Your CLI sign-in was revoked as the session started: it was ended.", code="conflict")
    if token_id is not None and token_ends is not None and token_ends <= timezone.now():
        # Its end passed while AWS started it: the periodic run would end it later; here it ends at once.
        expired = {"reason": SIGN_IN_EXPIRED, "token": token_id, "expired_at": token_ends.isoformat()}
        _end_started(fleet, fresh, user, {**detail, **expired})
        raise RequestRuleError(
            "Your CLI sign-in expired as the session started: it was ended. Sign in again with `passport auth login`.",
            code="conflict",
        )
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
