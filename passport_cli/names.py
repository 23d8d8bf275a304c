"""What a name from the cloud or the portal must look like before it goes into an ssh config or a command line.

Pure Python, no Django: the portal imports this module as well, so the portal (which tells
the CLI whether an instance's Name may be a Host alias) and the CLI (which checks again,
since it does not take a portal's word for it) share one definition.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# An ssh_config Host alias. Letters, digits, '.', '_' and '-' only: no whitespace or quotes
# (they split or join tokens), no '%' (token expansion), no '*', '?', '!' or ',' (pattern
# syntax), no control characters (a newline starts a new option). The first character is a
# letter or a digit, so that an alias is never read as a command-line option either.
HOST_ALIAS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

# EC2 instance ids (i-) and Systems Manager managed nodes (mi-): 8 or 17 hex digits.
INSTANCE_ID_RE = re.compile(r"(?:i|mi)-(?:[0-9a-f]{8}|[0-9a-f]{17})")

# A login name as the CLI lets it reach ssh (`User`, `user@host`): POSIX-portable, lower case,
# never starting with '-'. Passport's own names (rs-...) are a subset.
LOGIN_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def is_host_alias(value: object) -> bool:
    """Whether ``value`` may be written as an ssh Host alias."""
    return isinstance(value, str) and HOST_ALIAS_RE.fullmatch(value) is not None


def is_instance_id(value: object) -> bool:
    return isinstance(value, str) and INSTANCE_ID_RE.fullmatch(value) is not None


def is_login_name(value: object) -> bool:
    return isinstance(value, str) and LOGIN_NAME_RE.fullmatch(value) is not None


def name_key(name: object) -> str | None:
    """What a Name is compared by when a person names an instance with it, or None if it names none.

    Without regard to case, as ssh matches Host aliases, so that `ssh WEB-1`, `passport connect
    WEB-1` and `requests create -i WEB-1` agree. A Name shaped like an instance id (in any case)
    names no instance: anyone with ec2:CreateTags can give one the id of another.
    """
    if not isinstance(name, str) or not name:
        return None
    key = name.lower()
    return None if is_instance_id(key) else key


def instances_named(wanted: str, named: Iterable[tuple[str, object]]) -> list[str]:
    """The instance ids, each once and in order, whose Name (of the (instance id, Name) pairs) is ``wanted``.

    More than one means the Name is unclear: the caller refuses it rather than take one, since a
    copy of an instance's Name is as easy to write as a Name shaped like an id.
    """
    key = name_key(wanted)
    if key is None:
        return []
    return list(dict.fromkeys(instance_id for instance_id, name in named if name_key(name) == key))
