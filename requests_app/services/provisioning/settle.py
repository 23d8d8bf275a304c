"""What a create's attempt comes to, settled on the grant (``provisioning.create`` runs it).

The grant ready and its request active (the first ready grant starts the clock), or back to wait
for another attempt, or failed for good, each only while the attempt is still this worker's (its
lease); a grant whose last attempt allowed lost its worker fails as a finished attempt would, and a
request with nothing left to provision fails with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import logbook_append, logbook_batch
from core.dispatch import task_send_on_commit
from fleet import CommandResult, FleetError
from fleet.scripts import ACCOUNT_SID_LINE, created_account_sid, created_account_uid
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, Instance, RequestStatus
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.leases import GrantLease
from requests_app.services.provisioning.common import (
    FINAL_EXIT_CODES,
    PROVISION_RETRY_CAP,
    PROVISIONABLE_REQUESTS,
    GrantRun,
    Outcome,
    _backoff,
    request_locked,
)
from requests_app.services.provisioning.expiry import (
    account_expiry_shared,
    grant_expiry_sync_if_behind,
    host_expiry_not_known,
    host_expiry_record,
    key_expiry_said,
)
from requests_app.services.provisioning.host_lines import _ca_keys_behind, _direct_login_behind, direct_login_allowed
from sshca.services import ca_key_fingerprints

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


def _provision_settle_releasing(
    grant: Grant,
    lease: GrantLease,
    result: GrantRun,
    *,
    expires_at: datetime,
    ca_public_keys: Sequence[str],
    lines_expire_at: datetime | None = None,
) -> Outcome:
    """Settle the grant, then let its lease go (``_provision_settle`` leaves the lease alone; a
    removal's settling clears it itself)."""
    outcome = _provision_settle(
        grant,
        result,
        lease=lease,
        expires_at=expires_at,
        lines_expire_at=lines_expire_at,
        ca_public_keys=ca_public_keys,
    )
    Grant.objects.filter(pk=grant.pk, lease_until=lease.until).update(lease_until=None)
    return outcome


def _provision_settle(
    grant: Grant,
    result: GrantRun,
    *,
    lease: GrantLease,
    expires_at: datetime,
    ca_public_keys: Sequence[str],
    lines_expire_at: datetime | None = None,
) -> Outcome:
    """The grant ready, or failed (to be retried, or for good), by what its script did."""
    if isinstance(result, FleetError):
        return _provision_failed(grant, str(result), lease=lease, command_id=None, retryable=result.retryable)
    if not result.ok:
        retryable = result.exit_code not in FINAL_EXIT_CODES
        return _provision_failed(
            grant, result.summary(), lease=lease, command_id=result.command_id, retryable=retryable
        )
    if grant.platform == Instance.Platform.WINDOWS and created_account_sid(result.stdout) is None:
        # Every create script of this release names the account's SID, which the grant's removal and
        # extensions find the account by: without it the grant is not made ready (the by-name look-up
        # is kept only for grants made ready before creates reported one). Tried again only when
        # Systems Manager cut the output, where the line may have been; what the script made is
        # removed with the failed grant, by its name (it was never ready: an account of that name
        # without Passport's marker is left alone).
        return _provision_failed(
            grant,
            _no_account_sid_error(result),
            lease=lease,
            command_id=result.command_id,
            retryable=result.truncated,
        )
    _provision_succeeded(
        grant,
        result,
        lease=lease,
        expires_at=expires_at,
        lines_expire_at=lines_expire_at,
        ca_public_keys=ca_public_keys,
    )
    return Outcome()


def _no_account_sid_error(result: CommandResult) -> str:
    return (
        f"Run Command {result.command_id[:64]} ended without naming the account's SID (one line "
        f"'{ACCOUNT_SID_LINE}S-1-5-21-...' of an account made here): the grant is not made ready, since its "
        "account could not be told from another of its name; what the script made is removed with the grant."
    )


def _provision_succeeded(
    grant: Grant,
    result: CommandResult,
    *,
    lease: GrantLease,
    expires_at: datetime,
    ca_public_keys: Sequence[str],
    lines_expire_at: datetime | None = None,
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
    account_uid = created_account_uid(result.stdout) if grant.platform == Instance.Platform.LINUX else None
    lines_written, said = key_expiry_said(grant, result.stdout)
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
            key_forward_destinations=grant.request.account.forward_destinations,
            key_ca_fingerprints=written,
            key_direct_login=direct_login_allowed(grant.request.account) if written is not None else None,
            account_sid=account_sid,
            account_uid=account_uid,
        )
        if not ready:
            # The request ended while the script ran; the grant is queued for removal.
            ended = Grant.objects.filter(pk=grant.pk, lease_until=lease.until).update(
                command_ids=[*grant.command_ids, result.command_id]
            )
            if not ended:
                # Taken over by another worker (a create, or the removal of an ended request). This
                # script landed all the same, perhaps after the other's: what the host's expiries
                # are is not known, and a ready grant's are moved again (``host_expiry_record``).
                host_expiry_not_known(grant)
                grant_logbook_append(
                    grant, "grant.create_duplicate", {"username": grant.username, "command_id": result.command_id}
                )
            # Either way the script wrote the shared Linux user's expiry (its own request's end, maybe
            # later than theirs) and this grant records it nowhere: the other live grants of that user
            # no longer know what the account's expiry is, and are moved again.
            account_expiry_shared(grant, None)
            return
        assert locked is not None  # its grant was just made ready
        # What the script wrote (the user's expiry of the other grants it serves too), unless a script
        # of another grant of the same user recorded on this one since it was loaded.
        host_expiry_record(grant, expires_at=expires_at, lines_expire_at=lines_expire_at, lines_written=lines_written)
        # The account's SID or uid, whichever its platform reported, by which its removal finds it.
        sid: dict[str, str | int] = {"account_sid": account_sid} if account_sid else {}
        if account_uid is not None:
            sid["account_uid"] = account_uid
        grant_logbook_append(
            grant, "grant.ready", {"username": grant.username, "command_id": result.command_id, **sid, **said}
        )
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
        _direct_login_behind(grant.pk, direct_login_allowed(grant.request.account))


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
