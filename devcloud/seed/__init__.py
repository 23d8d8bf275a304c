"""The demo world, created through the AWS API exactly as a customer's would look.

What it holds is in ``plan`` (accounts, instances, people, federated roles and their policies);
``build.seed_demo`` makes it through boto3 against a devcloud endpoint and writes the manifest.
"""

from devcloud.seed.build import seed_demo
from devcloud.seed.plan import (
    ADMIN_ROLE,
    ADMINISTRATOR_ACCESS,
    CREDENTIALS,
    DEMO,
    FEDERATED_PASSPORT_ONLY_POLICY,
    HANDOFF_KEY_ALIAS,
    PASSPORT_ACCESS_TAG,
    PASSPORT_ONLY_POLICY,
    PORTAL_ACCOUNT,
    PORTAL_ROLE,
    PORTAL_ROLE_POLICY,
    READ_ONLY_INVENTORY_POLICY,
    REGION,
    SAML_PROVIDER,
    SSM_FULL_ACCESS,
    AccountPlan,
    FederatedRolePlan,
    InstancePlan,
    PersonPlan,
)

__all__ = [
    "ADMINISTRATOR_ACCESS",
    "ADMIN_ROLE",
    "CREDENTIALS",
    "DEMO",
    "FEDERATED_PASSPORT_ONLY_POLICY",
    "HANDOFF_KEY_ALIAS",
    "PASSPORT_ACCESS_TAG",
    "PASSPORT_ONLY_POLICY",
    "PORTAL_ACCOUNT",
    "PORTAL_ROLE",
    "PORTAL_ROLE_POLICY",
    "READ_ONLY_INVENTORY_POLICY",
    "REGION",
    "SAML_PROVIDER",
    "SSM_FULL_ACCESS",
    "AccountPlan",
    "FederatedRolePlan",
    "InstancePlan",
    "PersonPlan",
    "seed_demo",
]
