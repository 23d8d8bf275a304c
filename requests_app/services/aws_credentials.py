"""AWS credentials for the requester's own Session Manager sessions on a request's instances,
and what removal needs to know of them (the latest expiry: ``AccessRequest.aws_credentials_until``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from django.db import transaction
from django.db.models import DateTimeField, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from accounts.approval_policies import approval_policy_hold
from accounts.models import AwsAccount, User
from audit.services import logbook_append
from core.errors import RequestRuleError
from fleet import FleetError, ScopedCredentials
from requests_app.iam import iam_check_instances
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance
from requests_app.rules import instance_region_problem
from requests_app.services.credentials import (
    MODERATED,
    REGION_TAKEN_OFF,
    assume_scoped,
    check_may_use,
    is_moderated,
    moderated_refusal,
    request_fleet_or_refuse,
)

# Credentials that would die within this much are refused rather than handed out.
SCOPED_CREDENTIALS_MIN_REMAINING = timedelta(seconds=60)


@dataclass(frozen=True)
class AwsCredentialsIssued:
    """Credentials as issued, what they reach, and the ready instances left out with the reason why
    (an instance whose region was taken off the account)."""

    scoped: ScopedCredentials
    instances: tuple[Instance, ...]
    withheld: tuple[tuple[Instance, str], ...] = ()

    @property
    def region(self) -> str | None:
        """The one region of the instances they reach, or None when those are in several."""
        regions = self.scoped.regions
        return regions[0] if len(regions) == 1 else None


def _split_by_region(
    access_request: AccessRequest, user: User, grants: list[Grant]
) -> tuple[list[Grant], list[tuple[Instance, str]]]:
    """The grants whose instances are in a region the account still lists, and the others' instances
    with the reason; when none is left, the refusal is written down (``credentials.refused``) and raised."""
    account = access_request.account
    reachable: list[Grant] = []
    withheld: list[tuple[Instance, str]] = []
    for grant in grants:
        problem = instance_region_problem(grant.instance, account=account)
        if problem is None:
            reachable.append(grant)
        else:
            withheld.append((grant.instance, problem))
    if reachable:
        return reachable, withheld
    logbook_append(
        action="credentials.refused",
        actor=user,
        account=account,
        request_id=access_request.pk,
        instance_ids=[instance.instance_id for instance, _ in withheld],
        detail={
            "reason": REGION_TAKEN_OFF,
            "regions": {instance.instance_id: instance.region for instance, _ in withheld},
        },
    )
    problems = "; ".join(problem.removesuffix(".") for _, problem in withheld)
    them = "it" if len(withheld) == 1 else "them"
    raise RequestRuleError(f"{problems}: no AWS credentials are issued for {them}.", code="conflict")


def _refuse_credentials(
    access_request: AccessRequest, user: User, instances: list[Instance], *, reason: str, message: str
) -> NoReturn:
    """Write down (``credentials.refused`` with ``reason``) and refuse AWS credentials for the request."""
    logbook_append(
        action="credentials.refused",
        actor=user,
        account=access_request.account,
        request_id=access_request.pk,
        instance_ids=[instance.instance_id for instance in instances],
        detail={"reason": reason},
    )
    raise RequestRuleError(message, code="conflict")


def _credentials_refusal(account: AwsAccount) -> tuple[str, str] | None:
    """Why no AWS credentials are issued on the account as read (the Logbook's reason and the person's
    message), or None. On a moderated account (``"reason": "moderated"``): the sessions they start never
    pass the portal, so no approver could watch them, whatever the account's CLI sessions say. On one
    whose CLI sessions are recorded (``"reason": "recorded"``): they would start AWS-StartSSHSession
    (or a forward to port 22) themselves, which no IAM condition can stop, and so reach the instances
    without passing the recording proxy."""
    if is_moderated(account):
        return MODERATED, moderated_refusal(account, "a session started with AWS credentials")
    if account.cli_sessions == AwsAccount.CliSessions.RECORD:
        return "recorded", (
            "Sessions on this account are recorded: AWS credentials would open Session Manager sessions that "
            "bypass the recording, so none are issued. Use passport connect, ssh-config or forward; a site "
            "admin can set the account's CLI sessions to direct."
        )
    return None


def _check_credentials_refusal(
    access_request: AccessRequest, user: User, instances: list[Instance], refusal: tuple[str, str] | None
) -> None:
    """Refuse, and write down (``credentials.refused``), what ``_credentials_refusal`` found."""
    if refusal is not None:
        reason, message = refusal
        _refuse_credentials(access_request, user, instances, reason=reason, message=message)


def _account_held(account_id: int) -> AwsAccount:
    """The account's row as committed now, held FOR SHARE until the transaction ends
    (``approval_policy_hold``, the lock approvals and extensions take): a site admin's change committed
    first is read here, one that comes later waits for the commit. Issues on the same account do not
    wait for one another. Taken before the request's row, as a site admin's save of the account takes
    it before the rows of the requests it revokes."""
    approval_policy_hold(account_id=account_id)
    return AwsAccount.objects.get(pk=account_id)


def _record_credentials_until(access_request: AccessRequest, expiration: datetime) -> None:
    """Keep the request's latest credentials expiry, so that removal watches for the sessions they
    may start until then (``provisioning.sessions``); refuse them if the request ended meanwhile, or
    now ends before they do.

    ``expiration`` is when they stop working (STS's expiry, or the policy's ``aws:CurrentTime`` cut-off
    if sooner: ``fleet.assume_scoped``); that cut-off is the end as read before STS was asked. A policy's
    save that shortened the request during the call may have brought the end before it: then they
    would outlive the request, and are refused (asked again, the next ones are cut off at the new end).

    One conditional UPDATE of the request's row, as it is now: an end (or a shortening) that got there
    first leaves nothing to update (and the credentials are never handed out); one that comes after
    waits for this row, so the removal that follows it reads the expiry.
    """
    until = Value(expiration, output_field=DateTimeField())
    recorded = (
        AccessRequest.objects.in_force()
        .filter(pk=access_request.pk, expires_at__gte=expiration)
        .update(aws_credentials_until=Greatest(Coalesce("aws_credentials_until", until), until))
    )
    if not recorded:
        raise RequestRuleError(
            "The access ended, or its end was brought forward, as the credentials were issued: none are handed "
            "out. Ask again for credentials that end with it.",
            code="conflict",
        )


def access_request_issue_aws_credentials(*, access_request: AccessRequest, user: User) -> AwsCredentialsIssued:
    """AWS credentials for the requester that open Session Manager sessions on the request's ready instances.

    The account's role is assumed with a session policy (``fleet.aws.credentials.scoped_session_policy``):
    ssm:StartSession on those instances with the SSH and port-forwarding documents,
    ssm:TerminateSession on the sessions these credentials start, nothing else, and only until
    the request's end. AWS's shortest role session is 900 s; when less remains the credentials
    outlive the request, but the policy's ``aws:CurrentTime`` cut-off makes them useless at
    its end, and their reported expiration is that end. With under a minute left they are
    refused. They are returned once and never stored; the Logbook records the access key id
    and the expiration, never the secret or the session token.

    One set reaches the instances in each of their regions (STS credentials are global; the policy
    names each region's ARNs): the answer says which instance is in which region, as a session must
    be started in its instance's region. An instance whose region was taken off the account is left
    out (``withheld``, and ``withheld`` in ``credentials.issued``); when that leaves none, they are
    refused (``credentials.refused``, ``"reason": "region"``). So are they, with nothing asked of AWS,
    when the account's row names another AWS account than the request was made in (``request_fleet``;
    ``"reason": "account changed"``). On a moderated account (``require_session_join``) none are issued
    (``credentials.refused``, ``"reason": "moderated"``): their sessions would run with no approver watching.
    That and the recorded CLI sessions are asked again once STS answered, on the account's row held until
    the credentials are recorded (``_account_held``): a change saved meanwhile refuses them, and they are dropped.

    Completing a request early does not revoke them (STS cannot revoke one role session), so
    they are short: ``PASSPORT_SCOPED_CREDENTIALS_SECONDS`` (15 minutes by default, renewed
    through credential_process while the request is active). Removal ends the person's
    sessions on each instance, where the short-lived user no longer exists, and the sweep looks
    for new ones until the last credentials' expiry (``AccessRequest.aws_credentials_until``).
    While the request is active, the sessions they started (found by their owner, the request's
    role session) end once the account's CLI sessions become recorded or its sessions moderated, their
    instance's region is taken off the account, or the IAM gate refuses the person there
    (``services.withdrawn``).

    Known gap: they do not enforce the account's forwarding ports. IAM offers no condition key
    on StartSession's document parameters (``portNumber``), so with these credentials a person
    can start AWS-StartPortForwardingSession or AWS-StartSSHSession to any port of the
    request's instances; ``grant_start_session`` enforces the ports only on the portal's path.
    """
    check_may_use(access_request, user, purpose="aws_credentials")
    if not access_request.in_force() or access_request.expires_at is None:
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
    account = access_request.account
    ready = [grant.instance.instance_id for grant in grants]
    fleet = request_fleet_or_refuse(
        access_request,
        refused=lambda detail: logbook_append(
            action="credentials.refused",
            actor=user,
            account=account,
            request_id=access_request.pk,
            instance_ids=ready,
            detail=detail,
        ),
    )
    ready_instances = [grant.instance for grant in grants]
    _check_credentials_refusal(access_request, user, ready_instances, _credentials_refusal(account))
    grants, withheld = _split_by_region(access_request, user, grants)
    instances = [grant.instance for grant in grants]
    iam_check_instances(
        user=user,
        account=account,
        instances=instances,
        purpose="credentials",
        request_id=access_request.pk,
    )
    try:
        scoped = assume_scoped(fleet, access_request, user, grants)
    except FleetError as error:
        raise RequestRuleError(f"AWS could not issue credentials: {error}", code="unavailable") from error
    with transaction.atomic():
        # Asked again now that STS answered: a site admin may have made the account's sessions moderated,
        # or its CLI sessions recorded, meanwhile. On the account's row held until the credentials are
        # recorded and written down, so a change not yet committed waits, and the withdrawal it sends
        # after its commit finds them (``aws_credentials_until``).
        access_request.account = account = _account_held(account.pk)
        refusal = _credentials_refusal(account)
        if refusal is None:
            _record_credentials_until(access_request, scoped.expiration)
            _log_issued(access_request, user, scoped, instances, withheld)
    # Refused after the transaction, so that the refusal's Logbook entry stands. The credentials STS
    # gave are then dropped here, never shown to anyone: not returned, stored or written down as issued
    # (STS cannot revoke them; unused, they expire, and reach nothing past the request's end).
    _check_credentials_refusal(access_request, user, ready_instances, refusal)
    return AwsCredentialsIssued(scoped=scoped, instances=tuple(instances), withheld=tuple(withheld))


def _log_issued(
    access_request: AccessRequest,
    user: User,
    scoped: ScopedCredentials,
    instances: list[Instance],
    withheld: list[tuple[Instance, str]],
) -> None:
    """``credentials.issued``: the access key id and the expiration, never the secret or the session token."""
    detail: dict[str, object] = {
        "access_key_id": scoped.access_key_id,
        "role_session_name": scoped.role_session_name,
        "expiration": scoped.expiration.isoformat(),
    }
    if withheld:
        detail["withheld"] = {
            instance.instance_id: {"reason": REGION_TAKEN_OFF, "region": instance.region} for instance, _ in withheld
        }
    logbook_append(
        action="credentials.issued",
        actor=user,
        account=access_request.account,
        request_id=access_request.pk,
        instance_ids=[instance.instance_id for instance in instances],
        detail=detail,
    )
