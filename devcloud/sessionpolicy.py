"""What credentials from ``AssumeRole`` may do: the role's own policies, its boundary, and a session policy.

AWS evaluates every call of a role session against the role's identity policies, its
permissions boundary when it has one, and, when AssumeRole was given a session policy,
against that too (the session gets the intersection: IAM User Guide, "Policy evaluation
logic", https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html).
moto records them and enforces none; devcloud checks them on every call signed with
assumed-role credentials:

- the role's identity policies (inline and attached managed), capped by its permissions
  boundary, whenever moto's IAM knows the role (moto lets any role ARN be assumed: one it
  does not know has no policies to check);
- the session policy, when there is one.

Each call is asked about on its real resources where devcloud knows them: StartSession on
the instance and on the document (both must be allowed; with no document named, the
default one only where a policy asks for it: ``default_document_denial``), TerminateSession and ResumeSession
on the session's ARN, SendCommand on each instance and the document, the parameter actions
on the parameter's ARN (and ``kms:Encrypt``, for an Advanced one also ``kms:GenerateDataKey``, or
``kms:Decrypt`` of a SecureString under a customer managed key on the key's ARN,
``extensions.parameters``), SimulatePrincipalPolicy on the principal's ARN; any other action
on ``*``, which a statement naming only specific resources never matches (stricter than AWS for
an action with resource-level permissions devcloud does not map, never looser).

moto's static keys (no assumed role) are not checked: they stand for an account's root.
The evaluation context carries ``aws:CurrentTime`` (for ``DateLessThan`` cut-offs),
``aws:userid``, ``aws:PrincipalArn`` and an instance's tags as ``ssm:resourceTag/...``: this
is a real request, whose context AWS fills in (unlike SimulatePrincipalPolicy's).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from moto.iam.models import iam_backends
from moto.sts.models import AssumedRole, sts_backends

from devcloud import errors, fleet, iampolicy
from devcloud.iampolicy import PolicySource

_INSTANCE_ARN = re.compile(r"^arn:[\w-]+:ec2:([\w-]+):(\d{12}):instance/(i-[0-9a-f]+)$")
# The condition-key families under which a policy may name an instance's tags.
TAG_KEY_PREFIXES = ("ssm:resourceTag/", "aws:ResourceTag/", "ec2:ResourceTag/")

# Error code of a refusal, per service, as each service spells it.
_DENIED_CODES = {"ec2": "UnauthorizedOperation", "iam": "AccessDenied", "sts": "AccessDenied", "s3": "AccessDenied"}


class AccessDenied(errors.AwsError):
    """A refusal; ``code`` is set per service by ``denied``."""

    code = "AccessDeniedException"


def assumed_role(account_id: str, partition: str, access_key_id: str) -> AssumedRole | None:
    """The role session behind an access key (None for moto's static keys and IAM users' keys)."""
    backend = sts_backends[account_id][partition]
    role: AssumedRole | None = backend.get_assumed_role_from_access_key(access_key_id)
    return role


def denial(
    role: AssumedRole,
    partition: str,
    action: str,
    resources: Sequence[str],
    *,
    service: str,
    context: Mapping[str, list[str]] | None = None,
) -> AccessDenied | None:
    """None when ``action`` is allowed on every resource; otherwise the error to answer with.

    ``context``: condition keys the request brings besides the resource's and the principal's (the
    ``kms:ViaService`` and encryption context of a call Parameter Store makes to KMS for its caller).
    """
    session_policy = [PolicySource("SessionPolicy", "none", role.policy)] if role.policy else None
    known = _known_role(role, partition)
    if session_policy is None and known is None:
        return None
    identity = None if known is None else identity_policies(known, "role")
    boundary = None if known is None else permissions_boundary(known, iam_backends[role.account_id][partition])
    for resource in resources:
        keys = {**resource_context(resource), **_principal_context(role), **(context or {})}
        if session_policy is not None and (
            iampolicy.evaluate(session_policy, action, resource, keys).decision != iampolicy.ALLOWED
        ):
            return denied(role, action, resource, service=service, why="no session policy allows it")
        if identity is not None:
            decision = iampolicy.evaluate(identity, action, resource, keys, boundary=boundary)
            if decision.decision != iampolicy.ALLOWED:
                why = (
                    "the role's permissions boundary does not allow it"
                    if decision.allowed_by_boundary is False
                    else "no identity-based policy allows it"
                )
                return denied(role, action, resource, service=service, why=why)
    return None


DOCUMENT_ACCESS_CHECK = "ssm:SessionDocumentAccessCheck"


def default_document_denial(role: AssumedRole, partition: str, instance: str, document: str) -> AccessDenied | None:
    """StartSession naming no document, on ``instance``; ``document`` is the default document's ARN.

    AWS runs the account's default session document and, by default, asks only about the
    instance: a policy allowing the instance allows the default document implicitly. A policy
    whose statement allowing the instance requires ``ssm:SessionDocumentAccessCheck`` to be
    true (``BoolIfExists``, as AWS's examples write it) must allow the default document too
    (Systems Manager User Guide, "Start a default shell session by specifying the default
    session document in IAM policies"; "Quickstart end user policies for Session Manager").
    Each policy that applies (the session policy; the role's own within its boundary) decides
    by itself, asked twice: with the key false (a statement that does not ask for the check
    allows the instance: that policy is satisfied), then with it true, on the instance and
    the default document.
    """
    action = "ssm:StartSession"
    known = _known_role(role, partition)
    deciders: list[tuple[list[PolicySource], list[PolicySource] | None, str]] = []
    if role.policy:
        deciders.append(([PolicySource("SessionPolicy", "none", role.policy)], None, "no session policy allows it"))
    if known is not None:
        boundary = permissions_boundary(known, iam_backends[role.account_id][partition])
        deciders.append((identity_policies(known, "role"), boundary, "no identity-based policy allows it"))
    principal = _principal_context(role)

    def allows(policies: list[PolicySource], boundary: list[PolicySource] | None, resource: str, check: str) -> bool:
        context = {**resource_context(resource), **principal, DOCUMENT_ACCESS_CHECK: [check]}
        return iampolicy.evaluate(policies, action, resource, context, boundary=boundary).decision == iampolicy.ALLOWED

    for policies, boundary, why in deciders:
        if allows(policies, boundary, instance, "false"):
            continue
        for resource in (instance, document):
            if not allows(policies, boundary, resource, "true"):
                return denied(role, action, resource, service="ssm", why=why)
    return None


def denied(role: AssumedRole, action: str, resource: str, *, service: str, why: str) -> AccessDenied:
    error = AccessDenied(f"User: {role.arn} is not authorized to perform: {action} on resource: {resource} ({why}).")
    error.code = _DENIED_CODES.get(service, AccessDenied.code)
    return error


def resource_context(resource: str) -> dict[str, list[str]]:
    """Condition keys an EC2 instance ARN brings along: its tags."""
    match = _INSTANCE_ARN.match(resource)
    if match is None:
        return {}
    region, account_id, instance_id = match.groups()
    tags = fleet.instance_tags(account_id, region, instance_id) or {}
    return {prefix + key: [value] for key, value in tags.items() for prefix in TAG_KEY_PREFIXES}


def _principal_context(role: AssumedRole) -> Mapping[str, list[str]]:
    now = dt.datetime.now(dt.UTC)
    return {
        "aws:CurrentTime": [now.strftime("%Y-%m-%dT%H:%M:%SZ")],
        "aws:EpochTime": [str(int(now.timestamp()))],
        "aws:userid": [role.user_id],
        "aws:PrincipalArn": [role.role_arn],
    }


def _known_role(role: AssumedRole, partition: str) -> Any:
    """moto's IAM role behind a role session; None when moto knows no such role (it lets any ARN be assumed)."""
    backend: Any = iam_backends[role.account_id][partition]
    return next((r for r in list(backend.roles.values()) if r.arn == role.role_arn), None)


def identity_policies(principal: Any, kind: str) -> list[PolicySource]:
    """The inline and attached managed policies of a moto user, group or role."""
    sources = [PolicySource(name, kind, document) for name, document in principal.policies.items()]
    for policy in principal.managed_policies.values():
        document = next(version.document for version in policy.versions if version.is_default)
        managed_type = "aws-managed" if ":iam::aws:policy/" in policy.arn else "user-managed"
        sources.append(PolicySource(policy.name, managed_type, document))
    return sources


def permissions_boundary(principal: Any, backend: Any) -> list[PolicySource] | None:
    """The managed policy a user's or role's permissions boundary names; None when it has none.

    moto keeps a role's as ``permissions_boundary_arn`` (CreateRole, PutRolePermissionsBoundary);
    devcloud keeps a user's the same way (``devcloud.extensions.iam``). A boundary naming a
    policy IAM does not have allows nothing, rather than nothing being capped.
    """
    arn = getattr(principal, "permissions_boundary_arn", None)
    if not arn:
        return None
    policy = backend.managed_policies.get(arn)
    if policy is None:
        return []
    document = next(version.document for version in policy.versions if version.is_default)
    managed_type = "aws-managed" if ":iam::aws:policy/" in policy.arn else "user-managed"
    return [PolicySource(policy.name, managed_type, document)]
