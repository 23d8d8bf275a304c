"""IAM: what a person's own policies allow, asked with SimulatePrincipalPolicy.

Each resource is asked about for its own actions (StartSession on an instance and on a session
document, TerminateSession on a session: ``requests_app.iam`` says which), in one call with the
principal's own context keys (``aws:username`` ...) sent with it: AWS documents that the
simulator evaluates the inputs it is given, so they are not left for it to know.

The simulator evaluates only the context it is given: it does not look an instance up, so a
policy condition on the instance's tags (``ssm:resourceTag/Env``, ``aws:ResourceTag/Env``, the
keys Systems Manager defines for an EC2 instance) sees only the tags the caller sends. Left
unsent, an Allow by tag becomes a refusal and, worse, a Deny by tag is ignored; and with
``...IfExists`` or ``Null`` conditions a tag left unsent turns the answer around (an Allow "if
Env exists, Env is dev" matches a prod instance, a Deny "if Protected is not null" misses a
protected one), while AWS documents ``MissingContextValues`` only as the keys the policies
need, not as a promise to list those. So every known tag of every instance goes with the
question, from the first call, under both key families: one call per distinct set of tags
(instances tagged alike are asked about together; resources with no tags, or whose tags
Passport does not know, in one call with none). A tag key still reported missing that the
instance does not have is truly absent, as it would be when the person connects; any other
key (``aws:SourceIp``, ``aws:MultiFactorAuthPresent``, a tag of a resource whose tags Passport
does not know) leaves the answer unconfirmed, never allowed.

An instance whose tags cannot all be sent faithfully is refused outright (``FleetError``,
naming it and why), whatever the policies say, since a policy might look at the tag left out:
two keys that differ only in case (EC2 tag keys are case-sensitive, IAM's context keys are
not, so which one AWS would use is not known), a key too long for ``ContextKeyName`` (IAM API
Reference, ContextEntry: 5 to 256 characters), a value longer than EC2 allows (256
characters), or more tags than an instance can carry (EC2: 50 of the customer's, plus AWS's own
``aws:`` tags, which do not count: ``_MAX_TAGS`` leaves room for those). AWS documents no limit
on the number of ``ContextEntries``; this keeps each call within what a real instance needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from fleet.aws.clients import AwsClients
from fleet.aws.paging import MAX_ACCOUNT_PAGES, capped_pages
from fleet.interface import AccessDecision, FleetError

# The condition keys under which Systems Manager's actions see an EC2 instance's tags
# (Service Authorization Reference, Systems Manager, resource type "instance").
TAG_KEY_PREFIXES = ("ssm:resourceTag/", "aws:ResourceTag/")
# ContextKeyName is at most 256 characters (EC2 tag keys are at most 128, so this is a guard).
_TAG_KEY_MAX = 256 - max(len(prefix) for prefix in TAG_KEY_PREFIXES)
# EC2: a tag value is at most 256 characters.
_TAG_VALUE_MAX = 256
# EC2: 50 tags of the customer's per resource; AWS's own (aws:cloudformation:..., aws:autoscaling:...) come on top.
_MAX_TAGS = 100


@dataclass
class _Answer:
    """What the simulator said about one resource: a decision per action and the keys it lacked."""

    actions: dict[str, str] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)


def tag_key_of(context_key: str) -> str | None:
    """``Env`` for ``ssm:resourceTag/Env`` or ``aws:ResourceTag/Env`` (prefix in any case); else None."""
    for prefix in TAG_KEY_PREFIXES:
        if context_key[: len(prefix)].lower() == prefix.lower() and len(context_key) > len(prefix):
            return context_key[len(prefix) :]
    return None


def _tags_named(tags: Mapping[str, str], key: str) -> list[str]:
    """The instance's tag keys equal to ``key`` ignoring case (IAM's key names ignore it)."""
    return [tag for tag in tags if tag.lower() == key.lower()]


def _context_entries(tags: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """ContextEntries for these tags: data only, one string value each, under both key families."""
    return [
        {"ContextKeyName": prefix + key, "ContextKeyType": "string", "ContextKeyValues": [value]}
        for key, value in tags
        for prefix in TAG_KEY_PREFIXES
    ]


def _sendable_tags(arn: str, tags: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """All of a resource's tags as they will be sent, sorted (so resources tagged alike share a call).

    Raises ``FleetError`` when they cannot all be sent as they are (see the module's docstring).
    """
    if len(tags) > _MAX_TAGS:
        raise _unsendable(arn, f"it has {len(tags)} tags, more than the {_MAX_TAGS} Passport sends")
    seen: dict[str, str] = {}
    for key, value in tags.items():
        if not key or len(key) > _TAG_KEY_MAX:
            raise _unsendable(arn, f"the tag key {_shown(key)} is not 1 to {_TAG_KEY_MAX} characters long")
        if len(value) > _TAG_VALUE_MAX:
            raise _unsendable(arn, f"the value of its tag {_shown(key)} is longer than {_TAG_VALUE_MAX} characters")
        other = seen.setdefault(key.lower(), key)
        if other != key:
            raise _unsendable(
                arn, f"its tags {_shown(other)} and {_shown(key)} differ only in case, which IAM does not tell apart"
            )
    return tuple(sorted((key, value) for key, value in tags.items()))


def _shown(text: str) -> str:
    """A tag key in a message: quoted, escaped, and cut short (it comes from whoever tagged the instance)."""
    return ascii(text[:64] + ("..." if len(text) > 64 else ""))


def _unsendable(arn: str, why: str) -> FleetError:
    return FleetError(
        f"the tags of {arn.rsplit('/', 1)[-1]} cannot all be sent to AWS's policy simulator ({why}), "
        "so a policy on them could not be confirmed",
        retryable=False,
    )


_STRICTNESS = {"allowed": 0, "implicitDeny": 1, "explicitDeny": 2}


def _stricter(first: str | None, second: str) -> str:
    """Of two answers about one action on one resource, the one that allows less."""
    if first is None:
        return second
    return max(first, second, key=lambda decision: _STRICTNESS.get(decision, 1))


def _principal_entries(context: Mapping[str, str]) -> list[dict[str, Any]]:
    """ContextEntries for the keys the principal implies (``aws:username`` ...), sent with every call."""
    return [
        {"ContextKeyName": key, "ContextKeyType": "string", "ContextKeyValues": [value]}
        for key, value in sorted(context.items())
    ]


class IamMixin(AwsClients):
    def simulate_access(
        self,
        principal_arn: str,
        questions: Mapping[str, Sequence[str]],
        tags: Mapping[str, Mapping[str, str]],
        context: Mapping[str, str],
    ) -> dict[str, AccessDecision]:
        """What IAM's SimulatePrincipalPolicy says the principal may do on each resource.

        ``questions`` maps each resource ARN to the actions asked about on it (AWS answers
        every action on every resource; only these pairs are read). ``tags`` holds the tags
        of the resources whose tags are known (an instance's; ``{}`` for one known to have
        none); a resource missing from it has tags Passport does not know. Every known tag
        is sent with its resource, one call per distinct set of tags; ``FleetError`` when a
        resource's tags cannot all be sent (nothing is asked then). ``context`` is the
        principal's own keys (``aws:username`` ...), sent with every call. Asked with the
        portal's role in the account. A pair the answer leaves out counts as an implicit
        deny, and a condition key the answer lacked (other than a tag the resource is known
        not to have) makes the decision unconfirmed; neither is ever allowed.
        """
        iam = self._client("iam", settings.AWS_REGION)
        principal = _principal_entries(context)
        groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
        for arn in questions:
            groups.setdefault(_sendable_tags(arn, tags.get(arn) or {}), []).append(arn)
        answers: dict[str, _Answer] = {}
        for sent, arns in groups.items():
            answers.update(self._simulate(iam, principal_arn, questions, arns, principal + _context_entries(sent)))
        return {arn: self._decision(list(actions), answers[arn], tags.get(arn)) for arn, actions in questions.items()}

    @staticmethod
    def _decision(actions: list[str], answer: _Answer, tags: Mapping[str, str] | None) -> AccessDecision:
        unconfirmed: set[str] = set()
        for key in answer.missing:
            tag = tag_key_of(key)
            # A tag the instance does not have is absent when the person connects too: the
            # simulator's "does not match" is the real answer. Anything else is unknown,
            # as is every tag of a resource whose tags Passport does not know.
            if tag is None or tags is None or _tags_named(tags, tag):
                unconfirmed.add(key)
        return AccessDecision(
            {action: answer.actions.get(action, "implicitDeny") for action in actions},
            missing_context=tuple(sorted(unconfirmed)),
        )

    @staticmethod
    def _simulate(
        iam: Any,
        principal_arn: str,
        questions: Mapping[str, Sequence[str]],
        resource_arns: list[str],
        context: list[dict[str, Any]],
    ) -> dict[str, _Answer]:
        found = {arn: _Answer() for arn in resource_arns}
        actions = list(dict.fromkeys(action for arn in resource_arns for action in questions[arn]))

        def asked(arn: str, action: str) -> _Answer | None:
            answer = found.get(arn)
            return answer if answer is not None and action in questions[arn] else None

        try:
            pages = iam.get_paginator("simulate_principal_policy").paginate(
                PolicySourceArn=principal_arn, ActionNames=actions, ResourceArns=resource_arns, ContextEntries=context
            )
            for page in capped_pages(pages, what="SimulatePrincipalPolicy", max_pages=MAX_ACCOUNT_PAGES):
                for result in page.get("EvaluationResults", []):
                    action = result["EvalActionName"]
                    answer = asked(result.get("EvalResourceName", ""), action)
                    if answer is not None:
                        answer.actions[action] = result["EvalDecision"]
                        answer.missing.update(result.get("MissingContextValues") or [])
                    # With resources named, AWS reports per resource; its decision there is the one that counts.
                    for specific in result.get("ResourceSpecificResults") or []:
                        answer = asked(specific.get("EvalResourceName", ""), action)
                        if answer is None:
                            continue
                        decision = specific.get("EvalResourceDecision", "implicitDeny")
                        answer.actions[action] = _stricter(answer.actions.get(action), decision)
                        answer.missing.update(specific.get("MissingContextValues") or [])
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise FleetError(
                f"SimulatePrincipalPolicy for {principal_arn} refused: {code or exc}",
                retryable=code not in {"NoSuchEntity", "InvalidInput"},
                code=code,
            ) from exc
        except BotoCoreError as exc:
            raise FleetError(f"SimulatePrincipalPolicy for {principal_arn} failed: {exc}") from exc
        return found
