"""IAM: what a person's own policies allow, asked with SimulatePrincipalPolicy."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from fleet.aws.clients import AwsClients
from fleet.interface import AccessDecision, FleetError


class IamMixin(AwsClients):
    def simulate_access(
        self, principal_arn: str, actions: list[str], resource_arns: list[str]
    ) -> dict[str, AccessDecision]:
        """What IAM's SimulatePrincipalPolicy says the principal may do on each resource.

        Asked with the portal's role in the account. A resource or action the answer leaves
        out counts as an implicit deny, never as allowed.
        """
        iam = self._client("iam", settings.AWS_REGION)
        found: dict[str, dict[str, str]] = {arn: {} for arn in resource_arns}
        try:
            pages = iam.get_paginator("simulate_principal_policy").paginate(
                PolicySourceArn=principal_arn, ActionNames=actions, ResourceArns=resource_arns
            )
            for page in pages:
                for result in page.get("EvaluationResults", []):
                    resource = result.get("EvalResourceName", "")
                    if resource in found:
                        found[resource][result["EvalActionName"]] = result["EvalDecision"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise FleetError(
                f"SimulatePrincipalPolicy for {principal_arn} refused: {code or exc}",
                retryable=code not in {"NoSuchEntity", "InvalidInput"},
            ) from exc
        except BotoCoreError as exc:
            raise FleetError(f"SimulatePrincipalPolicy for {principal_arn} failed: {exc}") from exc
        return {
            arn: AccessDecision({action: decisions.get(action, "implicitDeny") for action in actions})
            for arn, decisions in found.items()
        }
