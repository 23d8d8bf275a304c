"""The one spelling of an AWS region name Passport takes: ``eu-west-1``, ``us-gov-west-1``,
``eusc-de-east-1``: a name of one of the partitions ``fleet.arns`` names resources in.

An account's regions (``accounts.regions``), a session's region in the credentials policy
(``fleet.aws.credentials``) and in the scripts Run Command runs (``fleet.scripts``) are checked
with it: whole, ASCII, no newline at the end.
"""

from __future__ import annotations

from fleet.arns import partition_of


def is_region(name: object) -> bool:
    if not isinstance(name, str):
        return False
    try:
        partition_of(name)
    except ValueError:
        return False
    return True
