"""The Windows removal script, read as text (no PowerShell here): what each branch does, in order.

On a domain controller the user may hold Domain Admins, and a logon token keeps the groups it
was made with until its processes exit, so removing the account alone would leave whatever the
user still runs there with Domain Admins. The domain branch therefore disables the account,
takes it out of Domain Admins and Passport's group, ends its processes, logs off its sessions,
and only then deletes it and its profile, as the member-server branch does for a local user.
"""

from __future__ import annotations

import re

import pytest

from core.usernames import InvalidUsername
from fleet.scripts import UnsafeScriptValue, render_remove

DC_USERNAME = "rs-abcdefgh-wxyz"
USERNAME = "rs-abcdefgh"


def _domain_branch(script: str) -> str:
    start = script.index("if ('yes' -eq 'yes') {")
    return script[start : script.index("\n} else {\n", start)]


def _local_branch(script: str) -> str:
    start = script.index("if ('no' -eq 'yes') {")
    return script[script.index("\n} else {\n", start) :]


def _dc_remove() -> str:
    return render_remove(platform="windows", username=DC_USERNAME, domain_controller=True)


# The steps of the domain branch, in the order they must run.
DOMAIN_STEPS = [
    "$account.Description -ne $marker",  # never a user Passport did not make
    "Disable-ADAccount -Identity $user",  # no new logon from here on
    "Remove-ADGroupMember -Identity $domainAdmins -Members $user -Confirm:$false",
    "Remove-ADGroupMember -Identity $rdpGroup -Members $user -Confirm:$false",
    "Stop-Process -Id $_.ProcessId -Force",  # what still runs with the old token
    "query user $user",
    "logoff $sessionId",
    "Remove-ADUser -Identity $user -Confirm:$false",
    "Remove-CimInstance",  # the profile
]


def test_the_domain_controller_removal_takes_every_step_in_order() -> None:
    branch = _domain_branch(_dc_remove())
    positions = [branch.find(step) for step in DOMAIN_STEPS]
    assert -1 not in positions, [step for step, at in zip(DOMAIN_STEPS, positions, strict=True) if at < 0]
    assert positions == sorted(positions)


def test_a_domain_removal_on_a_host_without_active_directory_ends_with_nothing_to_do() -> None:
    # A grant recorded for a domain controller on a host that is none (its tag was wrong when the
    # request was made, so it was refused and nothing was made): Import-Module would fail on every
    # retry and the grant would never leave REMOVING.
    branch = _domain_branch(_dc_remove())
    check = branch.index("if (-not (Get-Module -ListAvailable -Name ActiveDirectory)) {")
    assert check < branch.index("Import-Module ActiveDirectory")
    assert "exit 0" in branch[check : branch.index("Import-Module ActiveDirectory")]


def test_the_domain_controller_removal_ends_only_the_domain_users_processes() -> None:
    branch = _domain_branch(_dc_remove())
    assert "$netbiosDomain = (Get-ADDomain).NetBIOSName" in branch
    assert "$owner.User -eq $user -and $owner.Domain -eq $netbiosDomain" in branch
    # A process gone between listing and asking for its owner does not stop the removal.
    assert "Invoke-CimMethod -InputObject $_ -MethodName GetOwner -ErrorAction SilentlyContinue" in branch


def test_the_domain_groups_are_found_as_the_create_script_finds_them() -> None:
    branch = _domain_branch(_dc_remove())
    assert '$domainAdmins = Get-ADGroup -Identity "$((Get-ADDomain).DomainSID.Value)-512"' in branch
    assert "$rdpGroupName = 'Passport Remote Desktop Users'" in branch
    assert "$rdpGroup = Get-ADGroup -Filter \"Name -eq '$rdpGroupName'\"" in branch
    # Only a membership the user has is removed: running the script twice is harmless.
    assert "if ($memberOf -contains $domainAdmins.DistinguishedName) {" in branch
    assert "if ($rdpGroup -and $memberOf -contains $rdpGroup.DistinguishedName) {" in branch


