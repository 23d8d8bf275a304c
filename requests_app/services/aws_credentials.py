"""AWS credentials for the requester's own Session Manager sessions on a request's instances,
and what removal needs to know of them (the latest expiry: ``AccessRequest.aws_credentials_until``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import DateTimeField, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from accounts.models import AwsAccount, User
from audit.services import logbook_append
from core.errors import RequestRuleError
from fleet import FleetError, ScopedCredentials, fleet_for
from requests_app.iam import iam_check_instances
from requests_app.models import AccessRequest, GrantStatus, Instance, RequestStatus
from requests_app.services.credentials import assume_scoped, check_may_use

# Credentials that would die within this much are refused rather than handed out.
SCOPED_CREDENTIALS_MIN_REMAINING = timedelta(seconds=60)


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
    check_may_use(access_request, user, purpose="aws_credentials")
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
        scoped = assume_scoped(fleet_for(access_request.account), access_request, user, grants)
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
