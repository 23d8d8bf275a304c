"""Does AWS IAM let this person open a Session Manager session on these instances?

Passport never grants more than the customer's own IAM policies allow: before a request is
accepted, and again before each connection, the person's principal in the account is run
through IAM's SimulatePrincipalPolicy for the actions a Passport session uses. Both must be
allowed on the instance. The simulator knows only what it is told, so each instance's tags
(from the inventory) are sent as context (``fleet.aws.iam``); an answer that needed a
condition key Passport cannot give (``aws:SourceIp`` ...) is a refusal that names the key.
Every answer, allowed or not, goes to the Logbook.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from accounts.models import AwsAccount, User
from accounts.selectors import principal_arn_for
from audit.services import logbook_append
from core.errors import RequestRuleError
from core.text import visible
from fleet import FleetError, fleet_for
from requests_app.models import Instance

SESSION_ACTIONS = ("ssm:StartSession", "ssm:TerminateSession")


def _label(instance: Instance) -> str:
    return f"{instance.instance_id} ({instance.name})" if instance.name else instance.instance_id


def _tags(instance: Instance) -> dict[str, str]:
    """The instance's tags from the last inventory sync, as strings (they are sent as data only)."""
    tags = instance.tags if isinstance(instance.tags, dict) else {}
    return {str(key): str(value) for key, value in tags.items()}


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


def iam_accounts_without_principal(*, user: User, accounts: Sequence[AwsAccount]) -> dict[int, str]:
    """For the create form: account pk -> why this person cannot ask there (empty when IAM is not checked)."""
    if not settings.PASSPORT_IAM_CHECK:
        return {}
    return {
        account.pk: iam_missing_principal_reason(user=user, account=account)
        for account in accounts
        if not principal_arn_for(user=user, account=account)
    }


def iam_check_instances(*, user: User, account: AwsAccount, instances: Sequence[Instance], purpose: str) -> None:
    """Raise ``RequestRuleError({"instances": [...]})`` naming every instance IAM does not open to ``user``.

    ``purpose`` says why it was asked (``request``, ``certificate``, ``password``, ``session``)
    and is recorded with the decisions. Skipped entirely when ``PASSPORT_IAM_CHECK`` is off.
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

    by_arn = {instance.arn: instance for instance in instances}
    # AWS's simulator does not look the instances up: their tags go with the question.
    tags = {arn: _tags(instance) for arn, instance in by_arn.items()}
    try:
        decisions = fleet_for(account).simulate_access(principal_arn, list(SESSION_ACTIONS), tags)
    except FleetError as exc:
        logbook_append(
            action="iam.checked",
            actor=user,
            account=account,
            instance_ids=instance_ids,
            detail={**base_detail, "allowed": False, "error": str(exc)},
        )
        raise RequestRuleError(
            {"instances": [f"AWS IAM could not confirm your access on {account.name}: {exc}"]}
        ) from exc

    per_instance: dict[str, dict[str, object]] = {}
    denied: list[str] = []
    for arn, instance in by_arn.items():
        decision = decisions[arn]
        per_instance[instance.instance_id] = {
            "decision": decision.decision,
            "actions": decision.actions,
            "missing_context": list(decision.missing_context),
        }
        if decision.allowed:
            continue
        refused = ", ".join(action for action, verdict in decision.actions.items() if verdict != "allowed")
        if decision.decision == "explicitDeny":
            denied.append(f"Your IAM policy on {account.name} explicitly denies {refused} on {_label(instance)}.")
        elif decision.missing_context:
            # Keys come from the customer's policies: shown escaped, a few at most.
            keys = ", ".join(visible(key) for key in decision.missing_context[:5])
            more = f" and {len(decision.missing_context) - 5} more" if len(decision.missing_context) > 5 else ""
            denied.append(
                f"AWS IAM cannot confirm your access to {_label(instance)} on {account.name}: your IAM policy "
                f"depends on {keys}{more}, which Passport cannot tell AWS when it asks."
            )
        else:
            denied.append(f"Your IAM policy on {account.name} does not allow {refused} on {_label(instance)}.")
    logbook_append(
        action="iam.checked",
        actor=user,
        account=account,
        instance_ids=instance_ids,
        detail={**base_detail, "allowed": not denied, "decisions": per_instance},
    )
    if denied:
        raise RequestRuleError({"instances": denied})
