"""What creating and removing grants share: outcomes, retries, the script of a grant, its run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from fleet import CommandResult, Fleet, FleetError, fleet_for
from fleet.scripts import linux_expiry_date, password_parameter_name, render_create, render_create_per_host
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus, host_kind_label
from requests_app.passwords import generate_password, seal_password
from requests_app.rules import instance_region_problem
from requests_app.selectors import grant_batches
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.leases import GrantLease
from requests_app.services.provisioning.host_lines import direct_login_allowed

logger = logging.getLogger(__name__)

PROVISIONABLE_REQUESTS = (RequestStatus.PROVISIONING, RequestStatus.ACTIVE)
RETRY_BASE_SECONDS = 5
PROVISION_RETRY_CAP = 300
CLEANUP_RETRY_CAP = 900
CLEANUP_ERROR_PREFIX = "Cleanup: "

# What one Run Command did for one grant, or the error that kept it from running there.
GrantRun = CommandResult | FleetError


# Exit codes of the create script that another attempt would not change: 3, the name belongs to
# an account that is not ours; 6, the grant was removed meanwhile; 7, a Windows refusal.
FINAL_EXIT_CODES = (3, 6, 7)


@dataclass(frozen=True)
class Outcome:
    """What the task should do next: nothing, or try again after ``retry_in`` seconds."""

    retry_in: float | None = None


def _backoff(attempt: int, cap: int) -> int:
    return int(min(cap, RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)))


def _request_end(access_request: AccessRequest) -> datetime:
    """The request's end; before it is active (its clock has not started: the first ready grant
    starts it), the earliest it can be from now, moved later once known (``provisioning.expiry``)."""
    return access_request.expires_at or timezone.now() + access_request.total_duration


def account_expiry_for(grant: Grant) -> datetime:
    """When the OS account of ``grant`` expires on its host, a second lock should removal not run:
    its request's end (``_request_end``). On Linux the live requests of one person on one host
    share the user: the latest of their ends."""
    access_request = grant.request
    end = _request_end(access_request)
    if grant.platform != Instance.Platform.LINUX:
        return end
    sharing = (
        AccessRequest.objects.filter(
            status=RequestStatus.ACTIVE,
            grants__instance_id=grant.instance_id,
            grants__username=grant.username,
            grants__status=GrantStatus.READY,
        )
        .exclude(pk=access_request.pk)
        .aggregate(latest=Max("expires_at"))["latest"]
    )
    return max(end, sharing) if sharing is not None else end


def account_expiry_in_step(grant: Grant, written: datetime | None, wanted: datetime) -> bool:
    """Whether the expiry written on the grant's host is the one wanted: to the moment on Windows,
    to the day on Linux, where the account's expiry is a whole day (``linux_expiry_date``)."""
    if written is None:
        return False
    if grant.platform == Instance.Platform.LINUX:
        return linux_expiry_date(written) == linux_expiry_date(wanted)
    return written == wanted


# FleetError.code of a refusal to act for a request in another AWS account than it was made in.
ACCOUNT_CHANGED = "AccountChanged"


def request_fleet(access_request: AccessRequest) -> Fleet:
    """The gateway to the AWS account ``access_request`` was made in, where its users are.

    Refused, for good and never as "instance gone", when its account's row names another AWS
    account now (``AwsAccount.save`` refuses that change, but a queryset's update() or SQL does
    not ask): there EC2 would have no such instance, and removal would take that for the user
    having gone with its host. The grant waits for an operator instead, its user left as it is.
    """
    account = access_request.account
    made_in = access_request.aws_account_id
    if made_in and made_in != account.account_id:
        raise FleetError(
            f"Request {access_request.pk} was made in AWS account {made_in}, but its account now names "
            f"{account.account_id}: nothing was sent. Put the account's id and role back.",
            retryable=False,
            code=ACCOUNT_CHANGED,
        )
    return fleet_for(account)


def _run_on(grant: Grant, *, script: str, purpose: str) -> CommandResult:
    """Run ``script`` on the grant's instance, as a script of the grant's own platform (whatever the
    inventory says the instance is now: the script was rendered for the kind of user the grant made)."""
    instance = grant.instance
    return request_fleet(grant.request).run_script(
        instance_id=instance.instance_id,
        region=instance.region,
        platform=grant.platform,
        script=script,
        comment=f"Passport request {grant.request_id}: {purpose} {grant.username}",
    )


