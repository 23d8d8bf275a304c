"""The accounts app's models, one module per concern; everything is importable from here."""

from accounts.models.approvals import ApprovalPolicy, NotificationReceipt, RequestApproval
from accounts.models.aws_accounts import (
    AwsAccount,
    DestinationListField,
    Membership,
    PortListField,
    account_id_validator,
    principal_arn_validator,
    role_arn_validator,
)
from accounts.models.cli import ApiToken, DeviceAuthorization
from accounts.models.people import User
from accounts.models.saml import SamlAssertionUse, SamlIdentity, SamlIdentityProvider

__all__ = [
    "ApiToken",
    "ApprovalPolicy",
    "AwsAccount",
    "DestinationListField",
    "DeviceAuthorization",
    "Membership",
    "NotificationReceipt",
    "PortListField",
    "RequestApproval",
    "SamlAssertionUse",
    "SamlIdentity",
    "SamlIdentityProvider",
    "User",
    "account_id_validator",
    "principal_arn_validator",
    "role_arn_validator",
]
