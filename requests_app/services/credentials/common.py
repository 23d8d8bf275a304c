"""What the credentials a person is shown, the sessions started for them and their AWS credentials
share: who may use a request, the account's session rules, the fleet of the request's AWS account,
and the reasons a refusal or an ending gives."""

from __future__ import annotations

from collections.abc import Callable

from accounts import permissions
from accounts.models import AwsAccount, User
from audit.refusals import logbook_append_aggregated
from core.errors import NotAllowed, RequestRuleError
from fleet import Fleet, FleetError, ScopedCredentials
from requests_app.iam import scoped_role_session_name
from requests_app.models import AccessRequest, Grant, GrantStatus
from requests_app.services.provisioning.common import ACCOUNT_CHANGED, request_fleet, request_locked

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
# Why a session the CLI held itself was ended once the CLI sign-in (``ApiToken``) that started it was
# revoked (``session.terminated``, with the ``token``).
SIGN_IN_REVOKED = "cli sign-in revoked"
# Why it was ended once that sign-in expired (its confirming session's end passed), with the ``token``
# and when it ``expired_at``.
SIGN_IN_EXPIRED = "cli sign-in expired"


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


# What a person is told when a login or a session is refused because the request is not in force
# (ended, past its end) or its grant not ready.
NOT_USABLE = "Credentials are issued only while the request is active and the user is ready."


def _check_usable(grant: Grant, user: User, *, purpose: str, record: bool = True) -> None:
    access_request = grant.request
    check_may_use(access_request, user, purpose=purpose, grant=grant, record=record)
    if not access_request.in_force() or grant.status != GrantStatus.READY:
        raise RequestRuleError(NOT_USABLE, code="conflict")


def grant_usable_now(grant: Grant) -> Grant | None:
    """The grant and its request as they are now, the request's row held FOR NO KEY UPDATE until the
    transaction ends (``provisioning.common.request_locked``: the request's row, then the grant's, then
    the Logbook's head); None unless the request is in force and the grant ready.

    For what is handed out after a slow step (the IAM gate asks AWS): the checks before it read the
    grant as loaded then, and an ending, a revocation or a policy's shortening may have committed
    since. One not yet committed is waited for; one that comes later waits for this transaction, so
    what it hands out (and writes down) here is settled on the request's current status and end."""
    access_request = request_locked(grant.request_id)
    if access_request is None or not access_request.in_force():
        return None
    fresh = Grant.objects.select_related("instance").filter(pk=grant.pk, status=GrantStatus.READY).first()
    if fresh is None:
        return None
    fresh.request = access_request
    return fresh


def is_moderated(account: AwsAccount) -> bool:
    """Whether nothing may reach the account's instances unless an approver watches
    (``require_session_join``), as the account row was read. It wins over the CLI sessions' mode:
    a row saved moderated and direct (``AwsAccount.clean`` refuses that now) is refused every direct
    path all the same."""
    return bool(account.require_session_join)


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


def assume_scoped(fleet: Fleet, access_request: AccessRequest, user: User, grants: list[Grant]) -> ScopedCredentials:
    """Credentials of the account's role that reach ``grants``' instances only, until the request's end."""
    assert access_request.expires_at is not None  # active requests always have one
    return fleet.assume_scoped(
        instances=[(grant.instance.region, grant.instance.instance_id) for grant in grants],
        role_session_name=scoped_role_session_name(request_id=access_request.pk, user=user),
        not_after=access_request.expires_at,
    )
