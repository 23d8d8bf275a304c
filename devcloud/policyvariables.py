"""IAM policy variables (``${aws:username}`` ...), replaced as AWS replaces them.

What AWS documents (IAM User Guide, "IAM policy elements: Variables and tags",
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html):

- only a policy whose ``Version`` is ``2012-10-17`` has variables; in an older one (or one
  without a Version) ``${aws:username}`` is just those characters;
- a variable takes its value from the request's context: for a simulation, the
  ``ContextEntries`` the caller sent and the keys the principal itself implies;
- in ``Resource``/``NotResource`` only the resource part of an ARN (after the fifth colon)
  may hold one; in ``Condition`` the values (never the keys) of the string, ARN and Bool
  operators;
- a variable whose key has no value (absent, or a key with several values) matches
  nothing: the resource or the condition value it is in is not matched. ``${key, 'text'}``
  gives a default instead (a quote inside it doubled);
- ``${*}``, ``${?}`` and ``${$}`` stand for those characters themselves: a ``*`` or ``?``
  written so is not a wildcard, and a replaced value's characters are never wildcards
  either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The only Version with policy variables; any other keeps ``${...}`` as text.
VARIABLES_VERSION = "2012-10-17"

_VARIABLE = re.compile(r"\$\{([^{}]*)\}")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}
# ``key, 'default'``: the default in single quotes, a quote in it doubled.
_WITH_DEFAULT = re.compile(r"^\s*([^,\s]+)\s*,\s*'((?:[^']|'')*)'\s*$")


@dataclass(frozen=True)
class Operand:
    """A policy value after replacement.

    ``text`` is it as plain text (for the Equals operators); ``regex`` the source of a
    pattern where the policy's own ``*``/``?`` are wildcards and everything replaced is
    literal. ``unresolved`` names the keys with no value: then the value matches nothing,
    and ``regex`` has a wildcard where each was, to tell whether one could have mattered.
    """

    text: str
    regex: str
    unresolved: tuple[str, ...] = ()


def wildcard_source(text: str) -> str:
    """IAM wildcards as a regex source: ``*`` any run of characters, ``?`` any one."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def literal(value: str) -> Operand:
    """A value taken as written (a policy without variables, an operator that has none)."""
    return Operand(value, wildcard_source(value))


def expand(value: str, context: Mapping[str, Sequence[str]]) -> Operand:
    """``value`` with its variables replaced from ``context`` (keys lower-cased)."""
    text: list[str] = []
    regex: list[str] = []
    unresolved: list[str] = []
    position = 0
    for match in _VARIABLE.finditer(value):
        before = value[position : match.start()]
        text.append(before)
        regex.append(wildcard_source(before))
        replaced, key = _replacement(match.group(1), context)
        if replaced is None:
            unresolved.append(key)
            regex.append(".*")
        else:
            text.append(replaced)
            regex.append(re.escape(replaced))
        position = match.end()
    rest = value[position:]
    return Operand("".join(text) + rest, "".join(regex) + wildcard_source(rest), tuple(unresolved))


def expand_resource(pattern: str, context: Mapping[str, Sequence[str]]) -> Operand:
    """A Resource/NotResource pattern: variables only in the resource part, after the fifth colon."""
    parts = pattern.split(":", 5)
    if len(parts) < 6:
        return expand(pattern, context)
    head = ":".join(parts[:5]) + ":"
    tail = expand(parts[5], context)
    return Operand(head + tail.text, wildcard_source(head) + tail.regex, tail.unresolved)


def variable_keys(value: str) -> list[str]:
    """The context keys ``value``'s policy variables name (``${*}`` and the like name none)."""
    keys = []
    for match in _VARIABLE.finditer(value):
        body = match.group(1)
        if body in _ESCAPES:
            continue
        defaulted = _WITH_DEFAULT.match(body)
        keys.append(defaulted.group(1) if defaulted else body.strip())
    return keys


def _replacement(body: str, context: Mapping[str, Sequence[str]]) -> tuple[str | None, str]:
    """The text a ``${body}`` stands for, or None (and the key) when it has no value."""
    if body in _ESCAPES:
        return _ESCAPES[body], body
    defaulted = _WITH_DEFAULT.match(body)
    key, default = (defaulted.group(1), defaulted.group(2).replace("''", "'")) if defaulted else (body.strip(), None)
    values = context.get(key.lower())
    if values is not None and len(values) == 1:
        return str(values[0]), key
    return default, key
