"""Why the IAM check refuses a person: no principal on the account, one IAM no longer knows, or
one instance's answer (every action and resource refused there, or the keys it lacked)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.conf import settings

from accounts.models import AwsAccount, User
from accounts.selectors import principal_arn_for
from core.text import visible
from requests_app.models import Instance


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


# AWS checks the session document and the person's sessions too, not only the instance: a policy
# naming just the instance is refused, rightly. The policy Passport ships allows all three.
POLICY_POINTER = "Passport's accounts/policies/PassportOnly.json allows what sessions need."


def instance_refusal(
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
    return _sentence(f"Your IAM policy on {account.name} does not allow {_and(refused)}", instance, refused) + (
        f" {POLICY_POINTER}"
    )


def _sentence(start: str, instance: Instance, phrases: list[str]) -> str:
    """Ends a refusal, naming the instance when none of its phrases did."""
    label = instance.label
    if any(phrase.endswith(f" on {label}") for phrase in phrases):
        return f"{start}."
    return f"{start}, which sessions to {label} need."
