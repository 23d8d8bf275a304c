"""A person's principal as the IAM check reads it: its ARN's parts, the condition keys a request
of theirs carries, and the sessions of theirs TerminateSession is asked about."""

from __future__ import annotations

import re
from dataclasses import dataclass

from accounts.models import AwsAccount, User
from fleet.arns import session_arn

# Session Manager's session ids end in a dash and 17 hex digits; any will do for the question.
_SESSION_SUFFIX = "0123456789abcdef0"
_PRINCIPAL = re.compile(r"^arn:aws[\w-]*:iam::(?P<account>\d{12}):(?P<kind>user|role)/(?:[^/]+/)*(?P<name>[^/]+)$")


def scoped_role_session_name(*, request_id: int | None, user: User) -> str:
    """RoleSessionName of a person's scoped credentials: CloudTrail and Session Manager show it.

    Before a request exists (the check when it is made) its number is 0.
    """
    return f"passport-r{request_id or 0}-u{user.pk}"


@dataclass(frozen=True)
class Principal:
    """A person's principal ARN, read once for a whole check.

    ``kind`` is ``user`` or ``role`` for an IAM user's or role's ARN, with its account and its
    name (the last segment of its path); empty for any other ARN, of which nothing is read.
    """

    arn: str
    kind: str = ""
    account: str = ""
    name: str = ""

    @classmethod
    def parse(cls, arn: str) -> Principal:
        match = _PRINCIPAL.match(arn)
        if match is None:
            return cls(arn)
        return cls(arn, kind=match["kind"], account=match["account"], name=match["name"])


def principal_context(principal: Principal) -> dict[str, str]:
    """The condition keys a request by this principal carries that Passport can know from its ARN.

    IAM User Guide, global condition keys and "Request information that you can use for policy
    variables": ``aws:username`` exists for IAM users only; ``aws:userid`` is an id Passport
    does not have, so it is not sent.
    """
    if not principal.kind:
        return {}
    context = {"aws:PrincipalArn": principal.arn, "aws:PrincipalAccount": principal.account}
    if principal.kind == "user":
        context.update({"aws:PrincipalType": "User", "aws:username": principal.name})
    else:
        context["aws:PrincipalType"] = "AssumedRole"
    return context


# What Passport's check adds to every question it asks AWS's simulator. The people's policies
# Passport ships (accounts/policies/PassportOnly.json, ReadOnlyWithPassport.json) allow their
# sessions only where aws:CalledVia holds this value: no real request can carry it (AWS sets that
# key to the service principals that called on the caller's behalf), so those policies pass
# Passport's check and allow nothing in AWS itself. aws:CalledVia is multi-valued.
CHECK_MARKER = {"aws:CalledVia": "passport.invalid"}


# Passport's sessions always name their document, and AWS asks about a named document whatever
# this key says: it matters only to a session naming none (AWS's default shell document), which
# AWS's own examples, and Passport's shipped policies, refuse with ``BoolIfExists`` true.
_DOCUMENT_ACCESS_CHECK = "ssm:sessiondocumentaccesscheck"


def absent_keys(principal: Principal) -> frozenset[str]:
    """Keys a request by this principal never carries (lower case): the simulator's "no value" is AWS's answer.

    A role session has no ``aws:username``, so a policy on it is refused as not allowing,
    not as one Passport could not confirm. No session Passport starts carries
    ``ssm:SessionDocumentAccessCheck`` (it names its document), so ``BoolIfExists`` on it holds.
    """
    if principal.kind == "role":
        return frozenset({"aws:username", _DOCUMENT_ACCESS_CHECK})
    return frozenset({_DOCUMENT_ACCESS_CHECK})


def own_session_arn(
    *, principal: Principal, user: User, account: AwsAccount, region: str, request_id: int | None
) -> str:
    """The ARN of a session the person's IAM identity started: what TerminateSession is asked on."""
    owner = principal.name if principal.kind == "user" else scoped_role_session_name(request_id=request_id, user=user)
    return session_arn(region=region, account_id=account.account_id, session_id=f"{owner}-{_SESSION_SUFFIX}")
