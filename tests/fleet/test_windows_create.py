"""The Windows create scripts, read as text (no PowerShell here): the host's role, the demotion.

Which kind of host a grant is for was taken from the instance's ``PassportDomainController`` tag
when the request was made. A domain controller without the tag would get the member-server
script, and there the local account cmdlets make a domain user and S-1-5-32-544 is the domain's
Administrators; a member server with the tag would get the directory script. So each script asks
Windows what the host is before it touches an account, and refuses for good (exit 7) if that is
not what the request was approved for.

A create without administrator rights converges on a Remote Desktop user: out of every group
but Remote Desktop Users and Users, and whatever the user still runs (with a token made while it
was in more groups) ended, with the same loop the removal uses.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from fleet.scripts import render_create
from requests_app.services.provisioning.settle import FINAL_EXIT_CODES

USERNAME = "rs-abcdefgh"
DC_USERNAME = "rs-abcdefgh-wxyz"
GRANT_UID = "0b5e8c1e-6f0a-4c55-9d1e-2a7f3c9b8d41"
EXPIRES_AT = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)

ROLE = "(Get-CimInstance Win32_ComputerSystem).DomainRole"
# Every command that reads the password or touches an account or a group.
ACCOUNT_COMMANDS = [
    "Get-SSMParameter -Name",
    "Get-LocalUser",
    "New-LocalUser",
    "Set-LocalUser",
    "Enable-LocalUser",
    "LocalGroupMember",
    "Import-Module ActiveDirectory",
    "Get-ADUser",
    "New-ADUser",
    "Set-ADUser",
    "Set-ADAccountPassword",
    "ADGroup",
]
BOTH = pytest.mark.parametrize("admin_rights", [False, True])


def _create(*, domain_controller: bool, admin_rights: bool) -> str:
    return render_create(
        platform="windows",
        username=DC_USERNAME if domain_controller else USERNAME,
        expires_at=EXPIRES_AT,
        grant_uid=GRANT_UID,
        region="eu-west-1",
        domain_controller=domain_controller,
        admin_rights=admin_rights,
    )


def _refusal(script: str) -> tuple[str, int, str]:
    """The role check: its comparison with 4, the exit code it refuses with, and its message."""
    pattern = r"^if \(" + re.escape(ROLE) + r" (-ge|-lt) 4\) \{\n  Refuse (\d+) '([^'\n]+)'\n\}$"
    found = re.search(pattern, script, re.M)
    assert found, "the script never asks Windows whether the host is a domain controller"
    return found.group(1), int(found.group(2)), found.group(3)


# --- the host's role (F1) ------------------------------------------------------------------


@BOTH
def test_the_member_server_script_refuses_a_domain_controller_for_good(admin_rights: bool) -> None:
    script = _create(domain_controller=False, admin_rights=admin_rights)
    comparison, code, message = _refusal(script)
    assert (comparison, code) == ("-ge", 7)  # DomainRole 4 and 5 are the domain controllers
    assert code in FINAL_EXIT_CODES  # not retried: another run would find the same host
    assert "is a domain controller" in message and "approved for a member server" in message
    assert "PassportDomainController" in message  # the tag is what was wrong


@BOTH
def test_the_domain_controller_script_refuses_a_member_server_for_good(admin_rights: bool) -> None:
    script = _create(domain_controller=True, admin_rights=admin_rights)
    comparison, code, message = _refusal(script)
    assert (comparison, code) == ("-lt", 7)
    assert "is not a domain controller" in message and "PassportDomainController" in message


@BOTH
@pytest.mark.parametrize("domain_controller", [False, True])
def test_the_role_is_checked_before_the_password_is_read_or_any_account_touched(
    domain_controller: bool, admin_rights: bool
) -> None:
    script = _create(domain_controller=domain_controller, admin_rights=admin_rights)
    check = script.index(ROLE)
    # The refusal function it uses is defined before it, so the refusal reaches its exit code.
    assert script.index("function Refuse(") < check
    present = [command for command in ACCOUNT_COMMANDS if command in script]
    assert present
    assert all(script.index(command) > check for command in present), present


# --- what the user still runs after a demotion (F3) ---------------------------------------


def _after_demotion(script: str) -> str:
    return script[script.index("# No administrator rights") :]


@pytest.mark.parametrize("domain_controller", [False, True])
def test_a_process_that_exits_while_asked_for_its_owner_cannot_stop_the_demotion(domain_controller: bool) -> None:
    script = _create(domain_controller=domain_controller, admin_rights=False)
    calls = re.findall(r"Invoke-CimMethod[^\n]*", script)
    assert calls == [
        "Invoke-CimMethod -InputObject $_ -MethodName GetOwnerSid -ErrorAction SilentlyContinue).Sid -eq $sid"
    ]


@pytest.mark.parametrize("domain_controller", [False, True])
def test_the_users_processes_are_ended_whether_or_not_this_run_demoted_it(domain_controller: bool) -> None:
    """A run that demoted the user and died before ending its processes leaves nothing for the next
    run to demote: the processes are ended whenever the user has any, not only after a demotion."""
    tail = _after_demotion(_create(domain_controller=domain_controller, admin_rights=False))
    loop = tail.index("for ($round = 1; $round -le 10; $round++) {")
    # At the top level of the script: no condition (an `if (...) {` still open) comes before it.
    assert re.match(r"^for \(", tail[loop:]) and tail[loop - 1] == "\n"
    assert tail.count("{", 0, loop) == tail.count("}", 0, loop)
    # The SID the processes are matched by is the user's own.
    sid = "(Get-ADUser -Identity $user).SID.Value" if domain_controller else "(Get-LocalUser -Name $user).SID.Value"
    assert tail.index(f"$sid = {sid}") < loop
    assert tail.index("Stop-Process -Id $process.ProcessId -Force") > loop
    assert tail.index("logoff $sessionId") > loop


@pytest.mark.parametrize("domain_controller", [False, True])
def test_a_user_whose_processes_survive_ends_the_create_with_a_code_that_is_retried(domain_controller: bool) -> None:
    tail = _after_demotion(_create(domain_controller=domain_controller, admin_rights=False))
    left = tail.index("if ($running.Count -gt 0) {")
    assert "exit 4" in tail[left : tail.index("}", left)]
    assert 4 not in FINAL_EXIT_CODES
    assert tail.index("exit 4") < tail.index('Write-Output "passport: $user ready"')


@pytest.mark.parametrize("domain_controller", [False, True])
def test_a_create_with_admin_rights_ends_nothing(domain_controller: bool) -> None:
    script = _create(domain_controller=domain_controller, admin_rights=True)
    for absent in ("Stop-Process", "logoff", "GetOwner", "Remove-LocalGroupMember", "Remove-ADGroupMember"):
        assert absent not in script


# --- the groups a user without administrator rights keeps (F4) ----------------------------


def test_a_create_without_admin_rights_takes_the_user_out_of_every_other_local_group_by_sid() -> None:
    tail = _after_demotion(_create(domain_controller=False, admin_rights=False))
    lines = [line.strip() for line in tail.splitlines()]
    # Every local group, by SID (Windows translates the names), but the two the user keeps.
    assert "$usersGroup = 'S-1-5-32-545'" in lines
    assert "foreach ($group in @(Get-LocalGroup)) {" in lines
    assert "$groupSid = $group.SID.Value" in lines
    assert "if ($groupSid -eq $remoteDesktopUsers -or $groupSid -eq $usersGroup) { continue }" in lines
    # Removed, or found not a member: never decided by reading the group first (below).
    assert "try { Remove-LocalGroupMember -SID $groupSid -Member $user }" in lines
    assert "catch { if ($_.Exception.GetType().Name -ne 'MemberNotFoundException') { throw } }" in lines
    # Before what the user runs is ended: its new logons get the new groups, the old ones go.
    assert tail.index("Remove-LocalGroupMember") < tail.index("Stop-Process")
    assert "$remoteDesktopUsers = 'S-1-5-32-555'" in _create(domain_controller=False, admin_rights=False)


def test_a_create_with_admin_rights_takes_the_user_out_of_no_group() -> None:
    script = _create(domain_controller=False, admin_rights=True)
    assert "Get-LocalGroup)" not in script and "Remove-LocalGroupMember" not in script


@pytest.mark.parametrize("admin_rights", [False, True])
def test_no_member_server_create_decides_a_membership_by_reading_the_group(admin_rights: bool) -> None:
    # Get-LocalGroupMember fails for a whole group one of whose members no longer resolves (a
    # deleted domain account), and -ErrorAction SilentlyContinue made that failure read as "not a
    # member": a user an earlier admin grant put in Administrators stayed there on a grant without
    # admin rights, and an add to a group it was in already failed on every retry.
    script = _create(domain_controller=False, admin_rights=admin_rights)
    lines = [line.strip() for line in script.splitlines()]
    assert not [line for line in lines if "Get-LocalGroupMember" in line and not line.startswith("#")]
    adds = ["$remoteDesktopUsers"] + (["$administrators"] if admin_rights else [])
    for group in adds:
        at = lines.index(f"try {{ Add-LocalGroupMember -SID {group} -Member $user }}")
        # Only "already a member" is let through; any other error ends the script (retried). By the
        # exception's name: a catch clause's type literal must resolve before the module loads.
        assert lines[at + 1] == "catch { if ($_.Exception.GetType().Name -ne 'MemberExistsException') { throw } }"


# --- the password's hand-off ------------------------------------------------------------------


@pytest.mark.parametrize("domain_controller", [False, True])
@BOTH
def test_the_plaintext_password_is_never_bound_to_a_cmdlet_parameter(
    domain_controller: bool, admin_rights: bool
) -> None:
    # With PowerShell module logging on, every cmdlet's parameter bindings are written to the host's
    # event log (event 4103): ConvertTo-SecureString -AsPlainText -String would leave the password
    # there. It becomes a SecureString through a .NET call, which binds no parameter.
    script = _create(domain_controller=domain_controller, admin_rights=admin_rights)
    code = [line.strip() for line in script.splitlines() if not line.strip().startswith("#")]
    assert not [line for line in code if "ConvertTo-SecureString" in line or "-AsPlainText" in line]
    (start,) = [at for at, line in enumerate(code) if line.startswith("$password =")]
    assert code[start] == "$password = [Net.NetworkCredential]::new('', `"
    read = code[start + 1]
    assert read.startswith("(Get-SSMParameter -Name '") and read.endswith(").Value).SecurePassword")
    # Only $password (the SecureString) is ever passed on, to parameters that take one.
    passed = [line for line in code if "$password" in line and not line.startswith("$password =")]
    assert passed and all(
        re.search(r"-(Password|AccountPassword|NewPassword) \$password\b", line) for line in passed
    ), passed
