"""Celery tasks: each loads by id, calls one service, and owns retries. Nothing else."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from celery import shared_task
from celery.app.task import Task
from django.conf import settings

from accounts.models import AwsAccount
from accounts.password_reset_mail import password_reset_mail_send
from accounts.session_lifetime import sessions_expired_purge
from audit.anchor.checkpoints import logbook_checkpoint_write
from audit.anchor.verification import logbook_verification_run
from audit.refusals import logbook_refusals_flush
from audit.throttle import throttle_windows_purge
from core.dispatch import task_register
from core.heartbeat import scheduler_heartbeat_record
from requests_app import services
from requests_app.models import AccessRequest, RequestStatus, SweepFailure
from requests_app.notifications import notification_send, requests_due_for_notice, site_admins_alert
from requests_app.selectors import grant_batches
from terminal.services import open_sessions_iam_recheck, tickets_purge
from terminal.sweeps import forwards_finalise_orphaned, terminals_finalise_orphaned

logger = logging.getLogger(__name__)

TASK_OPTIONS = {"acks_late": True, "max_retries": None, "bind": True}


def _retry_if_needed(task: Task, outcome: services.Outcome) -> None:
    if outcome.retry_in is not None:
        raise task.retry(countdown=outcome.retry_in)


def _retry_each_alone(task: Task, outcomes: dict[int, services.Outcome]) -> None:
    """A grant of a batch to try again is retried on its own, after its own backoff. One that
    cannot be queued now (the broker away) is found again by the resume sweep: its row says so."""
    for grant_id, outcome in outcomes.items():
        if outcome.retry_in is None:
            continue
        try:
            task.apply_async((grant_id,), countdown=outcome.retry_in)
        except Exception:
            logger.exception("grant %s: its retry was not queued; the resume sweep will find it", grant_id)


@shared_task(**TASK_OPTIONS)
def begin_provisioning(self: Task, request_id: int) -> None:
    grant_ids = services.access_request_begin_provisioning(request_id=request_id)
    for batch in grant_batches(grant_ids):
        if len(batch) == 1:
            provision_grant.delay(batch[0])
        else:
            provision_grants.delay(batch)


@shared_task(**TASK_OPTIONS)
def provision_grant(self: Task, grant_id: int) -> None:
    _retry_if_needed(self, services.grant_provision(grant_id=grant_id))


@shared_task(acks_late=True)
def provision_grants(grant_ids: list[int]) -> None:
    """The grants of one request on Linux hosts of one region, created by one Run Command."""
    _retry_each_alone(provision_grant, services.grants_provision(grant_ids=grant_ids))


@shared_task(**TASK_OPTIONS)
def deprovision_grant(self: Task, grant_id: int) -> None:
    _retry_if_needed(self, services.grant_deprovision(grant_id=grant_id))


@shared_task(acks_late=True)
def deprovision_grants(grant_ids: list[int]) -> None:
    """The grants of one request on Linux hosts of one region, removed by one Run Command."""
    _retry_each_alone(deprovision_grant, services.grants_deprovision(grant_ids=grant_ids))


@shared_task(acks_late=True)
def expire_due_requests() -> int:
    """Every 10 s, on the revocation queue: claim the due requests (SKIP LOCKED) and fan them out
    in batches to ``expire_requests``, so several workers end them at once. Returns how many."""
    request_ids = services.access_requests_claim_due()
    size = max(settings.PASSPORT_EXPIRY_BATCH, 1)
    for start in range(0, len(request_ids), size):
        # A batch not handed out (the broker away) is still due: the next round claims it again.
        expire_requests.delay(request_ids[start : start + size])
    return len(request_ids)


@shared_task(acks_late=True)
def expire_requests(request_ids: list[int]) -> int:
    return services.access_requests_expire(request_ids=request_ids)


@shared_task(acks_late=True)
def resume_stuck_grants() -> dict[str, int]:
    # Each hand-out is isolated: one that fails (a broker hiccup, an eager task raising) is
    # retried on a later round and does not keep the rest from being handed out.
    work = services.stuck_work()
    kind = SweepFailure.Kind
    return {
        "approved": services.sweep_each(
            kind=kind.RESUME_APPROVED, ids=work.approved_requests, work=begin_provisioning.delay
        ),
        "provision": services.sweep_each(kind=kind.RESUME_PROVISION, ids=work.to_provision, work=provision_grant.delay),
        "remove": services.sweep_each(kind=kind.RESUME_REMOVE, ids=work.to_remove, work=deprovision_grant.delay),
    }


@shared_task(acks_late=True)
def sync_inventory(account_pk: int, *_ignored: object) -> dict[str, object]:
    """The scheduled sync of one account. A person's sync runs in the page or API that they used,
    which records them; a message names nobody (anyone who reaches the broker can write one), and
    the person an older message still names is ignored."""
    account = AwsAccount.objects.get(pk=account_pk)
    # The fleet's errors (FleetError) are caught per region, so none reaches the task to retry
    # on: a failing region is flagged, and the scheduled syncs try it again as its backoff allows.
    result = services.inventory_sync(account=account, skip_backing_off=True)
    return {"seen": result.seen, "added": result.added, "gone": result.gone, "errors": result.errors}


@shared_task(acks_late=True)
def iam_recheck_sessions(instance_pks: list[int]) -> dict[str, int]:
    """The inventory saw these instances' tags change: the IAM gate asked again, afresh, for the sessions
    open on them. Not retried: a question AWS could not answer is asked again by the periodic run."""
    result = open_sessions_iam_recheck(instance_ids=[int(pk) for pk in instance_pks], fresh=True)
    return {"asked": result.asked, "denied": len(result.denied), "unavailable": len(result.unavailable)}


@shared_task(acks_late=True, expires=60)
def iam_recheck_all_sessions() -> dict[str, int]:
    """Every PASSPORT_IAM_RECHECK_SECONDS: the IAM gate asked again for every open session (a person's
    policy changed), one call per person and instance, answers kept PASSPORT_IAM_RECHECK_CACHE_SECONDS."""
    result = open_sessions_iam_recheck()
    return {
        "asked": result.asked,
        "cached": result.cached,
        "denied": len(result.denied),
        "unavailable": len(result.unavailable),
    }


@shared_task(acks_late=True)
def sync_all_inventory() -> int:
    account_pks = list(AwsAccount.objects.values_list("pk", flat=True))
    return services.sweep_each(kind=SweepFailure.Kind.INVENTORY_ACCOUNT, ids=account_pks, work=sync_inventory.delay)


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
    return services.sweep_each(kind=SweepFailure.Kind.RECONCILE_ACCOUNT, ids=account_pks, work=reconcile_account.delay)


@shared_task(acks_late=True)
def send_notification(kind: str, request_id: int) -> bool:
    return notification_send(kind=kind, request_id=request_id)


@shared_task(bind=True, acks_late=True, max_retries=None)
def send_password_reset_mail(self: Task, email: str, asked_at: int, mailed: Any = ()) -> int:
    """The reset page's mail (accounts.password_reset_mail): the link made here, never in the message;
    tried again, backing off, a few times within the link's lifetime, for those not mailed yet (their
    ids carried in the retry's message: nobody gets two links). Returns how many this try sent."""
    outcome = password_reset_mail_send(email=email, asked_at=asked_at, attempt=self.request.retries, mailed=mailed)
    if outcome.retry_in is not None:
        raise self.retry(args=(email, asked_at, list(outcome.mailed)), countdown=outcome.retry_in)
    return outcome.sent


