"""Putting short-lived users on instances and taking them off again.

A worker claims a grant with a conditional UPDATE that also sets a lease, renewed while the
script runs (requests_app.services.leases). If the worker dies, the lease runs out within
PASSPORT_LEASE_SECONDS and the periodic sweep lets another worker claim it; the
scripts are idempotent, so running one again is harmless. Every step is in the Logbook.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.services import logbook_append, logbook_batch
from core.dispatch import task_send_on_commit
from fleet import CommandResult, FleetError, fleet_for
from fleet.scripts import password_parameter_name, render_create, render_remove
from requests_app.models import AccessRequest, EndReason, Grant, GrantStatus, Instance, RequestStatus
from requests_app.passwords import generate_password, seal_password
from requests_app.services.credentials import scoped_role_session_name
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.leases import GrantLease, grant_lease_kept, lease_new_until
from requests_app.services.lifecycle import access_request_settle
from sshca.services import ca_trusted_public_keys

logger = logging.getLogger(__name__)

PROVISIONABLE_REQUESTS = (RequestStatus.PROVISIONING, RequestStatus.ACTIVE)
RETRY_BASE_SECONDS = 5
PROVISION_RETRY_CAP = 300
CLEANUP_RETRY_CAP = 900
CLEANUP_ERROR_PREFIX = "Cleanup: "


@dataclass(frozen=True)
class Outcome:
    """What the task should do next: nothing, or try again after ``retry_in`` seconds."""

    retry_in: float | None = None


def _backoff(attempt: int, cap: int) -> int:
    return int(min(cap, RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)))


def _account_expiry() -> date:
    """The OS account's own expiry, a second lock: a day past the longest a request can last."""
    return (timezone.now() + timedelta(hours=12) + timedelta(days=1)).date()


def _run_on(grant: Grant, *, script: str, purpose: str) -> CommandResult:
    instance = grant.instance
    return fleet_for(grant.request.account).run_script(
        instance_id=instance.instance_id,
        region=instance.region,
        platform=instance.platform,
        script=script,
        comment=f"Passport request {grant.request_id}: {purpose} {grant.username}",
    )


def _load(grant_id: int) -> Grant:
    return Grant.objects.select_related("request__account", "instance").get(pk=grant_id)


