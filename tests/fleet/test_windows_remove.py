"""The Windows removal script, read as text (no PowerShell here): what each branch does, in order.

On a domain controller the user may hold Domain Admins, and a logon token keeps the groups it
was made with until its processes exit, so removing the account alone would leave whatever the
user still runs there with Domain Admins. The domain branch therefore disables the account,
takes it out of Domain Admins and Passport's group, ends its processes, logs off its sessions,
and only then deletes it and its profile, as the member-server branch does for a local user.

Both branches end what the user runs in rounds, until nothing is left (a process may start
another meanwhile); what survives ends the script with exit 4 before the account is deleted, and
the portal tries again later. On a domain controller a domain user may also have added computer
accounts (ms-DS-MachineAccountQuota): those it created are deleted with it, and named.
"""

from __future__ import annotations

import re

import pytest

from core.usernames import InvalidUsername
from fleet.scripts import REMOVAL_REFUSED_EXIT_CODE, UnsafeScriptValue, deleted_computer_accounts, render_remove

DC_USERNAME = "rs-abcdefgh-wxyz"
USERNAME = "rs-abcdefgh"
ROLE = "$onDomainController = (Get-CimInstance Win32_ComputerSystem).DomainRole -ge 4"
# Where a branch starts on the account it found (by its SID, or its name).
ACCOUNT_STEPS = "if ($account) {\n    $sid = $account.SID.Value"


def _domain_branch(script: str) -> str:
    start = script.index("if (('yes' -eq 'yes') -or $onDomainController) {")
    return script[start : script.index("\n} else {\n", start)]


def _local_branch(script: str) -> str:
    start = script.index("if (('no' -eq 'yes') -or $onDomainController) {")
    return script[script.index("\n} else {\n", start) :]


def _member_remove() -> str:
    return render_remove(platform="windows", username=USERNAME, domain_controller=False)


def _dc_remove() -> str:
    return render_remove(platform="windows", username=DC_USERNAME, domain_controller=True)


def _branch(*, domain_controller: bool) -> str:
    """The branch that removes the user of a grant of that kind, on a host of that kind."""
    return _domain_branch(_dc_remove()) if domain_controller else _local_branch(_member_remove())


