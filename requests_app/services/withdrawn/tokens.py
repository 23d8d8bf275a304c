"""Ending the Session Manager sessions a revoked or expired CLI sign-in started: ``sessions_end_for_tokens``.

`passport forward`, `connect` to Windows and, on a direct account, `passport proxy` / `connect`'s SSH
hold a session the CLI started with its bearer token (``GrantSessionApi``): its ``session.started``
entry names that token (``cli_token``, the Logbook's mark of the request's CLI sign-in:
``audit.origin``). The CLI speaks the data channel itself, so revoking the token (its row deleted:
``accounts.cli_tokens``) stops every API call but not that channel, which would take new local
connections as new streams until the request ends. So a revocation (``api_tokens_revoked``, whoever
revoked: the person, a site admin, the portal at a password change or a deactivation, an identity
provider withdrawn) queues this once it commits: each session those tokens started for an active
request and not ended on record is ended with TerminateSession, and ``session.terminated`` says
``"reason": "cli sign-in revoked"`` with the ``token`` and why it was revoked (``revoked``, the
``RevokeReason``). A session AWS no longer lists is over already: neither ended again nor written
down. The recording paths' sessions are left to them (the proxy closes its connections itself).

Called without token ids (the periodic run), it finds the sessions of every token whose row is gone,
for a revocation whose task was lost or a session AWS refused to end, and reads why each was revoked
from its ``cli.token_revoked`` entry (``revoked`` is left out only where none says); and a session whose entry was
written just after the revocation's run read the Logbook is ended by ``grant_start_session``'s own
re-read (its token gone) or, failing that, by that periodic run.

An expired token is refused everywhere too (``accounts.authentication``), but its row stays and
nothing revokes it: its end is its confirming browser session's end (``accounts.cli_services``), so
that a person removed at the identity provider keeps nothing past it. The recording proxy closes its
own connections at that end (``terminal.proxy``); the sessions the CLI holds itself are found by the
same periodic run: a token whose row is still there and whose ``expires_at`` has passed is not live,
and each session it started is ended as a revoked one's, its ``session.terminated`` saying
``"reason": "cli sign-in expired"`` with the ``token`` and when it ``expired_at``. So such a session
outlives its sign-in by at most the run's period (``end-withdrawn-sessions``, 5 minutes). The tokens
are looked up by id among those the active requests' entries name (the primary key's index: no scan
of expired rows), and the link from a session to its token is its entry, not the row: a row deleted
after it expired (nothing prunes them; a person's deletion takes theirs) leaves its sessions to be
ended as a revoked token's. ``grant_start_session``'s re-read refuses a token that expired while AWS
started the session, as one revoked then.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Q
from django.utils import timezone

from accounts.cli_tokens import TOKEN_REVOKED, api_tokens_expire_at
from audit.origin import CLI_TOKEN_KEY
from audit.selectors import logbook_detail_values, logbook_request_entries
from requests_app.models import AccessRequest, Grant, RequestStatus
from requests_app.services.credentials import RECORDING_VIAS, SIGN_IN_EXPIRED, SIGN_IN_REVOKED
from requests_app.services.withdrawn.common import WithdrawnSessions, _end, _Listings, _started_not_ended


def _tokens_of(request_ids: list[int], condition: Q) -> dict[str, int]:
    """The token that started each of these sessions (session id: token id). One query."""
    entries = (
        logbook_request_entries(action="session.started", request_ids=request_ids)
        .exclude(detail__via__in=sorted(RECORDING_VIAS))
        .filter(condition)
    )
    found: dict[str, int] = {}
    for session_id, token_id in entries.values_list("detail__session_id", f"detail__{CLI_TOKEN_KEY}"):
        if isinstance(session_id, str) and isinstance(token_id, int):
            found[session_id] = token_id
    return found


def _revoke_reasons(token_ids: set[int]) -> dict[int, object]:
    """Why each of these tokens was revoked (its ``cli.token_revoked`` entry's ``reason``), by token id."""
    return logbook_detail_values(action=TOKEN_REVOKED, key="token", among=token_ids, value="reason")


def sessions_end_for_tokens(
    *, token_ids: Sequence[int] | None = None, user_ids: Sequence[int] | None = None, revoked: str = ""
) -> WithdrawnSessions:
    """End the Session Manager sessions these revoked tokens started for the CLI's own data channel
    (of active requests of ``user_ids``, when given), that are still open and not ended on record;
    ``revoked`` is why (a ``RevokeReason`` value), on record with each. Without ``token_ids``: those
    of every token that no longer exists or has expired. A token still live is never one: its
    sessions go on. A second run finds nothing left to end."""
    result = WithdrawnSessions()
    requests = AccessRequest.objects.filter(status=RequestStatus.ACTIVE)
    if user_ids is not None:
        requests = requests.filter(requester_id__in=list(user_ids))
    active = list(requests.values_list("pk", flat=True))
    if not active or (token_ids is not None and not token_ids):
        return result
    if token_ids is None:
        condition = Q(detail__has_key=CLI_TOKEN_KEY)
    else:
        condition = Q(**{f"detail__{CLI_TOKEN_KEY}__in": sorted({int(pk) for pk in token_ids})})
    tokens = _tokens_of(active, condition)
    # Each one's end, by id; a revoked one (its row deleted) is left out.
    ends = api_tokens_expire_at(pks=sorted(set(tokens.values())))
    now = timezone.now()
    live = {pk for pk, ends_at in ends.items() if ends_at > now}
    # A token still live (one of the periodic run's, or a revocation rolled back since) keeps its sessions.
    found = [
        row
        for row in _started_not_ended(active, condition)
        if row[3].session_id in tokens and tokens[row[3].session_id] not in live
    ]
    if not found:
        return result
    grants = Grant.objects.select_related("instance", "request__account").filter(
        request_id__in={request_id for request_id, *_ in found}
    )
    by_key = {(grant.request_id, grant.instance.instance_id): grant for grant in grants}
    # The periodic run does not know why: each token's cli.token_revoked entry says (none: not known).
    reasons = {} if revoked else _revoke_reasons({tokens[row[3].session_id] for row in found} - set(ends))
    listings = _Listings()
    for request_id, instance_id, _actor_id, item in sorted(found, key=lambda row: (row[0], row[1], row[3].session_id)):
        grant = by_key.get((request_id, instance_id))
        if grant is None:
            continue
        open_now = listings.open_ids(grant)
        if open_now is not None and item.session_id not in open_now:
            continue  # over already: nothing to end, nothing to write down
        token = tokens[item.session_id]
        why: dict[str, object]
        if token in ends:
            # Its row is there: nothing revoked it, its end has passed.
            why = {"reason": SIGN_IN_EXPIRED, "token": token, "expired_at": ends[token].isoformat()}
        else:
            why = {"reason": SIGN_IN_REVOKED, "token": token}
            reason = revoked or reasons.get(token)
            if isinstance(reason, str) and reason:
                why["revoked"] = reason
        _end(listings.fleet(grant.request.account), grant, {**item.detail(), **why}, result)
    return result
