"""Does AWS IAM let this person open a Session Manager session on these instances?

Passport never grants more than the customer's own IAM policies allow: before a request is
accepted, and again before each connection, the person's principal in the account is run
through IAM's SimulatePrincipalPolicy for what a Session Manager session of theirs takes, on
the resources AWS checks them on (Service Authorization Reference, AWS Systems Manager:
https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html):

- ``ssm:StartSession`` on the instance, and on the session document the session uses
  (``arn:aws:ssm:<region>::document/<name>``: AWS-owned documents name no account). AWS
  checks a named document as well as the instance (Systems Manager User Guide,
  https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-specify-session-document.html),
  so a Deny on AWS-StartPortForwardingSession is a person's "no tunnels".
- ``ssm:TerminateSession`` on a session of their own. Its only resource is the session
  (``arn:aws:ssm:<region>:<account>:session/<session id>``); Session Manager names a
  session after whoever started it, ``<name>-<17 hex digits>``, and AWS's sample end-user
  policy lets people end their own with ``session/${aws:username}-*``
  (https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-restrict-access-examples.html).

Which documents, when (``session_documents``): a request, a certificate (SSH) and a Linux
connection with no document named ask about AWS-StartSSHSession on a Linux instance and
AWS-StartPortForwardingSession on a Windows one (Remote Desktop is a forward to 3389); AWS
credentials, which can start either, ask about both; ``grant_start_session`` asks about
exactly the document it is about to start.

The assumption about whose sessions: the person is simulated as their mapped IAM identity
(``principal_arn_for``), and asked whether that identity may end a session it started
itself (``own_session_arn``). Passport's own sessions for them are started by the portal's
role and ended by it; what the check stands for is the person's own permission, as AWS
would apply it to them. For an IAM user the session is ``<user name>-...``, and the keys a
request of theirs carries go with the question (``principal_context``: ``aws:username``,
``aws:PrincipalArn`` ...). For a role, sessions are named after the role session name,
which Passport does not know for the person's own sign-in (their identity provider sets
it): it asks about the name Passport gives this person's sessions on the request
(``scoped_role_session_name``; ``r0`` while the request is being made), and sends no
``aws:username`` (a role session has none: a policy on it does not allow a role). ``aws:userid``
is never sent (an IAM user's or role's unique id, which the portal's role may not read): a
policy built on it is refused as one Passport cannot confirm, naming the key.

The simulator knows only what it is told, so each instance's tags (from the inventory) are
sent as context (``fleet.aws.iam``); an answer that needed a condition key Passport cannot
give (``aws:SourceIp`` ...) is a refusal that names the key. Every answer, allowed or not,
goes to the Logbook.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings

from accounts.models import AwsAccount, User
from accounts.selectors import principal_arn_for
from audit.services import logbook_append
from core.errors import RequestRuleError
from core.text import visible
from fleet import AccessDecision, FleetError, fleet_for
from fleet.arns import document_arn, session_arn
from requests_app.models import Grant, Instance
from ssmchannel.documents import PORT_FORWARDING_DOCUMENT, SESSION_DOCUMENTS, SSH_DOCUMENT

SESSION_ACTIONS = ("ssm:StartSession", "ssm:TerminateSession")
START, TERMINATE = SESSION_ACTIONS
# Session Manager's session ids end in a dash and 17 hex digits; any will do for the question.
_SESSION_SUFFIX = "0123456789abcdef0"
_PRINCIPAL = re.compile(r"^arn:aws[\w-]*:iam::(?P<account>\d{12}):(?P<kind>user|role)/(?:[^/]+/)*(?P<name>[^/]+)$")
_STRICTNESS = {"allowed": 0, "implicitDeny": 1, "explicitDeny": 2}


class IamUnavailable(RequestRuleError):
    """AWS could not be asked (its error, not its answer): the person is refused a new session, but
    nothing already open is ended on it (``terminal.services.iam_recheck`` asks again later). A
    principal IAM says does not exist (``NoSuchEntity``) is not this but a refusal: asking again
    cannot help, and an open session of a principal deleted from IAM ends."""


# SimulatePrincipalPolicy's error code for a principal ARN IAM does not know (deleted, or never made).
PRINCIPAL_GONE_CODE = "NoSuchEntity"


def scoped_role_session_name(*, request_id: int | None, user: User) -> str:
    """RoleSessionName of a person's scoped credentials: CloudTrail and Session Manager show it.

    Before a request exists (the check when it is made) its number is 0.
    """
    return f"passport-r{request_id or 0}-u{user.pk}"


@dataclass(frozen=True)
class Principal:
    """A person's principal ARN, read once for a whole check.

    ``kind`` is ``user`` or ``role`` for an IAM user's or role's ARN, with its account and its
    name (the last segment of its path); empty for any other ARN, of which nothing is read.
    """

    arn: str
    kind: str = ""
    account: str = ""
    name: str = ""

    @classmethod
    def parse(cls, arn: str) -> Principal:
        match = _PRINCIPAL.match(arn)
        if match is None:
            return cls(arn)
        return cls(arn, kind=match["kind"], account=match["account"], name=match["name"])


def principal_context(principal: Principal) -> dict[str, str]:
    """The condition keys a request by this principal carries that Passport can know from its ARN.

    IAM User Guide, global condition keys and "Request information that you can use for policy
    variables": ``aws:username`` exists for IAM users only; ``aws:userid`` is an id Passport
    does not have, so it is not sent.
    """
    if not principal.kind:
        return {}
    context = {"aws:PrincipalArn": principal.arn, "aws:PrincipalAccount": principal.account}
    if principal.kind == "user":
        context.update({"aws:PrincipalType": "User", "aws:username": principal.name})
    else:
        context["aws:PrincipalType"] = "AssumedRole"
    return context


def absent_keys(principal: Principal) -> frozenset[str]:
    """Keys a request by this principal never carries (lower case): the simulator's "no value" is AWS's answer.

    A role session has no ``aws:username``, so a policy on it is refused as not allowing,
    not as one Passport could not confirm.
    """
    return frozenset({"aws:username"}) if principal.kind == "role" else frozenset()


def own_session_arn(
    *, principal: Principal, user: User, account: AwsAccount, region: str, request_id: int | None
) -> str:
    """The ARN of a session the person's IAM identity started: what TerminateSession is asked on."""
    owner = principal.name if principal.kind == "user" else scoped_role_session_name(request_id=request_id, user=user)
    return session_arn(region=region, account_id=account.account_id, session_id=f"{owner}-{_SESSION_SUFFIX}")