@shared_task(acks_late=True)
def warn_expiring_requests() -> int:
    """Every minute: the requester hears once before each end (10 minutes ahead) and once after a
    failure; approvers never asked (the task lost) are asked; a mail claimed but not sent (the mail
    server down, the sender killed) is sent again. Returns how many were handed to the workers."""
    due = requests_due_for_notice()
    skip = services.sweep_backed_off(kind=SweepFailure.Kind.NOTIFY)
    sent = 0
    for kind, request_id in due:
        if str(request_id) in skip:
            continue
        item = services.sweep_run(
            kind=SweepFailure.Kind.NOTIFY,
            key=str(request_id),
            request_id=request_id,
            work=partial(send_notification.delay, kind, request_id),
        )
        sent += int(item.ok)
    return sent


@shared_task(acks_late=True)
def refresh_authorized_keys() -> int:
    grant_ids = services.grants_needing_key_refresh()
    return services.sweep_each(kind=SweepFailure.Kind.KEYS, ids=grant_ids, work=refresh_grant_keys.delay)


@shared_task(acks_late=True)
def bind_grant_keys() -> int:
    """Grants whose hosts' lines are not what provisioning writes now get them again: made before
    certificates named the grant or before forwards were limited, the account's ports changed, or
    not known to trust the CA's keys of now (a key changed while a script was on its way, or the
    refresh after a rotation or retirement failed until it gave up: tried again every round)."""
    grant_ids = services.grants_needing_key_refresh(unbound_only=True)
    return services.sweep_each(kind=SweepFailure.Kind.KEYS, ids=grant_ids, work=refresh_grant_keys.delay)


