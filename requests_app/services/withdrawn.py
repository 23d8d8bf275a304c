"""Ending the Session Manager sessions the portal started for the CLI's own data channel that the
account no longer allows: to a port an admin has since taken off the account, SSH on an account
whose CLI sessions an admin has since made recorded, or any on an instance whose region an admin has
since taken off the account.

`passport forward` and `connect` to Windows (and, on a direct account, `connect`'s SSH and
`passport forward … :22`) hold a session of their own: the CLI speaks the data channel itself and
nothing of it passes the portal, so the recording proxy's recheck of open forwards
(terminal.proxy) never reaches it. The port, the recording and the region are checked when a
session starts (``grant_start_session``); this ends the sessions already open when one changes,
which would otherwise carry on, unrecorded in the second case, until the request ends.

Which sessions: the portal's own ``session.started`` entries for the account's active requests
(each names its session id, port, document and caller), narrowed in the database to ports the
account no longer opens, instances in a region it no longer lists and, on a recorded account, to
SSH (port 22, or the SSH document), without
the recording paths' sessions (their SSH to port 22 is always open, and the proxy closes its own
forwards) and without those already ended on record. Then DescribeSessions on each instance
concerned (one call), so a session that ended by itself (the CLI stopped) is neither ended again
nor written down. Each one still open is ended with TerminateSession and ``session.terminated``
says why: ``"reason": "region"`` (with the ``region``), ``"port withdrawn"`` (with the ports
``allowed``), or ``"the account's CLI sessions are now recorded"``; a refusal by AWS is in that
entry with its error, does not stop the others, and is tried again by the next run.

Destinations beyond the instance need nothing here: the portal starts no session to a remote host
(``AWS-StartPortForwardingSessionToRemoteHost`` is not a document it hands out), and ``ssh -L``
through the recording proxy is closed by the proxy itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from accounts.models import AwsAccount
from accounts.ports import is_port
from audit.selectors import logbook_request_entries
from fleet import Fleet, FleetError, fleet_for
from requests_app.models import AccessRequest, Grant, RequestStatus
from requests_app.services.credentials import (
    NOW_RECORDED,
    PORT_WITHDRAWN,
    RECORDING_VIAS,
    REGION_TAKEN_OFF,
    SSH_PORT,
)
from requests_app.services.grant_log import grant_logbook_append
from ssmchannel.documents import SSH_DOCUMENT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Started:
    """What a ``session.started`` entry says of one session the portal started."""

    session_id: str
    port: int
    document: str
    via: str


@dataclass
class WithdrawnSessions:
    """The sessions one run ended, and those AWS would not end (tried again by the next run)."""

    ended: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _started(detail: Any) -> _Started | None:
    """The entry's session, or None for an entry that does not name one as the portal writes it."""
    if not isinstance(detail, dict):
        return None
    session_id, port = detail.get("session_id"), detail.get("port")
    document, via = detail.get("document"), detail.get("via")
    if not (isinstance(session_id, str) and session_id and is_port(port)):
        return None
    if not (isinstance(document, str) and isinstance(via, str)):
        return None
    assert isinstance(port, int)  # is_port said so; for the type checker
    return _Started(session_id=session_id, port=port, document=document, via=via)


def _no_longer_allowed(account: AwsAccount, off_region: list[str]) -> Q:
    """The ``session.started`` entries (of the CLI's own data channel) the account no longer allows:
    to a port it no longer opens, on one of ``off_region`` (instance ids in a region it no longer
    lists), and SSH on an account whose CLI sessions are now recorded."""
    condition = ~Q(detail__port__in=list(account.forward_ports))
    if off_region:
        # One instance's entry, as the Logbook stores its instance ids: space-delimited.
        condition |= Q(instance_ids__in=[f" {instance_id} " for instance_id in off_region])
    if account.cli_sessions == AwsAccount.CliSessions.RECORD:
        condition |= Q(detail__port=SSH_PORT) | Q(detail__document=SSH_DOCUMENT)
    return condition


