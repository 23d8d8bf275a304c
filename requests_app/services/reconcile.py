"""Reconciliation: find short-lived users that no live grant accounts for, and remove them.

Cleanup is normally done grant by grant; this is the safety net for what slipped through
(a worker killed between the script and the database update, a host that was offline at
completion, a grant row lost). It only ever touches members of the marker group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import AwsAccount
from audit.services import logbook_append
from core.usernames import USERNAME_RE
from fleet import CommandResult, Fleet, FleetError, fleet_for
from fleet.scripts import LIST_END, render_list_users, render_remove
from requests_app.models import Grant, GrantStatus, Instance, SweepFailure
from requests_app.services.sweeps import SweepItemFailed, sweep_backed_off, sweep_run


@dataclass
class ReconcileResult:
    checked: int = 0
    orphans_removed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def reconcilable_instances(account: AwsAccount) -> QuerySet[Instance]:
    """Linux instances Systems Manager can reach now; the others are tried on a later round."""
    return Instance.objects.filter(
        account=account,
        platform=Instance.Platform.LINUX,
        gone_at__isnull=True,
        ssm_managed=True,
        ping_status="Online",
    ).order_by("region", "instance_id")


def _accounted_for(instance: Instance) -> set[str]:
    # A grant that is not yet removed owns its username: in-flight cleanup is not an orphan.
    return set(_owning(instance).values_list("username", flat=True))


def _owning(instance: Instance) -> QuerySet[Grant]:
    return Grant.objects.filter(instance=instance).exclude(status=GrantStatus.REMOVED)


def reconcile_account(*, account: AwsAccount) -> ReconcileResult:
    result = ReconcileResult()
    fleet = fleet_for(account)
    # A host that failed recently waits out its backoff; the others are checked as usual.
    backing_off = sweep_backed_off(kind=SweepFailure.Kind.RECONCILE)
    instances = [instance for instance in reconcilable_instances(account) if str(instance.pk) not in backing_off]
    by_region: dict[str, list[Instance]] = {}
    for instance in instances:
        by_region.setdefault(instance.region, []).append(instance)
    for region, region_instances in by_region.items():
        try:
            listings = fleet.run_script_batch(
                instance_ids=[instance.instance_id for instance in region_instances],
                region=region,
                platform=Instance.Platform.LINUX,
                script=render_list_users(),
                comment="Passport: reconcile short-lived users",
            )
        except FleetError as exc:
            listings = {instance.instance_id: exc for instance in region_instances}
        for instance in region_instances:
            listing = listings.get(instance.instance_id) or FleetError("no result")
            result.checked += 1
            # Each host on its own: one that cannot be listed, or whose handling raises, is
            # flagged and retried later with backoff, and the hosts after it are still checked.
            item = sweep_run(
                kind=SweepFailure.Kind.RECONCILE,
                key=str(instance.pk),
                account=account,
                instance_ids=[instance.instance_id],
                atomic=False,
                work=partial(_reconcile_instance, fleet, instance, listing, result),
            )
            if not item.ok:
                _flag(instance, item.error, result)
    return result


def _reconcile_instance(
    fleet: Fleet, instance: Instance, listing: CommandResult | FleetError, result: ReconcileResult
) -> None:
    if isinstance(listing, FleetError) or not listing.ok:
        raise SweepItemFailed(str(listing) if isinstance(listing, FleetError) else listing.summary())
    orphans = sorted(listed_users(listing) - _accounted_for(instance))
    failures = [
        error
        for username in orphans
        # Asked again at its turn: each removal before it is a Run Command, and a request of that
        # person made ready meanwhile (a stable username, auto-approval in seconds) owns the name now.
        if not _owning(instance).filter(username=username).exists()
        and (error := _remove_orphan(fleet, instance, username, result)) is not None
    ]
    if failures:
        raise SweepItemFailed("; ".join(failures))
    Instance.objects.filter(pk=instance.pk).update(reconciled_at=timezone.now(), reconcile_error="")


def listed_users(listing: CommandResult) -> set[str]:
    """The usernames of a whole listing by ``render_list_users``; a listing that is not provably
    whole (cut short by Systems Manager, which keeps 24,000 bytes, or not what the script prints)
    raises, so that no user is taken for an orphan by a name read half. An empty one raises too:
    the script always prints its count line, so a Success with nothing on standard output is an
    output lost (the agent leaves it empty when it cannot write it), not a host without users."""
    if not listing.stdout and not listing.truncated:
        raise SweepItemFailed(
            f"The list of short-lived users from Run Command {listing.command_id} came back empty "
            f"(the script always ends with its {LIST_END} line, so its output was lost): no user was removed."
        )
    lines = listing.stdout.splitlines()
    names, end = lines[:-1], lines[-1] if lines else ""
    count = end.removeprefix(f"{LIST_END} ")
    whole = (
        not listing.truncated
        and end.startswith(f"{LIST_END} ")
        and count.isascii()
        and count.isdigit()
        and int(count) == len(names)
        and all(USERNAME_RE.fullmatch(name) for name in names)
    )
    if not whole:
        raise SweepItemFailed(
            f"The list of short-lived users from Run Command {listing.command_id} is incomplete "
            f"({len(listing.stdout)} characters came back): no user was removed."
        )
    return set(names)


def _remove_orphan(fleet: Fleet, instance: Instance, username: str, result: ReconcileResult) -> str | None:
    try:
        outcome = fleet.run_script(
            instance_id=instance.instance_id,
            region=instance.region,
            platform=instance.platform,
            script=render_remove(platform=instance.platform, username=username),
            comment=f"Passport: remove orphaned {username}",
        )
        error = None if outcome.ok else outcome.summary()
    except FleetError as exc:
        error = str(exc)
    logbook_append(
        action="reconcile.orphan_removed" if error is None else "reconcile.orphan_remove_failed",
        actor=None,
        account=instance.account,
        instance_ids=[instance.instance_id],
        detail={"username": username, **({"error": error} if error else {})},
    )
    if error is None:
        result.orphans_removed.append(f"{username}@{instance.instance_id}")
        return None
    return f"{username}: {error}"


def _flag(instance: Instance, error: str, result: ReconcileResult) -> None:
    # Shown on the inventory page; the Logbook heard of it once, when the failure streak began.
    result.errors[instance.instance_id] = error
    Instance.objects.filter(pk=instance.pk).update(reconcile_error=error[:2000])
