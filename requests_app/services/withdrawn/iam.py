"""The sessions the portal does not carry, for the IAM gate's re-check (``terminal.services.iam_recheck``):
who holds one on which grant (``direct_session_pairs``), and ending those the gate now refuses
(``direct_sessions_end_for_iam``), each by the session document it uses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from django.db.models import Q

from requests_app.models import AccessRequest, Grant, RequestStatus
from requests_app.services.withdrawn.common import (
    WithdrawnSessions,
    _credential_grants,
    _end,
    _Listings,
    _started_not_ended,
    _started_with_credentials,
)
from ssmchannel.documents import SESSION_DOCUMENTS

# ``session.terminated``'s reason for a session the IAM gate now refuses (``terminal.services.iam_recheck``).
IAM_DENIED = "iam_denied"


@dataclass
class DirectPair:
    """One person's sessions on one grant that the portal does not carry: their request, and the
    session documents the gate is asked about for them (``documents_of``)."""

    request_id: int
    documents: set[str] = field(default_factory=set)


def documents_of(document: str | None) -> tuple[str, ...]:
    """The session documents a session is asked about: the one its ``session.started`` entry names,
    or both Passport hands out for one started with the request's AWS credentials (None: they start
    either, as the gate asks when it issues them) or whose entry names another (read as hostile)."""
    return (document,) if document in SESSION_DOCUMENTS else SESSION_DOCUMENTS


def _refusal_for(refusals: Mapping[str, str], document: str | None) -> str | None:
    """The gate's refusal of a session asked about on ``documents_of(document)``: the first of those
    documents it refuses, or None when it refuses none of them."""
    return next((refusals[name] for name in documents_of(document) if name in refusals), None)


def direct_session_pairs(*, instance_ids: Sequence[int] | None = None) -> dict[tuple[int, int], DirectPair]:
    """(person, grant) -> request and session documents (``DirectPair``) of every session that is
    open now on an active request (only on these instances, by primary key, when given) and that the
    portal does not carry: those it started for the CLI's own data channel (the document each
    ``session.started`` entry names) and those started with the request's AWS credentials (both
    documents), for the IAM gate's re-check (``terminal.services.iam_recheck``). The ``session.started`` entries
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
    pairs: dict[tuple[int, int], DirectPair] = {}
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
            if grant is None or actor_id is None:
                continue
            open_now = listings.open_ids(grant)  # DescribeSessions once per instance, whatever the sessions
            if open_now is None or item.session_id in open_now:
                pair = pairs.setdefault((actor_id, grant.pk), DirectPair(request_id))
                pair.documents.update(documents_of(item.document))
    condition = Q(request_id__in=active)
    if instance_ids is not None:
        condition &= Q(instance_id__in=list(instance_ids))
    for grant, _ in _started_with_credentials(_credential_grants(condition), listings):
        pair = pairs.setdefault((grant.request.requester_id, grant.pk), DirectPair(grant.request_id))
        pair.documents.update(documents_of(None))
    return pairs


def direct_sessions_end_for_iam(*, user_id: int, grant_id: int, refusals: Mapping[str, str]) -> WithdrawnSessions:
    """End the sessions this person holds on this grant that the portal does not carry (the CLI's
    own, and those started with the request's AWS credentials) that the IAM gate now refuses:
    ``refusals`` is the gate's refusal per session document it refuses, and only a session whose
    documents (``documents_of``) it refuses ends; a forward goes on when only SSH is refused, and
    the other way round (``session.terminated`` with ``"reason": "iam_denied"``, the gate's
    ``refusal`` and the ``refused_documents``). Those over already are neither ended nor written down."""
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
    refused = sorted(refusals)
    for item in items:
        refusal = _refusal_for(refusals, item.document)
        if refusal is not None and (open_now is None or item.session_id in open_now):
            _end(fleet, grant, {**item.detail(), **_why(refusal, refused)}, result)
    refusal = _refusal_for(refusals, None)
    if with_credentials and refusal is not None:
        for _, owned in _started_with_credentials([grant], listings):
            _end(fleet, grant, {**owned.detail(), **_why(refusal, refused)}, result)
    return result


def _why(refusal: str, refused: list[str]) -> dict[str, object]:
    """What ``session.terminated`` says of why: the gate's refusal and the documents it refuses."""
    return {"reason": IAM_DENIED, "refusal": refusal[:1000], "refused_documents": refused}