def session_documents(instance: Instance, *, purpose: str, document: str | None = None) -> tuple[str, ...]:
    """The session documents a check asks StartSession about (see the module's docstring)."""
    if document is not None:
        return (document,)
    if purpose == "credentials":
        return SESSION_DOCUMENTS
    return (PORT_FORWARDING_DOCUMENT,) if instance.platform == Instance.Platform.WINDOWS else (SSH_DOCUMENT,)


def _tags(instance: Instance) -> dict[str, str]:
    """The instance's tags from the last inventory sync, as strings (they are sent as data only)."""
    tags = instance.tags if isinstance(instance.tags, dict) else {}
    return {str(key): str(value) for key, value in tags.items()}


def _and(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def iam_missing_principal_reason(*, user: User, account: AwsAccount) -> str:
    """Why AWS cannot be asked about this person on this account, and who can fix it."""
    if user.saml_identities.exists():
        fix = (
            "ask your identity provider's administrator to send the Role attribute "
            "(https://aws.amazon.com/SAML/Attributes/Role) for this account, or a Passport administrator "
            "to set the account's default role for federated people"
        )
    else:
        fix = "ask an administrator to map your IAM user or role"
    where = f"{account.name} ({account.account_id})"
    return f"You have no IAM principal on {where}, so AWS cannot confirm your access: {fix}."


def iam_gone_principal_reason(*, user: User, account: AwsAccount, arn: str) -> str:
    """Why a person whose principal IAM no longer knows (deleted) is refused, and who can fix it."""
    fix = (
        "ask your identity provider's administrator or a Passport administrator to map an existing role"
        if user.saml_identities.exists()
        else "ask an administrator to map an existing IAM user or role"
    )
    return (
        f"Your IAM principal {visible(arn)} no longer exists on {account.name} ({account.account_id}), "
        f"so AWS allows you nothing there: {fix}."
    )


def iam_accounts_without_principal(*, user: User, accounts: Sequence[AwsAccount]) -> dict[int, str]:
    """For the create form: account pk -> why this person cannot ask there (empty when IAM is not checked)."""
    if not settings.PASSPORT_IAM_CHECK:
        return {}
    return {
        account.pk: iam_missing_principal_reason(user=user, account=account)
        for account in accounts
        if not principal_arn_for(user=user, account=account)
    }


def iam_check_instances(
    *,
    user: User,
    account: AwsAccount,
    instances: Sequence[Instance],
    purpose: str,
    document: str | None = None,
    request_id: int | None = None,
    record_allowed: bool = True,
) -> None:
    """Raise ``RequestRuleError({"instances": [...]})`` naming every instance IAM does not open to ``user``.

    ``purpose`` says why it was asked (``request``, ``certificate``, ``password``, ``session``,
    ``credentials``, ``recheck``) and is recorded with the decisions; with ``document`` (a session
    about to start) the check is about that document, otherwise about ``session_documents``'s.
    ``request_id`` names the request (None while it is being made): a role's sessions are
    named after it. Skipped entirely when ``PASSPORT_IAM_CHECK`` is off.

    Every answer is in the Logbook (``iam.checked``), but for ``record_allowed=False``: then an
    answer that allows is not written (a periodic re-check whose last recorded answer allowed
    too); a refusal and an error always are. A principal IAM does not know (``NoSuchEntity``:
    deleted) is a refusal (``RequestRuleError``), as a person with no principal is; any other
    error of AWS's is ``IamUnavailable``.
    """
    if not settings.PASSPORT_IAM_CHECK or not instances:
        return
    instance_ids = [instance.instance_id for instance in instances]
    principal_arn = principal_arn_for(user=user, account=account)
    base_detail: dict[str, object] = {"purpose": purpose, "principal_arn": principal_arn, "actions": SESSION_ACTIONS}
    if not principal_arn:
        message = iam_missing_principal_reason(user=user, account=account)
        logbook_append(
            action="iam.checked",
            actor=user,
            account=account,
            instance_ids=instance_ids,
            detail={**base_detail, "allowed": False, "error": "no principal ARN"},
        )
        raise RequestRuleError({"instances": [message]})

    principal = Principal.parse(principal_arn)
    needs = {
        instance.instance_id: _needs(
            instance,
            account=account,
            principal=principal,
            user=user,
            purpose=purpose,
            document=document,
            request_id=request_id,
        )
        for instance in instances
    }
    questions: dict[str, list[str]] = {}
    for own in needs.values():
        for arn, action in own.items():
            if action not in questions.setdefault(arn, []):
                questions[arn].append(action)
    # AWS's simulator does not look resources up: an instance's tags go with the question. An
    # AWS-owned document has none; a session's (Session Manager tags it) Passport does not know.
    tags: dict[str, dict[str, str]] = {instance.arn: _tags(instance) for instance in instances}
    tags.update({arn: {} for arn in questions if ":document/" in arn})
    context = principal_context(principal)
    absent = absent_keys(principal)
    try:
        decisions = fleet_for(account).simulate_access(principal_arn, questions, tags, context)
    except FleetError as exc:
        gone = exc.code == PRINCIPAL_GONE_CODE
        logbook_append(
            action="iam.checked",
            actor=user,
            account=account,
            instance_ids=instance_ids,
            detail={**base_detail, "allowed": False, "error": str(exc), **({"principal_gone": True} if gone else {})},
        )
        if gone:
            raise RequestRuleError(
                {"instances": [iam_gone_principal_reason(user=user, account=account, arn=principal_arn)]}
            ) from exc
        raise IamUnavailable(
            {"instances": [f"AWS IAM could not confirm your access on {account.name}: {visible(exc)}"]}
        ) from exc

    per_instance: dict[str, dict[str, object]] = {}
    denied: list[str] = []
    for instance in instances:
        verdicts = {
            arn: (action, decisions[arn].actions.get(action, "implicitDeny"))
            for arn, action in needs[instance.instance_id].items()
        }
        missing = sorted(
            {key for arn in verdicts for key in decisions[arn].missing_context if key.lower() not in absent}
        )
        unconfirmed = next((decisions[arn].unconfirmed for arn in verdicts if decisions[arn].unconfirmed), "")
        outcome = AccessDecision(
            {
                action: max(
                    (verdict for wanted, verdict in verdicts.values() if wanted == action),
                    key=lambda verdict: _STRICTNESS.get(verdict, 1),
                )
                for action in SESSION_ACTIONS
            },
            missing_context=tuple(missing),
            unconfirmed=unconfirmed,
        )
        per_instance[instance.instance_id] = {
            "decision": outcome.decision,
            "actions": outcome.actions,
            "missing_context": missing,
            "resources": {arn: verdict for arn, (_, verdict) in verdicts.items()},
        }
        if unconfirmed:
            per_instance[instance.instance_id]["unconfirmed"] = unconfirmed
        if not outcome.allowed:
            denied.append(_refusal(account, instance, verdicts, missing, unconfirmed))
    if denied or record_allowed:
        logbook_append(
            action="iam.checked",
            actor=user,
            account=account,
            instance_ids=instance_ids,
            detail={**base_detail, "context": context, "allowed": not denied, "decisions": per_instance},
        )
    if denied:
        raise RequestRuleError({"instances": denied})


def iam_check_grant(
    *, grant: Grant, user: User, purpose: str, document: str | None = None, record_allowed: bool = True
) -> None:
    """``iam_check_instances`` for one grant: its instance, on its request's account."""
    iam_check_instances(
        user=user,
        account=grant.request.account,
        instances=[grant.instance],
        purpose=purpose,
        document=document,
        request_id=grant.request_id,
        record_allowed=record_allowed,
    )


def _needs(
    instance: Instance,
    *,
    account: AwsAccount,
    principal: Principal,
    user: User,
    purpose: str,
    document: str | None,
    request_id: int | None,
) -> dict[str, str]:
    """What a session to ``instance`` is checked on: resource ARN -> action (the instance, its documents, a session)."""
    own = {instance.arn: START}
    for name in session_documents(instance, purpose=purpose, document=document):
        own[document_arn(region=instance.region, name=name)] = START
    session = own_session_arn(
        principal=principal, user=user, account=account, region=instance.region, request_id=request_id
    )
    own[session] = TERMINATE
    return own


def _refusal(
    account: AwsAccount,
    instance: Instance,
    verdicts: Mapping[str, tuple[str, str]],
    missing: list[str],
    unconfirmed: str = "",
) -> str:
    """One message for one instance: why it could not be asked about, every action and resource IAM
    refused there, or the keys it lacked."""
    label = instance.label

    def phrase(arn: str, action: str) -> str:
        if arn == instance.arn:
            return f"{action} on {label}"
        if ":document/" in arn:
            return f"{action} with the session document {arn.rsplit('/', 1)[1]}"
        return f"{action} on your own sessions ({arn.rsplit('-', 1)[0]}-*)"

    explicit = [phrase(arn, action) for arn, (action, verdict) in verdicts.items() if verdict == "explicitDeny"]
    refused = [phrase(arn, action) for arn, (action, verdict) in verdicts.items() if verdict != "allowed"]
    if explicit:
        return _sentence(f"Your IAM policy on {account.name} explicitly denies {_and(explicit)}", instance, explicit)
    if unconfirmed:
        # Names the instance's own tags: escaped and cut short where it is made (fleet/aws/iam.py).
        return f"AWS IAM could not confirm your access to {label} on {account.name}: {unconfirmed}."
    if missing:
        # Keys come from the customer's policies: shown escaped, a few at most.
        keys = ", ".join(visible(key) for key in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return (
            f"AWS IAM cannot confirm your access to {label} on {account.name}: your IAM policy "
            f"depends on {keys}{more}, which Passport cannot tell AWS when it asks."
        )
    return _sentence(f"Your IAM policy on {account.name} does not allow {_and(refused)}", instance, refused)


def _sentence(start: str, instance: Instance, phrases: list[str]) -> str:
    """Ends a refusal, naming the instance when none of its phrases did."""
    label = instance.label
    if any(phrase.endswith(f" on {label}") for phrase in phrases):
        return f"{start}."
    return f"{start}, which sessions to {label} need."
