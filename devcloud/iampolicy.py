"""IAM identity-policy evaluation, enough for SimulatePrincipalPolicy.

Covers what Passport asks about: Allow/Deny statements, Action/NotAction and
Resource/NotResource with ``*`` and ``?`` wildcards, policy variables (``devcloud.policyvariables``:
``${aws:username}`` and the like, in ``Version`` 2012-10-17 policies only), and the string, ARN,
Bool, Date and Null condition operators (with ``IfExists`` and ``ForAnyValue:``/``ForAllValues:``).
An explicit Deny wins, otherwise an Allow is needed; a permissions boundary, when the principal has
one, must allow too (IAM User Guide, "Permissions boundaries for IAM entities",
https://docs.aws.amazon.com/IAM/latest/UserGuide/access_policies_boundaries.html: the effective
permissions are what both the identity policies and the boundary allow, and an explicit Deny in
either refuses). Not modelled: SCPs, resource policies, numeric/IP conditions (a statement with one
of those never matches).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from devcloud.policyvariables import VARIABLES_VERSION, Operand, expand, expand_resource, literal, variable_keys

ALLOWED = "allowed"
EXPLICIT_DENY = "explicitDeny"
IMPLICIT_DENY = "implicitDeny"


@dataclass(frozen=True)
class PolicySource:
    """A policy document and where it came from, as SimulatePrincipalPolicy names it."""

    policy_id: str  # inline policy name, managed policy name, or "PolicyInputList.N"
    policy_type: str  # user | group | role | aws-managed | user-managed | none
    document: str


@dataclass
class Decision:
    decision: str
    matched: list[PolicySource] = field(default_factory=list)
    missing_context: list[str] = field(default_factory=list)
    # With a permissions boundary: whether it allowed the action (AWS's PermissionsBoundaryDecisionDetail).
    allowed_by_boundary: bool | None = None


@dataclass(frozen=True)
class _Document:
    variables: bool  # Version 2012-10-17: ${...} are policy variables
    statements: tuple[Mapping[str, Any], ...]


def evaluate(
    policies: Sequence[PolicySource],
    action: str,
    resource: str,
    context: Mapping[str, Sequence[str]],
    *,
    boundary: Sequence[PolicySource] | None = None,
) -> Decision:
    """Decide one action on one resource. ``context`` keys are matched case-insensitively.

    ``boundary``: the principal's permissions boundary (None when it has none). An action
    the identity policies allow and the boundary does not is an implicit deny; an explicit
    Deny in either is an explicit deny.
    """
    lowered = {key.lower(): [str(value) for value in values] for key, values in context.items()}
    missing: set[str] = set()
    allows, denies = _matching(policies, action, resource, lowered, missing)
    if boundary is None:
        if denies:
            return Decision(EXPLICIT_DENY, denies, sorted(missing))
        return Decision(ALLOWED if allows else IMPLICIT_DENY, allows, sorted(missing))
    bounded_allows, bounded_denies = _matching(boundary, action, resource, lowered, missing)
    within = bool(bounded_allows) and not bounded_denies
    if denies or bounded_denies:
        return Decision(EXPLICIT_DENY, denies + bounded_denies, sorted(missing), within)
    if allows and within:
        return Decision(ALLOWED, allows, sorted(missing), within)
    return Decision(IMPLICIT_DENY, [], sorted(missing), within)


def referenced_keys(policies: Sequence[PolicySource]) -> list[str]:
    """The context keys the policies reference, for GetContextKeysForPrincipalPolicy.

    Every key a ``Condition`` names, and, in ``Version`` 2012-10-17 policies, every key a
    policy variable names where one is replaced (the resource part of ``Resource`` and
    ``NotResource``, the values of the string, ARN and Bool operators): the simulation
    needs a value for each. One spelling per key (IAM's key names ignore case), sorted.
    """
    found: dict[str, str] = {}
    for source in policies:
        document = _parse(source.document)
        for statement in document.statements:
            named: list[str] = []
            conditions = statement.get("Condition") or {}
            for operator, keys in conditions.items() if isinstance(conditions, dict) else ():
                for key, expected in keys.items() if isinstance(keys, dict) else ():
                    named.append(str(key))
                    if document.variables and _takes_variables(str(operator)):
                        values = expected if isinstance(expected, list) else [expected]
                        named += [variable for value in values for variable in variable_keys(str(value))]
            for element in ("Resource", "NotResource") if document.variables else ():
                patterns = statement.get(element) or []
                for pattern in [patterns] if isinstance(patterns, str) else patterns:
                    named += variable_keys(str(pattern).split(":", 5)[-1])
            for key in named:
                found.setdefault(key.lower(), key)
    return sorted(found.values(), key=str.lower)


def check_document(document: str) -> None:
    """Raise ValueError when a policy document is not usable JSON with statements."""
    _parse(document)


def _matching(
    policies: Sequence[PolicySource], action: str, resource: str, context: Mapping[str, list[str]], missing: set[str]
) -> tuple[list[PolicySource], list[PolicySource]]:
    """The policies with an Allow, and those with a Deny, that apply to this request."""
    allows: list[PolicySource] = []
    denies: list[PolicySource] = []
    for source in policies:
        document = _parse(source.document)
        for statement in document.statements:
            if not _applies(statement, action, resource, context, missing, document.variables):
                continue
            effect = statement.get("Effect")
            if effect == "Deny" and source not in denies:
                denies.append(source)
            elif effect == "Allow" and source not in allows:
                allows.append(source)
    return allows, denies


@lru_cache(maxsize=1024)
def _parse(document: str) -> _Document:
    parsed = json.loads(document)
    if not isinstance(parsed, dict) or "Statement" not in parsed:
        raise ValueError("a policy document needs a Statement")
    statements = parsed["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    if not all(isinstance(statement, dict) for statement in statements):
        raise ValueError("every Statement must be an object")
    return _Document(parsed.get("Version") == VARIABLES_VERSION, tuple(statements))


def _applies(
    statement: Mapping[str, Any],
    action: str,
    resource: str,
    context: Mapping[str, list[str]],
    missing: set[str],
    variables: bool,
) -> bool:
    if "Action" in statement:
        if not _any_match(statement["Action"], action, ignore_case=True):
            return False
    elif "NotAction" in statement:
        if _any_match(statement["NotAction"], action, ignore_case=True):
            return False
    else:
        return False
    if "Resource" in statement:
        if not _resource_match(statement["Resource"], resource, context, missing, variables):
            return False
    elif "NotResource" in statement:
        if _resource_match(statement["NotResource"], resource, context, missing, variables):
            return False
    else:
        return False
    return _conditions_hold(statement.get("Condition") or {}, context, missing, variables)


def _any_match(patterns: str | Iterable[str], value: str, *, ignore_case: bool) -> bool:
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    return any(_wildcard(pattern, ignore_case).fullmatch(value) for pattern in patterns)


def _resource_match(
    patterns: str | Iterable[str], resource: str, context: Mapping[str, list[str]], missing: set[str], variables: bool
) -> bool:
    """Whether a pattern names the resource. One with a variable that has no value names nothing;
    its key is reported missing when a value could have made it match (and no other pattern did)."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    operands = [expand_resource(pattern, context) if variables else literal(pattern) for pattern in patterns]
    if any(not operand.unresolved and _compiled(operand.regex, False).fullmatch(resource) for operand in operands):
        return True
    for operand in operands:
        if operand.unresolved and _compiled(operand.regex, False).fullmatch(resource):
            missing.update(operand.unresolved)
    return False


def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: ``*`` is any run of characters, ``?`` any one; nothing else is special."""
    return _compiled(literal(pattern).regex, ignore_case)


@lru_cache(maxsize=4096)
def _compiled(regex: str, ignore_case: bool) -> re.Pattern[str]:
    return re.compile(regex, (re.IGNORECASE | re.DOTALL) if ignore_case else re.DOTALL)


def _conditions_hold(
    conditions: Mapping[str, Any], context: Mapping[str, list[str]], missing: set[str], variables: bool
) -> bool:
    """Every operator block must hold, and within one block every key (IAM's AND rules).

    Every key the conditions name and the context lacks goes to ``missing``, including those
    after one that already fails, as SimulatePrincipalPolicy lists them all, and those of
    ``...IfExists`` and ``Null`` conditions (the conservative reading of "the context keys
    required by the input policies": the answer depends on them as on any other); so does
    the key of every policy variable in a value that has no value.
    """
    holds = True
    for operator, keys in conditions.items():
        for key, expected in keys.items():
            written = [str(v) for v in (expected if isinstance(expected, list) else [expected])]
            operands = [
                expand(value, context) if variables and _takes_variables(operator) else literal(value)
                for value in written
            ]
            for operand in operands:
                missing.update(operand.unresolved)
            # A value whose variable has no value equals nothing, and is like nothing.
            resolved = [operand for operand in operands if not operand.unresolved]
            actual = context.get(key.lower())
            # Those of IfExists and Null conditions too: AWS documents MissingContextValues as the
            # keys the policies need, and with them a key left out turns the answer around.
            if actual is None:
                missing.add(key)
            if holds and not _condition_holds(operator, resolved, actual):
                holds = False
    return holds


def _takes_variables(operator: str) -> bool:
    """The operators whose values may hold policy variables: string, ARN and Bool (IAM's operator reference)."""
    name = operator.rpartition(":")[2]
    return name.startswith(("String", "Arn", "Bool"))


def _condition_holds(operator: str, expected: list[Operand], actual: list[str] | None) -> bool:
    qualifier, _, name = operator.rpartition(":")
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    if name == "Null":
        return bool(expected) and (actual is None) == (expected[0].text.lower() == "true")
    test = _OPERATORS.get(name)
    if test is None:
        return False  # not modelled: never matches, rather than guessing
    negated = "Not" in name
    if actual is None:
        # A missing key never matches; so negated operators, IfExists and ForAllValues hold. But
        # ForAnyValue is false on a missing key whatever its operator, IfExists and negated ones
        # too (IAM User Guide, "Single-valued vs. multivalued context keys").
        if qualifier == "ForAnyValue":
            return False
        return if_exists or negated or qualifier == "ForAllValues"
    if qualifier == "ForAnyValue":
        return any(test(expected, value) for value in actual)
    if qualifier == "ForAllValues" or negated:
        return all(test(expected, value) for value in actual)
    return any(test(expected, value) for value in actual)


def _equals(expected: list[Operand], value: str) -> bool:
    return value in (e.text for e in expected)


def _equals_ignore_case(expected: list[Operand], value: str) -> bool:
    return value.lower() in (e.text.lower() for e in expected)


def _like(expected: list[Operand], value: str) -> bool:
    return any(_compiled(e.regex, False).fullmatch(value) for e in expected)


def _bool(expected: list[Operand], value: str) -> bool:
    return value.lower() in (e.text.lower() for e in expected)


def _moment(text: str) -> dt.datetime | None:
    """A Date operator's operand: ISO 8601 (UTC when no zone is given) or epoch seconds."""
    try:
        moment = dt.datetime.fromtimestamp(int(text), dt.UTC) if text.isdigit() else dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _date(compare: Callable[[dt.datetime, dt.datetime], bool]) -> Callable[[list[Operand], str], bool]:
    """A Date operator: the context's time against any of the policy's; an unreadable time never matches."""

    def test(expected: list[Operand], value: str) -> bool:
        actual = _moment(value)
        if actual is None:
            return False
        return any(limit is not None and compare(actual, limit) for limit in (_moment(e.text) for e in expected))

    return test


def _negate(test: Callable[[list[Operand], str], bool]) -> Callable[[list[Operand], str], bool]:
    return lambda expected, value: not test(expected, value)


_OPERATORS: dict[str, Callable[[list[Operand], str], bool]] = {
    "StringEquals": _equals,
    "StringNotEquals": _negate(_equals),
    "StringEqualsIgnoreCase": _equals_ignore_case,
    "StringNotEqualsIgnoreCase": _negate(_equals_ignore_case),
    "StringLike": _like,
    "StringNotLike": _negate(_like),
    "ArnEquals": _like,
    "ArnLike": _like,
    "ArnNotEquals": _negate(_like),
    "ArnNotLike": _negate(_like),
    "Bool": _bool,
    "DateEquals": _date(lambda actual, limit: actual == limit),
    "DateNotEquals": _negate(_date(lambda actual, limit: actual == limit)),
    "DateLessThan": _date(lambda actual, limit: actual < limit),
    "DateLessThanEquals": _date(lambda actual, limit: actual <= limit),
    "DateGreaterThan": _date(lambda actual, limit: actual > limit),
    "DateGreaterThanEquals": _date(lambda actual, limit: actual >= limit),
}
