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
need, not as a promise to list those. So the tags the principal's policies look at go with the
question from the first call, under both key families:

1. ``GetContextKeysForPrincipalPolicy`` names the context keys referenced in the policies
   attached to the principal (for a user, its groups' too: IAM API Reference); of those, the
   tag keys under the prefixes above are the ones that can change an answer. It does not
   cover the principal's permissions boundary, so the keys of that are added
   (``fleet.aws.boundary``: GetUser or GetRole, GetPolicy, GetPolicyVersion,
   GetContextKeysForCustomPolicy);
2. each instance is sent its tags with those keys (any case, as IAM's key names ignore it),
   one call per distinct combination of their values: a Name tag no policy reads does not
   split the instances, so a policy that reads no tag is one call for all of them;
3. as a safety net (a key the simulator needs that step 1 did not find), a tag key an answer
   still reports missing that the instance has is added to what that instance is sent and it
   is asked again, a few rounds at most.

When any call of step 1 is refused or fails, every known tag of every instance is sent instead
(one call per distinct set of tags: correct, more calls), and that is logged. Resources with no tags, or
whose tags Passport does not know, are asked about with none. A tag key still reported missing
that the instance does not have is truly absent, as it would be when the person connects; any
other key (``aws:SourceIp``, ``aws:MultiFactorAuthPresent``, a tag of a resource whose tags
Passport does not know, a tag the rounds did not settle) leaves the answer unconfirmed, never
allowed.

An instance whose tags to be sent cannot all be sent faithfully is not asked about and its
decision is unconfirmed (``AccessDecision.unconfirmed`` names it and why), whatever the
policies say; the other resources are asked about as usual. A tag no policy looks at is not
sent, so it cannot block anything. What cannot be sent: two keys that differ only in case (EC2
tag keys are case-sensitive, IAM's context keys are not, so which one AWS would use is not
known), a key too long for ``ContextKeyName`` (IAM API Reference, ContextEntry: 5 to 256
characters), a value longer than EC2 allows (256 characters), or more tags than an instance can
carry (EC2: 50 of the customer's, plus AWS's own ``aws:`` tags, which do not count:
``_MAX_TAGS`` leaves room for those). AWS documents no limit on the number of
``ContextEntries``; this keeps each call within what a real instance needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from fleet.aws.boundary import BoundaryUnknown, boundary_context_keys
from fleet.aws.clients import AwsClients
from fleet.aws.paging import MAX_ACCOUNT_PAGES, capped_pages
from fleet.interface import AccessDecision, FleetError

logger = logging.getLogger(__name__)

# The condition keys under which Systems Manager's actions see an EC2 instance's tags
# (Service Authorization Reference, Systems Manager, resource type "instance").
TAG_KEY_PREFIXES = ("ssm:resourceTag/", "aws:ResourceTag/")
# ContextKeyName is at most 256 characters (EC2 tag keys are at most 128, so this is a guard).
_TAG_KEY_MAX = 256 - max(len(prefix) for prefix in TAG_KEY_PREFIXES)
# EC2: a tag value is at most 256 characters.
_TAG_VALUE_MAX = 256
# EC2: 50 tags of the customer's per resource; AWS's own (aws:cloudformation:..., aws:autoscaling:...) come on top.
_MAX_TAGS = 100
# How many times an instance is asked again with tags the simulator reported missing (each round
# adds at least one key; what is still missing after the last leaves the answer unconfirmed).
_SAFETY_ROUNDS = 3


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


class _Unsendable(Exception):
    """A resource's tags to be sent cannot be sent as they are; the message says why."""


def _sendable_tags(tags: Mapping[str, str], wanted: frozenset[str] | None) -> tuple[tuple[str, str], ...]:
    """The tags to send for a resource, sorted (so resources alike share a call).

    ``wanted``: the tag keys (lower-cased) a policy looks at, or None for every tag. Raises
    ``_Unsendable`` when those cannot all be sent as they are (see the module's docstring).
    """
    chosen = {key: value for key, value in tags.items() if wanted is None or key.lower() in wanted}
    if len(chosen) > _MAX_TAGS:
        raise _Unsendable(f"it has {len(chosen)} tags, more than the {_MAX_TAGS} Passport sends")
    seen: dict[str, str] = {}
    for key, value in chosen.items():
        if not key or len(key) > _TAG_KEY_MAX:
            raise _Unsendable(f"the tag key {_shown(key)} is not 1 to {_TAG_KEY_MAX} characters long")
        if len(value) > _TAG_VALUE_MAX:
            raise _Unsendable(f"the value of its tag {_shown(key)} is longer than {_TAG_VALUE_MAX} characters")
        other = seen.setdefault(key.lower(), key)
        if other != key:
            raise _Unsendable(
                f"its tags {_shown(other)} and {_shown(key)} differ only in case, which IAM does not tell apart"
            )
    return tuple(sorted(chosen.items()))


def _shown(text: str) -> str:
    """A tag key in a message: quoted, escaped, and cut short (it comes from whoever tagged the instance)."""
    return ascii(text[:64] + ("..." if len(text) > 64 else ""))


def _unsendable(arn: str, why: str) -> str:
    return (
        f"the tags of {arn.rsplit('/', 1)[-1]} cannot all be sent to AWS's policy simulator ({why}), "
        "so a policy on them could not be confirmed"
    )


def _referenced_tag_keys(names: Iterable[object]) -> frozenset[str] | None:
    """The tag keys (lower-cased) among the context keys a principal's policies reference.

    None when one cannot be told exactly (a wildcard or a policy variable in its name): then
    every tag must be sent.
    """
    keys = set()
    for name in names:
        tag = tag_key_of(name) if isinstance(name, str) else None
        if tag is None:
            continue
        if any(mark in tag for mark in ("*", "?", "${")):
            return None
        keys.add(tag.lower())
    return frozenset(keys)


_STRICTNESS = {"allowed": 0, "implicitDeny": 1, "explicitDeny": 2}


def _stricter(first: str | None, second: str) -> str:
    """Of two answers about one action on one resource, the one that allows less."""
    if first is None:
        return second
    return max(first, second, key=lambda decision: _STRICTNESS.get(decision, 1))


# Global condition keys that hold a list in a real request: the simulator is told so.
_MULTI_VALUED_KEYS = frozenset({"aws:calledvia"})


def _principal_entries(context: Mapping[str, str]) -> list[dict[str, Any]]:
    """ContextEntries for the keys the principal implies (``aws:username`` ...), sent with every call."""
    return [
        {
            "ContextKeyName": key,
            "ContextKeyType": "stringList" if key.lower() in _MULTI_VALUED_KEYS else "string",
            "ContextKeyValues": [value],
        }
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
        none); a resource missing from it has tags Passport does not know. The tags a policy
        of the principal looks at are sent with their resource, one call per distinct set of
        them (every tag when the policies' keys cannot be had); a resource whose tags to send
        cannot all be sent is not asked about and is unconfirmed. ``context`` is the
        principal's own keys (``aws:username`` ...), sent with every call. Asked with the
        portal's role in the account. A pair the answer leaves out counts as an implicit
        deny, and a condition key the answer lacked (other than a tag the resource is known
        not to have) makes the decision unconfirmed; neither is ever allowed.
        """
        iam = self._client("iam", settings.AWS_REGION)
        principal = _principal_entries(context)
        referenced = self._policy_tag_keys(iam, principal_arn)
        wanted: dict[str, frozenset[str] | None] = dict.fromkeys(questions, referenced)
        answers: dict[str, _Answer] = {}
        refused: dict[str, str] = {}
        pending = list(questions)
        for _ in range(_SAFETY_ROUNDS + 1):
            groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
            for arn in pending:
                try:
                    groups.setdefault(_sendable_tags(tags.get(arn) or {}, wanted[arn]), []).append(arn)
                except _Unsendable as why:
                    refused[arn] = _unsendable(arn, str(why))
                    answers.pop(arn, None)
            for sent, arns in groups.items():
                answers.update(self._simulate(iam, principal_arn, questions, arns, principal + _context_entries(sent)))
            pending = [arn for arn in answers if self._needs_more(arn, answers[arn], tags.get(arn), wanted)]
            if not pending:
                break
        return {
            arn: (
                AccessDecision(dict.fromkeys(actions, "implicitDeny"), unconfirmed=refused[arn])
                if arn in refused
                else self._decision(list(actions), answers[arn], tags.get(arn))
            )
            for arn, actions in questions.items()
        }

    @staticmethod
    def _policy_tag_keys(iam: Any, principal_arn: str) -> frozenset[str] | None:
        """The tag keys the principal's policies and boundary reference (lower-cased); None when not known."""
        try:
            names = iam.get_context_keys_for_principal_policy(PolicySourceArn=principal_arn).get("ContextKeyNames")
        except ClientError as exc:
            why = exc.response.get("Error", {}).get("Code", "") or str(exc)
        except BotoCoreError as exc:
            why = str(exc)
        else:
            try:
                boundary = boundary_context_keys(iam, principal_arn)
            except BoundaryUnknown as unknown:
                why = f"its permissions boundary's keys are not known ({unknown})"
            else:
                keys = _referenced_tag_keys([*(names if isinstance(names, list) else []), *boundary])
                if keys is not None:
                    return keys
                why = "a tag key it names has a wildcard or a policy variable"
        logger.warning(
            "The context keys of %s's policies: %s; every tag of each instance is sent instead (more calls)",
            principal_arn,
            why,
        )
        return None

    @staticmethod
    def _needs_more(
        arn: str, answer: _Answer, tags: Mapping[str, str] | None, wanted: dict[str, frozenset[str] | None]
    ) -> bool:
        """Whether the answer lacked a tag the resource has and was not sent; if so, it is wanted next time."""
        sent = wanted[arn]
        if sent is None or not tags:
            return False
        more = {
            tag.lower()
            for key in answer.missing
            if (tag := tag_key_of(key)) is not None and tag.lower() not in sent and _tags_named(tags, tag)
        }
        if more:
            wanted[arn] = sent | more
        return bool(more)

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
