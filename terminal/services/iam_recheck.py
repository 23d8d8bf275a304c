"""The IAM gate asked again for sessions already open: browser terminals, CLI proxy connections,
the Session Manager sessions the CLI holds itself (``passport forward``, ``connect`` to Windows, SSH
on a direct account) and those the person started with the request's AWS credentials (``passport
aws-credentials``, then ``aws ssm start-session``; found by their owner, the request's role session).

``requests_app.iam`` is asked when a session starts. AWS itself does not end a Session Manager
session when the person's policy or the instance's tags change so that a new start would be
refused; Passport does. Asked for every distinct (person, grant) with a session open, when the
inventory sync sees an instance's tags change (those instances' sessions, at once) and every
``PASSPORT_IAM_RECHECK_SECONDS`` (all of them), about each session document their sessions there
use, as a new session is asked about its own: AWS-StartSSHSession for browser terminals and CLI
proxy connections, the document each ``session.started`` entry of the CLI's own names
(``passport forward`` to a Linux instance is AWS-StartPortForwardingSession, SSH to a Windows one
AWS-StartSSHSession), and both for those started with the request's AWS credentials (as the
credentials are asked about when issued). A grant is one instance of one request, so this is one
gate call per person, instance and document, whatever the number of their sessions there.

An answer is kept for ``PASSPORT_IAM_RECHECK_CACHE_SECONDS`` per person, grant and document (an
answer about one document never answers for another; a tag change asks afresh), so repeated syncs
and periods cost AWS nothing more. What the Logbook gets: a refusal and an error always
(``iam.checked``); an answer that allows only when the last one recorded for that person, grant and
document did not (the first, or one after a refusal or an error), and always after a tag change.
So an open session that stays allowed adds no entry every period (the last recorded answer per
question is remembered ``RECORDED_ANSWER_SECONDS`` from its last asking, in the cache; lost, the
next allowed answer is written again). Only the sessions whose document the gate refuses end. A refusal of
the SSH document tells the request's open sessions (``terminal.iam_denied``, to the request's
group): the browser terminals and CLI proxy connections of that person on that grant end, each on
record as ``session.terminated`` with the reason ``iam_denied``, and their Session Manager session
is terminated with them. The CLI's own sessions of that person on that grant whose document is
refused, and those started with the request's AWS credentials when either document is, are
terminated with TerminateSession, each on record likewise, with its ``document`` and the
``refused_documents`` (``requests_app.services.direct_sessions_end_for_iam``): a "no tunnels"
Deny on AWS-StartPortForwardingSession ends the person's forwards and leaves their SSH open. A
gate that could not be asked (AWS's error) ends nothing: its ``iam.checked`` entry has the error,
nothing is kept, and the next period asks again. A principal IAM no longer knows (deleted:
``NoSuchEntity``) is no such error but a refusal, as it is for a new session
(``requests_app.iam.iam_check_instances``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache

from accounts.models import User
from core.errors import RequestRuleError
from requests_app.iam import IamUnavailable, iam_check_grant
from requests_app.models import Grant, RequestStatus
from requests_app.services import IAM_DENIED, direct_session_pairs, direct_sessions_end_for_iam
from requests_app.services.grant_log import grant_logbook_append
from ssmchannel.documents import SSH_DOCUMENT
from terminal.models import SessionSlot, TerminalSession
from terminal.services.sessions import request_group

logger = logging.getLogger(__name__)

# What the person is told as the session closes. Nothing of the instance (its name is anyone's who
# may tag it) is in the words; the gate's own refusal is in the Logbook entry.
IAM_DENIED_MESSAGE = (
    "AWS IAM no longer allows you a session on this instance (your IAM policy or the instance's tags "
    "changed); this terminal is closed."
)
# What the gate is asked for: recorded with its ``iam.checked`` entry.
PURPOSE = "recheck"
_ALLOWED = ""  # the cached answer of a pair the gate lets in; a refusal is cached as its words
_ERROR = "\x00error"  # the last recorded "answer" of a pair AWS could not be asked about
# How long the last answer recorded for a pair is remembered after its last question (a pair with a
# session open is asked every period, so this outlasts any gap between two of them).
RECORDED_ANSWER_SECONDS = 24 * 3600


@dataclass
class IamRecheckResult:
    """What one run did: gate calls made, answers taken from the cache, the (person, grant) pairs
    refused and those the gate could not be asked about (to be asked at the next period)."""

    asked: int = 0
    cached: int = 0
    denied: list[tuple[int, int]] = field(default_factory=list)
    unavailable: list[tuple[int, int]] = field(default_factory=list)


# A question's keys name its document: an answer about one document never answers for another. The
# document is one of ``SESSION_DOCUMENTS`` (``requests_app.services.withdrawn.iam.documents_of``).
def _cache_key(user_id: int, grant_id: int, document: str) -> str:
    return f"passport:iam-recheck:{user_id}:{grant_id}:{document}"


def _recorded_key(user_id: int, grant_id: int, document: str) -> str:
    return f"passport:iam-recheck-recorded:{user_id}:{grant_id}:{document}"


def open_session_pairs(*, instance_ids: Sequence[int] | None = None) -> dict[tuple[int, int], int]:
    """(person, grant) -> request of every session open on an active request (two queries): browser
    terminals and CLI shells and commands (their rows), and CLI proxy connections (their slots; one
    with only forwards, or idle, has no row). Only on these instances when given."""
    sessions = TerminalSession.objects.filter(ended_at__isnull=True, grant__request__status=RequestStatus.ACTIVE)
    slots = SessionSlot.objects.filter(grant__request__status=RequestStatus.ACTIVE)
    if instance_ids is not None:
        sessions = sessions.filter(grant__instance_id__in=list(instance_ids))
        slots = slots.filter(grant__instance_id__in=list(instance_ids))
    pairs: dict[tuple[int, int], int] = {}
    for rows in (sessions, slots):
        for user_id, grant_id, request_id in rows.values_list("user_id", "grant_id", "grant__request_id"):
            pairs[(user_id, grant_id)] = request_id
    return pairs


def open_sessions_iam_recheck(*, instance_ids: Sequence[int] | None = None, fresh: bool = False) -> IamRecheckResult:
    """Ask the IAM gate again for every open session's person and grant, about each session document
    their sessions there use (see the module's docstring); ``fresh`` (a tag change) asks AWS even
    when an answer is cached, and records its answer even if it allows as the last recorded one
    did. Each pair on its own: one that fails is logged and asked again at the next period, the
    others go on."""
    result = IamRecheckResult()
    if not settings.PASSPORT_IAM_CHECK:
        return result
    pairs = open_session_pairs(instance_ids=instance_ids)
    # Browser terminals and CLI proxy connections are SSH (AWS-StartSSHSession), whatever the platform.
    documents: dict[tuple[int, int], set[str]] = {pair: {SSH_DOCUMENT} for pair in pairs}
    # The CLI's own sessions (known from the Logbook, each with its document) and those started with
    # the request's AWS credentials (known by their owner; asked about both documents), open per
    # DescribeSessions: a pair already counted adds only the documents not asked about yet.
    direct = direct_session_pairs(instance_ids=instance_ids)
    for pair, found in direct.items():
        pairs.setdefault(pair, found.request_id)
        documents.setdefault(pair, set()).update(found.documents)
    if not pairs:
        return result
    run = _Run(pairs=documents, fresh=fresh, result=result)
    for pair, request_id in sorted(pairs.items()):
        user_id, grant_id = pair
        refusals = run.refusals(pair)
        if not refusals:
            continue  # allowed, not answered (asked again at the next period), or gone meanwhile
        result.denied.append(pair)
        if SSH_DOCUMENT in refusals:
            _tell_sessions(request_id=request_id, grant_id=grant_id, user_id=user_id, refusal=refusals[SSH_DOCUMENT])
        if pair in direct:
            _end_direct(user_id=user_id, grant_id=grant_id, refusals=refusals)
    run.save()
    return result


class _Run:
    """One re-check's questions: (person, grant, document), each answered from the cache or by the gate."""

    def __init__(self, *, pairs: dict[tuple[int, int], set[str]], fresh: bool, result: IamRecheckResult) -> None:
        self.documents = {pair: sorted(names) for pair, names in pairs.items()}
        self.fresh, self.result = fresh, result
        questions = [(*pair, name) for pair, names in self.documents.items() for name in names]
        self.keys = {question: _cache_key(*question) for question in questions}
        self.known: dict[str, str] = {} if fresh else cache.get_many(list(self.keys.values()))
        self.recorded_keys = {
            question: _recorded_key(*question) for question in questions if self.keys[question] not in self.known
        }
        self.recorded: dict[str, str] = {} if fresh else cache.get_many(list(self.recorded_keys.values()))
        self.now_recorded: dict[str, str] = {}
        self.grants = Grant.objects.select_related("request__account", "instance").in_bulk({g for _, g in pairs})
        self.people = User.objects.in_bulk({user for user, _ in pairs})

    def refusals(self, pair: tuple[int, int]) -> dict[str, str] | None:
        """The gate's refusal per document of this pair it now refuses (empty: it allows them all, or
        could not be asked about those it does not refuse); None when the grant or person is gone."""
        user_id, grant_id = pair
        refusals: dict[str, str] = {}
        for name in self.documents[pair]:
            question = (user_id, grant_id, name)
            refusal = self.known.get(self.keys[question])
            if refusal is not None:
                self.result.cached += 1
            else:
                grant, user = self.grants.get(grant_id), self.people.get(user_id)
                if grant is None or user is None:
                    return None
                refusal = self._ask(question, grant=grant, user=user)
                if refusal is None:
                    continue
            if refusal != _ALLOWED:
                refusals[name] = refusal
        return refusals

    def _ask(self, question: tuple[int, int, str], *, grant: Grant, user: User) -> str | None:
        """The gate asked about one document (None when AWS could not be asked), its answer kept."""
        self.result.asked += 1
        recorded_key = self.recorded_keys[question]
        # An answer that allows is written only if the last recorded one did not (or after a tag change).
        record_allowed = self.fresh or self.recorded.get(recorded_key) != _ALLOWED
        try:
            refusal = _ask(grant=grant, user=user, document=question[2], record_allowed=record_allowed)
        except Exception:
            # Written down (iam.checked has AWS's error) and asked again at the next period; an
            # open session is never ended on a question AWS did not answer.
            logger.warning("IAM gate not asked again for user %s on grant %s", *question[:2], exc_info=True)
            if question[:2] not in self.result.unavailable:
                self.result.unavailable.append((question[0], question[1]))
            self.now_recorded[recorded_key] = _ERROR
            return None
        cache.set(self.keys[question], refusal, settings.PASSPORT_IAM_RECHECK_CACHE_SECONDS)
        self.now_recorded[recorded_key] = refusal
        return refusal

    def save(self) -> None:
        """Remember the last answer recorded per question."""
        if self.now_recorded:
            cache.set_many(self.now_recorded, RECORDED_ANSWER_SECONDS)


def _ask(*, grant: Grant, user: User, document: str, record_allowed: bool) -> str:
    """The gate's answer for one pair and session document: ``_ALLOWED``, or its refusal's words (a
    principal IAM no longer knows is one). Raises ``IamUnavailable`` when AWS could not be asked."""
    try:
        iam_check_grant(grant=grant, user=user, purpose=PURPOSE, document=document, record_allowed=record_allowed)
    except IamUnavailable:
        raise
    except RequestRuleError as exc:
        return str(exc) or IAM_DENIED_MESSAGE
    return _ALLOWED


def _end_direct(*, user_id: int, grant_id: int, refusals: dict[str, str]) -> None:
    """End this person's sessions on this grant that the portal does not carry and whose documents
    the gate refuses. One AWS would not end is on record with its error and, still open, is asked
    about and ended again at the next period."""
    try:
        direct_sessions_end_for_iam(user_id=user_id, grant_id=grant_id, refusals=refusals)
    except Exception:
        logger.exception("could not end the CLI's own sessions of user %s on grant %s", user_id, grant_id)


def _tell_sessions(*, request_id: int, grant_id: int, user_id: int, refusal: str) -> None:
    """Tell the request's open sessions that this person's on this grant are refused. A message the
    channel layer loses is sent again at the next period (a session still open is asked about again)."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {
        "type": "terminal.iam_denied",
        "grant_id": grant_id,
        "user_id": user_id,
        "reason": IAM_DENIED_MESSAGE,
        "refusal": refusal,
    }
    try:
        async_to_sync(layer.group_send)(request_group(request_id), message)
    except Exception:
        logger.exception("could not tell the open sessions of request %s that IAM refuses them", request_id)


class IamDeniedFields(TypedDict):
    """What a ``terminal.iam_denied`` message (``_tell_sessions``) says, as an open session's
    ``iam_denied`` takes it."""

    grant_id: int
    user_id: int
    reason: str
    refusal: str


def iam_denied_fields(event: dict[str, Any]) -> IamDeniedFields:
    """The fields of a ``terminal.iam_denied`` message, each of its type; a missing one as nothing
    (grant and person 0, which no open session has)."""
    return IamDeniedFields(
        grant_id=int(event.get("grant_id", 0)),
        user_id=int(event.get("user_id", 0)),
        reason=str(event.get("reason", "Closed.")),
        refusal=str(event.get("refusal", "")),
    )


def terminal_ended_for_iam(*, grant: Grant, client: str, refusal: str, ssm_session_id: str) -> None:
    """On record: an open browser terminal or CLI proxy connection was ended because the IAM gate now
    refuses its person on its instance (``session.terminated``; its ``terminal.ended``, if it had a
    shell, follows with the message)."""
    detail: dict[str, object] = {"reason": IAM_DENIED, "client": client, "refusal": refusal[:1000]}
    if ssm_session_id:
        detail["session_id"] = ssm_session_id
    grant_logbook_append(grant, "session.terminated", detail)
