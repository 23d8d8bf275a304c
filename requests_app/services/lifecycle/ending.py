"""Ending a live request: completion by a person, cleanup queued, and settling once it is over."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import permissions
from accounts.models import User
from audit.services import logbook_append
from core.text import visible
from requests_app import rules
from requests_app.models import LIVE_REQUEST_STATUSES, AccessRequest, EndReason, Grant, GrantStatus, RequestStatus
from requests_app.notifications import Kind, notification_enqueue
from requests_app.selectors import access_request_policy_denials, access_request_region_problems
from requests_app.services.lifecycle.common import (
    _instance_ids,
    _instance_ids_of,
    _refuse,
    _reject,
    _schedule_cleanup,
    _status_error,
    _transition,
)
from requests_app.signals import request_ending, requests_ending


def _begin_ending(
    access_request: AccessRequest,
    *,
    actor: User | None,
    end_reason: str,
    action: str,
    detail: dict[str, object] | None = None,
) -> bool:
    """Move a live request to ``completing`` and queue removal of everything it created.

    Expiry ends only an active request; a person, or the loss of the Admin role, ends any live
    one (approved, provisioning or active). ``detail`` goes to the Logbook entry beside the reason.
    """
    now = timezone.now()
    moved = _transition(
        access_request,
        from_statuses=[RequestStatus.ACTIVE] if end_reason == EndReason.EXPIRED else list(LIVE_REQUEST_STATUSES),
        # Expiry re-checks the time in the UPDATE itself: an extension that landed after the
        # sweep read the row must win.
        only_if=Q(expires_at__lte=now) if end_reason == EndReason.EXPIRED else None,
        status=RequestStatus.COMPLETING,
        end_reason=end_reason,
        ended_at=now,
        ended_by=actor,
    )
    if not moved:
        return False
    _grants_end([access_request.pk], now)
    _schedule_cleanup([access_request.pk])
    _close_terminals_on_commit(access_request.pk, end_reason)
    settled = _settle_state(access_request)
    # The Logbook last: its head row lock serialises every appender until this commits, so
    # nothing but the entries themselves runs while it is held (expiry fans out on it).
    instance_ids = _instance_ids(access_request)
    logbook_append(
        action=action,
        actor=actor,
        account=access_request.account,
        request_id=access_request.pk,
        instance_ids=instance_ids,
        detail={"end_reason": end_reason, **(detail or {})},
    )
    if settled is not None:
        _settle_record(access_request, settled, instance_ids)
    return True


def _grants_end(request_ids: list[int], now: datetime) -> None:
    """The grants of requests that begin ending."""
    grants = Grant.objects.filter(request_id__in=request_ids)
    # Credentials die with the request: the Windows passwords are wiped now, not after cleanup.
    grants.update(password_sealed=None)
    # Grants never attempted left nothing behind; the rest (a pending grant waiting for a
    # retry may have half-created its user) are cleaned up.
    grants.filter(status=GrantStatus.PENDING, attempts=0).update(status=GrantStatus.REMOVED, removed_at=now)
    grants.filter(
        Q(status__in=[GrantStatus.PROVISIONING, GrantStatus.READY, GrantStatus.FAILED])
        | Q(status=GrantStatus.PENDING, attempts__gt=0)
    ).update(status=GrantStatus.REMOVING, next_attempt_at=None)


def _begin_expiring_together(request_ids: list[int]) -> list[int]:
    """``_begin_ending`` for expiry, of many requests in one set of statements (the sweep's batch):
    the ones still active and due, and not locked by another transaction, move to ``completing``
    (``expired`` at once when nothing is left to remove), in the order given. Returns their ids.

    One statement per step for all of them; the row locks taken first make the conditional
    UPDATEs certain. Call it in a savepoint: any failure is for the caller to isolate.
    """
    now = timezone.now()
    locked = dict(
        AccessRequest.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk__in=request_ids, status=RequestStatus.ACTIVE, expires_at__lte=now)
        .values_list("pk", "account__account_id")
    )
    ids = [request_id for request_id in request_ids if request_id in locked]
    if not ids:
        return []
    moved = AccessRequest.objects.filter(pk__in=ids, status=RequestStatus.ACTIVE, expires_at__lte=now).update(
        status=RequestStatus.COMPLETING, end_reason=EndReason.EXPIRED, ended_at=now, ended_by=None
    )
    if moved != len(ids):
        raise RuntimeError(f"{moved} of {len(ids)} locked due requests moved to completing")
    _grants_end(ids, now)
    _schedule_cleanup(ids)
    requests_ending.send(sender=AccessRequest, request_ids=ids, end_reason=EndReason.EXPIRED)
    left = set(
        Grant.objects.filter(request_id__in=ids)
        .exclude(status=GrantStatus.REMOVED)
        .values_list("request_id", flat=True)
    )
    settled = [request_id for request_id in ids if request_id not in left]
    if AccessRequest.objects.filter(pk__in=settled, status=RequestStatus.COMPLETING).update(
        status=RequestStatus.EXPIRED
    ) != len(settled):
        raise RuntimeError("a locked completing request could not be settled")
    # The Logbook last (queued by the caller's logbook_batch), each request's entries together.
    instance_ids = _instance_ids_of(ids)
    settled_ids = set(settled)
    for request_id in ids:
        account, instances = locked[request_id], instance_ids.get(request_id, [])
        logbook_append(
            action="request.expiring",
            actor=None,
            account=account,
            request_id=request_id,
            instance_ids=instances,
            detail={"end_reason": EndReason.EXPIRED},
        )
        if request_id in settled_ids:
            logbook_append(
                action=f"request.{RequestStatus.EXPIRED}",
                actor=None,
                account=account,
                request_id=request_id,
                instance_ids=instances,
            )
    return ids


def _close_terminals_on_commit(request_id: int, end_reason: str) -> None:
    # Open browser terminals of this request close as soon as the ending is committed; the
    # terminal app (above this one) listens, so the requests app never imports it.
    request_ending.send(sender=AccessRequest, request_id=request_id, end_reason=end_reason)


def _settle_state(access_request: AccessRequest) -> str | None:
    """The state change of settling (see below); the final status, or None if not settled."""
    if access_request.grants.exclude(status=GrantStatus.REMOVED).exists():
        return None
    final = RequestStatus.EXPIRED if access_request.end_reason == EndReason.EXPIRED else RequestStatus.COMPLETED
    if not _transition(access_request, from_statuses=[RequestStatus.COMPLETING], status=final):
        return None
    return str(final)


def _settle_record(access_request: AccessRequest, final: str, instance_ids: list[str]) -> None:
    logbook_append(
        action=f"request.{final}",
        actor=None,
        account=access_request.account,
        request_id=access_request.pk,
        instance_ids=instance_ids,
    )


def access_request_settle(*, access_request: AccessRequest) -> bool:
    """Close a request whose cleanup is over: ``completing`` becomes ``completed`` or ``expired``."""
    final = _settle_state(access_request)
    if final is None:
        return False
    _settle_record(access_request, final, _instance_ids(access_request))
    return True


def access_request_complete(*, access_request: AccessRequest, actor: User, own_only: bool = False) -> AccessRequest:
    """End live access now (its users are removed). ``own_only``: the actor came with a CLI token, which
    completes only their own request (``rules.complete_check``); anyone else's is refused on record."""
    # The rule reads the row as it is now, not as the caller loaded it; the conditional
    # UPDATE below still decides races.
    access_request.refresh_from_db()
    check = rules.complete_check(access_request, actor, own_only=own_only)
    if not check:
        if check.code == "conflict" and access_request.status in (
            RequestStatus.COMPLETING,
            RequestStatus.COMPLETED,
            RequestStatus.EXPIRED,
        ):
            return access_request
        raise _refuse(access_request, actor, action="complete", check=check)
    with transaction.atomic():
        if not _begin_ending(access_request, actor=actor, end_reason=EndReason.COMPLETED, action="request.completing"):
            if access_request.status in (RequestStatus.COMPLETING, RequestStatus.COMPLETED, RequestStatus.EXPIRED):
                return access_request
            raise _status_error(access_request, "completed")
    return access_request


def access_request_revoke_if_not_admin(*, access_request: AccessRequest, actor: User | None, via: str) -> bool:
    """End a live request whose requester no longer holds the Admin role on its account.

    Only an active Admin may have access (``permissions.access_role_refusal``): when the role is
    lowered or removed, or the person deactivated (``via`` the admin, a SAML sign-in,
    ``deactivated``, or found at provisioning) the request
    ends as a completion does (its sessions close, its users are removed), with ``end_reason``
    ``revoked`` and a ``request.revoked`` Logbook entry saying why. ``actor`` is who changed the
    role, None for the identity provider or the portal itself. Returns whether it was ended; a
    requester who is still Admin, or a request no longer live, is left alone.
    """
    refusal = permissions.access_role_refusal(access_request.requester, access_request.account, third_person=True)
    if refusal is None:
        return False
    with transaction.atomic():
        ended = _begin_ending(
            access_request,
            actor=actor,
            end_reason=EndReason.REVOKED,
            action="request.revoked",
            detail={
                "why": refusal,
                "role": permissions.role_on(access_request.requester, access_request.account),
                "via": via,
            },
        )
        if ended:
            notification_enqueue(kind=Kind.REVOKED, request_id=access_request.pk)
        return ended


def access_request_reject_if_policy_denies(*, access_request: AccessRequest, via: str) -> bool:
    """Reject an approved request that a deny rule of the account's approval policy, set since the
    approval (by a person, or automatic), now refuses (``access_request_policy_denials``): a policy holds
    for a request's whole length, and nothing is on an instance yet.

    Rejected, not failed or revoked: failed would blame the instances, revoked names the
    requester's role; rejected is where the request would have ended had the rule been set before
    its approval (the approver could only reject it), and no user was created. Passport decides
    (``decided_by`` emptied: no person rejected it); the note and the ``request.rejected`` Logbook
    entry name the rules, and the requester is told by mail. Returns whether it was rejected; a
    request the policy allows, or no longer approved (already started, say), is left alone.
    """
    denials = access_request_policy_denials(access_request=access_request)
    if not denials:
        return False
    rule = ", ".join(name for name, _ in denials)
    note = (
        f"Refused before provisioning: the account's approval policy, changed since the approval, denies it ({rule})."
    )
    return _reject_before_provisioning(
        access_request, note=note, detail={"rule": rule, "why": [message for _, message in denials], "via": via}
    )


def access_request_reject_if_region_taken_off(*, access_request: AccessRequest, via: str) -> bool:
    """Reject an approved request with an instance in a region taken off its account since it was made
    (``access_request_region_problems``): Passport no longer manages that region, and no user is made
    there. Rejected, as a deny rule set since the approval is (``access_request_reject_if_policy_denies``,
    asked first): nothing is on an instance yet. The note and ``request.rejected`` name the regions and
    each instance there. Returns whether it was rejected."""
    problems = access_request_region_problems(access_request=access_request)
    if not problems:
        return False
    regions = sorted({region for region, _ in problems})
    note = (
        f"Refused before provisioning: {', '.join(visible(region) for region in regions)} "
        f"{'is a region' if len(regions) == 1 else 'are regions'} Passport no longer manages in "
        f"{visible(access_request.account.name)}."
    )
    return _reject_before_provisioning(
        access_request, note=note, detail={"regions": regions, "why": [message for _, message in problems], "via": via}
    )


def _reject_before_provisioning(access_request: AccessRequest, *, note: str, detail: dict[str, object]) -> bool:
    """``_reject`` an approved request by Passport (no person), the note (cut to its column) in the
    ``request.rejected`` entry's ``detail`` too. An approved request's grants were never handed out:
    nothing to remove on an instance."""
    note = note[:256]
    with transaction.atomic():
        return _reject(
            access_request,
            from_status=RequestStatus.APPROVED,
            decided_by=None,
            note=note,
            detail={"note": note, **detail},
            instance_ids=_instance_ids(access_request),
        )


def access_requests_revoke_for_memberships(
    *, memberships: Sequence[tuple[int, int]], actor: User | None, via: str
) -> list[int]:
    """``access_request_revoke_if_not_admin`` for every live request of each (person pk, account pk)
    whose membership was just changed or removed; the ids of the requests it ended.

    Called in the transaction that changed the memberships: if that one rolls back, nothing ends.
    """
    ended: list[int] = []
    for user_id, account_id in sorted(set(memberships)):
        live = (
            AccessRequest.objects.select_related("requester", "account")
            .filter(requester_id=user_id, account_id=account_id, status__in=LIVE_REQUEST_STATUSES)
            .order_by("pk")
        )
        for access_request in live:
            if access_request_revoke_if_not_admin(access_request=access_request, actor=actor, via=via):
                ended.append(access_request.pk)
    return ended


def access_requests_revoke_for_person(*, user_id: int, actor: User | None, via: str) -> list[int]:
    """``access_request_revoke_if_not_admin`` for every live request of this person (deactivated:
    ``access_role_refusal`` refuses them everywhere); the ids of the requests it ended.

    Called in the transaction that deactivated them: if that one rolls back, nothing ends.
    """
    accounts = (
        AccessRequest.objects.filter(requester_id=user_id, status__in=LIVE_REQUEST_STATUSES)
        .values_list("account_id", flat=True)
        .distinct()
    )
    return access_requests_revoke_for_memberships(
        memberships=[(user_id, account_id) for account_id in accounts], actor=actor, via=via
    )
