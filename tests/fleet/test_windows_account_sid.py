"""A Windows grant's account told by its SID (no PowerShell here: the scripts are read as text).

A user with administrator rights may rename its own account. A removal that looked the account up by
its name alone then found nothing, said "removed" and exited 0, while the account (its SID, its
groups, its password) stayed. The create script now names the account's SID, the portal keeps it, and
the removal finds the account by it: one renamed is left for an operator (exit 10), as is one that has
the grant's name but another SID. On a domain controller the computer accounts the user added are found
by the same SID, also when the account is left, and after an operator deleted it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from fleet.scripts import (
    REMOVAL_REFUSED_EXIT_CODE,
    UnsafeScriptValue,
    render_remove,
    render_windows_expiry,
)
from fleet.windows_sid import ACCOUNT_SID_LINE, created_account_sid, valid_account_sid
from tests.fleet.windows_script import DC_USERNAME, USERNAME, script_lines, windows_create

SID = "S-1-5-21-3623811015-3361044348-30300820-1013"
KINDS = pytest.mark.parametrize("domain_controller", [True, False], ids=["domain-controller", "member-server"])


def _remove(*, domain_controller: bool, account_sid: str = SID, created: bool = True) -> str:
    return render_remove(
        platform="windows",
        username=DC_USERNAME if domain_controller else USERNAME,
        domain_controller=domain_controller,
        created=created,
        account_sid=account_sid,
    )


def _branch(script: str, *, domain_controller: bool) -> str:
    """The branch that removes a grant's user of that kind, on a host of that kind."""
    split = script.index("\n} else {\n  $account = $null")
    return script[:split] if domain_controller else script[split:]


# --- the create script names the SID ----------------------------------------------------------


@KINDS
@pytest.mark.parametrize("admin_rights", [False, True])
def test_the_create_script_names_the_accounts_sid_once_it_is_ready(domain_controller: bool, admin_rights: bool) -> None:
    script = windows_create(admin_rights=admin_rights, domain_controller=domain_controller)
    lookup = "(Get-ADUser -Identity $user).SID.Value" if domain_controller else "(Get-LocalUser -Name $user).SID.Value"
    lines = script_lines(script)
    assert f"$accountSid = {lookup}" in lines
    assert f'Write-Output "{ACCOUNT_SID_LINE}$accountSid"' in lines
    # After the account is made and in its groups, and just before the script says it is ready.
    made = script.index("New-ADUser" if domain_controller else "New-LocalUser")
    said = script.index(f'Write-Output "{ACCOUNT_SID_LINE}')
    assert made < script.index("$accountSid = ") < said < script.index('Write-Output "passport: $user ready"')
    assert said > script.rindex("Add-ADGroupMember" if domain_controller else "Add-LocalGroupMember")


@pytest.mark.parametrize(
    ("output", "sid"),
    [
        (f"{ACCOUNT_SID_LINE}{SID}\r\npassport: rs-x ready\r\n", SID),
        (f"{ACCOUNT_SID_LINE}{SID}", SID),
        (f"{ACCOUNT_SID_LINE}{SID}\r\n{ACCOUNT_SID_LINE}{SID}\r\n", SID),  # the same twice: one SID
        (f"{ACCOUNT_SID_LINE}S-1-5-21-0-4294967295-1-1000\n", "S-1-5-21-0-4294967295-1-1000"),
        ("passport: rs-x ready\r\n", None),
        ("", None),
        (f"{ACCOUNT_SID_LINE}\r\n", None),
        (f"{ACCOUNT_SID_LINE}{SID} \r\n", None),
        (f"{ACCOUNT_SID_LINE} {SID}\r\n", None),
        (f"{ACCOUNT_SID_LINE}{SID}\r\r\n", None),
        (f"{ACCOUNT_SID_LINE}{SID}'; Remove-LocalUser Administrator; '\r\n", None),
        (f"{ACCOUNT_SID_LINE}{SID}\u2028x\r\n", None),
        # Two accounts named: which one is the grant's cannot be told.
        (f"{ACCOUNT_SID_LINE}{SID}\r\n{ACCOUNT_SID_LINE}S-1-5-21-1-2-3-1001\r\n", None),
        # One valid and one not: the output is not what the script writes.
        (f"{ACCOUNT_SID_LINE}{SID}\r\n{ACCOUNT_SID_LINE}S-1-5-32-544\r\n", None),
        (f"  {ACCOUNT_SID_LINE}{SID}\r\n", None),
    ],
)
def test_the_sid_is_read_from_a_create_scripts_output(output: str, sid: str | None) -> None:
    assert created_account_sid(output) == sid


