"""IAM identity-policy evaluation, enough for SimulatePrincipalPolicy.

Covers what Passport asks about: Allow/Deny statements, Action/NotAction and
Resource/NotResource with ``*`` and ``?`` wildcards, and the string, ARN, Bool, Date and
Null condition operators (with ``IfExists`` and ``ForAnyValue:``/``ForAllValues:``). An
explicit Deny wins, otherwise an Allow is needed. Not modelled: permissions boundaries,
SCPs, resource policies, policy variables, numeric/IP conditions (a statement with one of
those never matches).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

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


def evaluate(
    policies: Sequence[PolicySource], action: str, resource: str, context: Mapping[str, Sequence[str]]
) -> Decision:
    """Decide one action on one resource. ``context`` keys are matched case-insensitively."""
    lowered = {key.lower(): list(values) for key, values in context.items()}
    missing: set[str] = set()
    allows: list[PolicySource] = []
    denies: list[PolicySource] = []
    for source in policies:
        for statement in _statements(source.document):
            if not _applies(statement, action, resource, lowered, missing):
                continue
            effect = statement.get("Effect")
            if effect == "Deny" and source not in denies:
                denies.append(source)
            elif effect == "Allow" and source not in allows:
                allows.append(source)
    if denies:
        return Decision(EXPLICIT_DENY, denies, sorted(missing))
    if allows:
        return Decision(ALLOWED, allows, sorted(missing))
    return Decision(IMPLICIT_DENY, [], sorted(missing))


def check_document(document: str) -> None:
    """Raise ValueError when a policy document is not usable JSON with statements."""
    _statements(document)


@lru_cache(maxsize=1024)
def _statements(document: str) -> tuple[Mapping[str, Any], ...]:
    parsed = json.loads(document)
    if not isinstance(parsed, dict) or "Statement" not in parsed:
        raise ValueError("a policy document needs a Statement")
    statements = parsed["Statement"]
    statements = statements if isinstance(statements, list) else [statements]
    if not all(isinstance(statement, dict) for statement in statements):
        raise ValueError("every Statement must be an object")
    return tuple(statements)


def _applies(
    statement: Mapping[str, Any],
    action: str,
    resource: str,
    context: Mapping[str, list[str]],
    missing: set[str],
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
        if not _any_match(statement["Resource"], resource, ignore_case=False):
            return False
    elif "NotResource" in statement:
        if _any_match(statement["NotResource"], resource, ignore_case=False):
            return False
    else:
        return False
    return _conditions_hold(statement.get("Condition") or {}, context, missing)


def _any_match(patterns: str | Iterable[str], value: str, *, ignore_case: bool) -> bool:
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    return any(_wildcard(pattern, ignore_case).fullmatch(value) for pattern in patterns)


@lru_cache(maxsize=4096)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: ``*`` is any run of characters, ``?`` any one; nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, (re.IGNORECASE | re.DOTALL) if ignore_case else re.DOTALL)


def _conditions_hold(conditions: Mapping[str, Any], context: Mapping[str, list[str]], missing: set[str]) -> bool:
    """Every operator block must hold, and within one block every key (IAM's AND rules).

    Every key the conditions name and the context lacks goes to ``missing``, including those
    after one that already fails, as SimulatePrincipalPolicy lists them all.
    """
    holds = True
    for operator, keys in conditions.items():
        for key, expected in keys.items():
            expected_values = [str(v) for v in (expected if isinstance(expected, list) else [expected])]
            actual = context.get(key.lower())
            if actual is None and not operator.endswith("IfExists") and operator != "Null":
                missing.add(key)
            if holds and not _condition_holds(operator, expected_values, actual):
                holds = False
    return holds


def _condition_holds(operator: str, expected: list[str], actual: list[str] | None) -> bool:
    qualifier, _, name = operator.rpartition(":")
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    if name == "Null":
        return (actual is None) == (expected[0].lower() == "true")
    test = _OPERATORS.get(name)
    if test is None:
        return False  # not modelled: never matches, rather than guessing
    negated = "Not" in name
    if actual is None:
        # A missing key never matches; so negated operators, IfExists and ForAllValues hold.
        return if_exists or negated or qualifier == "ForAllValues"
    if qualifier == "ForAnyValue":
        return any(test(expected, value) for value in actual)
    if qualifier == "ForAllValues" or negated:
        return all(test(expected, value) for value in actual)
    return any(test(expected, value) for value in actual)


def _equals(expected: list[str], value: str) -> bool:
    return value in expected


def _equals_ignore_case(expected: list[str], value: str) -> bool:
    return value.lower() in (e.lower() for e in expected)


def _like(expected: list[str], value: str) -> bool:
    return any(_wildcard(pattern, False).fullmatch(value) for pattern in expected)


def _bool(expected: list[str], value: str) -> bool:
    return value.lower() in (e.lower() for e in expected)


def _moment(text: str) -> dt.datetime | None:
    """A Date operator's operand: ISO 8601 (UTC when no zone is given) or epoch seconds."""
    try:
        moment = dt.datetime.fromtimestamp(int(text), dt.UTC) if text.isdigit() else dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _date(compare: Callable[[dt.datetime, dt.datetime], bool]) -> Callable[[list[str], str], bool]:
    """A Date operator: the context's time against any of the policy's; an unreadable time never matches."""

    def test(expected: list[str], value: str) -> bool:
        actual = _moment(value)
        if actual is None:
            return False
        return any(limit is not None and compare(actual, limit) for limit in map(_moment, expected))

    return test


def _negate(test: Callable[[list[str], str], bool]) -> Callable[[list[str], str], bool]:
    return lambda expected, value: not test(expected, value)


_OPERATORS: dict[str, Callable[[list[str], str], bool]] = {
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
