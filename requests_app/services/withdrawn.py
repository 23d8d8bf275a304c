"""Ending the Session Manager sessions the portal started for the CLI's own data channel that the
account no longer allows: to a port an admin has since taken off the account, SSH on an account
whose CLI sessions an admin has since made recorded, any on an account whose sessions an admin has
since made moderated (no approver can watch them), or any on an instance whose region an admin has
since taken off the account. And likewise those the person started with the request's AWS
credentials (`passport aws-credentials`), which the portal did not start at all.

`passport forward` and `connect` to Windows (and, on a direct account, `connect`'s SSH and
`passport forward … :22`) hold a session of their own: the CLI speaks the data channel itself and
nothing of it passes the portal, so the recording proxy's recheck of open forwards
(terminal.proxy) never reaches it. The port, the recording and the region are checked when a
session starts (``grant_start_session``); this ends the sessions already open when one changes,
which would otherwise carry on, unrecorded in the second case, until the request ends.

Which sessions: the portal's own ``session.started`` entries for the account's active requests
(each names its session id, port, document and caller), narrowed in the database to ports the
account no longer opens, instances in a region it no longer lists and, on a recorded account, to
SSH (port 22, or the SSH document), or all of them on a moderated account, without
the recording paths' sessions (their SSH to port 22 is always open, and the proxy closes its own
forwards) and without those already ended on record. Then DescribeSessions on each instance
concerned (one call), so a session that ended by itself (the CLI stopped) is neither ended again
nor written down. Each one still open is ended with TerminateSession and ``session.terminated``
says why: ``"reason": "region"`` (with the ``region``), ``"port withdrawn"`` (with the ports
``allowed``), ``"moderation on"``, or ``"the account's CLI sessions are now recorded"``; a refusal by AWS is in that
entry with its error, does not stop the others, and is tried again by the next run.

Sessions started with the request's AWS credentials have no ``session.started`` entry: the person
ran ``aws ssm start-session`` themselves. They are found as removal finds a person's sessions
(``provisioning.sessions``): on the instances of the active requests that were issued credentials
(``AccessRequest.aws_credentials_until``), the sessions DescribeSessions lists (the same one call
per instance) whose owner is the request's role session (``passport-r<request>-u<person>``) and
that no ``session.started`` entry names (those are the portal's own: the recording paths', and the
CLI's, which the entries above decide). DescribeSessions says their document, not their port: so
once the account's CLI sessions are recorded every one of them ends (a forward may be to sshd),
once its sessions are moderated every one ends (``"moderation on"``), and on an instance whose region
was taken off every one ends too; a port taken off the account
ends none of them (they never had to be to an open port: ``access_request_issue_aws_credentials``).
Their ``session.terminated`` says ``"via": "aws-credentials"`` and the ``document``. An instance AWS
would not list is left to the next run, and the other instances go on. The Logbook is read after
the listing, so a session of the portal's own that is listed is known as such, except one whose
StartSession has just returned and whose entry is not yet written: on a recorded account that
one is taken for the credentials' and ended (the person connects again), never the other way round.

The IAM gate's re-check (``terminal.services.iam_recheck``) asks about these sessions too: it takes
the people and grants of those still open from ``direct_session_pairs`` (the CLI's own, and those
started with the request's AWS credentials) and, for a pair the gate now refuses, ends them with
``direct_sessions_end_for_iam`` (``"reason": "iam_denied"``, with the gate's refusal).

Destinations beyond the instance need nothing here: the portal starts no session to a remote host
(``AWS-StartPortForwardingSessionToRemoteHost`` is not a document it hands out), and ``ssh -L``
through the recording proxy is closed by the proxy itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError
from django.db.models import Q

from accounts.models import AwsAccount
from accounts.ports import is_port
from audit.selectors import logbook_request_entries
from fleet import Fleet, FleetError, fleet_for
from requests_app.iam import scoped_role_session_name
from requests_app.models import AccessRequest, Grant, RequestStatus
from requests_app.services.credentials import (
    MODERATION_ON,
    NOW_RECORDED,
    PORT_WITHDRAWN,
    RECORDING_VIAS,
    REGION_TAKEN_OFF,
    SSH_PORT,
    is_moderated,
)
from requests_app.services.grant_log import grant_logbook_append
from ssmchannel.documents import SSH_DOCUMENT

logger = logging.getLogger(__name__)

# ``session.terminated``'s reason for a session the IAM gate now refuses (``terminal.services.iam_recheck``).
IAM_DENIED = "iam_denied"
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


def _no_longer_allowed(account: AwsAccount, off_region: list[str]) -> Q:
    """The ``session.started`` entries (of the CLI's own data channel) the account no longer allows:
    to a port it no longer opens, on one of ``off_region`` (instance ids in a region it no longer
    lists), and SSH on an account whose CLI sessions are now recorded; every one on a moderated
    account, where no approver could watch them."""
    if is_moderated(account):
        return Q()
    condition = ~Q(detail__port__in=list(account.forward_ports))
    if off_region:
        # One instance's entry, as the Logbook stores its instance ids: space-delimited.
        condition |= Q(instance_ids__in=[f" {instance_id} " for instance_id in off_region])
    if account.cli_sessions == AwsAccount.CliSessions.RECORD:
        condition |= Q(detail__port=SSH_PORT) | Q(detail__document=SSH_DOCUMENT)
    return condition


def _why_ended(account: AwsAccount, grant: Grant, item: _Started) -> dict[str, object]:
    """The reason ``session.terminated`` gives for ending this session (its instance's region first,
    then its port, then the account's moderation)."""
    if grant.instance.region not in account.managed_regions:
        return {"reason": REGION_TAKEN_OFF, "region": grant.instance.region}
    allowed = account.forward_ports
    if item.port not in allowed:
        return {"reason": PORT_WITHDRAWN, "allowed": list(allowed)}
    if is_moderated(account):
        return {"reason": MODERATION_ON}
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
    found: dict[tuple[int, str], list[_Started]] = {}
    for request_id, instance_id, _actor_id, item in _started_not_ended(active, _no_longer_allowed(account, off_region)):
        found.setdefault((request_id, instance_id), []).append(item)
    return found


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
            # BotoCoreError: one the fleet does not wrap, raised as it makes the Session Manager client.
            except (FleetError, BotoCoreError):
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


def _credentials_no_longer_allowed(account: AwsAccount, listings: _Listings) -> list[tuple[Grant, _Owned]]:
    """The sessions started with AWS credentials of the account's active requests that it no longer
    allows: every one once its CLI sessions are recorded (their port cannot be told) or its sessions
    moderated, those on an instance in a region it no longer lists. AWS is asked only when there may
    be some."""
    grants = _credential_grants(Q(request__account_id=account.pk))
    if account.cli_sessions != AwsAccount.CliSessions.RECORD and not is_moderated(account):
        grants = [grant for grant in grants if grant.instance.region not in account.managed_regions]
    return _started_with_credentials(grants, listings)


def _why_owned(account: AwsAccount, grant: Grant) -> dict[str, object]:
    """The reason ``session.terminated`` gives for ending a session started with AWS credentials."""
    if grant.instance.region not in account.managed_regions:
        return {"reason": REGION_TAKEN_OFF, "region": grant.instance.region}
    if is_moderated(account):
        return {"reason": MODERATION_ON}
    return {"reason": NOW_RECORDED}


def sessions_end_withdrawn(*, account_id: int) -> WithdrawnSessions:
    """End every session the portal started for the CLI's own data channel, for an active request of
    this account, that the account no longer allows: to a port it no longer opens, on an instance in a
    region it no longer lists, SSH once its CLI sessions are recorded, or any once its sessions are
    moderated; and every session started with such a request's AWS credentials on a recorded or
    moderated account or in a region it no longer lists.
    Run after an admin's change commits and periodically; a second run finds nothing left to end."""
    result = WithdrawnSessions()
    account = AwsAccount.objects.filter(pk=account_id).first()
    if account is None:
        return result
    found = _started_no_longer_allowed(account)
    listings = _Listings()
    if found:
        grants = Grant.objects.select_related("instance", "request__account").filter(
            request_id__in={request_id for request_id, _ in found}
        )
        by_key = {(grant.request_id, grant.instance.instance_id): grant for grant in grants}
        for key, items in sorted(found.items()):
            grant = by_key.get(key)
            if grant is None:
                continue
            open_now = listings.open_ids(grant)
            for item in items:
                if open_now is not None and item.session_id not in open_now:
                    continue  # over already: nothing to end, nothing to write down
                why = _why_ended(account, grant, item)
                _end(listings.fleet(account), grant, {**item.detail(), **why}, result)
    for grant, owned in _credentials_no_longer_allowed(account, listings):
        _end(listings.fleet(account), grant, {**owned.detail(), **_why_owned(account, grant)}, result)
    return result


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


def direct_session_pairs(*, instance_ids: Sequence[int] | None = None) -> dict[tuple[int, int], int]:
    """(person, grant) -> request of every session that is open now on an active request (only on
    these instances, by primary key, when given) and that the portal does not carry: those it
    started for the CLI's own data channel and those started with the request's AWS credentials,
    for the IAM gate's re-check (``terminal.services.iam_recheck``). The ``session.started`` entries
    not ended on record, and the grants of requests issued credentials, then DescribeSessions once
    per instance concerned, so a session the CLI ended itself is not asked about again. An instance
    AWS cannot list keeps the Logbook's candidates (asked about; ending one that is over already is
    harmless); one of the credentials' there is asked about at the next run."""
    requests = AccessRequest.objects.filter(status=RequestStatus.ACTIVE)
    if instance_ids is not None:
        requests = requests.filter(grants__instance_id__in=list(instance_ids))
    active = sorted(set(requests.values_list("pk", flat=True)))
    if not active:
        return {}
    listings = _Listings()
    pairs: dict[tuple[int, int], int] = {}
    started = _started_not_ended(active)
    if started:
        grants = Grant.objects.select_related("instance", "request__account").filter(
            request_id__in={request_id for request_id, _, _, _ in started},
            instance__instance_id__in={instance_id for _, instance_id, _, _ in started},
        )
        if instance_ids is not None:
            grants = grants.filter(instance_id__in=list(instance_ids))
        by_key = {(grant.request_id, grant.instance.instance_id): grant for grant in grants}
        for request_id, instance_id, actor_id, item in started:
            grant = by_key.get((request_id, instance_id))
            if grant is None or actor_id is None or (actor_id, grant.pk) in pairs:
                continue
            open_now = listings.open_ids(grant)
            if open_now is None or item.session_id in open_now:
                pairs[(actor_id, grant.pk)] = request_id
    condition = Q(request_id__in=active)
    if instance_ids is not None:
        condition &= Q(instance_id__in=list(instance_ids))
    for grant, _ in _started_with_credentials(_credential_grants(condition), listings):
        pairs.setdefault((grant.request.requester_id, grant.pk), grant.request_id)
    return pairs


def direct_sessions_end_for_iam(*, user_id: int, grant_id: int, refusal: str) -> WithdrawnSessions:
    """End the sessions this person holds on this grant that the portal does not carry (the CLI's
    own, and those started with the request's AWS credentials), now that the IAM gate refuses them
    (``session.terminated`` with ``"reason": "iam_denied"`` and the gate's ``refusal``). Those over
    already are neither ended nor written down."""
    result = WithdrawnSessions()
    grant = (
        Grant.objects.select_related("instance", "request__account", "request__requester").filter(pk=grant_id).first()
    )
    if grant is None:
        return result
    items = [
        item
        for _, instance_id, actor_id, item in _started_not_ended([grant.request_id])
        if instance_id == grant.instance.instance_id and actor_id == user_id
    ]
    with_credentials = grant.request.requester_id == user_id and grant.request.aws_credentials_until is not None
    if not items and not with_credentials:
        return result
    listings = _Listings()
    fleet = listings.fleet(grant.request.account)
    open_now = listings.open_ids(grant)
    why: dict[str, object] = {"reason": IAM_DENIED, "refusal": refusal[:1000]}
    for item in items:
        if open_now is None or item.session_id in open_now:
            _end(fleet, grant, {**item.detail(), **why}, result)
    if with_credentials:
        for _, owned in _started_with_credentials([grant], listings):
            _end(fleet, grant, {**owned.detail(), **why}, result)
    return result
