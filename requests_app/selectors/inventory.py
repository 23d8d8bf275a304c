"""Reads of the inventory (instances, scoped to the person asking) and of the periodic tasks'
failing items."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from django.db.models import F, Q, QuerySet

from accounts import permissions
from accounts.models import AwsAccount, User
from requests_app.models import Instance, SweepFailure
from requests_app.selectors.addresses import InterfaceAddressHas


def in_managed_regions(accounts: Iterable[AwsAccount]) -> Q:
    """Instances of these accounts in a region their account still lists: the inventory visits no other,
    so what it last said of one elsewhere stays as old as the admin's change (``instance_problem``)."""
    condition = Q(pk__in=[])
    for account in accounts:
        condition |= Q(account=account, region__in=account.managed_regions)
    return condition


def requestable_instances(*, user: User, account: AwsAccount, search: str = "") -> QuerySet[Instance]:
    queryset = Instance.objects.filter(
        in_managed_regions([account]), account__in=permissions.requestable_accounts(user), gone_at__isnull=True
    ).select_related("account")
    if search:
        queryset = queryset.filter(
            Q(name__icontains=search)
            | Q(instance_id__icontains=search)
            | Q(private_ip__icontains=search)
            # A multi-ENI host by any interface's address, as the inventory lists them.
            | Q(InterfaceAddressHas(search))
        )
    return queryset.order_by("name", "instance_id")


def instances_by_id(*, account: AwsAccount, instance_ids: Sequence[str]) -> dict[str, Instance]:
    """The account's instances among ``instance_ids``, by instance id (unknown ids are simply absent)."""
    return {
        instance.instance_id: instance
        for instance in Instance.objects.filter(account=account, instance_id__in=list(instance_ids)).select_related(
            "account"
        )
    }


def inventory_list(*, user: User, include_gone: bool = False) -> QuerySet[Instance]:
    """The instances of the accounts this person sees, by account and name; without those gone from
    the cloud unless ``include_gone``."""
    queryset = Instance.objects.filter(account__in=permissions.visible_accounts(user))
    if not include_gone:
        queryset = queryset.filter(gone_at__isnull=True)
    return queryset.select_related("account").order_by("account__name", "name", "instance_id")


def inventory_gone_count(*, user: User) -> int:
    """How many instances of the accounts this person sees are gone from the cloud."""
    return Instance.objects.filter(account__in=permissions.visible_accounts(user), gone_at__isnull=False).count()


def sweep_failure_get(*, kind: str, key: str) -> SweepFailure | None:
    """The failure streak of one item of a periodic task (e.g. ending an expired request), if it has one."""
    return SweepFailure.objects.filter(kind=kind, key=key).first()


def sweep_failures_by_account(*, kind: str, accounts: Collection[AwsAccount]) -> dict[int, list[SweepFailure]]:
    """The failing items of an account-keyed sweep (``"<account pk>:<region>"``) of these accounts,
    by account pk, each account's by key, for the inventory page: one query whatever their number."""
    wanted = {str(account.pk): account.pk for account in accounts}
    found: dict[int, list[SweepFailure]] = {}
    # A kind has at most one row per account and region: few enough to read whole and sort out here.
    for failure in SweepFailure.objects.filter(kind=kind).order_by("key"):
        account_pk = wanted.get(failure.key.partition(":")[0])
        if account_pk is not None:
            found.setdefault(account_pk, []).append(failure)
    return found


def instance_names(instance_ids: Collection[str]) -> dict[str, str]:
    """Instance id to its Name in the inventory, for the Logbook (``audit.instance_names``); one query.

    Not scoped to a person: the Logbook's own permission decides who reads the entries these
    ids come from. An instance the inventory no longer finds keeps its last name; should an id
    appear in two accounts, the one still present wins.
    """
    rows = (
        Instance.objects.filter(instance_id__in=list(instance_ids))
        .exclude(name="")
        .order_by(F("gone_at").asc(nulls_last=True), "id")
        .values_list("instance_id", "name")
    )
    return dict(rows)  # later rows win: the present instance (no gone_at) comes last