def _run_on_each(
    grants: Sequence[Grant], *, script: str, purpose: str, on_result: Callable[[Grant, GrantRun], None]
) -> dict[int, GrantRun]:
    """One Run Command for the grants of one request on Linux hosts of one region (each host
    picks its own grant from the script): grant id -> what it did there. ``on_result`` hears of
    each grant as soon as its host is done, so a slow host holds up none of the others."""
    first = grants[0]
    by_instance_id = {grant.instance.instance_id: grant for grant in grants}

    def each(instance_id: str, result: GrantRun) -> None:
        grant = by_instance_id.get(instance_id)
        if grant is not None:
            on_result(grant, result)

    by_instance = request_fleet(first.request).run_script_batch(
        instance_ids=list(by_instance_id),
        region=first.instance.region,
        platform=first.platform,
        script=script,
        comment=f"Passport request {first.request_id}: {purpose} {first.username} on {len(grants)} hosts",
        on_result=each,
    )
    return {
        grant.pk: by_instance.get(grant.instance.instance_id)
        or FleetError(f"Run Command gave no result for {grant.instance.instance_id}")
        for grant in grants
    }


def _load_all(grant_ids: Sequence[int]) -> list[Grant]:
    return list(
        Grant.objects.select_related("request__account", "request__requester", "instance")
        .filter(pk__in=grant_ids)
        .order_by("pk")
    )


def _drop_handoff(grant: Grant) -> None:
    """Delete a Windows grant's password hand-off once its script has run (or could not)."""
    if grant.platform != Instance.Platform.WINDOWS:
        return
    try:
        request_fleet(grant.request).delete_handoff(password_parameter_name(grant.uid), grant.instance.region)
    except FleetError as exc:
        # Removal deletes it again; the Logbook says it is still there meanwhile.
        grant_logbook_append(grant, "grant.handoff_left", {"error": str(exc)})


def region_taken_off(grant: Grant) -> FleetError | None:
    """Refuse, for good, a grant whose instance is in a region taken off its request's account
    (``rules.instance_region_problem``): Passport no longer manages it there, so no user is made on
    it, whatever was approved. The refusal (to settle the grant with), after its Logbook entry
    (``grant.region_taken_off``); None while the account lists the region. Only creating is refused:
    removal of what an earlier attempt may have made there goes on, as for every failed grant."""
    problem = instance_region_problem(grant.instance, account=grant.request.account)
    if problem is None:
        return None
    grant_logbook_append(grant, "grant.region_taken_off", {"username": grant.username, "region": grant.instance.region})
    return FleetError(f"{problem} Nothing was sent; ask again for an instance Passport manages.", retryable=False)


def host_kind_change(grant: Grant) -> FleetError | None:
    """Refuse, for good, a grant whose instance is no longer the kind of host it was approved for:
    another platform, or on Windows a domain controller where it was a member server or the reverse.
    The refusal (to settle the grant with), after its Logbook entry; None when the instance matches.

    The approver was shown what Administrator rights mean on the kind of host the grant recorded
    (sudo on Linux; Administrators, or Domain Admins on a domain controller), and the username was
    made for it. What the instance is now is what the latest inventory sync said (its domain
    controller flag comes from a tag anyone with ec2:CreateTags may change), so a change since is
    never followed: nothing is sent, and the removal that follows undoes what the grant's own kind
    would have created.
    """
    instance = grant.instance
    now = host_kind_label(
        platform=instance.platform,
        domain_controller=instance.platform == Instance.Platform.WINDOWS and instance.is_domain_controller,
    )
    approved_for = grant.host_kind
    if now == approved_for:
        return None
    instance_id = instance.instance_id
    if instance.platform != grant.platform:
        error = (
            f"{instance_id} is now said to be {instance.get_platform_display()}, but the request was approved for "
            f"{grant.get_platform_display()} (a {grant.get_platform_display()} user"
            f"{', with administrator rights' if grant.request.admin_rights else ''}). Nothing was sent; "
            "ask again if the instance's platform is what the inventory says now."
        )
    elif instance.is_domain_controller:
        error = (
            f"{instance_id} is now tagged a domain controller, but the request was approved for a member server "
            "(Administrator rights there: Administrators, not Domain Admins). Nothing was sent; "
            "ask again if the instance is a domain controller."
        )
    else:
        error = (
            f"{instance_id} is no longer tagged a domain controller, but the request was approved for one "
            "(a domain account). Nothing was sent; ask again if the instance is a member server."
        )
    grant_logbook_append(
        grant, "grant.host_kind_changed", {"username": grant.username, "approved_for": approved_for, "now": now}
    )
    return FleetError(error, retryable=False)


