"""Live sessions' changes of state: someone watching (on the Logbook), ending sessions by hand, and
an account's sessions becoming moderated while some are open.

Ending goes to the session itself through the channel layer, after commit: a ``terminal.close``
to ``services.session_group`` (the browser terminal's and the CLI proxy's live feed listen there)
and, for a whole request, to ``services.request_group`` too (a terminal still opening). The
session ends with the reason as the one shown to its person, and seals its own record. Moderation
turned on goes the same way, as ``live.moderate`` to each open session's group (terminal.live).
"""

from __future__ import annotations

import logging
import re

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from accounts import permissions
from accounts.models import AwsAccount, User
from core.errors import NotAllowed, RequestRuleError
from requests_app.models import AccessRequest, Grant
from requests_app.services.grant_log import grant_logbook_append
from terminal import services
from terminal.models import TerminalSession

logger = logging.getLogger(__name__)

REASON_MAX_CHARS = 500
# Control characters (escape sequences, newlines) and bidi overrides: reasons and watchers' names
# are shown in the person's terminal, and a CLI may print them there as they are.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def plain_line(text: str) -> str:
    """``text`` as one printable line: control characters and bidi overrides become spaces."""
    return " ".join(_UNPRINTABLE.sub(" ", text or "").split())


def terminate_reason_clean(reason: str) -> str:
    """The reason as one plain line; a ``RequestRuleError`` on ``reason`` if nothing is left."""
    text = plain_line(reason)
    if not text:
        raise RequestRuleError({"reason": ["Say why the session is being ended: the person will see it."]})
    return text[:REASON_MAX_CHARS]


def _closed_message(user: User, reason: str) -> str:
    return f"{plain_line(user.label)} ended this session: {reason}"


def _send_close(groups: list[str], message: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for group in groups:
        try:
            async_to_sync(layer.group_send)(group, {"type": "terminal.close", "reason": message})
        except Exception:
            logger.exception("could not tell %s to close", group)


def _terminated(session: TerminalSession, user: User, reason: str, scope: str) -> None:
    grant_logbook_append(
        session.grant,
        "session.terminated",
        {
            "terminal_session": session.pk,
            "of": session.user.username,
            "client": session.client,
            "kind": session.kind,
            "reason": reason,
            "scope": scope,
        },
        actor=user,
    )


def session_terminate(*, session: TerminalSession, user: User, reason: str) -> bool:
    """End one open session; False if it had already ended. Refused to anyone who may not watch it."""
    if not permissions.can_watch_session(user, session):
        raise NotAllowed("You may not end this session.")
    text = terminate_reason_clean(reason)
    if session.ended_at is not None:
        return False
    with transaction.atomic():
        _terminated(session, user, text, "session")
        message = _closed_message(user, text)
        transaction.on_commit(lambda: _send_close([services.session_group(session.pk)], message))
    return True


def request_sessions_terminate(*, access_request: AccessRequest, user: User, reason: str) -> int:
    """End every open session of one request this person may end; how many were open."""
    text = terminate_reason_clean(reason)
    sessions = list(
        TerminalSession.objects.filter(grant__request=access_request, ended_at__isnull=True)
        .filter(permissions.live_session_visibility(user))
        .select_related("grant__instance", "grant__request__account", "user")
    )
    if not sessions:
        return 0
    message = _closed_message(user, text)
    groups = [services.session_group(session.pk) for session in sessions]
    groups.append(services.request_group(access_request.pk))
    with transaction.atomic():
        for session in sessions:
            _terminated(session, user, text, "request")
        transaction.on_commit(lambda: _send_close(groups, message))
    return len(sessions)


def session_watch_started(*, session: TerminalSession, user: User, moderator: bool) -> None:
    """``moderator``: whether this watcher lets a moderated session run (``counts_as_moderator``)."""
    grant_logbook_append(
        session.grant,
        "session.watch_started",
        {
            "terminal_session": session.pk,
            "of": session.user.username,
            "client": session.client,
            "kind": session.kind,
            "moderator": moderator,
        },
        actor=user,
    )


def session_watch_moderator_changed(*, session: TerminalSession, user: User, moderator: bool) -> None:
    """A watcher still watching became, or stopped being, a moderator (an admin changed their
    approving, membership or site-admin status meanwhile): a moderated session runs or pauses on it."""
    grant_logbook_append(
        session.grant,
        "session.watch_moderator_changed",
        {"terminal_session": session.pk, "of": session.user.username, "moderator": moderator},
        actor=user,
    )


def session_watch_ended(*, session: TerminalSession, user: User, seconds: float) -> None:
    grant_logbook_append(
        session.grant,
        "session.watch_ended",
        {"terminal_session": session.pk, "of": session.user.username, "seconds": round(seconds, 1)},
        actor=user,
    )


def session_moderated(*, grant: Grant) -> bool:
    """Whether sessions on this grant's account wait for an approver to watch them (read afresh)."""
    return bool(
        AwsAccount.objects.filter(pk=grant.request.account_id).values_list("require_session_join", flat=True).first()
    )


def sessions_moderated(*, session_ids: list[int]) -> dict[int, bool]:
    """Whether each of these sessions' account moderates its sessions now, in one query (the open
    sessions' periodic re-read, terminal.rounds); a session not found is left out."""
    rows = TerminalSession.objects.filter(pk__in=session_ids).values_list(
        "pk", "grant__request__account__require_session_join"
    )
    return {pk: bool(moderated) for pk, moderated in rows}


def account_sessions_moderate(*, account_id: int) -> int:
    """Tell every open session of this account (browser terminals and the CLI proxy's, in any web
    process) that its sessions are now moderated (after the change commits): each pauses until an
    approver watches, unless one already does, and puts that on record itself
    (``session_moderation_applied``). A session that misses the message reads the setting again
    within seconds (terminal.live). How many sessions were told."""
    layer = get_channel_layer()
    if layer is None:
        return 0
    open_sessions = TerminalSession.objects.filter(grant__request__account_id=account_id, ended_at__isnull=True)
    session_ids = list(open_sessions.values_list("pk", flat=True))
    for session_id in session_ids:
        try:
            async_to_sync(layer.group_send)(services.session_group(session_id), {"type": "live.moderate"})
        except Exception:
            # The account is changed regardless; the session's own re-read holds it a little later.
            # A channel-layer outage must not fail the admin's save.
            logger.exception("could not tell session %s that its account is now moderated", session_id)
    return len(session_ids)


def session_moderation_applied(*, session: TerminalSession, held: bool) -> None:
    """An open session became moderated (its account's "Moderated sessions" turned on): ``held``,
    paused until an approver watches; else an approver already watched, and it runs on."""
    grant_logbook_append(
        session.grant,
        "session.moderation_applied",
        {
            "terminal_session": session.pk,
            "of": session.user.username,
            "client": session.client,
            "kind": session.kind,
            "held": held,
        },
    )