@pytest.mark.parametrize(
    "value",
    [
        "S-1-5-32-544",  # Administrators: a group, never a grant's account
        "S-1-5-21-1-2-3-500",  # the built-in Administrator
        "S-1-5-21-1-2-3-512",  # Domain Admins
        "S-1-5-21-1-2-3-999",
        "S-1-5-21-1-2-1001",
        "S-1-5-21-1-2-3-4-1001",
        "S-1-5-21-01-2-3-1001",
        "S-1-5-21-1-2-3-01001",
        "S-1-5-21-4294967296-2-3-1001",
        "S-1-5-21-1-2-3-4294967296",
        "S-1-5-21-1-2-3-99999999999",
        "S-1-5-21-+1-2-3-1001",
        "s-1-5-21-1-2-3-1001",
        "S-1-5-21-\u0661-2-3-1001",  # an Arabic-Indic digit: \d would take it
        "S-1-5-21-1-2-3-1001\n",
        "S-1-5-21-1-2-3-1001'",
        "S-1-5-21-1-2-3-1001)(objectSid=*",
        "",
    ],
)
def test_anything_but_an_accounts_sid_is_refused(value: str) -> None:
    assert not valid_account_sid(value)
    if "\n" not in value:  # (a line feed ends the line: what is before it is read alone)
        assert created_account_sid(f"{ACCOUNT_SID_LINE}{value}\r\n") is None
    if value:
        with pytest.raises(UnsafeScriptValue):
            render_remove(platform="windows", username=USERNAME, account_sid=value)


# --- the removal finds the account by its SID -------------------------------------------------


@KINDS
def test_the_removal_is_given_the_sid_the_portal_kept(domain_controller: bool) -> None:
    script = _remove(domain_controller=domain_controller)
    assert [line for line in script_lines(script) if line.startswith("$grantSid =")] == [f"$grantSid = '{SID}'"]
    older = _remove(domain_controller=domain_controller, account_sid="")
    assert [line for line in script_lines(older) if line.startswith("$grantSid =")] == ["$grantSid = ''"]


@KINDS
def test_the_removal_looks_for_the_account_by_its_sid_before_its_name(domain_controller: bool) -> None:
    branch = _branch(_remove(domain_controller=domain_controller), domain_controller=domain_controller)
    by_sid = (
        '$account = Get-ADUser -LDAPFilter "(objectSid=$grantSid)" -Properties Description'
        if domain_controller
        else "$account = Get-LocalUser -SID $grantSid -ErrorAction SilentlyContinue"
    )
    by_name = (
        "$named = Get-ADUser -Filter \"SamAccountName -eq '$user'\" -Properties Description"
        if domain_controller
        else "$named = Get-LocalUser -Name $user -ErrorAction SilentlyContinue"
    )
    lines = script_lines(branch)
    assert f"if ($grantSid) {{ {by_sid} }}" in lines
    assert by_name in lines
    assert branch.index(by_sid) < branch.index(by_name)
    # The only account lookups: by the SID, or by the name into $named (never straight into $account).
    lookups = [line for line in lines if re.match(r"^(if \(\$grantSid\) \{ )?\$(account|named) = Get-", line)]
    assert lookups == [f"if ($grantSid) {{ {by_sid} }}", by_name]


