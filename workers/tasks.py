"""Celery tasks: each loads by id, calls one service, and owns retries. Nothing else."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.app.task import Task

from accounts.models import AwsAccount
from audit.refusals import logbook_refusals_flush
from audit.throttle import throttle_windows_purge
from requests_app import services
from requests_app.models import AccessRequest

logger = logging.getLogger(__name__)

TASK_OPTIONS = {"acks_late": True, "max_retries": None, "bind": True}


def _retry_if_needed(task: Task, outcome: services.Outcome) -> None:
    if outcome.retry_in is not None:
        raise task.retry(countdown=outcome.retry_in)


@shared_task(**TASK_OPTIONS)
def begin_provisioning(self: Task, request_id: int) -> None:
    for grant_id in services.access_request_begin_provisioning(request_id=request_id):
        provision_grant.delay(grant_id)


@shared_task(**TASK_OPTIONS)
def provision_grant(self: Task, grant_id: int) -> None:
    _retry_if_needed(self, services.grant_provision(grant_id=grant_id))


@shared_task(**TASK_OPTIONS)
def deprovision_grant(self: Task, grant_id: int) -> None:
    _retry_if_needed(self, services.grant_deprovision(grant_id=grant_id))


@shared_task(acks_late=True)
def expire_due_requests() -> int:
    expired = 0
    for request_id in services.due_for_expiry():
        access_request = AccessRequest.objects.select_related("account").get(pk=request_id)
        expired += int(services.access_request_expire(access_request=access_request))
    return expired


@shared_task(acks_late=True)
def resume_stuck_grants() -> dict[str, int]:
    work = services.stuck_work()
    for request_id in work.approved_requests:
        begin_provisioning.delay(request_id)
    for grant_id in work.to_provision:
        provision_grant.delay(grant_id)
    for grant_id in work.to_remove:
        deprovision_grant.delay(grant_id)
    return {"approved": len(work.approved_requests), "provision": len(work.to_provision), "remove": len(work.to_remove)}


@shared_task(acks_late=True, autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=5)
def sync_inventory(account_pk: int, actor_pk: int | None = None) -> dict[str, object]:
    from accounts.models import User

    account = AwsAccount.objects.get(pk=account_pk)
    actor = User.objects.filter(pk=actor_pk).first() if actor_pk else None
    result = services.inventory_sync(account=account, actor=actor)
    return {"seen": result.seen, "added": result.added, "gone": result.gone, "errors": result.errors}


@shared_task(acks_late=True)
def sync_all_inventory() -> int:
    account_pks = list(AwsAccount.objects.values_list("pk", flat=True))
    for account_pk in account_pks:
        sync_inventory.delay(account_pk)
    return len(account_pks)


@shared_task(bind=True, acks_late=True, max_retries=5)
def reconcile_account(self: Task, account_pk: int) -> dict[str, object]:
    account = AwsAccount.objects.get(pk=account_pk)
    result = services.reconcile_account(account=account)
    if result.errors:
        # Flagged on the page and in the Logbook already; try those hosts again, backing off.
        raise self.retry(countdown=min(60 * 2**self.request.retries, 1800))
    return {"checked": result.checked, "removed": result.orphans_removed}


@shared_task(acks_late=True)
def reconcile_fleet() -> int:
    account_pks = list(AwsAccount.objects.values_list("pk", flat=True))
    for account_pk in account_pks:
        reconcile_account.delay(account_pk)
    return len(account_pks)


@shared_task(acks_late=True)
def send_notification(kind: str, request_id: int) -> bool:
    from accounts.notifications import notification_send

    return notification_send(kind=kind, request_id=request_id)


@shared_task(acks_late=True)
def warn_expiring_requests() -> int:
    """Every minute: the requester hears once, 10 minutes before the end, and once after a failure."""
    from accounts.notifications import requests_due_for_notice

    due = requests_due_for_notice()
    for kind, request_id in due:
        send_notification.delay(kind, request_id)
    return len(due)


@shared_task(acks_late=True)
def refresh_authorized_keys() -> int:
    grant_ids = services.grants_needing_key_refresh()
    for grant_id in grant_ids:
        refresh_grant_keys.delay(grant_id)
    return len(grant_ids)


@shared_task(acks_late=True)
def bind_grant_keys() -> int:
    """Grants provisioned before certificates named the grant get their grant-bound line."""
    grant_ids = services.grants_needing_key_refresh(unbound_only=True)
    for grant_id in grant_ids:
        refresh_grant_keys.delay(grant_id)
    return len(grant_ids)


@shared_task(bind=True, acks_late=True, max_retries=5)
def refresh_grant_keys(self: Task, grant_id: int) -> None:
    _retry_if_needed(self, services.grant_refresh_authorized_keys(grant_id=grant_id))


@shared_task(acks_late=True)
def flush_logbook_refusals() -> int:
    """Every minute: closed windows of counted refusals become summary entries; old throttle counts go."""
    throttle_windows_purge()
    return logbook_refusals_flush()