def access_request_begin_provisioning(*, request_id: int) -> list[int]:
    """Move an approved request to provisioning; return the grants to provision."""
    with transaction.atomic():
        moved = AccessRequest.objects.filter(pk=request_id, status=RequestStatus.APPROVED).update(
            status=RequestStatus.PROVISIONING
        )
        if moved:
            # Handed out now: the sweep's grace for these grants starts here, not at creation.
            Grant.objects.filter(request_id=request_id, status=GrantStatus.PENDING).update(next_attempt_at=None)
            access_request = AccessRequest.objects.select_related("account").get(pk=request_id)
            logbook_append(
                action="request.provisioning",
                actor=None,
                account=access_request.account,
                request_id=request_id,
                instance_ids=list(access_request.grants.values_list("instance__instance_id", flat=True)),
            )
    return list(
        Grant.objects.filter(
            request_id=request_id, request__status__in=PROVISIONABLE_REQUESTS, status=GrantStatus.PENDING
        ).values_list("pk", flat=True)
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
    claimed = (
        Grant.objects.filter(pk=grant_id, request_id__in=provisionable)
        .filter(Q(status=GrantStatus.PENDING) | Q(status=GrantStatus.PROVISIONING, lease_until__lt=now))
        .update(
            status=GrantStatus.PROVISIONING,
            attempts=F("attempts") + 1,
            lease_until=lease_until,
            next_attempt_at=None,
        )
    )
    return claimed == 1


def grant_provision(*, grant_id: int) -> Outcome:
    lease = GrantLease(grant_id, lease_new_until())
    if not grant_claim_for_provisioning(grant_id=grant_id, lease_until=lease.until):
        return Outcome()  # another worker has it, it is done, or the request ended
    grant = _load(grant_id)
    grant_logbook_append(grant, "grant.provisioning", {"username": grant.username, "attempt": grant.attempts})
    try:
        with grant_lease_kept(lease):
            result = _run_on(grant, script=_create_script(grant, _account_expiry()), purpose="create")
    except FleetError as exc:
        return _provision_failed(grant, str(exc), command_id=None, retryable=exc.retryable)
    except Exception as exc:  # a bug must still show on the grant, and be retried, not hang it
        logger.exception("provisioning grant %s failed unexpectedly", grant_id)
        return _provision_failed(grant, f"Internal error: {exc!r}", command_id=None, retryable=True)
    finally:
        _drop_handoff(grant)
        # Release our lease whatever happened, so cleanup need not wait for it to run out.
        Grant.objects.filter(pk=grant_id, lease_until=lease.until).update(lease_until=None)
    if not result.ok:
        # 3: the name belongs to an account that is not ours; 6: the grant was removed meanwhile.
        retryable = result.exit_code not in (3, 6, 7)
        return _provision_failed(grant, result.summary(), command_id=result.command_id, retryable=retryable)
    _provision_succeeded(grant, result)
    return Outcome()


def _drop_handoff(grant: Grant) -> None:
    """Delete a Windows grant's password hand-off once its script has run (or could not)."""
    if grant.instance.platform != Instance.Platform.WINDOWS:
        return
    try:
        fleet_for(grant.request.account).delete_handoff(password_parameter_name(grant.uid), grant.instance.region)
    except FleetError as exc:
        # Removal deletes it again; the Logbook says it is still there meanwhile.
        grant_logbook_append(grant, "grant.handoff_left", {"error": str(exc)})


def _create_script(grant: Grant, expires_on: date) -> str:
    instance = grant.instance
    if instance.platform == Instance.Platform.WINDOWS:
        # A fresh password per attempt, stored sealed before it is handed over, so the person
        # can always read the one the instance has. It goes to the instance through a
        # SecureString parameter, deleted after the script ran, never in the script itself.
        password = generate_password()
        Grant.objects.filter(pk=grant.pk).update(password_sealed=seal_password(grant, password))
        fleet_for(grant.request.account).put_handoff(password_parameter_name(grant.uid), password, instance.region)
        return render_create(
            platform=instance.platform,
            username=grant.username,
            expires_on=expires_on,
            grant_uid=str(grant.uid),
            region=instance.region,
            domain_controller=instance.is_domain_controller,
            admin_rights=grant.request.admin_rights,
        )
    return render_create(
        platform=instance.platform,
        username=grant.username,
        expires_on=expires_on,
        grant_uid=str(grant.uid),
        admin_rights=grant.request.admin_rights,
        ca_public_keys=ca_trusted_public_keys(),
    )


def _provision_succeeded(grant: Grant, result: CommandResult) -> None:
    now = timezone.now()
    # Both entries under one hold of the Logbook's head lock, taken just before the commit.
    with transaction.atomic(), logbook_batch():
        ready = Grant.objects.filter(pk=grant.pk, status=GrantStatus.PROVISIONING).update(
            status=GrantStatus.READY,
            ready_at=now,
            last_error="",
            command_ids=[*grant.command_ids, result.command_id],
        )
        if not ready:
            # The request ended while the script ran; the grant is queued for removal.
            Grant.objects.filter(pk=grant.pk).update(command_ids=[*grant.command_ids, result.command_id])
            return
        access_request = grant.request
        grant_logbook_append(grant, "grant.ready", {"username": grant.username, "command_id": result.command_id})
        # The clock starts when access is first usable, not when it was asked for.
        activated = AccessRequest.objects.filter(pk=access_request.pk, status=RequestStatus.PROVISIONING).update(
            status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + access_request.total_duration
        )
        if activated:
            logbook_append(
                action="request.active",
                actor=None,
                account=access_request.account,
                request_id=access_request.pk,
                detail={"expires_at": now + access_request.total_duration},
            )


def _provision_failed(grant: Grant, error: str, *, command_id: str | None, retryable: bool) -> Outcome:
    access_request = grant.request
    command_ids = [*grant.command_ids, command_id] if command_id else grant.command_ids
    final = not retryable or grant.attempts >= settings.PASSPORT_GRANT_MAX_ATTEMPTS
    with transaction.atomic():
        if not final:
            retry_in = _backoff(grant.attempts, PROVISION_RETRY_CAP)
            moved = Grant.objects.filter(pk=grant.pk, status=GrantStatus.PROVISIONING).update(
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
        moved = Grant.objects.filter(pk=grant.pk, status=GrantStatus.PROVISIONING).update(
            status=GrantStatus.FAILED, last_error=error, command_ids=command_ids
        )
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
    Grant.objects.filter(pk__in=grant_ids).update(status=GrantStatus.REMOVING)
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


def grant_deprovision(*, grant_id: int) -> Outcome:
    now = timezone.now()
    lease = GrantLease(grant_id, lease_new_until())
    claimed = (
        Grant.objects.filter(pk=grant_id, status=GrantStatus.REMOVING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(cleanup_attempts=F("cleanup_attempts") + 1, lease_until=lease.until, next_attempt_at=None)
    )
    if not claimed:
        still_provisioning = Grant.objects.filter(
            pk=grant_id, status=GrantStatus.REMOVING, lease_until__gte=now
        ).exists()
        # A create script is still running there: remove after it, not before it.
        return Outcome(retry_in=RETRY_BASE_SECONDS) if still_provisioning else Outcome()
    grant = _load(grant_id)
    access_request = grant.request
    with grant_lease_kept(lease):  # renewed from the first call to the fleet to the last
        _end_sessions(grant)
        _drop_handoff(grant)
        try:
            result = _run_on(
                grant,
                script=render_remove(
                    platform=grant.instance.platform,
                    username=grant.username,
                    grant_uid=str(grant.uid),
                    domain_controller=grant.instance.is_domain_controller,
                ),
                purpose="remove",
            )
            error = None if result.ok else result.summary()
            command_id: str | None = result.command_id
        except FleetError as exc:
            error, command_id = str(exc), None
        except Exception as exc:  # a bug must still show on the grant, and be retried, not hang it
            logger.exception("removing grant %s failed unexpectedly", grant_id)
            error, command_id = f"Internal error: {exc!r}", None
    command_ids = [*grant.command_ids, command_id] if command_id else grant.command_ids
    with transaction.atomic():
        if error is None:
            # A provisioning error stays visible after cleanup; a cleanup error is over once it worked.
            Grant.objects.filter(pk=grant_id, status=GrantStatus.REMOVING).update(
                status=GrantStatus.REMOVED,
                removed_at=timezone.now(),
                lease_until=None,
                last_error="" if grant.last_error.startswith(CLEANUP_ERROR_PREFIX) else grant.last_error,
                command_ids=command_ids,
            )
            grant_logbook_append(grant, "grant.removed", {"username": grant.username, "command_id": command_id})
            access_request_settle(
                access_request=AccessRequest.objects.select_related("account").get(pk=access_request.pk)
            )
            return Outcome()
        retry_in = _backoff(grant.cleanup_attempts, CLEANUP_RETRY_CAP)
        Grant.objects.filter(pk=grant_id, lease_until=lease.until).update(
            lease_until=None,
            last_error=CLEANUP_ERROR_PREFIX + error,
            command_ids=command_ids,
            next_attempt_at=timezone.now() + timedelta(seconds=retry_in),
        )
        grant_logbook_append(
            grant,
            "grant.remove_retry",
            {"attempt": grant.cleanup_attempts, "error": error, "retry_in_seconds": retry_in},
        )
    return Outcome(retry_in=retry_in)


def _end_sessions(grant: Grant) -> None:
    """End the requester's Session Manager sessions on the instance before the user goes.

    Every session the portal starts for a request (CLI tunnels, RDP forwards, the browser
    terminal) and every one the person starts with the request's AWS credentials is owned by
    the request's role session, ``.../passport-r<request>-u<person>``; others' are left alone.
    Best effort: removing the user kills what runs as it anyway, so a failure here is recorded
    and removal goes on.
    """
    owner_suffix = "/" + scoped_role_session_name(request_id=grant.request_id, user=grant.request.requester)
    fleet = fleet_for(grant.request.account)
    ended: list[str] = []
    try:
        for session in fleet.active_sessions(grant.instance.instance_id, grant.instance.region):
            if session["Owner"].endswith(owner_suffix):
                fleet.terminate_session(session["SessionId"], grant.instance.region)
                ended.append(session["SessionId"])
    except FleetError as exc:
        grant_logbook_append(grant, "session.end_failed", {"error": str(exc), "ended": ended})
        return
    if ended:
        grant_logbook_append(grant, "session.ended_with_access", {"session_ids": ended})


@dataclass(frozen=True)
class StuckWork:
    approved_requests: list[int]
    to_provision: list[int]
    to_remove: list[int]


def stuck_work() -> StuckWork:
    """Work whose task was lost (broker restart, killed worker): found and handed out again."""
    now = timezone.now()
    before = now - timedelta(seconds=settings.PASSPORT_SWEEP_GRACE_SECONDS)
    approved = list(
        AccessRequest.objects.filter(status=RequestStatus.APPROVED, decided_at__lt=before).values_list("pk", flat=True)
    )
    to_provision = list(
        Grant.objects.filter(request__status__in=PROVISIONABLE_REQUESTS)
        .filter(
            Q(status=GrantStatus.PENDING, next_attempt_at__lt=before)
            | Q(status=GrantStatus.PENDING, next_attempt_at__isnull=True, updated_at__lt=before)
            | Q(status=GrantStatus.PROVISIONING, lease_until__lt=now)
        )
        .values_list("pk", flat=True)[:500]
    )
    to_remove = list(
        Grant.objects.filter(status=GrantStatus.REMOVING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(next_attempt_at__isnull=True, updated_at__lt=before) | Q(next_attempt_at__lt=before))
        .values_list("pk", flat=True)[:500]
    )
    return StuckWork(approved_requests=approved, to_provision=to_provision, to_remove=to_remove)


def grants_needing_key_refresh(*, unbound_only: bool = False) -> list[int]:
    """Ready Linux grants whose hosts get their authorized_keys line again (CA rotation).

    With ``unbound_only``: those whose host still has the per-person line of earlier versions.
    """
    grants = Grant.objects.filter(
        status=GrantStatus.READY,
        request__status=RequestStatus.ACTIVE,
        instance__platform=Instance.Platform.LINUX,
    )
    if unbound_only:
        grants = grants.filter(keys_bound=False)
    return list(grants.values_list("pk", flat=True))


def grant_refresh_authorized_keys(*, grant_id: int) -> Outcome:
    """Run the (idempotent) create script again so the host lists the CA keys trusted now."""
    grant = Grant.objects.select_related("request__account", "instance").filter(pk=grant_id).first()
    if grant is None or grant.status != GrantStatus.READY or grant.instance.platform != Instance.Platform.LINUX:
        return Outcome()
    try:
        result = _run_on(grant, script=_create_script(grant, _account_expiry()), purpose="refresh CA keys for")
        error = None if result.ok else result.summary()
    except FleetError as exc:
        error = str(exc)
    if error is None:
        Grant.objects.filter(pk=grant.pk, keys_bound=False).update(keys_bound=True)
    grant_logbook_append(
        grant,
        "grant.keys_refreshed" if error is None else "grant.keys_refresh_failed",
        {"username": grant.username, **({"error": error} if error else {})},
    )
    return Outcome(retry_in=_backoff(1, PROVISION_RETRY_CAP)) if error else Outcome()
