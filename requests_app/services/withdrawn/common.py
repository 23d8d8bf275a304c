"""What ending sessions the portal does not carry needs, whatever the reason: what the Logbook says
of the sessions the portal started for the CLI's own data channel, which sessions are open
(DescribeSessions, once per instance), which of those were started with the request's AWS
credentials, and ending one on record."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from accounts.models import AwsAccount
from accounts.ports import is_port
from audit.selectors import logbook_request_entries
from fleet import Fleet, FleetError, fleet_for
from requests_app.iam import scoped_role_session_name
from requests_app.models import Grant, RequestStatus
from requests_app.services.credentials import RECORDING_VIAS
from requests_app.services.grant_log import grant_logbook_append

logger = logging.getLogger(__name__)

# ``session.terminated``'s "via" for a session started with the request's AWS credentials, which the
# portal knows only from DescribeSessions.
AWS_CREDENTIALS_VIA = "aws-credentials"


@dataclass(frozen=True)
class _Started:
    """What a ``session.started`` entry says of one session the portal started."""

    session_id: str
    port: int
    document: str
    via: str

    def detail(self) -> dict[str, object]:
        """What ``session.terminated`` says of it, before why."""
        return {"session_id": self.session_id, "port": self.port, "document": self.document, "via": self.via}


@dataclass(frozen=True)
class _Owned:
    """A session open on a grant's instance, owned by its request's role session, that no
    ``session.started`` entry names: one started with the request's AWS credentials."""

    session_id: str
    document: str

    def detail(self) -> dict[str, object]:
        """What ``session.terminated`` says of it, before why (DescribeSessions does not say its port)."""
        return {"session_id": self.session_id, "document": self.document, "via": AWS_CREDENTIALS_VIA}


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


# What ``_started_not_ended`` finds of one session: its request, instance, who started it, and it.
_Found = tuple[int, str, int | None, _Started]


def _started_not_ended(request_ids: list[int], condition: Q | None = None) -> list[_Found]:
    """(request id, instance id, who started it, session) of each session the portal started for the
    CLI's own data channel on these requests (and matching ``condition`` when given) that is not
    ended on record. Two queries on the Logbook's request index."""
    # An entry with an error is an attempt AWS refused: that session is still to be ended.
    ended = set(
        logbook_request_entries(action="session.terminated", request_ids=request_ids)
        .exclude(detail__has_key="error")
        .values_list("detail__session_id", flat=True)
    )
    entries = logbook_request_entries(action="session.started", request_ids=request_ids).exclude(
        detail__via__in=sorted(RECORDING_VIAS)
    )
    if condition is not None:
        entries = entries.filter(condition)
    found: list[_Found] = []
    for request_id, instance_ids, actor_id, detail in entries.values_list(
        "request_id", "instance_ids", "actor_id", "detail"
    ):
        item, names = _started(detail), instance_ids.split()
        if request_id is None or item is None or len(names) != 1:
            continue
        if item.session_id not in ended:
            found.append((request_id, names[0], actor_id, item))
    return found


class _Listings:
    """DescribeSessions for one run, at most once per instance whatever the number of requests and
    sessions there. An instance AWS cannot list is None, and the others are listed all the same."""

    def __init__(self) -> None:
        self._fleets: dict[int, Fleet] = {}
        self._open: dict[tuple[int, str], list[dict[str, str]] | None] = {}

    def fleet(self, account: AwsAccount) -> Fleet:
        if account.pk not in self._fleets:
            self._fleets[account.pk] = fleet_for(account)
        return self._fleets[account.pk]

    def sessions(self, grant: Grant) -> list[dict[str, str]] | None:
        """The sessions open on the grant's instance (``SessionId``, ``Owner``, ``DocumentName``)."""
        account, instance = grant.request.account, grant.instance
        where = (account.pk, instance.instance_id)
        if where not in self._open:
            try:
                self._open[where] = self.fleet(account).active_sessions(instance.instance_id, instance.region)
            except FleetError:
                logger.warning("sessions on %s could not be listed", instance.instance_id, exc_info=True)
                self._open[where] = None
        return self._open[where]

    def open_ids(self, grant: Grant) -> set[str] | None:
        """The ids of the sessions open on the grant's instance; None when AWS cannot say (then every
        candidate the Logbook names is ended: ending one that is over already is harmless)."""
        sessions = self.sessions(grant)
        return None if sessions is None else {item["SessionId"] for item in sessions}


def _credential_grants(condition: Q) -> list[Grant]:
    """The grants of active requests (those matching ``condition``) that were issued AWS credentials,
    whose sessions may have been started with them. One query."""
    return list(
        Grant.objects.select_related("instance", "request__account", "request__requester")
        .filter(condition, request__status=RequestStatus.ACTIVE, request__aws_credentials_until__isnull=False)
        .order_by("pk")
    )


def _started_with_credentials(grants: Iterable[Grant], listings: _Listings) -> list[tuple[Grant, _Owned]]:
    """The sessions open on these grants' instances (DescribeSessions, once per instance) owned by
    their request's role session and not named by a ``session.started`` entry, read after the
    listing: those the person started with the request's AWS credentials. An instance AWS cannot
    list has none now (the next run asks again). One query on the Logbook's request index."""
    found: list[tuple[Grant, _Owned]] = []
    for grant in grants:
        owner = "/" + scoped_role_session_name(request_id=grant.request_id, user=grant.request.requester)
        for session in listings.sessions(grant) or []:
            if session["Owner"].endswith(owner):
                found.append((grant, _Owned(session["SessionId"], session.get("DocumentName", ""))))
    if not found:
        return []
    portals = set(
        logbook_request_entries(
            action="session.started", request_ids={grant.request_id for grant, _ in found}
        ).values_list("detail__session_id", flat=True)
    )
    return [(grant, item) for grant, item in found if item.session_id not in portals]


def _end(fleet: Fleet, grant: Grant, detail: dict[str, object], result: WithdrawnSessions) -> None:
    """End one session with TerminateSession and put it on record (``session.terminated`` with
    ``detail``: the session and why, and AWS's error if it would not end it: the next run tries again)."""
    session_id = str(detail["session_id"])
    try:
        fleet.terminate_session(session_id, grant.instance.region)
    except FleetError as error:
        detail = {**detail, "error": str(error)[:500]}
        result.failed.append(session_id)
    else:
        result.ended.append(session_id)
    grant_logbook_append(grant, "session.terminated", detail)
