"""IAM policy simulation, the context keys of a principal's or given policies, and user permissions boundaries,
as methods for moto's IamResponse.

The principal's policies come from moto's IAM backend (inline, attached managed, and for
a user those of its groups), capped by the user's or role's permissions boundary when it
has one, or by the boundary given in ``PermissionsBoundaryPolicyInputList`` instead
(IAM API Reference, SimulatePrincipalPolicy:
https://docs.aws.amazon.com/IAM/latest/APIReference/API_SimulatePrincipalPolicy.html).
Like AWS, the simulation knows only the context the caller passes (``ContextEntries``) and
what the principal itself implies (``aws:username`` for a user, ``aws:PrincipalArn`` ...):
an instance's tags are not looked up, so a caller that wants ``ssm:resourceTag/...``
conditions decided must send them. The decision itself is ``devcloud.iampolicy``.

moto keeps a role's boundary but drops a user's (CreateUser ignores ``PermissionsBoundary``
and has no Put/DeleteUserPermissionsBoundary): devcloud keeps it on the user as moto keeps
a role's (``permissions_boundary_arn``) and shows it in GetUser.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.iam.models import IAMBackend, iam_backends
from moto.iam.responses import IamResponse

from devcloud import errors, iampolicy
from devcloud.extensions.common import paginate
from devcloud.iampolicy import PolicySource
from devcloud.sessionpolicy import identity_policies, permissions_boundary

_PRINCIPAL_ARN = re.compile(r"^arn:[\w-]+:iam::(\d{12}):(user|role|group)/(?:[^/]+/)*([^/]+)$")
_PRINCIPAL_TYPES = {"user": "User", "role": "AssumedRole"}


@dataclass
class _Principal:
    policies: list[PolicySource]
    boundary: list[PolicySource] | None
    context: dict[str, list[str]]


def simulate_principal_policy(self: IamResponse) -> ActionResult:
    principal = _principal(self, self._get_param("PolicySourceArn") or "")
    boundary = _input_boundary(self)
    return _simulate(
        self,
        principal.policies + _input_policies(self, "PolicyInputList"),
        principal.context,
        principal.boundary if boundary is None else boundary,
    )


def get_context_keys_for_principal_policy(self: IamResponse) -> ActionResult:
    """The context keys referenced in the principal's policies, as the IAM API Reference documents them.

    "All the IAM policies that are attached to the specified IAM entity" (inline and managed),
    for a user its groups' too, and those given in ``PolicyInputList``. A permissions boundary
    is not among them (AWS documents none), so a caller cannot rely on its keys being listed.
    """
    principal = _principal(self, self._get_param("PolicySourceArn") or "")
    policies = principal.policies + _input_policies(self, "PolicyInputList")
    return ActionResult({"ContextKeyNames": iampolicy.referenced_keys(policies)})


def get_context_keys_for_custom_policy(self: IamResponse) -> ActionResult:
    """The context keys referenced in the policies given in ``PolicyInputList`` (IAM API Reference)."""
    return ActionResult({"ContextKeyNames": iampolicy.referenced_keys(_input_policies(self, "PolicyInputList"))})


def simulate_custom_policy(self: IamResponse) -> ActionResult:
    return _simulate(self, _input_policies(self, "PolicyInputList"), {}, _input_boundary(self))


def create_user(self: IamResponse) -> ActionResult:
    """moto's CreateUser, keeping the PermissionsBoundary it would drop (checked before the user is made)."""
    boundary = self._get_param("PermissionsBoundary")
    if boundary:
        _check_boundary_arn(self.backend, boundary)
    user: Any = self.backend.create_user(
        self.region,
        user_name=self._get_param("UserName"),
        path=self._get_param("Path"),
        tags=self._get_param("Tags", []),
    )
    user.permissions_boundary_arn = boundary or None
    return ActionResult({"User": user})


def put_user_permissions_boundary(self: IamResponse) -> ActionResult:
    boundary = self._get_param("PermissionsBoundary") or ""
    _check_boundary_arn(self.backend, boundary)
    user: Any = self.backend.get_user(self._get_param("UserName"))
    user.permissions_boundary_arn = boundary
    return EmptyResult()


def delete_user_permissions_boundary(self: IamResponse) -> ActionResult:
    user: Any = self.backend.get_user(self._get_param("UserName"))
    user.permissions_boundary_arn = None
    return EmptyResult()


def user_permissions_boundary(user: Any) -> dict[str, str] | None:
    """GetUser's ``PermissionsBoundary`` (a property of moto's User while devcloud is installed)."""
    arn = getattr(user, "permissions_boundary_arn", None)
    if not arn:
        return None
    return {"PermissionsBoundaryType": "PermissionsBoundaryPolicy", "PermissionsBoundaryArn": arn}