def _why_ended(account: AwsAccount, grant: Grant, item: _Started) -> dict[str, object]:
    """The reason ``session.terminated`` gives for ending this session (its instance's region first,
    then its port)."""
    if grant.instance.region not in account.managed_regions:
        return {"reason": REGION_TAKEN_OFF, "region": grant.instance.region}
    allowed = account.forward_ports
    if item.port not in allowed:
        return {"reason": PORT_WITHDRAWN, "allowed": list(allowed)}
    return {"reason": NOW_RECORDED}


def _started_no_longer_allowed(account: AwsAccount) -> dict[tuple[int, str], list[_Started]]:
    """The sessions started for the account's active requests that it no longer allows
    (``_no_longer_allowed``) and not ended on record, by (request id, instance id). Four queries,
    two on the Logbook's request index."""
    active = list(
        AccessRequest.objects.filter(account_id=account.pk, status=RequestStatus.ACTIVE).values_list("pk", flat=True)
    )
    if not active:
        return {}
    off_region = sorted(
        set(
            Grant.objects.filter(request_id__in=active)
            .exclude(instance__region__in=list(account.managed_regions))
            .values_list("instance__instance_id", flat=True)
        )
    )
    # An entry with an error is an attempt AWS refused: that session is still to be ended.
    ended = set(
        logbook_request_entries(action="session.terminated", request_ids=active)
        .exclude(detail__has_key="error")
        .values_list("detail__session_id", flat=True)
    )
    entries = (
        logbook_request_entries(action="session.started", request_ids=active)
        .exclude(detail__via__in=sorted(RECORDING_VIAS))
        .filter(_no_longer_allowed(account, off_region))
        .values_list("request_id", "instance_ids", "detail")
    )
    found: dict[tuple[int, str], list[_Started]] = {}
    for request_id, instance_ids, detail in entries:
        item, names = _started(detail), instance_ids.split()
        if request_id is None or item is None or len(names) != 1:
            continue
        if item.session_id not in ended:
            found.setdefault((request_id, names[0]), []).append(item)
    return found


def _open_now(fleet: Fleet, grant: Grant) -> set[str] | None:
    """The ids of the sessions open on the grant's instance; None when AWS cannot say (then every
    candidate is ended: ending one that is over already is harmless)."""
    try:
        return {item["SessionId"] for item in fleet.active_sessions(grant.instance.instance_id, grant.instance.region)}
    except FleetError:
        logger.warning("sessions on %s could not be listed; ending each candidate", grant.instance.instance_id)
        return None


def sessions_end_withdrawn(*, account_id: int) -> WithdrawnSessions:
    """End every session the portal started for the CLI's own data channel, for an active request of
    this account, that the account no longer allows: to a port it no longer opens, on an instance in a
    region it no longer lists, or SSH once its CLI sessions are recorded. Run after an admin's change
    commits and periodically; a second run finds nothing left to end."""
    result = WithdrawnSessions()
    account = AwsAccount.objects.filter(pk=account_id).first()
    if account is None:
        return result
    found = _started_no_longer_allowed(account)
    if not found:
        return result
    grants = Grant.objects.select_related("instance", "request__account").filter(
        request_id__in={request_id for request_id, _ in found}
    )
    by_key = {(grant.request_id, grant.instance.instance_id): grant for grant in grants}
    fleet = fleet_for(account)
    for key, items in sorted(found.items()):
        grant = by_key.get(key)
        if grant is None:
            continue
        open_now = _open_now(fleet, grant)
        for item in items:
            if open_now is not None and item.session_id not in open_now:
                continue  # over already: nothing to end, nothing to write down
            detail: dict[str, object] = {
                "session_id": item.session_id,
                "port": item.port,
                "document": item.document,
                "via": item.via,
                **_why_ended(account, grant, item),
            }
            try:
                fleet.terminate_session(item.session_id, grant.instance.region)
            except FleetError as error:
                detail["error"] = str(error)[:500]
                result.failed.append(item.session_id)
            else:
                result.ended.append(item.session_id)
            grant_logbook_append(grant, "session.terminated", detail)
    return result
