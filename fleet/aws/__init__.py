"""AWS backend of the fleet gateway: STS, EC2, IAM and SSM through boto3, one module per concern.

``AWS_ENDPOINT_URL`` points every client at another endpoint (devcloud in the demo and
the tests); nothing here knows which one it talks to.
"""

from fleet.aws.credentials import CredentialsMixin
from fleet.aws.iam import IamMixin
from fleet.aws.inventory import InventoryMixin
from fleet.aws.runcommand import RunCommandMixin
from fleet.aws.sessions import SessionsMixin


class AwsFleet(CredentialsMixin, InventoryMixin, IamMixin, RunCommandMixin, SessionsMixin):
    """Systems Manager, EC2, STS and IAM for one AWS account (``fleet.interface.Fleet``)."""


__all__ = ["AwsFleet"]
