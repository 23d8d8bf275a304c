"""Shared pieces of the request lifecycle: limits, the conditional transition, refusals, hand-offs."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import AwsAccount, User
from audit.refusals import logbook_append_aggregated
from audit.services import logbook_append
from core.dispatch import task_send_deferrable
from core.errors import RequestRuleError
from core.text import visible
from requests_app import rules
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from requests_app.notifications import Kind, notification_dispatch, notification_enqueue
from requests_app.rules import instance_region_problem
from requests_app.selectors import grant_batches
from ssmchannel.messages import version_tuple

MIN_DURATION = rules.MIN_DURATION
DEFAULT_DURATION = timedelta(hours=1)
MAX_TOTAL_DURATION = rules.MAX_TOTAL_DURATION
INSTANCES_MAX = rules.INSTANCES_MAX
REASON_MAX = 256
TICKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._#:/-]{0,63}$")


def instance_problem(instance: Instance) -> str | None:
    """Why this instance cannot be reached through Passport, or None.

    What Systems Manager and the agent report (the ping status, the agent's version) is shown made
    visible, as the Name tag is in ``Instance.label``."""
    label = instance.label
    if instance.gone_at is not None:
        return f"{label} no longer exists in the account."
    region_problem = instance_region_problem(instance, account=instance.account)
    if region_problem is not None:
        return region_problem
    minimum = settings.PASSPORT_MIN_AGENT_VERSION
    if not instance.ssm_managed:
        # What the instance lacks is on the customer's side: say what makes Systems Manager list it.
        return (
            f"{label} is not managed by AWS Systems Manager. It needs an instance profile that allows Systems"
            " Manager (AWS recommends the AmazonSSMManagedInstanceCore managed policy) and SSM Agent"
            f" {minimum} or newer."
        )
    if instance.ping_status != "Online":
        ping_status = visible(instance.ping_status) or "unknown"
        return f"{label} is not reachable by Systems Manager (ping status {ping_status})."
    if version_tuple(instance.agent_version) < version_tuple(minimum):
        agent_version = visible(instance.agent_version) or "unknown"
        return f"{label} runs SSM Agent {agent_version}; Passport needs {minimum} or newer."
    return None


def _deny(
    *,
    action: str,
    actor: User,
    account: AwsAccount | None,
    request_id: int | None,
    errors: RequestRuleError,
    instance_ids: Sequence[str] = (),
    decided: dict[str, object] | None = None,
) -> RequestRuleError:
    """Write a refusal to the Logbook (it outlives the refused transaction) and return the error to raise.

    The same refusal of the same person again within the window (a script retrying, a loop) is
    only counted (``audit.refusals``): its first is written at once with its detail and
    ``refusal_key``, and the window's summary entry gives the count under that key. Nothing is lost,
    and a loop of refused calls does not take the Logbook's head lock once per call.

    ``decided``: the detail of the approval policy's decision that refused it, written as
    ``approval_policy.decided`` (by no one) after the refusal's entry, and like it once per window:
    the same refusal again is the same decision, counted with the refusal.
    """
    refusal_key = _refusal_key(account=account, request_id=request_id, instance_ids=instance_ids, errors=errors.errors)
    written = logbook_append_aggregated(
        action=action,
        source=f"user:{actor.pk}",
        reason=refusal_key,
        actor=actor,
        account=account,
        request_id=request_id,
        instance_ids=instance_ids,
        detail={"denied": errors.errors, "refusal_key": refusal_key},
        capped=False,
    )
    if decided is not None and written is not None:
        logbook_append(
            action="approval_policy.decided",
            actor=None,
            account=account,
            request_id=request_id,
            instance_ids=instance_ids,
            detail=decided,
        )
    return errors


def _refusal_key(
    *, account: AwsAccount | None, request_id: int | None, instance_ids: Sequence[str], errors: dict[str, list[str]]
) -> str:
    """What makes two refusals of one person and action the same: what was asked and why it was refused."""
    what = [account.account_id if account is not None else "", request_id, sorted(instance_ids), errors]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _transition(
    access_request: AccessRequest, *, from_statuses: Sequence[str], only_if: Q | None = None, **changes: object
) -> bool:
    """Apply ``changes`` only if the request is still in one of ``from_statuses`` (and matches ``only_if``)."""
    rows = AccessRequest.objects.filter(pk=access_request.pk, status__in=from_statuses)
    if only_if is not None:
        rows = rows.filter(only_if)
    updated = rows.update(**changes)
    access_request.refresh_from_db()
    return updated == 1


def _reject(
    access_request: AccessRequest,
    *,
    from_status: str,
    decided_by: User | None,
    note: str,
    detail: dict[str, object],
    instance_ids: Sequence[str] = (),
) -> bool:
    """Move the request from ``from_status`` to rejected (its grants never handed out: removed with
    it), write ``request.rejected`` (by ``decided_by``; None: Passport) and tell the requester.
    False, and nothing done, when it is no longer in ``from_status``. In the caller's transaction."""
    now = timezone.now()
    moved = _transition(
        access_request,
        from_statuses=[from_status],
        status=RequestStatus.REJECTED,
        decided_by=decided_by,
        decided_at=now,
        decision_note=note[:256],
        ended_at=now,
    )
    if not moved:
        return False
    Grant.objects.filter(request=access_request).update(status=GrantStatus.REMOVED, removed_at=now)
    logbook_append(
        action="request.rejected",
        actor=decided_by,
        account=access_request.account,
        request_id=access_request.pk,
        instance_ids=instance_ids,
        detail=detail,
    )
    notification_enqueue(kind=Kind.REJECTED, request_id=access_request.pk)
    return True


def _refuse(
    access_request: AccessRequest,
    actor: User,
    *,
    action: str,
    check: rules.ActionCheck,
    instance_ids: Sequence[str] = (),
    decided: dict[str, object] | None = None,
) -> RequestRuleError:
    """The error for a check that failed; a refusal of the person (not of the state) is logged, as is
    one the check marks ``logged``. ``decided`` as for ``_deny`` (with a refusal not logged, written alone)."""
    if check.code == "conflict" and not check.logged:
        if decided is not None:
            logbook_append(
                action="approval_policy.decided",
                actor=None,
                account=access_request.account,
                request_id=access_request.pk,
                instance_ids=instance_ids,
                detail=decided,
            )
        return check.error()
    return _deny(
        action=f"request.{action}_denied",
        actor=actor,
        account=access_request.account,
        request_id=access_request.pk,
        instance_ids=instance_ids,
        errors=check.error(),
        decided=decided,
    )


def _status_error(access_request: AccessRequest, verb: str) -> RequestRuleError:
    return rules.status_conflict(access_request, verb).error()


def _after_approval(request_id: int) -> None:
    def after_commit() -> None:
        _enqueue("begin_provisioning", request_id)
        notification_dispatch(kind=Kind.APPROVED, request_id=request_id)

    transaction.on_commit(after_commit)


def _instance_ids(access_request: AccessRequest) -> list[str]:
    return list(access_request.grants.values_list("instance__instance_id", flat=True))


def _instance_ids_of(request_ids: Sequence[int]) -> dict[int, list[str]]:
    """``_instance_ids`` of many requests in one query: request id -> its instances' ids."""
    found: dict[int, list[str]] = {}
    rows = Grant.objects.filter(request_id__in=request_ids).values_list("request_id", "instance__instance_id")
    for request_id, instance_id in rows:
        found.setdefault(request_id, []).append(instance_id)
    return found


def _schedule_cleanup(request_ids: Sequence[int]) -> None:
    # The grants of one request on Linux hosts go together, one Run Command for them all.
    batches = grant_batches(
        Grant.objects.filter(request_id__in=request_ids, status=GrantStatus.REMOVING).values_list("pk", flat=True)
    )

    def enqueue() -> None:
        for batch in batches:
            if len(batch) == 1:
                _enqueue("deprovision_grant", batch[0])
            else:
                _enqueue("deprovision_grants", batch)

    transaction.on_commit(enqueue)


def _enqueue(task_name: str, object_id: int | list[int]) -> None:
    """Queue a worker task by name (the tasks import these services, so never the other way).

    Runs after the commit: with the broker down the change stands and the resume sweep
    (``resume_stuck_grants``) hands the work out once it is back."""
    task_send_deferrable(task_name, object_id)