def _create_script(
    grant: Grant, expires_at: datetime, *, ca_public_keys: Sequence[str], lines_expire_at: datetime | None = None
) -> str:
    """The create script of ``grant``, for the platform it recorded; on Linux its lines trust
    ``ca_public_keys`` (``ca_keys_for``) until ``lines_expire_at`` (``key_expiry_for``).
    Provisioning asks ``host_kind_change`` first."""
    instance = grant.instance
    if grant.platform == Instance.Platform.WINDOWS:
        # A fresh password per attempt, stored sealed before it is handed over, so the person
        # can always read the one the instance has. It goes to the instance through a
        # SecureString parameter, deleted after the script ran, never in the script itself.
        password = generate_password()
        # Only while the grant is still being created: a request ended since the claim has
        # wiped the password already, and must not get one back, nor a user made on the host.
        sealed = Grant.objects.filter(pk=grant.pk, status=GrantStatus.PROVISIONING).update(
            password_sealed=seal_password(grant, password)
        )
        if not sealed:
            raise FleetError(
                "The grant is no longer being created (its request ended): nothing was sent.", retryable=False
            )
        request_fleet(grant.request).put_handoff(password_parameter_name(grant.uid), password, instance.region)
        return render_create(
            platform=grant.platform,
            username=grant.username,
            expires_at=expires_at,
            grant_uid=str(grant.uid),
            region=instance.region,
            domain_controller=grant.domain_account,
            admin_rights=grant.request.admin_rights,
        )
    return render_create(
        platform=grant.platform,
        username=grant.username,
        expires_at=expires_at,
        grant_uid=str(grant.uid),
        admin_rights=grant.request.admin_rights,
        ca_public_keys=ca_public_keys,
        forward_ports=grant.request.account.forward_ports,
        forward_destinations=grant.request.destinations_in_force,
        direct_login=direct_login_allowed(grant.request.account),
        lines_expire_at=lines_expire_at,
    )


def _create_script_per_host(
    grants: Sequence[Grant],
    expires_at: datetime,
    *,
    ca_public_keys: Sequence[str],
    lines_expire_at: datetime | None = None,
) -> str:
    """The create script of several grants of one request on Linux hosts, one grant per host."""
    first = grants[0]
    return render_create_per_host(
        username=first.username,
        expires_at=expires_at,
        grants={grant.instance.instance_id: str(grant.uid) for grant in grants},
        ca_public_keys=ca_public_keys,
        forward_ports=first.request.account.forward_ports,
        forward_destinations=first.request.destinations_in_force,
        admin_rights=first.request.admin_rights,
        direct_login=direct_login_allowed(first.request.account),
        lines_expire_at=lines_expire_at,
    )


def _each_batch(
    grant_ids: Sequence[int], work: Callable[[Sequence[int]], dict[int, Outcome]]
) -> dict[int, Outcome] | None:
    """Grants that cannot share one script (a Windows host, another request, another name) are
    split into ``grant_batches``, each done by ``work`` alone; None when they are one batch."""
    if len(grant_ids) < 2:
        return None
    batches = grant_batches(grant_ids)
    if len(batches) < 2:
        return None
    return {grant_id: outcome for batch in batches for grant_id, outcome in work(batch).items()}


class BatchSettler:
    """Settles each grant of a batch once, under its lease (no longer renewed from then on), as
    soon as its host's result is known (``on_result``) or at the end (``the_rest``). Should the
    database fail while one is settled, its lease runs out and the sweep takes the grant up."""

    def __init__(
        self,
        leases: Sequence[GrantLease],
        settle_one: Callable[[Grant, GrantLease, GrantRun], Outcome],
        outcomes: dict[int, Outcome],
    ) -> None:
        self._lease_of = {lease.grant_id: lease for lease in leases}
        self._settle_one = settle_one
        self.outcomes = outcomes
        self._settled: set[int] = set()

    def on_result(self, grant: Grant, result: GrantRun) -> None:
        if grant.pk in self._settled:
            return
        try:
            lease = self._lease_of[grant.pk]
            with lease.settling():
                self.outcomes[grant.pk] = self._settle_one(grant, lease, result)
            self._settled.add(grant.pk)
        except Exception:
            logger.exception("settling grant %s failed; the sweep will take it up", grant.pk)

    def the_rest(self, grants: Sequence[Grant], results: dict[int, GrantRun]) -> dict[int, Outcome]:
        for grant in grants:
            self.on_result(grant, results[grant.pk])
        return self.outcomes


def request_locked(request_id: int) -> AccessRequest | None:
    """The request's row as it is now (committed), with its account, held FOR NO KEY UPDATE until the
    transaction ends; None if there is none.

    Taken before its grant's by every transaction here that settles a grant, and by one that hands
    out a login (``credentials.logins``): the lock order of ``requests_app.services.lifecycle`` (the
    request, then its grants, then the Logbook's head), the one an ending keeps. So a request ended
    (or shortened by a policy's save) while its grant is settled or a login handed out waits for that,
    or it for the ending, and reads what the ending wrote; neither is aborted as a deadlock. What the
    caller decides on its length or end is decided on this row, never on one read before the lock
    (a Run Command, an IAM check take long enough for a policy's save to shorten the request)."""
    return (
        AccessRequest.objects.select_for_update(no_key=True, of=("self",))
        .select_related("account")
        .filter(pk=request_id)
        .first()
    )
