"""The context keys a principal's permissions boundary reads, for the IAM check (``fleet.aws.iam``).

GetContextKeysForPrincipalPolicy lists the keys of the policies attached to a principal; AWS
does not say it lists those of its permissions boundary, and a boundary that denies by a tag
through a ``Null`` or ``...IfExists`` condition is answered by the tag's absence, so the tag
must be sent without the simulator asking for it. The boundary is found and read as IAM shows
it (IAM API Reference): ``GetUser`` or ``GetRole`` (the principal's kind and name are in its
ARN) gives ``PermissionsBoundary.PermissionsBoundaryArn``; ``GetPolicy`` its
``DefaultVersionId``; ``GetPolicyVersion`` that version's document (URL-encoded by AWS, decoded
by boto3); and ``GetContextKeysForCustomPolicy`` the keys that document references. Any of
those refused, failing or answering in an unexpected shape raises ``BoundaryUnknown``: the
caller then sends every tag.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import BotoCoreError, ClientError

# A group has no permissions boundary; users and roles may (their path is not part of the name).
_PRINCIPAL = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:(?P<kind>user|role|group)/(?:[^/]+/)*(?P<name>[^/]+)$")


class BoundaryUnknown(Exception):
    """The principal's permissions boundary, or the keys it reads, could not be had; the message says why."""


def boundary_context_keys(iam: Any, principal_arn: str) -> list[object]:
    """The context keys the principal's permissions boundary references; ``[]`` when it has none."""
    match = _PRINCIPAL.match(principal_arn)
    if match is None:
        raise BoundaryUnknown("its ARN is not that of an IAM user, role or group, so its boundary cannot be looked up")
    if match["kind"] == "group":
        return []
    try:
        if match["kind"] == "user":
            entity = iam.get_user(UserName=match["name"])["User"]
        else:
            entity = iam.get_role(RoleName=match["name"])["Role"]
        boundary = (entity.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
        if not boundary:
            return []
        version = iam.get_policy(PolicyArn=boundary)["Policy"]["DefaultVersionId"]
        document = iam.get_policy_version(PolicyArn=boundary, VersionId=version)["PolicyVersion"]["Document"]
        names = iam.get_context_keys_for_custom_policy(PolicyInputList=[_document_text(document)])
        found = names.get("ContextKeyNames") or []
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "") or str(exc)
        raise BoundaryUnknown(f"{exc.operation_name} refused: {code}") from exc
    except BotoCoreError as exc:
        raise BoundaryUnknown(f"reading its permissions boundary failed: {exc}") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise BoundaryUnknown(f"IAM's answer about its permissions boundary is not as documented ({exc!r})") from exc
    if not isinstance(found, list):
        raise BoundaryUnknown("GetContextKeysForCustomPolicy did not answer with a list of keys")
    return found


def _document_text(document: object) -> str:
    """The policy document as JSON text: boto3 gives it decoded, the raw API URL-encoded."""
    parsed = document
    if isinstance(document, str):
        try:
            parsed = json.loads(document)
        except ValueError:
            try:
                parsed = json.loads(unquote(document))
            except ValueError:
                raise BoundaryUnknown("its permissions boundary's document is not JSON") from None
    if not isinstance(parsed, dict):
        raise BoundaryUnknown("its permissions boundary's document is not a JSON object")
    return json.dumps(parsed)
