"""The IAM gate: asks AWS about a person's sessions on instances, records every answer in the
Logbook, and refuses what IAM does not open (the package's docstring says what is asked)."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from accounts.models import AwsAccount, User
from accounts.selectors import principal_arn_for
from audit.services import logbook_append
from core.errors import RequestRuleError
from core.text import visible
from fleet import AccessDecision, FleetError, fleet_for
from fleet.arns import document_arn
from requests_app.iam.principals import CHECK_MARKER, Principal, absent_keys, own_session_arn, principal_context
from requests_app.iam.refusals import iam_gone_principal_reason, iam_missing_principal_reason, instance_refusal
from requests_app.models import Grant, Instance
from ssmchannel.documents import PORT_FORWARDING_DOCUMENT, SESSION_DOCUMENTS, SSH_DOCUMENT

SESSION_ACTIONS = ("ssm:StartSession", "ssm:TerminateSession")
START, TERMINATE = SESSION_ACTIONS
_STRICTNESS = {"allowed": 0, "implicitDeny": 1, "explicitDeny": 2}


class IamUnavailable(RequestRuleError):
    """AWS could not be asked (its error, not its answer): the person is refused a new session, but
    nothing already open is ended on it (``terminal.services.iam_recheck`` asks again later). A
    principal IAM says does not exist (``NoSuchEntity``) is not this but a refusal: asking again
    cannot help, and an open session of a principal deleted from IAM ends."""


# SimulatePrincipalPolicy's error code for a principal ARN IAM does not know (deleted, or never made).
PRINCIPAL_GONE_CODE = "NoSuchEntity"


def session_documents(instance: Instance, *, purpose: str, document: str | None = None) -> tuple[str, ...]:
    """The session documents a check asks StartSession about (see the package's docstring)."""
    if document is not None:
        return (document,)
    if purpose == "credentials":
        return SESSION_DOCUMENTS
    return (PORT_FORWARDING_DOCUMENT,) if instance.platform == Instance.Platform.WINDOWS else (SSH_DOCUMENT,)


def _tags(instance: Instance) -> dict[str, str]:
    """The instance's tags from the last inventory sync, as strings (they are sent as data only)."""
    tags = instance.tags if isinstance(instance.tags, dict) else {}
    return {str(key): str(value) for key, value in tags.items()}


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
    context = {**principal_context(principal), **CHECK_MARKER}
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
            denied.append(instance_refusal(account, instance, verdicts, missing, unconfirmed))
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
