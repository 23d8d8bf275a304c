"""Taking short-lived users off instances again, and ending their sessions first.

A grant to remove is claimed with its own lease, as provisioning claims one; the grants of one
request on Linux hosts of one region are removed by one Run Command (``grants_deprovision``),
each with its own outcome. The person's Session Manager sessions are ended first
(``provisioning.sessions``); those AWS would not list or end are left on record for the sweep,
and the user is removed without waiting for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from fleet import CommandResult, FleetError
from fleet.scripts import (
    MARKER_GROUP,
    REMOVAL_REFUSED_EXIT_CODE,
    deleted_computer_accounts,
    linux_left_line,
    render_remove,
    render_remove_per_host,
)
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance
from requests_app.selectors.grants import grants_keeping_the_user, grants_sharing_the_user
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.leases import GrantLease, grant_lease_kept, lease_new_until
from requests_app.services.lifecycle import access_request_settle
from requests_app.services.os_usernames import grant_removal_refusal
from requests_app.services.provisioning.common import (
    CLEANUP_ERROR_PREFIX,
    CLEANUP_RETRY_CAP,
    RETRY_BASE_SECONDS,
    BatchSettler,
    GrantRun,
    Outcome,
    _backoff,
    _drop_handoff,
    _each_batch,
    _load_all,
    _run_on,
    _run_on_each,
)
from requests_app.services.provisioning.expiry import EXPIRY_REFUSED, grant_expiry_sync_if_behind
from requests_app.services.provisioning.sessions import grant_end_sessions
from requests_app.services.provisioning.upkeep import DIRECT_LOGIN_LEFT

logger = logging.getLogger(__name__)


def _claim_for_removal(grant_id: int, lease: GrantLease) -> Outcome | None:
    """Take one grant to remove; None when taken, else what the task should do instead.

    A grant waiting out a failed try's backoff (``next_attempt_at``) is nobody's yet, as for
    provisioning: a second delivery (the resume sweep's, a message delivered again) finds it too
    early and does nothing, neither running the script on the failing host again nor starting a
    second chain of retries; its own retry, queued for then, takes it (the sweep, should that be lost)."""
    now = timezone.now()
    claimed = (
        Grant.objects.filter(pk=grant_id, status=GrantStatus.REMOVING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(cleanup_attempts=F("cleanup_attempts") + 1, lease_until=lease.until, next_attempt_at=None)
    )
    if claimed:
        return None
    still_provisioning = Grant.objects.filter(pk=grant_id, status=GrantStatus.REMOVING, lease_until__gte=now).exists()
    # A create script is still running there: remove after it, not before it.
    return Outcome(retry_in=RETRY_BASE_SECONDS) if still_provisioning else Outcome()


def grant_deprovision(*, grant_id: int) -> Outcome:
    return grants_deprovision(grant_ids=[grant_id])[grant_id]


def grants_deprovision(*, grant_ids: Sequence[int]) -> dict[int, Outcome]:
    """Remove one grant, or a batch of ``grant_batches`` with one Run Command; each grant's outcome."""
    split = _each_batch(grant_ids, lambda batch: grants_deprovision(grant_ids=batch))
    if split is not None:
        return split
    outcomes: dict[int, Outcome] = {}
    leases: list[GrantLease] = []
    until = lease_new_until()
    for grant_id in grant_ids:
        lease = GrantLease(grant_id, until)
        refused = _claim_for_removal(grant_id, lease)
        if refused is None:
            leases.append(lease)
        else:
            outcomes[grant_id] = refused
    if not leases:
        return outcomes
    grants = _load_all([lease.grant_id for lease in leases])
    settler = BatchSettler(leases, _removal_settle, outcomes)
    results: dict[int, GrantRun]
    with grant_lease_kept(*leases):  # renewed from the first call to the fleet to the last
        for grant in grants:
            grant_end_sessions(grant)
            _drop_handoff(grant)
        try:
            # A Windows user that is another person's grant's too is theirs to remove, not this grant's.
            results = {grant.pk: refusal for grant in grants if (refusal := grant_removal_refusal(grant)) is not None}
            to_remove = [grant for grant in grants if grant.pk not in results]
            if to_remove:
                results |= _run_removal(to_remove, on_result=settler.on_result)
        except FleetError as exc:
            results = {grant.pk: exc for grant in grants}
        except Exception as exc:  # a bug must still show on each grant, and be retried, not hang them
            logger.exception("removing grants %s failed unexpectedly", [grant.pk for grant in grants])
            results = {grant.pk: FleetError(f"Internal error: {exc!r}") for grant in grants}
    return settler.the_rest(grants, results)


def _run_removal(grants: list[Grant], *, on_result: Callable[[Grant, GrantRun], None]) -> dict[int, GrantRun]:
    # The person's other grants on each host that are live here: only they keep the user there,
    # whatever records a user with sudo wrote on the host.
    keeping = grants_keeping_the_user(grants=grants)
    if len(grants) > 1:
        script = render_remove_per_host(
            username=grants[0].username,
            grants={grant.instance.instance_id: str(grant.uid) for grant in grants},
            created=[grant.instance.instance_id for grant in grants if grant.ready_at is not None],
            account_uids={
                grant.instance.instance_id: grant.account_uid for grant in grants if grant.account_uid is not None
            },
            live={grant.instance.instance_id: keeping[grant.pk] for grant in grants},
        )
        return _run_on_each(grants, script=script, purpose="remove", on_result=on_result)
    grant = grants[0]
    script = render_remove(
        # What was created, whatever the inventory and the instance's tag say now.
        platform=grant.platform,
        username=grant.username,
        grant_uid=str(grant.uid),
        domain_controller=grant.domain_account,
        # The grant made its account there: one of its name found without Passport's marker is its
        # user all the same (its Logbook says it was made), disabled or locked and left for an operator.
        created=grant.ready_at is not None,
        # By the SID its create reported, the account is found whatever it was renamed to.
        account_sid=grant.account_sid or "",
        # On Linux, by the uid its create reported, likewise.
        account_uid=grant.account_uid,
        live_grant_uids=keeping[grant.pk],
    )
    return {grant.pk: _run_on(grant, script=script, purpose="remove")}


# At most this many of the computer accounts a removal deleted are named in the Logbook (all are counted).
COMPUTER_NAMES_LOGGED = 50


def _computer_accounts_deleted(result: GrantRun) -> dict[str, Any]:
    """What the Logbook says of the computer accounts a Windows removal on a domain controller
    deleted (those the user had added to the domain): nothing when there were none. The names are
    the user's text, recorded as data."""
    names = [] if isinstance(result, FleetError) else deleted_computer_accounts(result.stdout)
    if not names:
        return {}
    return {"computer_accounts_deleted": len(names), "computer_account_names": names[:COMPUTER_NAMES_LOGGED]}


# The last error of a grant whose removal the fleet refuses for good on an instance that is still
# there (a broken document, a role without the right): the user is still there too, so the
# removal goes on being tried, and the grant says it needs an operator until one succeeds.
NEEDS_OPERATOR_PREFIX = CLEANUP_ERROR_PREFIX + "needs an operator: "
# What ``last_error`` may say that is over once the grant is removed (see ``grant_removal_settle``).
_OVER_ONCE_REMOVED = (CLEANUP_ERROR_PREFIX, EXPIRY_REFUSED, DIRECT_LOGIN_LEFT)
# A removal failing this many tries in a row (about four hours of backoff) needs an operator too,
# whatever the error: a host that never answers (stopped, its agent gone) keeps its user.
REMOVAL_TRIES_BEFORE_OPERATOR = 24
# A failure the same as the try before is written (``grant.remove_retry``) only every this many
# tries, about once a day at the 15-minute cap; the first, and each change of error, always are.
REMOVE_RETRY_WRITTEN_EVERY = 96


def _removal_settle(grant: Grant, lease: GrantLease, result: GrantRun) -> Outcome:
    """The grant removed, or left for another attempt (with the reason on it), by what its script did.

    A refusal for good because the instance is gone (terminated, or EC2 has no such instance)
    ends the grant: the user went with the host, and no later attempt could reach it; but not a
    domain controller's, whose domain user the domain's other controllers keep. Any other refusal
    for good (that one too) leaves the user where it is: retried, flagged for an operator, said once;
    so does one that failed REMOVAL_TRIES_BEFORE_OPERATOR tries in a row, whatever the error. A
    failure that may pass is retried, and written sparingly (``_retry_worth_writing``).

    Only while the grant is still this worker's (its lease): one whose lease ran out while the
    script ran may have been taken over, and removed, by another worker. Then this result changes
    nothing, settles nothing and is not retried; a command that did run is named in the Logbook."""
    computers = _computer_accounts_deleted(result)
    if isinstance(result, FleetError):
        error: str | None = str(result)
        command_id: str | None = None
    else:
        error, command_id = (None if result.ok else result.summary()), result.command_id
    command_ids = [*grant.command_ids, command_id] if command_id else grant.command_ids
    instance_gone = isinstance(result, FleetError) and result.instance_gone
    # The account is still there, disabled or locked, no longer as Passport made it (a Windows
    # account's description was changed or it was renamed, a Linux user left Passport's group): not
    # removed, whatever else; only an operator can tell what it is now.
    left = not isinstance(result, FleetError) and _left_for_operator(grant, result)
    if left:
        error = _left_error(grant)
    # A domain controller's grant made a domain user, which the other domain controllers keep:
    # that one going away takes only a local user along. Such a grant waits for an operator. A
    # Linux grant never made one, whatever its instance's tag said when it was made.
    gone = instance_gone and not grant.domain_account
    if instance_gone and grant.domain_account:
        error = f"{error}; the domain user {grant.username} is left on the domain's other controllers"
    with transaction.atomic():
        if error is None or gone:
            # A provisioning error stays visible after cleanup; a cleanup error is over once it worked,
            # and so is what a live grant showed of its host (an expiry refused, a direct login left).
            removed = Grant.objects.filter(pk=grant.pk, status=GrantStatus.REMOVING, lease_until=lease.until).update(
                status=GrantStatus.REMOVED,
                removed_at=timezone.now(),
                password_sealed=None,  # whatever a create that raced the ending stored: gone with the user
                lease_until=None,
                last_error=("" if grant.last_error.startswith(_OVER_ONCE_REMOVED) else grant.last_error),
                command_ids=command_ids,
            )
            if not removed:
                return _taken_over(grant, command_id, error, computers)
            detail: dict[str, Any] = {"username": grant.username, "command_id": command_id, **computers}
            if gone:
                # Nothing was run: the Logbook says the user went with the instance, and why that is known.
                detail.update(instance_gone=True, error=error)
            grant_logbook_append(grant, "grant.removed", detail)
            # A Linux user kept for other live grants keeps the expiry last written on it, perhaps
            # this grant's request's later end: moved back to theirs (``provisioning.expiry``).
            for kept_grant_id in [] if gone else grants_sharing_the_user(grant).values_list("pk", flat=True):
                grant_expiry_sync_if_behind(grant_id=kept_grant_id)
            access_request_settle(
                access_request=AccessRequest.objects.select_related("account").get(pk=grant.request_id)
            )
            return Outcome()
        attempt = grant.cleanup_attempts
        retry_in = _backoff(attempt, CLEANUP_RETRY_CAP)
        stuck = (isinstance(result, FleetError) and not result.retryable) or left
        needs_operator = stuck or attempt >= REMOVAL_TRIES_BEFORE_OPERATOR
        kept = Grant.objects.filter(pk=grant.pk, status=GrantStatus.REMOVING, lease_until=lease.until).update(
            lease_until=None,
            cleanup_failures=F("cleanup_failures") + 1,
            last_error=(NEEDS_OPERATOR_PREFIX if needs_operator else CLEANUP_ERROR_PREFIX) + error,
            command_ids=command_ids,
            next_attempt_at=timezone.now() + timedelta(seconds=retry_in),
        )
        if not kept:
            return _taken_over(grant, command_id, error, computers)
        detail = {"attempt": attempt, "error": error, "retry_in_seconds": retry_in, **computers}
        if left and grant.account_sid:
            detail["account_sid"] = grant.account_sid
        if left and grant.account_uid is not None:
            detail["account_uid"] = grant.account_uid
        if instance_gone:
            detail["domain_user_left"] = True
        if left:
            # Once, and again whenever the error before was another: what is left, and what to do;
            # and whenever the try deleted computer accounts (a domain user's), which it names.
            if grant.last_error != NEEDS_OPERATOR_PREFIX + error or computers:
                grant_logbook_append(
                    grant, "grant.removal_refused", {"username": grant.username, "command_id": command_id, **detail}
                )
        elif needs_operator and not grant.last_error.startswith(NEEDS_OPERATOR_PREFIX):
            # Once, when it starts: every later attempt fails the same way until an operator mends it.
            grant_logbook_append(grant, "grant.removal_stuck", detail)
        elif not stuck and (computers or _retry_worth_writing(grant, error, attempt)):
            grant_logbook_append(grant, "grant.remove_retry", detail)
    return Outcome(retry_in=retry_in)


def _left_for_operator(grant: Grant, result: CommandResult) -> bool:
    """Whether the removal left the account for an operator: its ``REMOVAL_REFUSED_EXIT_CODE``, and
    on Linux the line the script writes with it (``linux_left_line``) for this user, too. The Linux
    script ends with no other code of its own than the ones it means, but a host's older copy of it,
    or a tool, may have ended with 10 for another reason (userdel cannot lock /etc/group): without
    the line, that is an ordinary failed try, retried."""
    if result.exit_code != REMOVAL_REFUSED_EXIT_CODE:
        return False
    if grant.platform == Instance.Platform.WINDOWS:
        return True
    said = linux_left_line(grant.username)
    return any(line.rstrip("\r") == said for line in f"{result.stdout}\n{result.stderr}".splitlines())


def _left_error(grant: Grant) -> str:
    """The grant's error when its removal left the account for an operator (``REMOVAL_REFUSED_EXIT_CODE``).
    A Windows account found by its name alone (no SID known) is left for one reason only."""
    if grant.platform != Instance.Platform.WINDOWS:
        uid = "" if grant.account_uid is None else f" (uid {grant.account_uid})"
        return (
            f"the account {grant.username}{uid} was left on the host, locked, its processes ended: it is no longer "
            f"in Passport's group ({MARKER_GROUP}), or it was renamed, so it was not deleted; remove it (by its uid, "
            "its name may have changed), then the removal is tried again"
        )
    if not grant.account_sid:
        why = "it no longer carries Passport's marker (its description was changed)"
        return (
            f"the account {grant.username} was left on the host, disabled: {why}, so it was not deleted; "
            "remove it, then the removal is tried again"
        )
    why = (
        "it is no longer as Passport made it (its description was changed, or it was renamed), or an account "
        "of its name has another SID"
    )
    return (
        f"the account {grant.username} (SID {grant.account_sid}) was left on the host, disabled: {why}, so it "
        "was not deleted; remove it (by its SID, its name may have changed), then the removal is tried again"
    )


def _retry_worth_writing(grant: Grant, error: str, attempt: int) -> bool:
    """Whether a failed removal's try is written (``grant.remove_retry``): the first, one whose error
    is not the try before's (the grant's last error, as loaded), and every REMOVE_RETRY_WRITTEN_EVERY
    tries; a host that never answers is then a few entries a day, not one per try, as
    ``session.end_failed`` is written only when its failure changes."""
    before = grant.last_error
    for prefix in (NEEDS_OPERATOR_PREFIX, CLEANUP_ERROR_PREFIX):
        if before.startswith(prefix):
            before = before.removeprefix(prefix)
            break
    else:
        return True  # a provisioning error, or none: the first failure of the removal
    return attempt <= 1 or before != error or attempt % REMOVE_RETRY_WRITTEN_EVERY == 0


def _taken_over(grant: Grant, command_id: str | None, error: str | None, computers: dict[str, Any]) -> Outcome:
    """A removal's result that came after another worker took the grant over: not this worker's to
    settle or retry (the other one does). A command that ran on the host is still named, once."""
    if command_id is not None:
        grant_logbook_append(
            grant,
            "grant.removal_duplicate",
            {"username": grant.username, "command_id": command_id, "error": error, **computers},
        )
    return Outcome()
