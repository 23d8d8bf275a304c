"""The OS account's own expiry on each host, kept at its request's end.

The account expires on its own even if removal never runs (an instance away when the request
ended), so it must not outlive the request. The create script writes the end it knew; the end
moves later when the request is extended, and when its clock started after the script was
written (the first ready grant starts it). Either way the host is told again, through the same
Run Command as the rest: a Windows script that moves the expiry and nothing else (a create would
set a new password), and on Linux the idempotent create script, as a CA rotation does. What was
written is kept on the grant (``Grant.host_expires_at``); a periodic sweep finds grants whose
host is behind (a lost task, a host that did not answer), and every move or failure to move is
in the Logbook.

On Linux the create script also writes the grant's ``authorized_keys`` lines, each with sshd's
``expiry-time`` at its own request's end (``Grant.key_expires_at``): moved with it, so a certificate
signed before a shortening is refused from the new end even if the removal never runs. One person's
live requests on one host share its user, whose expiry is the latest of their ends: a script of one
grant records what it wrote on the others (``account_expiry_shared``), so once the latest of them
ends, the others read as behind and move the expiry back.

On a host whose sshd is older than OpenSSH 7.7 (or whose version the script cannot tell) the script
writes the lines without ``expiry-time`` and says so; the grant records it (``Grant.key_expiry_written``
False, ``key_expiry_said``), and its lines are not behind for their minute there, since no rewrite
would put one in: the account's expiry still is, and still moves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db.models import F, Q

from core.dispatch import task_send_on_commit
from fleet import CommandResult, FleetError
from fleet.scripts import lines_without_expiry_time, render_windows_expiry
from requests_app.models import Grant, GrantStatus, Instance, RequestStatus
from requests_app.selectors.grants import grants_sharing_the_user
from requests_app.services.grant_log import grant_logbook_append
from requests_app.services.provisioning.common import (
    FINAL_EXIT_CODES,
    PROVISION_RETRY_CAP,
    Outcome,
    _backoff,
    _create_script,
    _request_end,
    _run_on,
    account_expiry_for,
    account_expiry_in_step,
)
from requests_app.services.provisioning.host_lines import (
    _ca_keys_written,
    _direct_login_written,
    ca_keys_for,
    direct_login_allowed,
)

EXPIRY_TASK = "sync_grant_expiry"

# On a grant whose host refused to move its account's expiry for good (``FINAL_EXIT_CODES``: a
# Windows account renamed or stripped of Passport's marker, a Linux name that is not Passport's):
# the sweep leaves it to an operator rather than asking again every round, and each extension
# asks once more; a move that succeeds clears it.
EXPIRY_REFUSED = "Account expiry not moved, needs an operator: "

# A Linux grant's lines written before its request's clock started stop at the earliest end then
# possible (``_request_end``); the end set once the first grant is ready is that much later as the
# script took. Lines up to this much early are left as written: another Run Command for every new
# grant would buy back no more than those minutes. Never later: a line past the end is moved back.
KEY_EXPIRY_EARLY_SLACK = timedelta(minutes=5)


def key_expiry_for(grant: Grant) -> datetime | None:
    """When the Linux grant's ``authorized_keys`` lines stop taking certificates (sshd's
    ``expiry-time``): its own request's end, not the shared user's (``account_expiry_for``), to the
    minute and rounded down, as the line says it (``fleet.ssh_keys.key_expiry_time``). None on Windows.

    A certificate signed before a policy shortened the request keeps its old end; this line is what
    refuses it on the host from the new end, should the removal not run (an agent down, sshd up)."""
    if grant.platform != Instance.Platform.LINUX:
        return None
    return _request_end(grant.request).astimezone(UTC).replace(second=0, microsecond=0)


def key_expiry_said(grant: Grant, output: str) -> tuple[bool | None, dict[str, object]]:
    """Whether a Linux grant's create script (a create, a key refresh, an expiry move) wrote its
    lines with their ``expiry-time``, as its ``output`` says (``fleet.scripts.lines_without_expiry_time``:
    strictly, only the script's own line), for ``Grant.key_expiry_written``; with what the Logbook's
    entry of the run adds (nothing when it was written). None and nothing on Windows."""
    if grant.platform != Instance.Platform.LINUX:
        return None, {}
    version = lines_without_expiry_time(output)
    if version is None:
        return True, {}
    return False, {"key_expiry_written": False, "openssh_version": version}


def key_expiry_in_step(written: datetime | None, wanted: datetime | None) -> bool:
    """Whether lines written to stop at ``written`` stop at the ``wanted`` minute (``key_expiry_for``):
    never after it, and at most ``KEY_EXPIRY_EARLY_SLACK`` before."""
    if wanted is None:
        return True
    return written is not None and wanted - KEY_EXPIRY_EARLY_SLACK <= written <= wanted


def grant_expiry_in_step(grant: Grant) -> bool:
    """Whether what the grant's host was last told (its account's expiry, its lines' expiry-time, as
    recorded on the grant) is what its requests' ends ask now. Lines its host's sshd took without an
    expiry-time (``Grant.key_expiry_written`` False) are in step for it: writing them again would not
    put one in."""
    if not account_expiry_in_step(grant, grant.host_expires_at, account_expiry_for(grant)):
        return False
    return grant.key_expiry_written is False or key_expiry_in_step(grant.key_expires_at, key_expiry_for(grant))


def account_expiry_shared(grant: Grant, written: datetime | None) -> None:
    """Record on the other live grants of ``grant``'s Linux user on its host the expiry a script of
    ``grant`` just wrote on that user (None: not known, ``host_expiry_record``): the account is theirs
    too, and what its expiry is on the host is the last one written, whichever grant wrote it. A grant
    that records another's later expiry is behind once that other request ends
    (``grant_expiry_in_step``) and is told again; without this it would still record its own earlier
    one, read as in step, and leave the later one there. It counts as a write on theirs: a script of
    theirs on its way keeps no record of its own (``Grant.host_writes``). Their lines are their own
    and left as recorded: lines not known (None) stay behind whatever expiry is recorded here."""
    grants_sharing_the_user(grant).update(host_expires_at=written, host_writes=F("host_writes") + 1)


def host_expiry_record(
    grant: Grant, *, expires_at: datetime, lines_expire_at: datetime | None, lines_written: bool | None
) -> bool:
    """Record what a script of ``grant`` that landed on its host wrote of its expiries (the account's,
    the lines'), if no other script recorded its own since ``grant`` was loaded, before the script was
    rendered (its ``Grant.host_writes``); returns whether it was kept.

    Scripts of one grant (a create, an expiry move, a key refresh) may land in either order, and the
    last to land is what the host has. One that records while another recorded in its window does
    not know which landed last: the host's expiry is then not known (None), and the sweep moves it
    again. The last to record keeps its own only if every other script recorded before it was
    rendered, so landed before it. Counted, not compared by the value: a refresh rendered before a
    shortening records the very end a move loaded, and must not make the move's record look alone.
    The other grants of the Linux user get what was recorded (``account_expiry_shared``)."""
    bumped = F("host_writes") + 1
    kept = Grant.objects.filter(pk=grant.pk, host_writes=grant.host_writes).update(
        host_expires_at=expires_at,
        key_expires_at=lines_expire_at,
        key_expiry_written=lines_written,
        host_writes=bumped,
    )
    if not kept:
        host_expiry_not_known(grant)
    account_expiry_shared(grant, expires_at if kept else None)
    return bool(kept)


def host_expiry_not_known(grant: Grant) -> None:
    """A script of ``grant`` landed on its host while another's may have landed after or before it:
    neither the account's expiry nor the lines' (nor whether they have one) is known, and each reads
    as behind until a move records it again. The lines too, not only the account's expiry: a record
    of the shared user by another grant (``account_expiry_shared``) gives back an account's expiry,
    never the lines', so lines left as an earlier record said would then read in step whatever the
    host has. Counted as a write (``Grant.host_writes``)."""
    Grant.objects.filter(pk=grant.pk).update(
        host_expires_at=None, key_expires_at=None, key_expiry_written=None, host_writes=F("host_writes") + 1
    )


def expiry_refusal_clear(grant_id: int) -> None:
    """The grant no longer shows a host's refusal to move its account's expiry (``EXPIRY_REFUSED``):
    a move was made (an expiry move, a key refresh's create script), another answer came since, or
    the grant was removed."""
    Grant.objects.filter(pk=grant_id, last_error__startswith=EXPIRY_REFUSED).update(last_error="")


def _load(grant_id: int) -> Grant | None:
    return (
        Grant.objects.select_related("request__account", "instance")
        .filter(pk=grant_id, status=GrantStatus.READY, request__status=RequestStatus.ACTIVE)
        .first()
    )


def grant_expiry_sync_if_behind(*, grant_id: int) -> None:
    """Queue the move of the grant's account expiry, once the transaction commits, if its host is behind."""
    grant = _load(grant_id)
    if grant is not None and not grant_expiry_in_step(grant):
        task_send_on_commit(EXPIRY_TASK, grant.pk)


EXPIRY_SWEEP_BATCH = 500


def grants_needing_expiry_sync() -> list[int]:
    """Ready grants of active requests whose host's account expiry is not their request's end: the
    first ``EXPIRY_SWEEP_BATCH`` of them.

    The query cannot tell a Linux grant in step (its account expires at a whole day, so a recorded
    expiry a little off the request's end is the one wanted) from one behind, and most Linux grants
    stay in it for good; the batch is counted after they are dropped, so none of them keeps a grant
    that is behind out of every round."""
    # A Linux grant's lines stop at its request's end to the minute: off it by more than a minute
    # (and the slack), or after it, or not known to stop at all (lines of before they did); not
    # lines the host's sshd took without one (a rewrite would not add it: the sweep would loop).
    lines_off = (
        Q(platform=Instance.Platform.LINUX)
        & ~Q(key_expiry_written=False)
        & (
            Q(key_expires_at__isnull=True)
            | Q(key_expires_at__gt=F("request__expires_at"))
            | Q(key_expires_at__lt=F("request__expires_at") - KEY_EXPIRY_EARLY_SLACK - timedelta(minutes=1))
        )
    )
    candidates = (
        Grant.objects.select_related("request", "instance")
        .filter(status=GrantStatus.READY, request__status=RequestStatus.ACTIVE)
        .exclude(last_error__startswith=EXPIRY_REFUSED)
        .filter(Q(host_expires_at__isnull=True) | ~Q(host_expires_at=F("request__expires_at")) | lines_off)
        .order_by("pk")
    )
    behind: list[int] = []
    for grant in candidates.iterator(chunk_size=EXPIRY_SWEEP_BATCH):
        if not grant_expiry_in_step(grant):
            behind.append(grant.pk)
            if len(behind) >= EXPIRY_SWEEP_BATCH:
                break
    return behind


def grant_sync_account_expiry(*, grant_id: int) -> Outcome:
    """Move the account's expiry on the grant's host to its request's end, if it is not there yet."""
    grant = _load(grant_id)
    if grant is None:
        return Outcome()  # not ready, or its request ended: removal takes the account
    if grant_expiry_in_step(grant):
        return Outcome()
    wanted, lines_wanted = account_expiry_for(grant), key_expiry_for(grant)
    command_id = None
    result: CommandResult | None = None
    ca_public_keys = ca_keys_for(grant)
    lines_written: bool | None = None
    said: dict[str, object] = {}
    try:
        # Of the grant's own platform, whatever the inventory says the instance is now: the account
        # to move is the one the grant made.
        if grant.platform == Instance.Platform.WINDOWS:
            script = render_windows_expiry(
                username=grant.username,
                expires_at=wanted,
                domain_controller=grant.domain_account,
                # Found by the SID its create reported, and refused if renamed or without the marker.
                account_sid=grant.account_sid or "",
            )
        else:
            script = _create_script(grant, wanted, ca_public_keys=ca_public_keys, lines_expire_at=lines_wanted)
        result = _run_on(grant, script=script, purpose="move the account expiry of")
        command_id = result.command_id
        error = None if result.ok else result.summary()
        if result.ok:
            lines_written, said = key_expiry_said(grant, result.stdout)
    except FleetError as exc:
        error = str(exc)
    detail: dict[str, object] = {"username": grant.username, "expires_at": wanted}
    if lines_wanted is not None:
        detail["lines_expire_at"] = lines_wanted
    if command_id:
        detail["command_id"] = command_id
    if error is not None:
        refused = result is not None and result.exit_code in FINAL_EXIT_CODES
        grant_logbook_append(
            grant,
            "grant.expiry_move_failed",
            {**detail, "error": error, **({"needs_operator": True} if refused else {})},
        )
        if refused:
            Grant.objects.filter(pk=grant.pk).update(last_error=(EXPIRY_REFUSED + error)[:2000])
            return Outcome()
        # Not refused this time (the host away, a script that failed otherwise): whatever an earlier
        # refusal said no longer holds, and the sweep must ask again until the move is made.
        expiry_refusal_clear(grant.pk)
        return Outcome(retry_in=_backoff(1, PROVISION_RETRY_CAP))
    grant_logbook_append(grant, "grant.expiry_moved", {**detail, **said})
    expiry_refusal_clear(grant.pk)
    if grant.platform == Instance.Platform.LINUX:
        _ca_keys_written(grant, ca_public_keys)  # the create script again: its lines too
        _direct_login_written(grant, direct_login_allowed(grant.request.account))
    # Kept only if no other script of the grant recorded meanwhile: two moves at once (two quick
    # extensions), or a move and a key refresh, may reach the host in either order, so the later
    # to record says it no longer knows, and runs again.
    kept = host_expiry_record(grant, expires_at=wanted, lines_expire_at=lines_wanted, lines_written=lines_written)
    return Outcome() if kept else Outcome(retry_in=_backoff(1, PROVISION_RETRY_CAP))
