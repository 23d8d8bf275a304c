"""Reads of grants: one grant for a person (for its page, an open terminal, a CLI session), what its
forwarding reaches now, and the batches one Run Command creates or removes together."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from accounts.models import AwsAccount, User
from accounts.ports import allowed_forward_ports
from core.destinations import valid_destinations
from requests_app.models import (
    GRANT_STATES_NEEDING_CLEANUP,
    AccessRequest,
    Grant,
    GrantStatus,
    Instance,
    RequestStatus,
)
from requests_app.selectors.requests import access_request_get


def grant_get(*, user: User, pk: int) -> Grant:
    """The grant if this person may see its request; a 404 otherwise, never a hint that it exists."""
    request_id = Grant.objects.filter(pk=pk).values_list("request_id", flat=True).first()
    if request_id is None:
        raise Http404("No such grant.")
    access_request = access_request_get(user=user, pk=request_id)
    grant = Grant.objects.select_related("instance", "request__account", "request__requester").get(pk=pk)
    grant.request = access_request
    return grant


def grant_get_for_session(*, user: User, pk: int) -> Grant:
    """``grant_get`` for an open terminal, which keeps it for as long as it runs: the same 404,
    with the grant's instance and its request's account only, not the request's other grants,
    instances and people (a thousand open terminals would keep them all)."""
    visible = AccessRequest.objects.visible_to(user).values("pk")
    grant = Grant.objects.select_related("instance", "request__account").filter(pk=pk, request__in=visible).first()
    if grant is None:
        raise Http404("No such grant.")
    return grant


def grant_get_by_instance(*, user: User, request_pk: int, instance_id: str) -> Grant:
    """One grant of a request this person may see, by its instance id; a 404 otherwise."""
    return get_object_or_404(
        Grant.objects.filter(request__in=AccessRequest.objects.visible_to(user)).select_related(
            "instance", "request__account"
        ),
        request_id=request_pk,
        instance__instance_id=instance_id,
    )


@dataclass(frozen=True)
class ForwardingInForce:
    """What ``ssh -L`` on one grant may reach now: the instance's own ports, and the destinations
    beyond it (each ``host:port`` in ``core.destinations``' one spelling)."""

    ports: tuple[int, ...]
    destinations: tuple[str, ...]
    # The account's sessions are moderated (``require_session_join``): no approver can watch a forward,
    # so none may be open, whatever its target.
    moderated: bool = False


def grant_forwarding_in_force(*, grant: Grant) -> ForwardingInForce:
    """The account's ports, and the destinations recorded with the request that the account still
    lists, and whether its sessions are moderated, read afresh: an admin may have changed them since
    the caller loaded the account."""
    stored = AwsAccount.objects.filter(pk=grant.request.account_id).values_list(
        "extra_forward_ports", "forward_destinations", "require_session_join"
    )
    extra, listed, moderated = stored.first() or ([], [], False)
    still_open = set(valid_destinations(listed))
    return ForwardingInForce(
        ports=allowed_forward_ports(extra or []),
        destinations=tuple(item for item in grant.request.approved_destinations if item in still_open),
        moderated=bool(moderated),
    )


# Hosts per Run Command when the grants of one request are created or removed together; the
# script carries one line per host (its grant and CA lines), so it stays a few kilobytes.
GRANT_BATCH_SIZE = 10


def grant_batches(grant_ids: Iterable[int] | QuerySet[Grant, int]) -> list[list[int]]:
    """The grants, in the batches one Run Command can create or remove together: Linux grants
    (``Grant.platform``, what the grant made) of one request in one region, for one username, one
    grant per host, at most ``GRANT_BATCH_SIZE``.
    Windows grants go alone (each has its own password hand-off), as do grants with no peer.
    ``grant_ids`` may be a query of ids: then it is one query, a subquery of this one."""
    # (request, region, username) -> its batches, each as the grant ids and the hosts they are on.
    groups: dict[tuple[int, str, str], list[tuple[list[int], set[str]]]] = {}
    singles: list[list[int]] = []
    rows = (
        Grant.objects.filter(pk__in=grant_ids if isinstance(grant_ids, QuerySet) else list(grant_ids))
        .order_by("pk")
        .values_list("pk", "request_id", "platform", "instance__region", "instance__instance_id", "username")
    )
    for pk, request_id, platform, region, instance_id, username in rows:
        if platform != Instance.Platform.LINUX:
            singles.append([pk])
            continue
        batches = groups.setdefault((request_id, region, username), [])
        batch = next((b for b in batches if len(b[0]) < GRANT_BATCH_SIZE and instance_id not in b[1]), None)
        if batch is None:
            batch = ([], set())
            batches.append(batch)
        batch[0].append(pk)
        batch[1].add(instance_id)
    return [pks for batches in groups.values() for pks, _ in batches] + singles


def grants_needing_cleanup_count(account_pk: int) -> int:
    """How many grants on the account may still have left a user on an instance (whatever their
    request's state): a change of the account's role meanwhile is recorded with this count
    (``accounts.account_identity``)."""
    return Grant.objects.filter(request__account_id=account_pk, status__in=GRANT_STATES_NEEDING_CLEANUP).count()


# A grant in these states may need its account on the host (its create ran, runs or is to run);
# one being removed, failed or removed does not.
_GRANT_STATES_KEEPING_THE_USER = (GrantStatus.PENDING, GrantStatus.PROVISIONING, GrantStatus.READY)


def grants_keeping_the_user(*, grants: Iterable[Grant]) -> dict[int, list[str]]:
    """For each of ``grants`` (by pk), the uids of the other grants of the same user on the same
    instance that the portal holds live: what a Linux removal lets keep the user, whatever records
    the host holds (a user with sudo may write one)."""
    grants = list(grants)
    others = Grant.objects.filter(
        instance__in={grant.instance_id for grant in grants},
        username__in={grant.username for grant in grants},
        status__in=_GRANT_STATES_KEEPING_THE_USER,
    ).values_list("pk", "instance_id", "username", "uid")
    keeping: dict[int, list[str]] = {grant.pk: [] for grant in grants}
    for pk, instance_id, username, uid in others:
        for grant in grants:
            if grant.pk != pk and grant.instance_id == instance_id and grant.username == username:
                keeping[grant.pk].append(str(uid))
    return keeping


def grants_sharing_the_user(grant: Grant) -> QuerySet[Grant]:
    """The ready grants of active requests that share ``grant``'s Linux user on its host, not it:
    the grants whose account's expiry a script of ``grant`` also moves (``provisioning.expiry``).
    None for a Windows grant."""
    if grant.platform != Instance.Platform.LINUX:
        return Grant.objects.none()
    return (
        Grant.objects.filter(
            instance_id=grant.instance_id,
            username=grant.username,
            platform=Instance.Platform.LINUX,
            status=GrantStatus.READY,
            request__status=RequestStatus.ACTIVE,
        )
        .exclude(pk=grant.pk)
        .order_by("pk")
    )
