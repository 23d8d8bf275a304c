"""What the demo world holds: its accounts, each with instances, people (IAM users) and the roles
the demo IdPs send people into, the policy documents they carry, and the names the seed and the
tests share (regions, roles, the portal's account and credentials). Made by devcloud.seed.build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"
PORTAL_ROLE = "PassportPortal"
ADMIN_ROLE = "OrganizationAccountAccessRole"
# moto's account for the static "testing" keys: where the portal itself lives.
PORTAL_ACCOUNT = "123456789012"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

ADMINISTRATOR_ACCESS = "arn:aws:iam::aws:policy/AdministratorAccess"
SSM_FULL_ACCESS = "arn:aws:iam::aws:policy/AmazonSSMFullAccess"

# Staging's instances open to Passport carry this tag; alice's staging policy checks it.
PASSPORT_ACCESS_TAG = "PassportAccess"


def policy_document(*statements: dict[str, Any]) -> str:
    """An IAM policy document (JSON) with these statements."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


# What AWS checks each Session Manager action on (Service Authorization Reference, Systems
# Manager): StartSession on the instance and on the session document; TerminateSession (and
# ResumeSession) on the session only, ``session/<id>``, whose id starts with the name of whoever
# started it. So a person may end only their own: AWS's sample end-user policy grants it on
# ``session/${aws:username}-*`` (Systems Manager User Guide,
# https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-restrict-access-examples.html).
_PASSPORT_INSTANCES = {
    "Sid": "SessionsOnPassportInstances",
    "Effect": "Allow",
    "Action": ["ssm:StartSession", "ssm:SendCommand"],
    "Resource": "arn:aws:ec2:*:*:instance/*",
    "Condition": {"StringEquals": {f"ssm:resourceTag/{PASSPORT_ACCESS_TAG}": "enabled"}},
}
_PASSPORT_DOCUMENTS = {
    "Sid": "PassportDocuments",
    "Effect": "Allow",
    "Action": ["ssm:StartSession", "ssm:SendCommand"],
    "Resource": [
        "arn:aws:ssm:*::document/AWS-StartSSHSession",
        "arn:aws:ssm:*::document/AWS-StartPortForwardingSession",
        "arn:aws:ssm:*::document/AWS-RunShellScript",
        "arn:aws:ssm:*::document/AWS-RunPowerShellScript",
    ],
}
_INVENTORY = {
    "Sid": "Inventory",
    "Effect": "Allow",
    "Action": ["ec2:DescribeInstances", "ssm:DescribeInstanceInformation", "ssm:DescribeSessions"],
    "Resource": "*",
}
# For IAM users: the policy variable is the user's name, as AWS documents it.
PASSPORT_ONLY_POLICY = policy_document(
    _PASSPORT_INSTANCES,
    _PASSPORT_DOCUMENTS,
    {
        "Sid": "EndOwnSessions",
        "Effect": "Allow",
        "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
        "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*",
    },
    _INVENTORY,
)
# For a role people sign in to: a role session has no aws:username (its sessions are named
# after the role session name). Passport asks about the sessions it names for its people,
# ``passport-r<request>-u<person>-...`` (requests_app.iam), so the role may end those. Not resume
# them: ``passport-*`` is everyone's, and ResumeSession hands out a way into the session's stream.
FEDERATED_PASSPORT_ONLY_POLICY = policy_document(
    _PASSPORT_INSTANCES,
    _PASSPORT_DOCUMENTS,
    {
        "Sid": "EndPassportSessions",
        "Effect": "Allow",
        "Action": "ssm:TerminateSession",
        "Resource": "arn:aws:ssm:*:*:session/passport-*",
    },
    _INVENTORY,
)
READ_ONLY_INVENTORY_POLICY = policy_document({"Effect": "Allow", "Action": ["ec2:Describe*"], "Resource": "*"})
# The portal's role in each account has exactly the policy Passport ships for it, so the tests
# show that policy is enough (scoped credentials are checked against it too).
PORTAL_ROLE_POLICY = (
    Path(__file__).resolve().parents[2] / "accounts" / "policies" / "PassportPortalRole.json"
).read_text()


@dataclass(frozen=True)
class InstancePlan:
    name: str
    platform: str = "linux"
    local: bool = False
    interfaces: int = 1
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PersonPlan:
    """One demo person's IAM user in an account: managed policies to attach, inline ones to put."""

    name: str
    managed: tuple[str, ...] = ()
    inline: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FederatedRolePlan:
    """A role the demo IdPs send people of one identity store into (SAML Role attribute)."""

    store: str  # "customer" | "internal": the demo IdP whose people take this role
    name: str
    managed: tuple[str, ...] = ()
    inline: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AccountPlan:
    account_id: str
    name: str
    cidr_prefix: str  # "10.0" gives a 10.0.0.0/16 VPC
    instances: tuple[InstancePlan, ...]
    people: tuple[PersonPlan, ...]
    federated_roles: tuple[FederatedRolePlan, ...] = ()

    @property
    def role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{PORTAL_ROLE}"

    @property
    def admin_role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{ADMIN_ROLE}"


DEMO = (
    AccountPlan(
        account_id="111111111111",
        name="Acme Production",
        cidr_prefix="10.0",
        instances=(
            InstancePlan("web-1", local=True, interfaces=2),
            InstancePlan("db-1", local=True),
            InstancePlan("win-ad-1", platform="windows", interfaces=2, tags={"PassportDomainController": "true"}),
            InstancePlan("legacy-1", tags={"devcloud:agent-version": "2.3.100.0"}),
            InstancePlan("offline-1", tags={"devcloud:ping-status": "ConnectionLost"}),
            InstancePlan("unmanaged-1", tags={"devcloud:managed": "false"}),
        ),
        people=(
            PersonPlan("alice", managed=(ADMINISTRATOR_ACCESS,)),
            PersonPlan("bob", managed=(SSM_FULL_ACCESS,)),
            PersonPlan("oscar", inline=(("ReadOnlyInventory", READ_ONLY_INVENTORY_POLICY),)),
        ),
        federated_roles=(
            FederatedRolePlan("customer", "CustomerOperators", managed=(SSM_FULL_ACCESS,)),
            FederatedRolePlan("internal", "PassportSupport", managed=(SSM_FULL_ACCESS,)),
        ),
    ),
    AccountPlan(
        account_id="222222222222",
        name="Acme Staging",
        cidr_prefix="10.1",
        instances=(InstancePlan("stage-web-1", local=True, tags={PASSPORT_ACCESS_TAG: "enabled"}),),
        people=(
            PersonPlan("alice", inline=(("PassportOnly", PASSPORT_ONLY_POLICY),)),
            PersonPlan("bob", managed=(SSM_FULL_ACCESS,)),
            PersonPlan("oscar", inline=(("ReadOnlyInventory", READ_ONLY_INVENTORY_POLICY),)),
        ),
        federated_roles=(
            FederatedRolePlan(
                "customer", "CustomerOperators", inline=(("PassportOnly", FEDERATED_PASSPORT_ONLY_POLICY),)
            ),
            FederatedRolePlan("internal", "PassportSupport", managed=(SSM_FULL_ACCESS,)),
        ),
    ),
)
# The alias of the key each account keeps for Windows passwords in Parameter Store.
HANDOFF_KEY_ALIAS = "alias/passport-handoff"
# The SAML provider each account trusts for the demo IdPs' roles (AWS's own federation shape).
SAML_PROVIDER = "PassportDemoIdP"