@KINDS
def test_a_renamed_account_or_another_sid_of_the_grants_name_is_left_for_an_operator(domain_controller: bool) -> None:
    branch = _branch(_remove(domain_controller=domain_controller), domain_controller=domain_controller)
    name = "SamAccountName" if domain_controller else "Name"
    which = branch[branch.index("$left = ''") : branch.index("if ($account) {\n    $sid = ")]
    lines = script_lines(which)
    # Found by its SID: the grant's own account, left when it has another name now, or no marker.
    assert "if ($account) {" in lines
    assert f"if ($account.{name} -ne $user) {{" in lines
    renamed = which.index(f"if ($account.{name} -ne $user) {{")
    assert "was renamed" in which[renamed : which.index("}", renamed)]
    # Not found by its SID, but an account has the grant's name: another account (the SID differs),
    # not deleted, and none of its computer accounts touched.
    other = which.index("} elseif ($named) {")
    body = which[other:]
    assert "$account = $named" in body
    assert body.index("if ($grantSid) {") < body.index("$foreign = $true") < body.index("its SID is not")
    # Nothing before this has touched an account.
    for command in ("Disable-", "Remove-", "Stop-Process", "logoff"):
        assert command not in which, command
    left = branch.index("if ($left) {")
    assert script_lines(branch[left : branch.index("}", left) + 1]) == [
        "if ($left) {",
        "[Console]::Error.WriteLine($left)",
        f"exit {REMOVAL_REFUSED_EXIT_CODE}",
        "}",
    ]
    for step in ("Remove-ADUser", "Remove-LocalUser"):
        assert step not in branch or branch.index(step) > left, step


@pytest.mark.parametrize(
    ("domain_controller", "by_name"),
    [
        (True, ["-Identity $user", "-Members $user"]),
        (False, ["-Name $user"]),
    ],
    ids=["domain-controller", "member-server"],
)
def test_every_change_to_the_account_names_it_by_its_sid(domain_controller: bool, by_name: list[str]) -> None:
    """A renamed account (left, after every step but its deletion) must still be disabled, taken out
    of its groups and have its processes ended: each command names it by the SID it was found with."""
    branch = _branch(_remove(domain_controller=domain_controller), domain_controller=domain_controller)
    changes = [
        line
        for line in script_lines(branch)
        if re.search(r"\b(Disable|Remove)-(ADAccount|ADGroupMember|ADUser|LocalUser)\b", line)
    ]
    assert changes
    for line in changes:
        assert "$sid" in line, line
        assert not any(argument in line for argument in by_name), line
    assert "$sid = $account.SID.Value" in script_lines(branch)


@KINDS
def test_the_sessions_of_the_account_are_logged_off_under_either_name(domain_controller: bool) -> None:
    branch = _branch(_remove(domain_controller=domain_controller), domain_controller=domain_controller)
    name = "SamAccountName" if domain_controller else "Name"
    lines = script_lines(branch)
    assert f"$sessionNames = @($user, $account.{name})" in lines
    # query user lists every session: the account's current name never reaches its command line.
    assert "$sessions = query user 2>$null" in lines
    assert "if (($sessionNames -contains $Matches[1]) -and ($ownSessions -contains [int]$Matches[2])) {" in lines
    assert branch.index("$sessionNames = ") < branch.index("for ($round = 1;")


# --- a domain user's computer accounts ---------------------------------------------------------


def _dc_branch(**kw: object) -> str:
    return _branch(_remove(domain_controller=True, **kw), domain_controller=True)  # type: ignore[arg-type]


def test_a_left_domain_users_computer_accounts_are_deleted_and_named_before_it_is_left() -> None:
    branch = _dc_branch()
    left = branch.index("if ($left) {")
    found = branch.index("Get-ADComputer -LDAPFilter '(mS-DS-CreatorSID=*)'")
    assert branch.index("exit 4") < found < branch.index("Remove-ADObject -Identity $computer") < left
    assert branch.index('Write-Output "passport: deleted computer account: $($computer.SamAccountName)"') < left
    assert left < branch.index("Remove-ADUser")


def test_the_computer_accounts_are_found_by_the_accounts_sid_or_the_one_the_portal_kept() -> None:
    branch = _dc_branch()
    lines = script_lines(branch)
    # The account found: its own SID, unless it only has the grant's name (another SID: not ours).
    # No account: the SID the create reported (an operator deleted a left account), or none (older grant).
    assert "$creatorSid = ''" in lines
    assert (
        "if ($account -and -not $foreign) { $creatorSid = $sid } elseif (-not $account) { $creatorSid = $grantSid }"
        in lines
    )
    assert "if ($creatorSid) {" in lines
    assert "Where-Object { $_.'mS-DS-CreatorSID'.Value -eq $creatorSid })" in lines
    decided = branch.index("$creatorSid = ''")
    assert branch.index("if ($creatorSid) {") > decided > branch.index("exit 4")
    # Outside the block that needs an account: a run after the account was deleted still gets there.
    account_block = branch.index("if ($account) {\n    $sid = $account.SID.Value")
    block_end = branch.index("\n  }\n", account_block)
    assert decided > block_end
    assert "$foreign = $false" in lines