def test_only_a_session_number_from_query_user_reaches_logoff() -> None:
    branch = _domain_branch(_dc_remove())
    lines = [line.strip() for line in branch.splitlines()]
    assert "$sessionId = [int]$Matches[2]" in lines
    # The one command that takes anything from query user's output: a number, nothing else.
    calls = [line for line in lines if line.startswith("logoff")]
    assert calls == ["logoff $sessionId"]
    # The session's user must be this user exactly, whatever query user was asked for.
    assert "if ($Matches[1] -eq $user) {" in lines
    pattern = re.search(r"-match '([^']*)'", branch)
    assert pattern is not None
    assert pattern.group(1) == r"^\s*>?(\S+)\s+(?:\S+\s+)?(\d{1,5})\s"


@pytest.mark.parametrize(
    ("line", "session"),
    [
        # query user's columns: USERNAME SESSIONNAME ID STATE IDLE TIME LOGON TIME
        (f">{DC_USERNAME}      rdp-tcp#12          3  Active          .  1/2/2030 9:00 AM", ("rs-abcdefgh-wxyz", "3")),
        (f" {DC_USERNAME}                          5  Disc            7  1/2/2030 9:00 AM", ("rs-abcdefgh-wxyz", "5")),
        (f" {DC_USERNAME}      console             1  Active       none  1/2/2030 9:00 AM", ("rs-abcdefgh-wxyz", "1")),
        (" USERNAME              SESSIONNAME        ID  STATE   IDLE TIME  LOGON TIME", None),
        ("No User exists for rs-abcdefgh-wxyz", None),
        (" rs-abcdefgh-wxyz      rdp-tcp#1  3;calc  Active", None),
    ],
)
def test_the_session_pattern_reads_query_user_lines(line: str, session: tuple[str, str] | None) -> None:
    """The .NET pattern, checked with Python's re (the same syntax for these constructs)."""
    pattern = re.search(r"-match '([^']*)'", _domain_branch(_dc_remove()))
    assert pattern is not None
    found = re.match(pattern.group(1), line)
    assert (found.groups() if found else None) == session


def test_query_and_logoff_cannot_stop_the_script_with_what_they_write_to_stderr() -> None:
    branch = _domain_branch(_dc_remove())
    relaxed = branch.index("$ErrorActionPreference = 'Continue'")
    restored = branch.index("$ErrorActionPreference = 'Stop'", relaxed)
    assert relaxed < branch.index("query user $user") < branch.index("logoff $sessionId") < restored
    # And what they leave in $LASTEXITCODE is not the script's outcome.
    assert _dc_remove().rstrip().endswith("exit 0")


def test_the_domain_removal_never_touches_a_user_passport_did_not_make() -> None:
    branch = _domain_branch(_dc_remove())
    check = branch.index("$account.Description -ne $marker")
    assert "exit 0" in branch[check : branch.index("Disable-ADAccount")]
    changes = ["Remove-ADGroupMember", "Stop-Process", "logoff", "Remove-ADUser", "Remove-CimInstance"]
    assert all(branch.index(change) > check for change in changes)


def test_every_change_to_the_account_waits_for_it_to_exist() -> None:
    """A second run finds no account: it changes nothing but a profile left behind."""
    branch = _domain_branch(_dc_remove())
    exists = branch.index("if ($account) {")
    end = branch.index("Remove-ADUser")
    for step in ("Disable-ADAccount", "Remove-ADGroupMember", "Stop-Process", "logoff"):
        assert exists < branch.index(step) < end


def test_the_member_server_removal_is_unchanged() -> None:
    branch = _local_branch(render_remove(platform="windows", username=USERNAME, domain_controller=False))
    order = ["Disable-LocalUser", "Stop-Process", "Remove-LocalUser", "Remove-CimInstance"]
    assert [branch.index(step) for step in order] == sorted(branch.index(step) for step in order)


@pytest.mark.parametrize(
    "username",
    [
        "rs-abcdefgh-wxyz'; Remove-ADUser Administrator; '",
        "rs-abcdefgh-wxy\u2019",
        "rs-abcdefgh-wxyz\n",
        "rs-abcd$(logoff 1)",
        "rs-abcdefgh-wxyz 1",
    ],
)
def test_a_hostile_username_never_reaches_the_domain_removal(username: str) -> None:
    with pytest.raises((InvalidUsername, UnsafeScriptValue)):
        render_remove(platform="windows", username=username, domain_controller=True)
