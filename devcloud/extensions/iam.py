"""IAM policy simulation, as methods for moto's IamResponse.

The principal's policies come from moto's IAM backend (inline, attached managed, and for
a user those of its groups). Like AWS, the simulation knows only the context the caller
passes (``ContextEntries``): an instance's tags are not looked up, so a caller that wants
``ssm:resourceTag/...`` conditions decided must send them. The decision itself is
``devcloud.iampolicy``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.iam.models import IAMBackend, iam_backends
from moto.iam.responses import IamResponse

from devcloud import errors, iampolicy
from devcloud.extensions.common import paginate
from devcloud.iampolicy import PolicySource
from devcloud.sessionpolicy import identity_policies

_PRINCIPAL_ARN = re.compile(r"^arn:[\w-]+:iam::\d{12}:(user|role|group)/(?:[^/]+/)*([^/]+)$")


def simulate_principal_policy(self: IamResponse) -> ActionResult:
    source_arn = self._get_param("PolicySourceArn") or ""
    policies, context = _principal_policies(self, source_arn)
    return _simulate(self, policies + _input_policies(self), context)


def simulate_custom_policy(self: IamResponse) -> ActionResult:
    return _simulate(self, _input_policies(self), {})


HANDLERS: dict[str, Callable[[IamResponse], ActionResult]] = {
    "simulate_principal_policy": simulate_principal_policy,
    "simulate_custom_policy": simulate_custom_policy,
}


def _simulate(self: IamResponse, policies: list[PolicySource], principal_context: dict[str, list[str]]) -> ActionResult:
    """Decide each action on each resource with the ContextEntries given, and nothing else.

    As in AWS, the simulator does not look resources up: an instance's tags count only when
    the caller passes them (``ssm:resourceTag/...``); a condition on a key not given does not
    match, and the key is reported in ``MissingContextValues``: on the result when the
    resource is ``*``, on its ``ResourceSpecificResults`` entry when resources were named.
    """
    actions: list[str] = self._get_param("ActionNames") or []
    named: list[str] = self._get_param("ResourceArns") or []
    context = dict(principal_context)
    for entry in self._get_param("ContextEntries") or []:
        context[entry["ContextKeyName"]] = [str(value) for value in entry.get("ContextKeyValues") or []]
    results = []
    for action in actions:
        for resource in named or ["*"]:
            decision = iampolicy.evaluate(policies, action, resource, context)
            matched = [
                {"SourcePolicyId": source.policy_id, "SourcePolicyType": source.policy_type}
                for source in decision.matched
            ]
            result: dict[str, Any] = {
                "EvalActionName": action,
                "EvalResourceName": resource,
                "EvalDecision": decision.decision,
                "MatchedStatements": matched,
                "MissingContextValues": [] if named else decision.missing_context,
            }
            if named:
                result["ResourceSpecificResults"] = [
                    {
                        "EvalResourceName": resource,
                        "EvalResourceDecision": decision.decision,
                        "MatchedStatements": matched,
                        "MissingContextValues": decision.missing_context,
                    }
                ]
            results.append(result)
    page, marker = paginate(
        results, limit=self._get_param("MaxItems") or 1000, token=self._get_param("Marker"), error=errors.InvalidInput
    )
    response: dict[str, Any] = {"EvaluationResults": page, "IsTruncated": marker is not None}
    if marker is not None:
        response["Marker"] = marker
    return ActionResult(response)


def _principal_policies(self: IamResponse, arn: str) -> tuple[list[PolicySource], dict[str, list[str]]]:
    """The identity policies of a user (with its groups'), role or group, and its context keys."""
    match = _PRINCIPAL_ARN.match(arn)
    if match is None:
        raise errors.InvalidInput(f"PolicySourceArn {arn} is not the ARN of a user, group or role.")
    kind, name = match.groups()
    backend: IAMBackend = iam_backends[self.current_account][self.partition]
    by_kind: dict[str, dict[str, Any]] = {"user": backend.users, "role": backend.roles, "group": backend.groups}
    principals = by_kind[kind]
    principal: Any = next((p for p in list(principals.values()) if p.arn == arn), None)
    if principal is None:
        raise errors.NoSuchEntity(f"The {kind} with ARN {arn} cannot be found.")
    policies = identity_policies(principal, kind)
    context = {"aws:PrincipalArn": [arn]}
    if kind == "user":
        context["aws:username"] = [name]
        for group in backend.get_groups_for_user(name):
            policies += identity_policies(group, "group")
    return policies, context


def _input_policies(self: IamResponse) -> list[PolicySource]:
    sources = []
    for index, document in enumerate(self._get_param("PolicyInputList") or [], start=1):
        try:
            iampolicy.check_document(document)
        except ValueError as error:
            raise errors.MalformedPolicyDocument(f"PolicyInputList.{index}: {error}") from None
        sources.append(PolicySource(f"PolicyInputList.{index}", "none", document))
    return sources