def test_a_member_server_removal_looks_for_no_computer_account() -> None:
    assert "Get-ADComputer" not in _branch(_remove(domain_controller=False), domain_controller=False)


# --- an extension finds the account as the removal does ---------------------------------------


def _extend(*, domain_controller: bool, account_sid: str = SID) -> str:
    return render_windows_expiry(
        username=DC_USERNAME if domain_controller else USERNAME,
        expires_at=datetime(2030, 3, 4, 12, 0, tzinfo=UTC),
        domain_controller=domain_controller,
        account_sid=account_sid,
    )


def _expiry_branch(script: str, *, domain_controller: bool) -> str:
    split = script.index("\n} else {\n")
    return script[:split] if domain_controller else script[split:]


@KINDS
def test_an_extension_finds_the_account_by_its_sid_and_never_by_its_name(domain_controller: bool) -> None:
    script = _extend(domain_controller=domain_controller)
    assert [line for line in script_lines(script) if line.startswith("$grantSid =")] == [f"$grantSid = '{SID}'"]
    branch = script_lines(_expiry_branch(script, domain_controller=domain_controller))
    by_sid = (
        '$account = Get-ADUser -LDAPFilter "(objectSid=$grantSid)" -Properties Description'
        if domain_controller
        else "$account = Get-LocalUser -SID $grantSid -ErrorAction SilentlyContinue"
    )
    at = branch.index("if ($grantSid) {")
    assert branch[at + 1] == by_sid
    # Not found by the SID: gone, whatever else has the grant's name now (nothing is moved).
    assert branch[at + 2] == 'if (-not $account) { Refuse 9 "passport: no account $grantSid (made as $user) here" }'
    assert branch[at + 3] == "} else {"  # the name only for a grant made ready before creates reported a SID
    # The account moved is the one found, by its SID: never a lookup by the name at the move.
    setter = (
        "Set-ADUser -Identity $account.SID.Value -AccountExpirationDate $expires"
        if domain_controller
        else "Set-LocalUser -SID $account.SID -AccountExpires $expires"
    )
    assert [line for line in branch if line.startswith("Set-")] == [setter]


@KINDS
def test_an_extension_refuses_an_account_renamed_or_without_the_marker_before_it_moves_anything(
    domain_controller: bool,
) -> None:
    branch = _expiry_branch(_extend(domain_controller=domain_controller), domain_controller=domain_controller)
    lines = script_lines(branch)
    name = "SamAccountName" if domain_controller else "Name"
    renamed = lines.index(f"if ($account.{name} -ne $user) {{")
    assert re.fullmatch(
        r'Refuse 3 "refusing: the account \$\(\$account\.SID\.Value\) made as \$user was renamed.*"', lines[renamed + 1]
    )
    unmarked = lines.index("if ($account.Description -ne $marker) {")
    assert re.fullmatch(r"Refuse 3 \"refusing: \$user no longer carries Passport's marker.*\"", lines[unmarked + 1])
    # Refused for good by the same rules the removal leaves such an account by, before the move; the
    # account's new name (the user's text) is never written.
    assert branch.index("Refuse 3") < branch.index("Set-")
    assert f"$account.{name})" not in branch


@KINDS
def test_an_extension_of_a_grant_made_before_creates_reported_a_sid_goes_by_the_name(domain_controller: bool) -> None:
    script = _extend(domain_controller=domain_controller, account_sid="")
    assert "$grantSid = ''" in script_lines(script)
    by_name = (
        "$account = Get-ADUser -Filter \"SamAccountName -eq '$user'\" -Properties Description"
        if domain_controller
        else "$account = Get-LocalUser -Name $user -ErrorAction SilentlyContinue"
    )
    assert by_name in script_lines(_expiry_branch(script, domain_controller=domain_controller))


@pytest.mark.parametrize("value", [SID + "'; Remove-LocalUser Administrator; '", "S-1-5-32-544", SID + "\n", "x"])
def test_an_extension_is_never_given_anything_but_an_accounts_sid(value: str) -> None:
    with pytest.raises(UnsafeScriptValue):
        _extend(domain_controller=False, account_sid=value)
