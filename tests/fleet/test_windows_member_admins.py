"""A member server's create script without administrator rights, read as text (no PowerShell here):
a local group holding a principal every user Passport makes is in.

The user is put in Remote Desktop Users only, and taken out of every other local group. But Windows
puts every local user in Everyone, Authenticated Users, Users, INTERACTIVE and the machine's own
group of relative id 513 by itself (and more, by logon), and Passport puts it in Remote Desktop
Users: should one of them (or a domain's Domain Users) be in Administrators, Backup Operators or any
local group but a few that give nothing more, the user would have that group's rights whatever its
request said. Such a host is refused for good, as a domain controller's group not allowed is, by the
same shape of check (``fleet.windows_privilege``)."""

from __future__ import annotations

import re

import pytest

from fleet.windows_privilege import (
    MEMBER_ALLOWED_GROUP_SIDS,
    MEMBER_BROAD_RID_PATTERN,
    MEMBER_BROAD_SIDS,
    PRIVILEGE_REFUSED_EXIT_CODE,
)
from requests_app.services.provisioning.settle import FINAL_EXIT_CODES
from tests.fleet.windows_script import ps_function, script_lines, windows_create


def _broad_sids(script: str) -> set[str]:
    (listed,) = [line for line in script_lines(script) if line.startswith("$broadSids = @(")]
    return set(re.findall(r"'(S-[0-9-]+)'", listed))


# The principals the brief of this check names, and what each is.
BROAD = {
    "S-1-1-0": "Everyone",
    "S-1-5-11": "Authenticated Users",
    "S-1-5-4": "INTERACTIVE",
    "S-1-5-32-545": "Users",
    "S-1-5-32-555": "Remote Desktop Users",
}


# What a local account's logon token holds besides (whoami /groups): NETWORK for a logon over the
# network, CONSOLE LOGON at the console, This Organization, and NTLM Authentication, since local
# accounts are authenticated by NTLM (Remote Desktop with Network Level Authentication too). Either
# of the last two in Administrators made every grant without administrator rights an administrator.
TOKEN = {
    "S-1-5-2": "NETWORK",
    "S-1-2-1": "CONSOLE LOGON",
    "S-1-5-15": "This Organization",
    "S-1-5-64-10": "NTLM Authentication",
}


def test_member_broad_list_holds_every_sid_of_a_local_accounts_token() -> None:
    missing = set(TOKEN) - set(MEMBER_BROAD_SIDS)
    assert not missing, f"not looked for: {sorted(missing)}"
    assert set(TOKEN) <= _broad_sids(windows_create())


def test_a_principal_every_local_user_is_in_is_looked_for_in_the_local_groups() -> None:
    script = windows_create()
    assert set(BROAD) <= _broad_sids(script)
    find = script_lines(ps_function(script, "BroadGroupMember"))
    # Every local group, each by its SID (Windows translates names), its members through CIM: a member
    # that no longer resolves does not fail the whole read, as Get-LocalGroupMember would.
    assert '$localGroups = @(Get-CimInstance Win32_Group -Filter "LocalAccount = TRUE")' in find
    assert "if (-not ($localGroups | Where-Object { [string]$_.SID -eq 'S-1-5-32-544' })) {" in find
    assert any(
        "Get-CimAssociatedInstance -InputObject $localGroup -Association Win32_GroupUser" in line for line in find
    )
    assert not [line for line in script_lines(script) if "Get-LocalGroupMember" in line and not line.startswith("#")]
    # Domain Users of any domain, and the machine's own group of relative id 513 (every local user's).
    (match,) = [line for line in find if line.startswith("if ($broadSids -contains $memberSid")]
    pattern = re.search(r"-match '([^']+)'", match)
    assert pattern is not None
    for sid in ("S-1-5-21-1004336348-1177238915-682003330-513", "S-1-5-21-1-2-3-513"):
        assert re.match(pattern.group(1), sid)
    for sid in ("S-1-5-21-1-2-3-512", "S-1-5-21-1-2-3-5130", "S-1-5-32-544", "S-1-5-21-1-2-3-1513"):
        assert not re.match(pattern.group(1), sid)


# Groups whose rights every user made here may have: Users, Remote Desktop Users (Passport puts the
# user in it), Guests (less than Users), Certificate Service DCOM Access (connecting to a
# certification authority). Any other, however named, is looked at.
ALLOWED_GROUPS = {
    "S-1-5-32-545": "Users",
    "S-1-5-32-555": "Remote Desktop Users",
    "S-1-5-32-546": "Guests",
    "S-1-5-32-574": "Certificate Service DCOM Access",
}


