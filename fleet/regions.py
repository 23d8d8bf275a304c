"""The one spelling of an AWS region name Passport takes: ``eu-west-1``, ``us-gov-west-1``.

An account's regions (``accounts.regions``), a session's region in the credentials policy
(``fleet.aws.credentials``) and in the scripts Run Command runs (``fleet.scripts``) are checked
with it: whole, ASCII, no newline at the end.
"""

from __future__ import annotations

import re

REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]")


def is_region(name: object) -> bool:
    return isinstance(name, str) and REGION_RE.fullmatch(name) is not None
