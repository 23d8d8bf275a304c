"""Putting short-lived users on instances.

A worker claims a grant with a conditional UPDATE that also sets a lease, renewed while the
script runs (requests_app.services.leases). If the worker dies, the lease runs out within
PASSPORT_LEASE_SECONDS and the periodic sweep lets another worker claim it; the
scripts are idempotent, so running one again is harmless. The lost attempt counts: one lost on
the last attempt allowed (PASSPORT_GRANT_MAX_ATTEMPTS) fails the grant, as a failed script would.
Every step is in the Logbook.

The grants of one request on Linux hosts of one region are handed out together
(``requests_app.selectors.grant_batches``) and created by one Run Command (``grants_provision``):
each host picks its own grant from the script, and each grant keeps its own claim, lease,
Logbook entries, retries and outcome, as if it had been provisioned alone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.approval_policies import approval_policy_hold
from audit.services import logbook_append, logbook_batch
from core.dispatch import task_send_on_commit
from fleet import CommandResult, FleetError
from fleet.scripts import created_account_sid
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, Instance, RequestStatus
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.leases import GrantLease, grant_lease_kept, lease_new_until
from requests_app.services.lifecycle import (
    access_request_reject_if_policy_denies,
    access_request_reopen_if_approvals_short,
    access_request_revoke_if_not_admin,
)
from requests_app.services.provisioning.common import (
    PROVISION_RETRY_CAP,
    PROVISIONABLE_REQUESTS,
    BatchSettler,
    GrantRun,
    Outcome,
    _backoff,
    _ca_keys_behind,
    _create_script,
    _create_script_per_host,
    _drop_handoff,
    _each_batch,
    _load_all,
    _run_on,
    _run_on_each,
    account_expiry_for,
    ca_keys_for,
    host_kind_change,
    request_locked,
)
from requests_app.services.provisioning.expiry import grant_expiry_sync_if_behind
from sshca.services import ca_key_fingerprints

logger = logging.getLogger(__name__)

# Exit codes of the create script that another attempt would not change: 3, the name belongs to
# an account that is not ours; 6, the grant was removed meanwhile; 7, a Windows refusal.
FINAL_EXIT_CODES = (3, 6, 7)


def access_request_begin_provisioning(*, request_id: int) -> list[int]:
    """Move an approved request to provisioning; return the grants to provision (those pending and
    not waiting out a failed attempt's backoff).

    A requester who lost the Admin role since the approval gets nothing: the request is revoked
    (``access_request_revoke_if_not_admin``) and no grant is handed out. Nor does a request that a
    deny rule of the account's policy, set since the approval, now refuses: it is rejected
    (``access_request_reject_if_policy_denies``). One whose approval the policy no longer finds
    enough (more approvals required, an approver who no longer approves there, automatic approval
    no longer given) goes back to pending (``access_request_reopen_if_approvals_short``).

    All in one transaction, the account's row held first (``approval_policy_hold``): the policy
    asked is still the account's when the request moves on. A save of it waits for the move, then
    finds the request provisioning and revokes it if a deny rule refuses it now.
    """
    approved = AccessRequest.objects.filter(pk=request_id, status=RequestStatus.APPROVED)
    account_id = approved.values_list("account_id", flat=True).first()
    if account_id is not None:
        with transaction.atomic():
            approval_policy_hold(account_id=account_id)
            _begin_provisioning(approved.select_related("requester", "account").first())
    # Not one waiting out its backoff (an attempt failed): its own retry, or the sweep after it, takes
    # it up. A second delivery of this task (acks_late, or the resume sweep's) must not run it early.
    return list(
        Grant.objects.filter(
            request_id=request_id, request__status__in=PROVISIONABLE_REQUESTS, status=GrantStatus.PENDING
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()))
        .values_list("pk", flat=True)
    )


def _begin_provisioning(approved: AccessRequest | None) -> None:
    """``access_request_begin_provisioning``'s checks and move, in its transaction."""
    if approved is None:
        return
    if not access_request_revoke_if_not_admin(
        access_request=approved, actor=None, via="provisioning"
    ) and not access_request_reject_if_policy_denies(access_request=approved, via="provisioning"):
        access_request_reopen_if_approvals_short(access_request=approved, via="provisioning")
    moved = AccessRequest.objects.filter(pk=approved.pk, status=RequestStatus.APPROVED).update(
        status=RequestStatus.PROVISIONING
    )
    if not moved:
        return
    # Handed out now: the sweep's grace for these grants starts here, not at creation.
    Grant.objects.filter(request_id=approved.pk, status=GrantStatus.PENDING).update(next_attempt_at=None)
    logbook_append(
        action="request.provisioning",
        actor=None,
        account=approved.account,
        request_id=approved.pk,
        instance_ids=list(approved.grants.values_list("instance__instance_id", flat=True)),
    )


def grant_claim_for_provisioning(*, grant_id: int, lease_until: datetime) -> bool:
    """Take one grant for one attempt; of any number of workers asking at once, one gets it.

    Every condition on the grant's own row sits in the UPDATE's own WHERE clause: when two
    claims race, PostgreSQL re-checks those against the row the winner committed. A filter
    through a join (``request__status``) would make Django wrap the whole filter in a
    self-join subquery, which the loser does not re-check: both would claim the grant.
    """
    now = timezone.now()
    provisionable = AccessRequest.objects.filter(status__in=PROVISIONABLE_REQUESTS).values("pk")
    # A lease run out is a worker lost mid-attempt; that attempt counted, so the last one lost is
    # not followed by another (``grant_fail_if_worker_lost`` fails the grant instead).
    lost_with_attempts_left = Q(
        status=GrantStatus.PROVISIONING, lease_until__lt=now, attempts__lt=settings.PASSPORT_GRANT_MAX_ATTEMPTS
    )
    # A grant waiting out a failed attempt's backoff is nobody's yet: a second delivery (the sweep's,
    # begin_provisioning's again) finds it too early, and its own retry, queued for then, takes it.
    due = Q(status=GrantStatus.PENDING) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    claimed = (
        Grant.objects.filter(pk=grant_id, request_id__in=provisionable)
        .filter(due | lost_with_attempts_left)
        .update(
            status=GrantStatus.PROVISIONING,
            attempts=F("attempts") + 1,
            lease_until=lease_until,
            next_attempt_at=None,
        )
    )
    return claimed == 1


WORKER_LOST_ERROR = "The worker was lost during provisioning (its lease ran out) on every attempt allowed."


def grant_fail_if_worker_lost(*, grant_id: int) -> bool:
    """Fail a grant whose last attempt allowed (``PASSPORT_GRANT_MAX_ATTEMPTS``) ended with its
    worker lost (the lease ran out, nothing settled it), as a finished attempt failing for good
    would (``_provision_failed``): ``grant.failed``, and the request failed if nothing is left.
    Whatever the lost attempts made is removed with the grant. Returns whether it did; of two
    workers asking at once, one does (a conditional UPDATE, as a claim)."""
    provisionable = AccessRequest.objects.filter(status__in=PROVISIONABLE_REQUESTS).values("pk")
    lost = Grant.objects.filter(
        pk=grant_id,
        request_id__in=provisionable,
        status=GrantStatus.PROVISIONING,
        lease_until__lt=timezone.now(),
        attempts__gte=settings.PASSPORT_GRANT_MAX_ATTEMPTS,
    )
    request_id = lost.values_list("request_id", flat=True).first()
    if request_id is None:
        return False
    with transaction.atomic():
        request_locked(request_id)
        failed = lost.update(status=GrantStatus.FAILED, lease_until=None, last_error=WORKER_LOST_ERROR)
        if not failed:
            return False
        grant = Grant.objects.select_related("request__account", "instance").get(pk=grant_id)
        grant_logbook_append(grant, "grant.failed", {"attempts": grant.attempts, "error": WORKER_LOST_ERROR})
        _fail_request_if_nothing_left(grant.request)
    return True


def grant_provision(*, grant_id: int) -> Outcome:
    return grants_provision(grant_ids=[grant_id])[grant_id]


def grants_provision(*, grant_ids: Sequence[int]) -> dict[int, Outcome]:
    """Provision one grant, or a batch of ``grant_batches`` (grants of one request on Linux hosts
    of one region) with one Run Command; each grant's outcome, by id. A grant another worker
    holds, one that is done, or one whose request ended is left alone."""
    split = _each_batch(grant_ids, lambda batch: grants_provision(grant_ids=batch))
    if split is not None:
        return split
    outcomes = {grant_id: Outcome() for grant_id in grant_ids}
    until = lease_new_until()
    leases = [
        GrantLease(grant_id, until)
        for grant_id in grant_ids
        if not grant_fail_if_worker_lost(grant_id=grant_id)
        and grant_claim_for_provisioning(grant_id=grant_id, lease_until=until)
    ]
    if not leases:
        return outcomes
    grants = _load_all([lease.grant_id for lease in leases])
    # One expiry for the script (one script for a batch's hosts); each grant keeps what was written.
    expires_at = max(account_expiry_for(grant) for grant in grants)
    # Read once, below: what the script carries is what each grant records (a batch is Linux only).
    ca_public_keys: list[str] = []
    with transaction.atomic(), logbook_batch():  # the head lock once for the whole batch
        for grant in grants:
            grant_logbook_append(grant, "grant.provisioning", {"username": grant.username, "attempt": grant.attempts})

    def settle(grant: Grant, lease: GrantLease, result: GrantRun) -> Outcome:
        return _provision_settle_releasing(grant, lease, result, expires_at=expires_at, ca_public_keys=ca_public_keys)

    settler = BatchSettler(leases, settle, outcomes)
    results: dict[int, GrantRun]
    try:
        with grant_lease_kept(*leases):
            # A grant whose instance is no longer the kind of host it was approved for is refused
            # alone, before anything is made for it; the rest of its batch goes on.
            results = {grant.pk: refusal for grant in grants if (refusal := host_kind_change(grant)) is not None}
            to_create = [grant for grant in grants if grant.pk not in results]
            if to_create:
                ca_public_keys = ca_keys_for(to_create[0])
            if len(to_create) == 1:
                script = _create_script(to_create[0], expires_at, ca_public_keys=ca_public_keys)
                results[to_create[0].pk] = _run_on(to_create[0], script=script, purpose="create")
            elif to_create:
                script = _create_script_per_host(to_create, expires_at, ca_public_keys=ca_public_keys)
                # Each grant as soon as its own host is done: a slow host holds up none of the others.
                results |= _run_on_each(to_create, script=script, purpose="create", on_result=settler.on_result)
    except FleetError as exc:
        results = {grant.pk: exc for grant in grants}
    except Exception as exc:  # a bug must still show on each grant, and be retried, not hang them
        logger.exception("provisioning grants %s failed unexpectedly", [grant.pk for grant in grants])
        results = {grant.pk: FleetError(f"Internal error: {exc!r}") for grant in grants}
    finally:
        for grant in grants:
            _drop_handoff(grant)
    return settler.the_rest(grants, results)


def _provision_settle_releasing(
    grant: Grant, lease: GrantLease, result: GrantRun, *, expires_at: datetime, ca_public_keys: Sequence[str]
) -> Outcome:
    """Settle the grant, then let its lease go (``_provision_settle`` leaves the lease alone; a
    removal's settling clears it itself)."""
    outcome = _provision_settle(grant, result, lease=lease, expires_at=expires_at, ca_public_keys=ca_public_keys)
    Grant.objects.filter(pk=grant.pk, lease_until=lease.until).update(lease_until=None)
    return outcome


def _provision_settle(
    grant: Grant, result: GrantRun, *, lease: GrantLease, expires_at: datetime, ca_public_keys: Sequence[str]
) -> Outcome:
    """The grant ready, or failed (to be retried, or for good), by what its script did."""
    if isinstance(result, FleetError):
        return _provision_failed(grant, str(result), lease=lease, command_id=None, retryable=result.retryable)
    if not result.ok:
        retryable = result.exit_code not in FINAL_EXIT_CODES
        return _provision_failed(
            grant, result.summary(), lease=lease, command_id=result.command_id, retryable=retryable
        )
    _provision_succeeded(grant, result, lease=lease, expires_at=expires_at, ca_public_keys=ca_public_keys)
    return Outcome()


def _provision_succeeded(
    grant: Grant, result: CommandResult, *, lease: GrantLease, expires_at: datetime, ca_public_keys: Sequence[str]
) -> None:
    """The grant ready, its request active (the first ready grant starts the clock), and the
    account's expiry on the host (``expires_at``, written by the script) moved to the request's
    end should it differ (``provisioning.expiry``). On Linux, should the CA's keys have changed
    since the script was rendered with ``ca_public_keys``, its lines are rewritten at once: the
    refresh a rotation or retirement queued listed ready grants only, and this one was not yet.

    Only while the attempt is still this worker's (its lease), as for a failure: one whose lease ran
    out while its script ran may have been claimed again, and the other worker's create (on Windows,
    with the password it stored, the one the person reads) be running or done. A late success then
    settles nothing: its command is named in the Logbook (``grant.create_duplicate``), once."""
    written = ca_key_fingerprints(ca_public_keys) if grant.platform == Instance.Platform.LINUX else None
    account_sid = created_account_sid(result.stdout) if grant.platform == Instance.Platform.WINDOWS else None
    now = timezone.now()
    # Both entries under one hold of the Logbook's head lock, taken just before the commit.
    with transaction.atomic(), logbook_batch():
        # As it is now: a policy's save may have shortened the request while the script ran.
        locked = request_locked(grant.request_id)
        ready = Grant.objects.filter(pk=grant.pk, status=GrantStatus.PROVISIONING, lease_until=lease.until).update(
            status=GrantStatus.READY,
            ready_at=now,
            last_error="",
            command_ids=[*grant.command_ids, result.command_id],
            # What the script's lines were written with (it was rendered from this same account row).
            key_forward_ports=grant.request.account.extra_forward_ports,
            host_expires_at=expires_at,
            key_forward_destinations=grant.request.account.forward_destinations,
            key_ca_fingerprints=written,
            account_sid=account_sid,
        )
        if not ready:
            # The request ended while the script ran; the grant is queued for removal.
            ended = Grant.objects.filter(pk=grant.pk, lease_until=lease.until).update(
                command_ids=[*grant.command_ids, result.command_id]
            )
            if not ended:
                # Taken over by another worker (a create, or the removal of an ended request).
                grant_logbook_append(
                    grant, "grant.create_duplicate", {"username": grant.username, "command_id": result.command_id}
                )
            return
        assert locked is not None  # its grant was just made ready
        sid = {"account_sid": account_sid} if account_sid else {}
        grant_logbook_append(grant, "grant.ready", {"username": grant.username, "command_id": result.command_id, **sid})
        # The clock starts when access is first usable, not when it was asked for; its length as the
        # row is now, locked (a shortening saved during the script is kept).
        end = now + locked.total_duration
        activated = AccessRequest.objects.filter(pk=locked.pk, status=RequestStatus.PROVISIONING).update(
            status=RequestStatus.ACTIVE, activated_at=now, expires_at=end
        )
        if activated:
            logbook_append(
                action="request.active",
                actor=None,
                account=locked.account,
                request_id=locked.pk,
                detail={"expires_at": end},
            )
        grant_expiry_sync_if_behind(grant_id=grant.pk)
    # After the commit: see _ca_keys_behind for why neither order of a key change is missed.
    if written is not None:
        _ca_keys_behind(grant.pk, written)


def _provision_failed(
    grant: Grant, error: str, *, lease: GrantLease, command_id: str | None, retryable: bool
) -> Outcome:
    """The grant back to wait for another attempt, or failed for good, by an attempt that failed.

    Only while the attempt is still this worker's (its lease): one whose lease ran out while its
    script ran may have been claimed again, and the other worker's create be running now. A late
    failure then changes nothing: the grant stays the other worker's, neither put back to wait
    (a second create alongside) nor failed under a script that may yet make its user."""
    access_request = grant.request
    ours = Q(pk=grant.pk, status=GrantStatus.PROVISIONING, lease_until=lease.until)
    command_ids = [*grant.command_ids, command_id] if command_id else grant.command_ids
    final = not retryable or grant.attempts >= settings.PASSPORT_GRANT_MAX_ATTEMPTS
    with transaction.atomic():
        request_locked(access_request.pk)
        if not final:
            retry_in = _backoff(grant.attempts, PROVISION_RETRY_CAP)
            moved = Grant.objects.filter(ours).update(
                status=GrantStatus.PENDING,
                last_error=error,
                command_ids=command_ids,
                next_attempt_at=timezone.now() + timedelta(seconds=retry_in),
            )
            if not moved:
                return Outcome()
            grant_logbook_append(
                grant,
                "grant.provision_retry",
                {"attempt": grant.attempts, "error": error, "retry_in_seconds": retry_in},
            )
            return Outcome(retry_in=retry_in)
        # Whatever the script got done before failing is cleaned up, so the user cannot linger.
        moved = Grant.objects.filter(ours).update(status=GrantStatus.FAILED, last_error=error, command_ids=command_ids)
        if not moved:
            return Outcome()
        grant_logbook_append(grant, "grant.failed", {"attempts": grant.attempts, "error": error})
        _fail_request_if_nothing_left(access_request)
    return Outcome()


def _fail_request_if_nothing_left(access_request: AccessRequest) -> None:
    alive = access_request.grants.filter(
        status__in=[GrantStatus.PENDING, GrantStatus.PROVISIONING, GrantStatus.READY]
    ).exists()
    if alive:
        return
    now = timezone.now()
    failed = AccessRequest.objects.filter(pk=access_request.pk, status=RequestStatus.PROVISIONING).update(
        status=RequestStatus.FAILED, end_reason=EndReason.FAILED, ended_at=now
    )
    if not failed:
        return
    grant_ids = list(access_request.grants.filter(status=GrantStatus.FAILED).values_list("pk", flat=True))
    # Removed from now on, at once: no provisioning backoff of theirs holds the removal back.
    Grant.objects.filter(pk__in=grant_ids).update(status=GrantStatus.REMOVING, next_attempt_at=None)
    access_request.grants.update(password_sealed=None)
    logbook_append(
        action="request.failed",
        actor=None,
        account=access_request.account,
        request_id=access_request.pk,
        detail={"error": "Provisioning failed on every instance."},
    )
    for grant_id in grant_ids:
        task_send_on_commit("deprovision_grant", grant_id)