@shared_task(bind=True, acks_late=True, max_retries=5)
def refresh_grant_keys(self: Task, grant_id: int) -> None:
    _retry_if_needed(self, services.grant_refresh_authorized_keys(grant_id=grant_id))


@shared_task(bind=True, acks_late=True, max_retries=5)
def end_withdrawn_sessions(self: Task, account_pk: int) -> dict[str, list[str]]:
    """After an admin's change of the account's ports: the CLI's own sessions to a port taken off it
    end (services.withdrawn). A session AWS would not end is on record; the task tries again, backing off."""
    result = services.sessions_end_withdrawn(account_id=account_pk)
    if result.failed:
        raise self.retry(countdown=min(30 * 2**self.request.retries, 900))
    return {"ended": result.ended}


@shared_task(bind=True, acks_late=True, max_retries=5)
def end_token_sessions(self: Task, token_ids: list[int], user_ids: list[int], reason: str) -> dict[str, list[str]]:
    """After CLI sign-ins are revoked: the Session Manager sessions they started, which the CLI holds
    itself, end (services.withdrawn.tokens). A session AWS would not end is on record; the task tries
    again, backing off."""
    result = services.sessions_end_for_tokens(token_ids=token_ids, user_ids=user_ids or None, revoked=reason)
    if result.failed:
        raise self.retry(countdown=min(30 * 2**self.request.retries, 900))
    return {"ended": result.ended}


@shared_task(acks_late=True)
def end_all_withdrawn_sessions() -> int:
    """Every few minutes: the same for every account with active requests, for a change whose task
    was lost (the broker away at the admin's save) or a session AWS refused to end. Each account
    alone: one that fails is logged and the others go on. Then the sessions of every revoked CLI
    sign-in, for a revocation whose task was lost, and of every expired one, which nothing else ends
    (services.withdrawn.tokens)."""
    account_pks = AccessRequest.objects.filter(status=RequestStatus.ACTIVE).values_list("account_id", flat=True)
    ended = 0
    try:
        ended += len(services.sessions_end_for_tokens().ended)
    except Exception:
        logger.exception("the sessions of revoked and expired CLI sign-ins were not checked")
    for account_pk in sorted(set(account_pks)):
        try:
            ended += len(services.sessions_end_withdrawn(account_id=account_pk).ended)
        except Exception:
            logger.exception("account %s: the sessions to withdrawn ports were not checked", account_pk)
    return ended


@shared_task(acks_late=True)
def end_credential_sessions() -> int:
    """Every 30 s, on the revocation queue: the same for the accounts now moderated or recorded where
    AWS credentials handed out before (STS cannot revoke them) may still start a session, until they
    expire (services.withdrawn.credentials); one query and nothing more when there is none. Each
    account alone, as above."""
    ended = 0
    for account_pk in services.accounts_with_credentials_withdrawn():
        try:
            ended += len(services.sessions_end_withdrawn(account_id=account_pk).ended)
        except Exception:
            logger.exception("account %s: the sessions of its AWS credentials were not checked", account_pk)
    return ended


