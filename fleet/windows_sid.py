"""A Windows grant's account told by its SID, which no rename changes.

A user with administrator rights may rename its own account (``Rename-LocalUser``, a new
sAMAccountName), and a removal that looked for the grant's name would then find nothing and call
the grant removed. So the create script reports the account's SID (``ACCOUNT_SID_LINE``), the
portal keeps it on the grant (``Grant.account_sid``), and the removal finds the account by it
(``windows_removal``), as an extension's move of its expiry does (``windows_scripts``). A create whose
output names none does not make its grant ready. The SID comes from the host's output: it is read with a strict pattern,
and checked again by the same pattern before it is put in a removal script.
"""

from __future__ import annotations

import re

from fleet.ssh_keys import UnsafeScriptValue

# The line of a create script's output that names the account's SID.
ACCOUNT_SID_LINE = "passport: account sid: "

# An account's SID, as .NET writes it (SecurityIdentifier.Value): S-1-5-21, the three numbers of
# the machine or the domain, then the account's relative id. Each number is a 32-bit unsigned
# value, in ASCII digits, with no sign and no leading zero. Relative ids below 1000 name the
# built-in accounts and groups (500 Administrator, 512 Domain Admins ...), never an account a
# create script made: such a SID is refused too.
_SID_RE = re.compile(r"S-1-5-21-(0|[1-9][0-9]{0,9})-(0|[1-9][0-9]{0,9})-(0|[1-9][0-9]{0,9})-([1-9][0-9]{3,9})")
_SUB_AUTHORITY_MAX = 2**32 - 1


def valid_account_sid(value: object) -> bool:
    """Whether ``value`` is an account's SID in the one form the scripts write and read."""
    if not isinstance(value, str):
        return False
    found = _SID_RE.fullmatch(value)
    return found is not None and all(int(part) <= _SUB_AUTHORITY_MAX for part in found.groups())


def account_sid_value(value: str) -> str:
    """``value`` for a removal script: an account's SID, or '' (none known); anything else raises."""
    if value != "" and not valid_account_sid(value):
        raise UnsafeScriptValue("an account's SID is S-1-5-21, three numbers and a relative id of 1000 or more")
    return value


def created_account_sid(output: str) -> str | None:
    """The SID a Windows create script's output names (``ACCOUNT_SID_LINE``), or None: when no line
    names one, when one names anything but a valid SID (``valid_account_sid``), or when lines name
    different ones. Lines end at a line feed only (PowerShell writes CRLF)."""
    found: set[str] = set()
    for line in output.split("\n"):
        if line.startswith(ACCOUNT_SID_LINE):
            value = line[len(ACCOUNT_SID_LINE) :].removesuffix("\r")
            if not valid_account_sid(value):
                return None
            found.add(value)
    return found.pop() if len(found) == 1 else None
