"""SSM Agent versions as the portal and the channel compare them."""

from __future__ import annotations

import re

_VERSION_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9}){0,7}")


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.3.722.0' -> (2, 3, 722, 0); anything else compares as (0,), older than every real version.

    The one parser for SSM Agent versions (the portal's minimum, the channel's features). A version
    comes from the agent, so it is hostile: only dotted ASCII numbers count; signs, spaces, other
    digits ("٢") and empty parts, which ``int()`` would accept or choke on, make it unknown.
    """
    if not _VERSION_RE.fullmatch(version):
        return (0,)
    return tuple(int(part) for part in version.split("."))