@shared_task(acks_late=True)
def end_left_sessions() -> int:
    """Every 30 s, on the revocation queue: the Session Manager sessions of ended access that
    removal could not end (AWS would not list or end them) are tried again, each grant alone and
    backing off by its own tries, and those the request's unexpired AWS credentials may start are
    looked for (services.provisioning.sessions). Returns how many grants' tries found none left."""
    done = 0
    for grant_id in services.grants_with_sessions_left():
        try:
            result = services.grant_end_left_sessions(grant_id=grant_id)
        except Exception:  # a grant it claimed waits out its backoff; the others go on
            logger.exception("grant %s: its sessions left were not tried", grant_id)
            continue
        done += int(result is not None and result.complete)
    return done


@shared_task(acks_late=True)
def sync_account_expiries() -> int:
    """Grants whose host's account expiry is behind their request's end (a lost task, a host away) get it again."""
    grant_ids = services.grants_needing_expiry_sync()
    return services.sweep_each(kind=SweepFailure.Kind.EXPIRY, ids=grant_ids, work=sync_grant_expiry.delay)


@shared_task(bind=True, acks_late=True, max_retries=5)
def sync_grant_expiry(self: Task, grant_id: int) -> None:
    _retry_if_needed(self, services.grant_sync_account_expiry(grant_id=grant_id))


@shared_task(acks_late=True)
def flush_logbook_refusals() -> int:
    """Every minute: closed windows of counted refusals become summary entries; old throttle counts go."""
    throttle_windows_purge()
    return logbook_refusals_flush()


@shared_task(acks_late=True)
def checkpoint_logbook() -> int | None:
    """Every minute: the Logbook's head, signed, to the evidence bucket when it has moved."""
    checkpoint = logbook_checkpoint_write(reason="periodic")
    return checkpoint.entry_id if checkpoint is not None else None


@shared_task(acks_late=True)
def verify_logbook() -> bool:
    """Daily: the full check, its verdict written to the Logbook; a break is mailed to the site admins."""
    verification, record = logbook_verification_run()
    if not verification.intact:
        site_admins_alert(
            subject=f"The Logbook failed its verification (exit {record.exit_code}: {', '.join(record.kinds)})",
            body=f"Verification #{record.pk} at {record.finished_at:%Y-%m-%d %H:%M:%S %Z}:\n\n{record.summary}\n\n"
            "Run `manage.py verify_logbook` for the whole report.",
        )
    return verification.intact


@shared_task(acks_late=True)
def finalise_orphaned_terminals() -> int:
    """Every few seconds: terminals whose web process is gone are sealed (partial) and their
    Session Manager sessions terminated (terminal.sweeps); the CLI proxy's forwards of such a process
    are ended on record."""
    return terminals_finalise_orphaned() + forwards_finalise_orphaned()


@shared_task(acks_late=True)
def purge_terminal_tickets() -> int:
    """Every minute: the terminal page's tickets that expired an hour ago go."""
    return tickets_purge()


@shared_task(acks_late=True)
def purge_expired_sessions() -> None:
    """Hourly: stored sessions past their expiry, signed in or not, go (Django never deletes them)."""
    sessions_expired_purge()


@shared_task(ignore_result=True, expires=60)
def scheduler_heartbeat() -> None:
    """Every few seconds: stamp that beat sent this and a worker ran it (core.heartbeat; /readyz reads it)."""
    scheduler_heartbeat_record()


# What the services queue by name (core.dispatch), so they never import this module.
task_register("begin_provisioning", begin_provisioning)
task_register("deprovision_grant", deprovision_grant)
task_register("deprovision_grants", deprovision_grants)
task_register("refresh_authorized_keys", refresh_authorized_keys)
task_register("bind_grant_keys", bind_grant_keys)
task_register("refresh_grant_keys", refresh_grant_keys)
task_register("end_withdrawn_sessions", end_withdrawn_sessions)
task_register("end_token_sessions", end_token_sessions)
task_register("sync_grant_expiry", sync_grant_expiry)
task_register("send_notification", send_notification)
task_register("send_password_reset_mail", send_password_reset_mail)
task_register("iam_recheck_sessions", iam_recheck_sessions)
