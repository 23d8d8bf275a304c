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
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.approval_policies import approval_policy_hold
from audit.services import logbook_append, logbook_batch
from fleet import FleetError
from requests_app.models import AccessRequest, Grant, GrantStatus, RequestStatus
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.leases import GrantLease, grant_lease_kept, lease_new_until
from requests_app.services.lifecycle import (
    access_request_reject_if_policy_denies,
    access_request_reject_if_region_taken_off,
    access_request_reopen_if_approvals_short,
    access_request_revoke_if_not_admin,
)
from requests_app.services.os_usernames import grant_username_refusal
from requests_app.services.provisioning.common import (
    PROVISIONABLE_REQUESTS,
    BatchSettler,
    GrantRun,
    Outcome,
    _create_script,
    _create_script_per_host,
    _drop_handoff,
    _each_batch,
    _load_all,
    _run_on,
    _run_on_each,
    account_expiry_for,
    host_kind_change,
    region_taken_off,
)
from requests_app.services.provisioning.expiry import key_expiry_for
from requests_app.services.provisioning.host_lines import ca_keys_for
from requests_app.services.provisioning.settle import _provision_settle_releasing, grant_fail_if_worker_lost

logger = logging.getLogger(__name__)


def access_request_begin_provisioning(*, request_id: int) -> list[int]:
    """Move an approved request to provisioning; return the grants to provision (those pending and
    not waiting out a failed attempt's backoff).

    A requester who lost the Admin role since the approval gets nothing: the request is revoked
    (``access_request_revoke_if_not_admin``) and no grant is handed out. Nor does a request that a
    deny rule of the account's policy, set since the approval, now refuses: it is rejected
    (``access_request_reject_if_policy_denies``); so is one with an instance in a region taken off
    the account since it was made (``access_request_reject_if_region_taken_off``). One whose approval
    the policy no longer finds enough (more approvals required, an approver who no longer approves
    there, automatic approval no longer given) goes back to pending
    (``access_request_reopen_if_approvals_short``).

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
    if not (
        access_request_revoke_if_not_admin(access_request=approved, actor=None, via="provisioning")
        or access_request_reject_if_policy_denies(access_request=approved, via="provisioning")
        or access_request_reject_if_region_taken_off(access_request=approved, via="provisioning")
    ):
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
    # The grants of one request (a batch's): one end, where their lines stop taking certificates.
    lines_expire_at = key_expiry_for(grants[0])
    # Read once, below: what the script carries is what each grant records (a batch is Linux only).
    ca_public_keys: list[str] = []
    with transaction.atomic(), logbook_batch():  # the head lock once for the whole batch
        for grant in grants:
            grant_logbook_append(grant, "grant.provisioning", {"username": grant.username, "attempt": grant.attempts})

    def settle(grant: Grant, lease: GrantLease, result: GrantRun) -> Outcome:
        return _provision_settle_releasing(
            grant,
            lease,
            result,
            expires_at=expires_at,
            lines_expire_at=lines_expire_at,
            ca_public_keys=ca_public_keys,
        )

    settler = BatchSettler(leases, settle, outcomes)
    results: dict[int, GrantRun]
    try:
        with grant_lease_kept(*leases):
            # A grant whose instance is in a region taken off its account, or no longer the kind of host
            # it was approved for, or whose user there is another person's grant's too, is refused
            # alone, before anything is made for it; the rest of its batch goes on. Asked at every
            # attempt: a retry finds the region gone as the first would.
            results = {
                grant.pk: refusal
                for grant in grants
                if (refusal := region_taken_off(grant) or host_kind_change(grant) or grant_username_refusal(grant))
                is not None
            }
            to_create = [grant for grant in grants if grant.pk not in results]
            if to_create:
                ca_public_keys = ca_keys_for(to_create[0])
            if len(to_create) == 1:
                script = _create_script(
                    to_create[0], expires_at, ca_public_keys=ca_public_keys, lines_expire_at=lines_expire_at
                )
                results[to_create[0].pk] = _run_on(to_create[0], script=script, purpose="create")
            elif to_create:
                script = _create_script_per_host(
                    to_create, expires_at, ca_public_keys=ca_public_keys, lines_expire_at=lines_expire_at
                )
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
