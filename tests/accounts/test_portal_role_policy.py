"""The policy Passport ships for its role in each account: every call the portal makes, nothing more.

devcloud seeds the portal's role with this very document, and checks scoped credentials
against it, so the integration tests run on it too; here each call is asked about directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devcloud import iampolicy
from devcloud.iampolicy import PolicySource
from requests_app.iam.principals import CHECK_MARKER

POLICIES = Path(__file__).resolve().parents[2] / "accounts" / "policies"
DOCUMENT = (POLICIES / "PassportPortalRole.json").read_text()
ACCOUNT = "111111111111"
INSTANCE = f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/i-0123456789abcdef0"
# Session Manager's default document is the account's own.
DEFAULT_DOCUMENT = f"arn:aws:ssm:eu-west-1:{ACCOUNT}:document/SSM-SessionManagerRunShell"

# What fleet/aws/ calls with the role, and on what (AWS's resource for each).
PORTAL_CALLS = [
    ("ec2:DescribeInstances", "*"),
    ("ssm:DescribeInstanceInformation", "*"),
    ("ssm:SendCommand", INSTANCE),
    ("ssm:SendCommand", "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript"),
    ("ssm:SendCommand", "arn:aws:ssm:eu-west-1::document/AWS-RunPowerShellScript"),
    ("ssm:GetCommandInvocation", "*"),
    ("ssm:ListCommandInvocations", "*"),
    ("ssm:CancelCommand", "*"),
    ("ssm:PutParameter", f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/passport/handoff/0b5e8c1e-6f0a-4c55"),
    ("ssm:DeleteParameter", f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/passport/handoff/0b5e8c1e-6f0a-4c55"),
    ("ssm:StartSession", INSTANCE),
    ("ssm:StartSession", "arn:aws:ssm:eu-west-1::document/AWS-StartSSHSession"),
    ("ssm:StartSession", "arn:aws:ssm:eu-west-1::document/AWS-StartPortForwardingSession"),
    ("ssm:TerminateSession", f"arn:aws:ssm:eu-west-1:{ACCOUNT}:session/passport-portal-0a1b2c3d4e"),
    ("ssm:TerminateSession", f"arn:aws:ssm:eu-west-1:{ACCOUNT}:session/passport-r12-u3-0a1b2c3d4e"),
    ("ssm:DescribeSessions", "*"),
    ("iam:SimulatePrincipalPolicy", f"arn:aws:iam::{ACCOUNT}:user/alice"),
    ("iam:SimulatePrincipalPolicy", f"arn:aws:iam::{ACCOUNT}:role/Admin"),
    ("iam:GetContextKeysForPrincipalPolicy", f"arn:aws:iam::{ACCOUNT}:user/alice"),
    ("iam:GetContextKeysForPrincipalPolicy", f"arn:aws:iam::{ACCOUNT}:role/Admin"),
    # A person's permissions boundary, for the keys it reads (fleet/aws/boundary.py).
    ("iam:GetUser", f"arn:aws:iam::{ACCOUNT}:user/alice"),
    ("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/Admin"),
    ("iam:GetPolicy", f"arn:aws:iam::{ACCOUNT}:policy/Boundary"),
    ("iam:GetPolicyVersion", f"arn:aws:iam::{ACCOUNT}:policy/Boundary"),
    ("iam:GetPolicyVersion", "arn:aws:iam::aws:policy/PowerUserAccess"),
    ("iam:GetContextKeysForCustomPolicy", "*"),
]

# What the role must not be able to do, even though it runs commands as root on every instance.
NOT_ALLOWED = [
    ("ssm:SendCommand", "arn:aws:ssm:eu-west-1::document/AWS-RunRemoteScript"),
    ("ssm:SendCommand", f"arn:aws:ssm:eu-west-1:{ACCOUNT}:document/CustomerDocument"),
    ("ssm:StartSession", DEFAULT_DOCUMENT),
    ("ssm:TerminateSession", f"arn:aws:ssm:eu-west-1:{ACCOUNT}:session/alice-0a1b2c3d4e"),
    ("ssm:PutParameter", f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/prod/database/password"),
    ("ssm:GetParameter", f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/passport/handoff/0b5e8c1e-6f0a-4c55"),
    ("ssm:DeleteParameter", f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/app/config"),
    ("ec2:TerminateInstances", INSTANCE),
    ("ec2:RunInstances", "*"),
    ("iam:CreateUser", "*"),
    ("iam:ListUsers", "*"),
    ("iam:GetUser", f"arn:aws:iam::{ACCOUNT}:group/Admins"),
    ("iam:CreatePolicyVersion", f"arn:aws:iam::{ACCOUNT}:policy/Boundary"),
    ("iam:PutUserPermissionsBoundary", f"arn:aws:iam::{ACCOUNT}:user/alice"),
    ("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/PassportPortal"),
    ("s3:GetObject", "arn:aws:s3:::bucket/key"),
    ("kms:Decrypt", "*"),
]


def decide(action: str, resource: str) -> str:
    return iampolicy.evaluate([PolicySource("PassportPortalRole", "role", DOCUMENT)], action, resource, {}).decision


def test_the_document_is_a_valid_policy() -> None:
    iampolicy.check_document(DOCUMENT)


@pytest.mark.parametrize(("action", "resource"), PORTAL_CALLS)
def test_every_call_the_portal_makes_is_allowed(action: str, resource: str) -> None:
    assert decide(action, resource) == iampolicy.ALLOWED


@pytest.mark.parametrize(("action", "resource"), NOT_ALLOWED)
def test_nothing_else_is(action: str, resource: str) -> None:
    assert decide(action, resource) != iampolicy.ALLOWED


KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
HANDOFF = f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/passport/handoff/0b5e8c1e-6f0a-4c55"


@pytest.mark.parametrize(
    ("action", "context", "allowed"),
    [
        # PutParameter of a SecureString under a key of the operator's own (PASSPORT_HANDOFF_KMS_KEY):
        # Parameter Store asks KMS to encrypt with the parameter's ARN as its encryption context.
        (
            "kms:Encrypt",
            {"kms:ViaService": "ssm.eu-west-1.amazonaws.com", "kms:EncryptionContext:PARAMETER_ARN": HANDOFF},
            True,
        ),
        # Not through Parameter Store, or for another parameter: nothing.
        ("kms:Encrypt", {"kms:EncryptionContext:PARAMETER_ARN": HANDOFF}, False),
        (
            "kms:Encrypt",
            {
                "kms:ViaService": "ssm.eu-west-1.amazonaws.com",
                "kms:EncryptionContext:PARAMETER_ARN": f"arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter/prod/db",
            },
            False,
        ),
        (
            "kms:Encrypt",
            {"kms:ViaService": "s3.eu-west-1.amazonaws.com", "kms:EncryptionContext:PARAMETER_ARN": HANDOFF},
            False,
        ),
        # Never the password back: only the instance's role decrypts.
        (
            "kms:Decrypt",
            {"kms:ViaService": "ssm.eu-west-1.amazonaws.com", "kms:EncryptionContext:PARAMETER_ARN": HANDOFF},
            False,
        ),
    ],
)
def test_the_hand_off_key_encrypts_passwords_and_nothing_else(
    action: str, context: dict[str, str], allowed: bool
) -> None:
    source = [PolicySource("PassportPortalRole", "role", DOCUMENT)]
    decision = iampolicy.evaluate(source, action, KEY, {key: [value] for key, value in context.items()}).decision
    assert (decision == iampolicy.ALLOWED) is allowed


def test_devcloud_seeds_the_portal_role_with_it() -> None:
    from devcloud.seed import PORTAL_ROLE_POLICY

    assert PORTAL_ROLE_POLICY == DOCUMENT


@pytest.mark.parametrize("name", ["PassportPortalRole.json", "PassportOnly.json", "ReadOnlyWithPassport.json"])
def test_a_session_naming_no_document_is_not_allowed_by_the_shipped_policies(name: str) -> None:
    """StartSession with no document runs AWS's default shell, asked about only where a policy requires the check."""
    document = (POLICIES / name).read_text()
    policies = [PolicySource(name, "role", document)]

    # People's policies allow sessions only in Passport's own check, which says so (aws:CalledVia).
    marker = {} if name == "PassportPortalRole.json" else {key: [value] for key, value in CHECK_MARKER.items()}

    def decide_with(check: str | None) -> str:
        context = {**marker, **({} if check is None else {"ssm:SessionDocumentAccessCheck": [check]})}
        return iampolicy.evaluate(policies, "ssm:StartSession", INSTANCE, context).decision

    # A session naming its document (no key): the instance is allowed, as Passport needs.
    assert decide_with(None) == iampolicy.ALLOWED
    # A statement that allows the instance without the check would allow the default document too.
    assert decide_with("false") != iampolicy.ALLOWED
    assert iampolicy.evaluate(policies, "ssm:StartSession", DEFAULT_DOCUMENT, {}).decision != iampolicy.ALLOWED