def test_member_check_looks_beyond_administrators() -> None:
    # A broad principal in Backup Operators (every file), Hyper-V Administrators, Remote Management
    # Users, Power Users ... gives every user made here that group's rights; an earlier admin grant's
    # user can leave exactly that behind, and the create removes only the user's own memberships.
    script = windows_create()
    find = script_lines(ps_function(script, "BroadGroupMember"))
    loop = find.index("foreach ($localGroup in $localGroups) {")
    assert find[loop + 1] == "if ($allowedGroupSids -contains [string]$localGroup.SID) { continue }"
    assert find[loop + 4 : loop + 8] == [
        "foreach ($member in @($members)) {",
        "$memberSid = [string]$member.SID",
        "if ($broadSids -contains $memberSid -or $memberSid -match '" + MEMBER_BROAD_RID_PATTERN + "') {",
        "return [pscustomobject]@{ Group = $localGroup; Member = $member }",
    ]
    (listed,) = [line for line in script_lines(script) if line.startswith("$allowedGroupSids = @(")]
    assert set(re.findall(r"'(S-[0-9-]+)'", listed)) == set(ALLOWED_GROUPS) == set(MEMBER_ALLOWED_GROUP_SIDS)
    for dangerous in ("S-1-5-32-544", "S-1-5-32-551", "S-1-5-32-547", "S-1-5-32-578", "S-1-5-32-580"):
        assert dangerous not in listed


def test_one_found_refuses_for_good_naming_it_through_shown_and_disables_the_user_first() -> None:
    refuse = script_lines(ps_function(windows_create(), "RefuseIfBroadMember"))
    assert refuse[1:3] == ["$group = BroadGroupMember", "if (-not $group) { return }"]
    disable = refuse.index(
        "if (Get-LocalUser -Name $user -ErrorAction SilentlyContinue) { Disable-LocalUser -Name $user }"
    )
    found = re.fullmatch(
        r"Refuse (\d+) \(\"refusing: the local group \$\(Shown \$group\.Group\.Name\) .*",
        refuse[disable + 1],
    )
    assert found, refuse[disable + 1]
    # The code a domain controller's group not allowed refuses with: final, another run finds the same.
    assert int(found.group(1)) == PRIVILEGE_REFUSED_EXIT_CODE == 7 and 7 in FINAL_EXIT_CODES
    dc_refuse = script_lines(ps_function(windows_create(domain_controller=True), "RefuseIfNotAllowed"))
    assert dc_refuse[disable + 1].startswith(f"Refuse {PRIVILEGE_REFUSED_EXIT_CODE} (")
    # One shape for both: the same steps in the same order, only what is found and said differs.
    assert [line.split(" ")[0] for line in refuse[1:5]] == [line.split(" ")[0] for line in dc_refuse[1:5]]
    # A name from the host is never put in the message as it is.
    assert not re.findall(r"\$\(\$[A-Za-z]+\.Name\)", windows_create())


def test_shown_is_the_domain_controllers_own() -> None:
    assert ps_function(windows_create(), "Shown") == ps_function(windows_create(domain_controller=True), "Shown")


def test_administrators_is_looked_at_before_the_user_is_made_or_its_password_set_and_again_after() -> None:
    script = windows_create()
    calls = [at for at, line in enumerate(script.splitlines()) if line == "RefuseIfBroadMember"]
    assert len(calls) == 2
    lines = script.splitlines()
    first, last = calls
    made = next(at for at, line in enumerate(lines) if "New-LocalUser" in line)
    password = next(at for at, line in enumerate(lines) if "Set-LocalUser -Name $user -Password" in line)
    demoted = next(at for at, line in enumerate(lines) if "Remove-LocalGroupMember" in line)
    ended = next(at for at, line in enumerate(lines) if "Stop-Process" in line)
    sid = next(at for at, line in enumerate(lines) if line.startswith("$accountSid ="))
    assert first < made and first < password
    # Once its groups are set, before what it runs is ended and before the SID is written: a refused
    # create writes no SID, so the portal never makes it ready.
    assert demoted < last < ended < sid


@pytest.mark.parametrize("domain_controller", [False, True])
def test_a_create_with_admin_rights_or_on_a_domain_controller_has_no_such_check(domain_controller: bool) -> None:
    assert "RefuseIfBroadMember" not in windows_create(admin_rights=True, domain_controller=domain_controller)
    assert "RefuseIfBroadMember" not in windows_create(domain_controller=True)
