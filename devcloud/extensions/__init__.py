"""The one place devcloud changes moto: handlers on its response classes (a user's permissions
boundary kept, as moto keeps a role's), IAM's AWS managed policies, moto's reset, the check
of an assumed role's policies (its own, its boundary and a session policy) in front of every
action, S3 Object Lock held as AWS holds it (``s3``), and two lookups moto's server repeats on
every request (which backend a host belongs to, which actions a response class has) remembered
instead.

``install()`` must run in the process that serves moto, before the server starts. It
returns a function that puts moto back as it was, so an in-process ``mock_aws`` used
after a devcloud stopped sees plain moto again.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

import moto.core.responses
from moto.core.responses import ActionResult, BaseResponse
from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.iam.models import AWSManagedPolicy, IAMBackend, ManagedPolicy, User
from moto.iam.responses import IamResponse
from moto.moto_api._internal.models import MotoAPIBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.ssm.responses import SimpleSystemManagerResponse

from devcloud import runtime, sessionpolicy
from devcloud.extensions import iam, parameters, s3, ssm

_MISSING = object()


def install() -> Callable[[], None]:
    """Install the extensions; call the returned function to remove them."""
    patches: list[tuple[Any, str, Any]] = [
        *((SimpleSystemManagerResponse, name, handler) for name, handler in ssm.HANDLERS.items()),
        *((SimpleSystemManagerResponse, name, handler) for name, handler in parameters.HANDLERS.items()),
        *((IamResponse, name, handler) for name, handler in iam.HANDLERS.items()),
        (User, "permissions_boundary", property(iam.user_permissions_boundary)),
        (MotoAPIBackend, "reset", _reset_with(MotoAPIBackend.reset)),
        (IAMBackend, "_init_aws_policies", _aws_managed_policies),
        (BaseResponse, "call_action", _session_policy_checked(BaseResponse.call_action)),
        *s3.PATCHES,
        (
            DomainDispatcherApplication,
            "get_backend_for_host",
            _remembered_backends(DomainDispatcherApplication.get_backend_for_host),
        ),
        (moto.core.responses, "method_names_from_class", _remembered_method_names()),
    ]
    originals = [(owner, name, owner.__dict__.get(name, _MISSING)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)

    def uninstall() -> None:
        for owner, name, original in originals:
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)

    return uninstall


def _reset_with(original_reset: Callable[[MotoAPIBackend], None]) -> Callable[[MotoAPIBackend], None]:
    """moto's reset (POST /moto-api/reset) also forgets devcloud's commands, sessions and hosts."""

    def reset(backend: MotoAPIBackend) -> None:
        original_reset(backend)
        runtime.active().reset()

    return reset


# Distinct hosts a client may name (its signature's region and service): enough for any real use,
# and a bound on what a client sending made-up ones can make devcloud keep.
_REMEMBERED_HOSTS = 1024


def _remembered_backends(original: Callable[[Any, str | None], Any]) -> Callable[[Any, str | None], Any]:
    """moto's backend for a request's host, found once per host.

    moto lists its own package directory (a stat of each of some 200 entries) to answer this,
    on every request and under its dispatcher's lock; the answer depends on the host alone.
    """
    found: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host in found:
            return found[host]
        backend = original(self, host)
        if len(found) < _REMEMBERED_HOSTS:
            found[host] = backend
        return backend

    return get_backend_for_host


def _remembered_method_names() -> Callable[[object], list[str]]:
    """The action methods of a response class (moto inspects the class on every request).

    Made at install, after which the classes' methods do not change until uninstall drops it.
    """
    found: dict[object, list[str]] = {}
    lock = threading.Lock()

    def method_names_from_class(clazz: object) -> list[str]:
        with lock:
            names = found.get(clazz)
            if names is None:
                names = found[clazz] = [name for name, _ in inspect.getmembers(clazz, predicate=inspect.isfunction)]
            return names

    return method_names_from_class


# Checked by their handlers against their real resources, or needing no permission at all.
_CHECKED_ELSEWHERE = {
    "ssm:StartSession",
    "ssm:TerminateSession",
    "ssm:ResumeSession",
    "ssm:SendCommand",
    "sts:GetCallerIdentity",
}


def _session_policy_checked(original_call_action: Callable[[BaseResponse], Any]) -> Callable[[BaseResponse], Any]:
    """moto's dispatch, refusing any other action that an assumed role's policies do not allow.

    The role's identity policies (when moto's IAM knows the role) and its session policy
    (when it has one) must both allow the action on each of its resources (``_resources``).
    """

    def call_action(self: BaseResponse) -> Any:
        role = sessionpolicy.assumed_role(self.current_account, self.partition, self.get_access_key())
        if role is not None:
            service = self.service_name or ""
            action = f"{service}:{self._get_action()}"
            if action not in _CHECKED_ELSEWHERE:
                refusal = sessionpolicy.denial(role, self.partition, action, _resources(self, action), service=service)
                if refusal is not None:
                    return self.serialized(ActionResult(refusal))
        return original_call_action(self)

    return call_action


# IAM actions on a user or role named by a parameter: AWS authorizes them on its ARN (a path, if any, is not
# shown, so a policy on ``user/*`` or ``role/*`` is what devcloud can check exactly).
_IAM_BY_NAME = {"iam:GetUser": ("user", "UserName"), "iam:GetRole": ("role", "RoleName")}


def _resources(self: BaseResponse, action: str) -> list[str]:
    """The ARNs AWS authorizes ``action`` on, for the actions devcloud maps; ``*`` otherwise."""
    if action in {"iam:SimulatePrincipalPolicy", "iam:GetContextKeysForPrincipalPolicy"}:
        return [str(self._get_param("PolicySourceArn") or "*")]
    if action in {"iam:GetPolicy", "iam:GetPolicyVersion"}:
        return [str(self._get_param("PolicyArn") or "*")]
    if action in _IAM_BY_NAME:
        kind, parameter = _IAM_BY_NAME[action]
        name = self._get_param(parameter)
        if isinstance(name, str) and name:
            return [f"arn:{self.partition}:iam::{self.current_account}:{kind}/{name}"]
    if action.startswith("ssm:") and "Parameter" in action:
        try:
            body = json.loads(self.body or "{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            return ["*"]
        named = [body.get("Name")] if "Name" in body else body.get("Names") or [body.get("Path")]
        names = [name for name in named if isinstance(name, str) and name] if isinstance(named, list) else []
        if names and len(names) == len(named):
            return [parameters.parameter_arn(self, name) for name in names]
    return ["*"]


def _aws_managed_policies(backend: IAMBackend) -> list[ManagedPolicy]:
    """AdministratorAccess, AmazonSSMFullAccess ... in every account, as in AWS.

    moto loads them only when configured to, and then parses its whole catalogue again for
    each of six partitions of every account it meets: seconds per account. devcloud serves
    the commercial partition only and parses the catalogue once.
    """
    if backend.region_name != "aws":
        return []
    return [
        # moto builds these the same way; its CloudFormation hooks are what mypy sees as abstract.
        AWSManagedPolicy(name, account_id=backend.account_id, region=backend.region_name, **fields)  # type: ignore[abstract]
        for name, fields in _managed_policy_catalogue().items()
    ]


@cache
def _managed_policy_catalogue() -> dict[str, dict[str, Any]]:
    return {
        name: {
            "default_version_id": data.get("DefaultVersionId"),
            "path": data.get("Path"),
            "document": json.dumps(data.get("Document")),
            "create_date": dt.datetime.fromisoformat(data["CreateDate"]),
            "update_date": dt.datetime.fromisoformat(data["UpdateDate"]),
        }
        for name, data in json.loads(aws_managed_policies_data).items()
    }
