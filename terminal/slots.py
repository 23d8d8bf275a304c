"""How many sessions one person may have open at once: ``PASSPORT_MAX_SESSIONS_PER_GRANT`` on one
grant and ``PASSPORT_MAX_SESSIONS_PER_PERSON`` overall, browser terminals and the CLI proxy alike.

A person is every user of theirs (``accounts.permissions.same_person``: the same email in its
canonical form, ``User.email_key``; a user without one is only themselves), so a second account
does not double the cap.

Each one holds a Session Manager session, an SSH login and a recording, so the check comes before
any of them is started. A session counts from the moment it is let through: first as a
``SessionSlot`` while it opens (certificate, StartSession, login), then as its TerminalSession row.
A browser terminal's row takes the slot's place in one transaction (``session_slot_take``). A CLI
connection keeps its slot as long as its SSH connection is open and touches it every
``SLOT_TOUCH_SECONDS``; its shells and commands name it (``TerminalSession.connection_slot``) and
the slot counts only while none of them is live. So a connection counts as many as its live
shells and commands, and once while it has none: with only ``ssh -L`` forwards or ``-N``, after
its shell ended while forwards stay, or idle between commands (ControlMaster).

The count and the claim hold a lock on the rows of every user of the person, so two sockets
opening at once, under one user or two, cannot both take the last place.

Only live sessions count: a row not ended whose heartbeat is fresh (a stale one is the sweep's to
seal, terminal.sweeps), and a slot touched within ``OPENING_SECONDS`` (a web process that died
leaves one behind) none of whose rows is live.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from accounts.models import User
from accounts.permissions import same_person_users
from requests_app.models import Grant
from requests_app.services.grant_log import grant_refusal_append
from terminal.models import Client, SessionSlot, TerminalSession

# The longest a slot counts after it was taken or last touched (a CLI connection touches its own).
OPENING_SECONDS = 120
# How often a CLI connection touches the slot it holds.
SLOT_TOUCH_SECONDS = OPENING_SECONDS // 4
# Slots this old (not touched since) are deleted by the next claim of the same person.
PURGE_AFTER = timedelta(hours=1)


class SessionLimitReached(Exception):
    """The person already has as many sessions open as they may; ``reason`` is for them to read."""

    def __init__(self, reason: str, detail: dict[str, object]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _live_rows() -> QuerySet[TerminalSession]:
    """Sessions that count: not ended, heartbeat fresh (a stale one is the sweep's to seal)."""
    fresh = timezone.now() - timedelta(seconds=settings.PASSPORT_RECORDING_STALE_SECONDS)
    return TerminalSession.objects.filter(ended_at__isnull=True).filter(
        Q(heartbeat_at__gte=fresh) | Q(heartbeat_at__isnull=True, started_at__gte=fresh)
    )


def _counting_slots() -> QuerySet[SessionSlot]:
    """Slots that count: touched within OPENING_SECONDS, and no live row of theirs (which counts instead)."""
    since = timezone.now() - timedelta(seconds=OPENING_SECONDS)
    return SessionSlot.objects.filter(created_at__gte=since).filter(
        ~Exists(_live_rows().filter(connection_slot=OuterRef("pk")))
    )


def sessions_open(*, user: User, grant: Grant) -> tuple[int, int]:
    """This person's live sessions and openings, under any of their users: (on this grant, overall).

    Rows and slots are read in one statement, so at one moment: read one after the other, a CLI
    shell that ends in between (which takes no person's lock) would count twice, as its row and
    then as its connection's slot, and one whose heartbeat comes back in between not at all.
    """
    person = same_person_users(user)
    rows = _live_rows().filter(user__in=person).order_by().values_list("grant_id", flat=True)
    opening = _counting_slots().filter(user__in=person).order_by().values_list("grant_id", flat=True)
    grant_ids = list(rows.union(opening, all=True))  # one per session: as many as the caps, give or take
    return grant_ids.count(grant.pk), len(grant_ids)


def _lock_person(user: User) -> None:
    # Every claim of one person, under any of their users, waits here for the one before it to
    # commit its slot or row. The same rows in the same order for each of them: no deadlock.
    # FOR NO KEY UPDATE, not FOR UPDATE: a row that refers to the person (a browser terminal's, whose
    # start holds the Logbook's head by then) checks its reference at commit, and must not wait for
    # a lock whose holder waits for that head.
    list(same_person_users(user).select_for_update(no_key=True).order_by("pk").values_list("pk", flat=True))


def _refusal(*, user: User, grant: Grant, client: str) -> SessionLimitReached | None:
    """Under the person's lock: why one more session is too many, or None."""
    per_grant, per_person = settings.PASSPORT_MAX_SESSIONS_PER_GRANT, settings.PASSPORT_MAX_SESSIONS_PER_PERSON
    on_grant, overall = sessions_open(user=user, grant=grant)
    if on_grant >= per_grant:
        reason = (
            f"You already have {on_grant} sessions open on {grant.instance.label}: "
            f"at most {per_grant} at once on one instance. Close one and try again."
        )
    elif overall >= per_person:
        reason = f"You already have {overall} sessions open: at most {per_person} at once. Close one and try again."
    else:
        return None
    detail: dict[str, object] = {
        "reason": "too many open sessions",
        "client": client,
        "open_on_instance": on_grant,
        "open_overall": overall,
        "max_per_instance": per_grant,
        "max_per_person": per_person,
    }
    return SessionLimitReached(reason, detail)


def session_refused_over_limit(*, user: User, grant: Grant, refused: SessionLimitReached) -> None:
    """Write down a session refused by the cap (``terminal.refused``, as a refusal for its recording).

    A page reloading, a script or a ControlMaster retrying: the same person refused on the same grant
    again within the refusal window is only counted (``audit.refusals``); its first entry, with
    ``refusal_key``, has what that one saw open."""
    refusal_key = f"{refused.detail['reason']}:{grant.pk}"
    grant_refusal_append(grant, "terminal.refused", user=user, refusal_key=refusal_key, detail=refused.detail)


def session_slot_claim(*, user: User, grant: Grant, client: str) -> int:
    """Let one more session of this person open on this grant: the slot's id, to hand to
    ``terminal_session_start`` (or ``session_slot_release`` if the opening fails).

    Raises SessionLimitReached, written down in the Logbook, when the person is at a cap.
    """
    with transaction.atomic():
        _lock_person(user)
        old = timezone.now() - PURGE_AFTER
        SessionSlot.objects.filter(user__in=same_person_users(user), created_at__lt=old).delete()
        refused = _refusal(user=user, grant=grant, client=client)
        if refused is None:
            return SessionSlot.objects.create(user=user, grant=grant).pk
    session_refused_over_limit(user=user, grant=grant, refused=refused)
    raise refused


def session_slot_take(*, user: User, grant: Grant, client: str, slot_id: int | None) -> None:
    """In the transaction that writes a session's row, before it: the slot's place goes to the row.

    A browser terminal's slot gives way to its row. A CLI connection's slot (``client`` "cli") stays
    the connection's: its row names it (``connection_slot``), and counts in its stead; a second
    shell of the connection while one is live counts on its own. Without a slot that counts, the
    cap is checked here under the person's lock; raises SessionLimitReached (not yet written down:
    the caller's transaction rolls back).
    """
    since = timezone.now() - timedelta(seconds=OPENING_SECONDS)
    if slot_id is not None and client != Client.CLI:
        # Only a slot that still counts gives way: one past OPENING_SECONDS had stopped counting,
        # and others may have taken its place meanwhile, so the cap is checked again.
        if SessionSlot.objects.filter(pk=slot_id, created_at__gte=since).delete()[0]:
            return
        SessionSlot.objects.filter(pk=slot_id).delete()
        slot_id = None
    _lock_person(user)
    if slot_id is not None and _counting_slots().filter(pk=slot_id).exists():
        SessionSlot.objects.filter(pk=slot_id).update(created_at=timezone.now())
        return  # the connection's slot counted: its row counts in its stead
    refused = _refusal(user=user, grant=grant, client=client)
    if refused is not None:
        raise refused
    if slot_id is not None:  # touched: it counts again once its rows have ended
        SessionSlot.objects.filter(pk=slot_id).update(created_at=timezone.now())


def session_slot_touch(*, slot_id: int) -> None:
    """A CLI connection is still open: its slot counts for another ``OPENING_SECONDS``."""
    SessionSlot.objects.filter(pk=slot_id).update(created_at=timezone.now())


def session_slot_release(*, slot_id: int) -> None:
    """The opening failed, or the CLI connection closed: its place is free again."""
    SessionSlot.objects.filter(pk=slot_id).delete()