# The steps of the domain branch, in the order they must run.
DOMAIN_STEPS = [
    "$account.Description -ne $marker",  # never a user Passport did not make
    "Disable-ADAccount -Identity $sid",  # no new logon from here on
    "Remove-ADGroupMember -Identity $domainAdmins -Members $sid -Confirm:$false",
    "Remove-ADGroupMember -Identity $rdpGroup -Members $sid -Confirm:$false",
    "Stop-Process -Id $process.ProcessId -Force",  # what still runs with the old token
    "query user 2>$null",
    "logoff $sessionId",
    "exit 4",  # what survived: tried again later, the account left disabled
    "Remove-ADObject -Identity $computer -Recursive -Confirm:$false",  # the computers it made
    "Remove-ADUser -Identity $sid -Confirm:$false",
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


@pytest.mark.parametrize("domain_controller", [True, False], ids=["domain-controller", "member-server"])
def test_the_removal_ends_only_the_users_own_processes(domain_controller: bool) -> None:
    """By the owner's SID: a same-named account of another domain (or a local one on a member
    server of the domain) is never touched."""
    branch = _branch(domain_controller=domain_controller)
    assert "$sid = $account.SID.Value" in branch
    # A process gone between listing and asking for its owner does not stop the removal: every
    # owner is asked for with -ErrorAction SilentlyContinue, under $ErrorActionPreference = 'Stop'.
    calls = re.findall(r"Invoke-CimMethod[^\n]*", branch)
    assert calls == [
        "Invoke-CimMethod -InputObject $_ -MethodName GetOwnerSid -ErrorAction SilentlyContinue).Sid -eq $sid"
    ]


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
    # The session's user must be this user exactly (by the grant's name or the account's own now),
    # and one of the account's own processes must run in it (test_a_session_is_logged_off_only_...).
    assert "if (($sessionNames -contains $Matches[1]) -and ($ownSessions -contains [int]$Matches[2])) {" in lines
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
    assert relaxed < branch.index("query user 2>$null") < branch.index("logoff $sessionId") < restored
    # And what they leave in $LASTEXITCODE is not the script's outcome.
    assert _dc_remove().rstrip().endswith("exit 0")


def _unmarked(branch: str) -> list[str]:
    """What a branch does with an account of the user's name, found by its name (no SID known), whose
    description is not the marker."""
    start = branch.index("} elseif ($account.Description -ne $marker) {", branch.index("} elseif ($named) {"))
    return _lines(branch[start : branch.index("\n    }\n", start) + 6])


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


@pytest.mark.parametrize(
    ("domain_controller", "disable"),
    [(True, "Disable-ADAccount -Identity $sid"), (False, "Disable-LocalUser -SID $sid")],
    ids=["domain-controller", "member-server"],
)
def test_an_unmarked_account_the_grant_made_is_disabled_and_left_with_its_own_exit_code(
    domain_controller: bool, disable: str
) -> None:
    """A user with administrator rights may change its own description: the account of a grant that
    made it is then not deleted (it may no longer be Passport's to delete), nor called removed, but
    taken through the removal's steps up to the deletion (disabled, on a domain controller out of
    Domain Admins and Passport's group, what it runs ended and its sessions logged off: a disabled
    account's logons go on, and could enable it again), then left with its own exit code for an
    operator. One the grant never made is someone else's: left alone, untouched."""
    branch = _branch(domain_controller=domain_controller)
    assert _unmarked(branch) == [
        "} elseif ($account.Description -ne $marker) {",
        'if (-not $madeByGrant) { Write-Output "passport: $user is not a Passport user; left untouched"; exit 0 }',
        "$left = \"passport: $user was left here, disabled: it no longer carries Passport's marker (its description "
        'was changed), so it is not deleted; an operator must remove it"',
        "}",
    ]
    assert branch.index("$left = ''") < branch.index("} elseif ($account.Description -ne $marker)")
    left = branch.index("if ($left) {")
    assert _lines(branch[left : branch.index("}", left) + 1]) == [
        "if ($left) {",
        "[Console]::Error.WriteLine($left)",
        f"exit {REMOVAL_REFUSED_EXIT_CODE}",
        "}",
    ]
    # After every step that takes its use away, before any that deletes.
    for step in (disable, "Stop-Process", "logoff", *(["Remove-ADGroupMember"] if domain_controller else [])):
        assert branch.index(step) < left, step
    for step in ("Remove-ADUser", "Remove-LocalUser"):
        assert step not in branch or branch.index(step) > left, step
    assert REMOVAL_REFUSED_EXIT_CODE not in (0, 1, 4)  # neither done nor a failure tried again as any other


@pytest.mark.parametrize("created", [True, False])
def test_whether_the_grant_made_the_account_is_the_portals_to_say(created: bool) -> None:
    script = render_remove(platform="windows", username=USERNAME, created=created)
    flag = [line for line in _lines(script) if line.startswith("$madeByGrant =")]
    assert flag == [f"$madeByGrant = '{'yes' if created else 'no'}' -eq 'yes'"]
    assert script.index("$madeByGrant =") < script.index("$account = ")


def test_the_domain_removal_never_touches_a_user_passport_did_not_make() -> None:
    branch = _domain_branch(_dc_remove())
    check = branch.index("$account.Description -ne $marker")
    assert "exit 0" in branch[check : branch.index(ACCOUNT_STEPS)]
    changes = [
        "Remove-ADGroupMember",
        "Stop-Process",
        "logoff",
        "Remove-ADObject",
        "Remove-ADUser",
        "Remove-CimInstance",
    ]
    assert all(branch.index(change) > check for change in changes)


def test_every_change_to_the_account_waits_for_it_to_exist() -> None:
    """A second run finds no account: it changes nothing but a profile left behind."""
    branch = _domain_branch(_dc_remove())
    exists = branch.index(ACCOUNT_STEPS)
    end = branch.index("Remove-ADUser")
    # Nothing before it disables anything (an unmarked account of this grant's goes through it too).
    assert "Disable-ADAccount" not in branch[:exists]
    for step in ("Disable-ADAccount", "Remove-ADGroupMember", "Stop-Process", "logoff"):
        assert exists < branch.index(step, exists) < end
    for step in ("Remove-ADGroupMember", "Stop-Process", "logoff"):
        assert exists < branch.index(step)


def test_the_member_server_removal_takes_every_step_in_order() -> None:
    branch = _local_branch(_member_remove())
    order = [
        "$account.Description -ne $marker",
        "Disable-LocalUser -SID $sid",
        "Stop-Process -Id $process.ProcessId -Force",
        "query user 2>$null",
        "logoff $sessionId",  # as on a domain controller: its sessions too
        "exit 4",
        "Remove-LocalUser -SID $sid",
        "Remove-CimInstance",
    ]
    positions = [branch.find(step) for step in order]
    assert -1 not in positions, [step for step, at in zip(order, positions, strict=True) if at < 0]
    assert positions == sorted(positions)


# --- the host's role: never the member-server branch on a domain controller -----------------


def test_a_member_server_grant_is_removed_as_a_domain_user_on_a_domain_controller() -> None:
    """Before the create scripts checked the host's role, a domain controller without its tag got
    the member-server create, whose account cmdlets made a domain user there (in the domain's
    Administrators with admin rights). Its removal runs the directory branch on such a host."""
    script = _member_remove()
    role = script.index(ROLE)
    branch = script.index("if (('no' -eq 'yes') -or $onDomainController) {")
    assert role < branch
    # Nothing touches an account before the role is known.
    for command in ("Get-LocalUser", "Disable-LocalUser", "Get-ADUser", "Import-Module ActiveDirectory"):
        assert script.index(command) > branch
    # The directory branch removes only a Passport user of that name, as for a domain grant.
    assert "$account.Description -ne $marker" in _domain_branch(_dc_remove())


def test_a_domain_controller_without_the_directory_module_fails_the_removal_and_skips_nothing() -> None:
    """Only a host that is no domain controller may conclude from a missing module that no domain
    user was made there; a domain controller without it fails (retried), saying why."""
    branch = _domain_branch(_dc_remove())
    missing = branch.index("if (-not (Get-Module -ListAvailable -Name ActiveDirectory)) {")
    on_dc = branch.index("if ($onDomainController) {", missing)
    assert on_dc < branch.index("exit 1", on_dc) < branch.index("exit 0", missing)
    assert "has no ActiveDirectory module to remove $user with" in branch[on_dc : branch.index("exit 1", on_dc)]


# --- until nothing the user runs is left ----------------------------------------------------


@pytest.mark.parametrize(
    ("domain_controller", "disable", "remover"),
    [
        (True, "Disable-ADAccount -Identity $sid", "Remove-ADUser"),
        (False, "Disable-LocalUser -SID $sid", "Remove-LocalUser"),
    ],
    ids=["domain-controller", "member-server"],
)
def test_the_removal_ends_the_users_processes_in_rounds_and_retries_if_any_survive(
    domain_controller: bool, disable: str, remover: str
) -> None:
    branch = _branch(domain_controller=domain_controller)
    loop = branch.index("for ($round = 1; $round -le 10; $round++) {")
    body = branch[loop : branch.index("\n    }\n", loop)]
    # Each round disables the account again (a process running as an administrator could have
    # enabled it), lists the user's processes, ends them, and logs off its sessions.
    steps = [disable, "$running = @(Get-CimInstance Win32_Process", "Stop-Process", "logoff $sessionId"]
    assert [body.index(step) for step in steps] == sorted(body.index(step) for step in steps)
    assert "if ($running.Count -eq 0) { break }" in body
    assert "Start-Sleep -Seconds 2" in body
    # What is still running after the last round: exit 4 (the portal retries a failed removal),
    # before the account is deleted, so the next run still finds it, disabled, and goes on.
    left = branch.index("if ($running.Count -gt 0) {", loop)
    assert "exit 4" in branch[left : branch.index("}", left)]
    assert left < branch.index(remover)


def test_query_and_logoff_on_a_member_server_cannot_stop_the_script_with_what_they_write_to_stderr() -> None:
    branch = _local_branch(_member_remove())
    relaxed = branch.index("$ErrorActionPreference = 'Continue'")
    restored = branch.index("$ErrorActionPreference = 'Stop'", relaxed)
    assert relaxed < branch.index("query user 2>$null") < branch.index("logoff $sessionId") < restored


# --- the computer accounts a domain user made ----------------------------------------------


def test_the_domain_removal_deletes_the_computer_accounts_the_user_created() -> None:
    """A domain user may add ms-DS-MachineAccountQuota computer accounts (10 by default) with
    passwords it picks; they are principals of the domain and would outlive the user. AD records
    their creator in ms-DS-CreatorSID when the quota was what allowed it."""
    branch = _domain_branch(_dc_remove())
    lines = [line.strip() for line in branch.splitlines()]
    assert "$sid = $account.SID.Value" in lines
    found = (
        "$created = @(Get-ADComputer -LDAPFilter '(mS-DS-CreatorSID=*)' -Properties 'mS-DS-CreatorSID' |",
        "Where-Object { $_.'mS-DS-CreatorSID'.Value -eq $creatorSid })",
    )
    assert all(line in lines for line in found)
    assert "foreach ($computer in $created) {" in lines
    # With what it holds (-Recursive), and each one named in the output for the Logbook.
    assert "Remove-ADObject -Identity $computer -Recursive -Confirm:$false" in lines
    assert 'Write-Output "passport: deleted computer account: $($computer.SamAccountName)"' in lines
    # While the account still exists (its SID found it), after what it runs was ended.
    assert branch.index("exit 4") < branch.index("Remove-ADObject") < branch.index("Remove-ADUser")
    assert "Get-ADComputer" not in _local_branch(_member_remove())


@pytest.mark.parametrize(
    ("output", "names"),
    [
        ("passport: rs-x removed\r\n", []),
        ("", []),
        ("passport: deleted computer account:\r\npassport: deleted computer account:   \r\n", []),
        (
            "passport: deleted computer account: EVIL01$\r\npassport: deleted computer account: EVIL02$\r\n"
            "passport: rs-abcdefgh-wxyz removed\r\n",
            ["EVIL01$", "EVIL02$"],
        ),
        # The names are the user's own text: kept as written (the Logbook shows them through
        # visible()), each cut to 64 characters.
        ("passport: deleted computer account: \u202eexe.TAB$\x1b[2J\n", ["\u202eexe.TAB$\x1b[2J"]),
        ("passport: deleted computer account: " + "A" * 500 + "\n", ["A" * 64]),
        # A name holding another kind of line break cannot make a second, made-up entry.
        (
            "passport: deleted computer account: X$\u2028passport: deleted computer account: DC01$\r\n",
            ["X$\u2028passport: deleted computer account: DC01$"],
        ),
        ("".join(f"passport: deleted computer account: PC{n}$\n" for n in range(80)), [f"PC{n}$" for n in range(80)]),
        ("  passport: deleted computer account: X$\nsome passport: deleted computer account: Y$\n", []),
    ],
    ids=["none", "empty", "no-name", "two", "hostile", "long", "line-separator", "many", "not-at-line-start"],
)
def test_the_deleted_computer_accounts_are_read_from_the_output(output: str, names: list[str]) -> None:
    assert deleted_computer_accounts(output) == names


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


@pytest.mark.parametrize("domain_controller", [True, False], ids=["domain-controller", "member-server"])
def test_a_session_is_logged_off_only_if_the_accounts_own_processes_run_in_it(domain_controller: bool) -> None:
    # query user shows a session's user name with no domain: CORP\rs-abcdefgh's session on a member
    # server (or another domain's user of the name on a domain controller) matched the grant's name,
    # and was logged off. The sessions the account's processes (found by the owner's SID) run in
    # are read before they are ended, and a session is logged off only if it is one of them too.
    branch = _branch(domain_controller=domain_controller)
    lines = _lines(branch)
    own = lines.index("$ownSessions = @($running | ForEach-Object { [int]$_.SessionId })")
    assert lines.index("$running = @(Get-CimInstance Win32_Process | Where-Object {") < own
    assert own < next(at for at, line in enumerate(lines) if line.startswith("foreach ($process in $running)"))
    checks = [line for line in lines if "$Matches[1]" in line and "-contains" in line]
    assert checks == ["if (($sessionNames -contains $Matches[1]) -and ($ownSessions -contains [int]$Matches[2])) {"]
    assert lines[lines.index(checks[0]) + 1 : lines.index(checks[0]) + 3] == [
        "$sessionId = [int]$Matches[2]",
        "logoff $sessionId",
    ]


# --- the profile ------------------------------------------------------------------------------


@pytest.mark.parametrize("domain_controller", [True, False], ids=["domain-controller", "member-server"])
def test_removal_deletes_the_profile_of_the_accounts_sid_not_of_its_name(domain_controller: bool) -> None:
    # A profile's folder is named after the first account of its name to log on: when a domain user
    # CORP\rs-abcdefgh logged on first, C:\Users\rs-abcdefgh is its, and the grant's local account got
    # C:\Users\rs-abcdefgh.HOST. A profile found by its path deleted the other account's.
    script = render_remove(
        platform="windows",
        username=DC_USERNAME if domain_controller else USERNAME,
        domain_controller=domain_controller,
        account_sid="S-1-5-21-1-2-3-1001",
        created=True,
    )
    branch = _domain_branch(script) if domain_controller else _local_branch(script)
    assert "$grantSid = 'S-1-5-21-1-2-3-1001'" in _lines(script)
    assert "LocalPath" not in script
    lines = _lines(branch)
    start = lines.index("$profileSid = if ($account) { $sid } else { $grantSid }")
    assert lines[start + 1 : start + 4] == [
        "if ($profileSid) {",
        "Get-CimInstance Win32_UserProfile | Where-Object { $_.SID -eq $profileSid } | Remove-CimInstance",
        "}",
    ]
    # After the account is deleted (a loaded profile cannot be), and only once: by the account's own
    # SID while it was found, else by the one its create reported; none by a name.
    remover = "Remove-ADUser" if domain_controller else "Remove-LocalUser"
    assert branch.index(remover) < branch.index("$profileSid =")
    assert [line for line in _lines(script) if "Win32_UserProfile" in line] == [lines[start + 2]] * 2