HANDLERS: dict[str, Callable[[IamResponse], ActionResult]] = {
    "simulate_principal_policy": simulate_principal_policy,
    "get_context_keys_for_principal_policy": get_context_keys_for_principal_policy,
    "get_context_keys_for_custom_policy": get_context_keys_for_custom_policy,
    "simulate_custom_policy": simulate_custom_policy,
    "create_user": create_user,
    "put_user_permissions_boundary": put_user_permissions_boundary,
    "delete_user_permissions_boundary": delete_user_permissions_boundary,
}


def _check_boundary_arn(backend: IAMBackend, arn: str) -> None:
    """As moto checks a role's: the ARN of a managed policy, or InvalidParameterValue."""
    if not backend.policy_arn_regex.match(arn):
        raise errors.InvalidParameterValue(f"Value ({arn}) for parameter PermissionsBoundary is invalid.")


def _simulate(
    self: IamResponse,
    policies: list[PolicySource],
    principal_context: dict[str, list[str]],
    boundary: list[PolicySource] | None,
) -> ActionResult:
    """Decide each action on each resource with the ContextEntries given, and nothing else.

    As in AWS, the simulator does not look resources up: an instance's tags count only when
    the caller passes them (``ssm:resourceTag/...``); a condition on a key not given does not
    match, and the key is reported in ``MissingContextValues``: on the result when the
    resource is ``*``, on its ``ResourceSpecificResults`` entry when resources were named.
    With a permissions boundary, each result says whether it allowed the action
    (``PermissionsBoundaryDecisionDetail``).
    """
    actions: list[str] = self._get_param("ActionNames") or []
    named: list[str] = self._get_param("ResourceArns") or []
    context = dict(principal_context)
    for entry in self._get_param("ContextEntries") or []:
        context[entry["ContextKeyName"]] = [str(value) for value in entry.get("ContextKeyValues") or []]
    results = []
    for action in actions:
        for resource in named or ["*"]:
            decision = iampolicy.evaluate(policies, action, resource, context, boundary=boundary)
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
            if decision.allowed_by_boundary is not None:
                result["PermissionsBoundaryDecisionDetail"] = {
                    "AllowedByPermissionsBoundary": decision.allowed_by_boundary
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


def _principal(self: IamResponse, arn: str) -> _Principal:
    """The identity policies of a user (with its groups'), role or group, its boundary, and its context keys."""
    match = _PRINCIPAL_ARN.match(arn)
    if match is None:
        raise errors.InvalidInput(f"PolicySourceArn {arn} is not the ARN of a user, group or role.")
    account, kind, name = match.groups()
    backend: IAMBackend = iam_backends[self.current_account][self.partition]
    by_kind: dict[str, dict[str, Any]] = {"user": backend.users, "role": backend.roles, "group": backend.groups}
    principals = by_kind[kind]
    found: Any = next((p for p in list(principals.values()) if p.arn == arn), None)
    if found is None:
        raise errors.NoSuchEntity(f"The {kind} with ARN {arn} cannot be found.")
    policies = identity_policies(found, kind)
    context = {"aws:PrincipalArn": [arn], "aws:PrincipalAccount": [account]}
    if kind in _PRINCIPAL_TYPES:
        context["aws:PrincipalType"] = [_PRINCIPAL_TYPES[kind]]
    if kind == "user":
        context["aws:username"] = [name]
        context["aws:userid"] = [found.id]
        for group in backend.get_groups_for_user(name):
            policies += identity_policies(group, "group")
    # A group is no principal of its own and has no boundary.
    boundary = permissions_boundary(found, backend) if kind != "group" else None
    return _Principal(policies, boundary, context)


def _input_policies(self: IamResponse, parameter: str) -> list[PolicySource]:
    sources = []
    for index, document in enumerate(self._get_param(parameter) or [], start=1):
        try:
            iampolicy.check_document(document)
        except ValueError as error:
            raise errors.MalformedPolicyDocument(f"{parameter}.{index}: {error}") from None
        sources.append(PolicySource(f"{parameter}.{index}", "none", document))
    return sources


def _input_boundary(self: IamResponse) -> list[PolicySource] | None:
    """The boundary given with the question (it replaces the principal's own), or None."""
    given = _input_policies(self, "PermissionsBoundaryPolicyInputList")
    if len(given) > 1:
        raise errors.InvalidInput("PermissionsBoundaryPolicyInputList takes one permissions boundary.")
    return given or None
