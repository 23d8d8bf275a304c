"""The account id and ARN validators take a whole value: Python's ``$`` also matches before a final
newline, so ``^...$`` let "arn:aws:iam::111111111111:user/alice\\n" through to the database (a model's
validation, the demo manifest), and from there into IAM calls and the Logbook."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from accounts.models import AwsAccount, Membership, account_id_validator, principal_arn_validator, role_arn_validator
from tests.conftest import World

ACCOUNT_ID = "111111111111"
ROLE_ARN = "arn:aws:iam::111111111111:role/PassportPortal"
PRINCIPAL_ARN = "arn:aws:iam::111111111111:user/alice"


@pytest.mark.parametrize(
    ("validator", "value"),
    [(account_id_validator, ACCOUNT_ID), (role_arn_validator, ROLE_ARN), (principal_arn_validator, PRINCIPAL_ARN)],
    ids=["account-id", "role-arn", "principal-arn"],
)
@pytest.mark.parametrize("ending", ["\n", "\r\n", "\n\n"])
def test_a_value_with_a_line_break_at_its_end_is_refused(validator: object, value: str, ending: str) -> None:
    validator(value)  # type: ignore[operator]  # the value itself is valid
    with pytest.raises(ValidationError):
        validator(value + ending)  # type: ignore[operator]


@pytest.mark.django_db
def test_the_model_refuses_a_principal_arn_ending_in_a_newline(world: World) -> None:
    membership = Membership.objects.get(user=world.requester, account=world.prod)
    membership.principal_arn = PRINCIPAL_ARN + "\n"
    with pytest.raises(ValidationError) as refused:
        membership.full_clean()
    assert refused.value.message_dict["principal_arn"] == ["Enter an IAM principal ARN."]


@pytest.mark.django_db
def test_the_model_refuses_a_role_arn_ending_in_a_newline(world: World) -> None:
    account = AwsAccount.objects.get(pk=world.prod.pk)
    account.role_arn = account.role_arn + "\n"
    with pytest.raises(ValidationError) as refused:
        account.full_clean()
    assert "role_arn" in refused.value.message_dict


@pytest.mark.parametrize(
    ("validator", "value"),
    [
        (account_id_validator, "\u0661" * 12),  # Arabic-Indic digits: str.isdigit and \d take them
        (role_arn_validator, "arn:aws:iam::" + "\uff11" * 12 + ":role/PassportPortal"),  # fullwidth digits
        (role_arn_validator, "arn:aws:iam::111111111111:role/P\u0430ssport"),  # a Cyrillic a
        (principal_arn_validator, "arn:aws:iam::111111111111:user/\uff41lice"),  # a fullwidth a
    ],
    ids=["arabic-indic-account-id", "fullwidth-role-account", "cyrillic-role-name", "fullwidth-principal-name"],
)
def test_digits_and_letters_outside_ascii_are_refused(validator: object, value: str) -> None:
    # IAM names are ASCII; a look-alike would be stored, shown as the real one, and sent to IAM.
    with pytest.raises(ValidationError):
        validator(value)  # type: ignore[operator]
