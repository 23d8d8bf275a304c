"""A domain controller's create script without administrator rights, read as text (no PowerShell
here): the groups its user reaches, through nested groups too.

Passport's Remote Desktop group is trusted by its name and description only. Once someone with
Domain Admins (an earlier grant's user with administrator rights, say) nests it in Domain Admins
or Administrators, every later grant without them would be made a domain administrator; and a
user Passport made before, found again, may have been put in any group, or given another primary
group. So the script looks at what Passport's group, Domain Users and the user reach, by the
in-chain matching rule, before the user is made or its password set; an existing user first
leaves every group but those two; and a privileged group anywhere refuses the grant for good.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from fleet.scripts import render_create
from fleet.windows_domain import PRIVILEGED_BUILTIN_SIDS, PRIVILEGED_DOMAIN_RIDS
from requests_app.services.provisioning.create import FINAL_EXIT_CODES

DC_USERNAME = "rs-abcdefgh-wxyz"
IN_CHAIN = "1.2.840.113556.1.4.1941"


def _dc_create(*, admin_rights: bool) -> str:
    return render_create(
        platform="windows",
        username=DC_USERNAME,
        expires_at=datetime(2030, 3, 4, 10, 0, tzinfo=UTC),
        grant_uid="0b5e8c1e-6f0a-4c55-9d1e-2a7f3c9b8d41",
        region="eu-west-1",
        domain_controller=True,
        admin_rights=admin_rights,
    )


def _lines(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines()]


def _function(script: str, name: str) -> str:
    """The body of the PowerShell function ``name``: from its line to the first closing brace at column 0."""
    start = script.index(f"function {name}(")
    return script[start : script.index("\n}\n", start) + 2]


def _body(script: str) -> str:
    """The script outside its two functions: what it runs, in order."""
    for name in ("PrivilegedGroupReached", "RefuseIfPrivileged"):
        script = script.replace(_function(script, name), "")
    return script


def test_the_privileged_groups_are_every_standard_one_by_sid() -> None:
    lines = _lines(_dc_create(admin_rights=False))
    # Of any domain of the forest, by relative id: Domain Admins, Schema, Enterprise Admins, Group
    # Policy Creator Owners, and what replicates every password (the domain controllers' groups).
    assert {498, 512, 516, 518, 519, 520, 521, 526, 527} <= set(PRIVILEGED_DOMAIN_RIDS)
    assert f"$privilegedRids = @({', '.join(map(str, PRIVILEGED_DOMAIN_RIDS))})" in lines
    # Administrators, Account, Server, Print and Backup Operators, and the other builtin ones.
    required = {"S-1-5-32-544", "S-1-5-32-548", "S-1-5-32-549", "S-1-5-32-550", "S-1-5-32-551", "S-1-5-32-552"}
    assert required <= set(PRIVILEGED_BUILTIN_SIDS)
    assert f"$privilegedBuiltin = @({', '.join(repr(sid) for sid in PRIVILEGED_BUILTIN_SIDS)})" in lines


def test_a_group_is_privileged_by_its_sid_whatever_it_is_called() -> None:
    reached = _function(_dc_create(admin_rights=False), "PrivilegedGroupReached")
    lines = _lines(reached)
    # Every group reached through nested groups (the in-chain rule follows member links to any
    # depth), the DN escaped for the LDAP filter: a backslash, *, ( or ) in it cannot change the filter.
    assert lines[1:4] == [
        "# LDAP_MATCHING_RULE_IN_CHAIN: every group $dn is a member of, through nested groups too. The DN",
        "# is escaped for the filter (RFC 4515).",
        "$value = $dn.Replace('\\', '\\5c').Replace('*', '\\2a').Replace('(', '\\28').Replace(')', '\\29')",
    ]
    assert lines[4] == f'foreach ($group in @(Get-ADGroup -LDAPFilter "(member:{IN_CHAIN}:=$value)")) {{'
    assert lines[5:8] == [
        "$groupSid = $group.SID.Value",
        "if ($privilegedBuiltin -contains $groupSid) { return $group }",
        # A domain's group (S-1-5-21-a-b-c-RID) of any domain of the forest, by its relative id.
        "if ($groupSid -match '^S-1-5-21-\\d+-\\d+-\\d+-(\\d+)$' -and $privilegedRids -contains [int]$Matches[1]) {",
    ]
    assert "Name" not in reached.replace("$group.SID", "")  # never told by a name


def test_a_privileged_group_refuses_for_good_naming_it_and_disables_the_user_first() -> None:
    refuse = _lines(_function(_dc_create(admin_rights=False), "RefuseIfPrivileged"))
    assert refuse[1:3] == ["$group = PrivilegedGroupReached $dn", "if (-not $group) { return }"]
    disable = refuse.index(
        "if (Get-ADUser -Filter \"SamAccountName -eq '$user'\") { Disable-ADAccount -Identity $user }"
    )
    message = r"Refuse (\d+) \(\"refusing: \$what is a member of \$\(\$group\.Name\) .*"
    found = re.fullmatch(message, refuse[disable + 1])
    assert found, refuse[disable + 1]
    assert int(found.group(1)) == 7 and 7 in FINAL_EXIT_CODES  # another run would find the same groups


def test_passports_group_and_domain_users_are_looked_at_before_the_user_is_made_or_its_password_set() -> None:
    body = _body(_dc_create(admin_rights=False))
    lines = _lines(body)
    checks = [
        lines.index('$domainUsers = Get-ADGroup -Identity "$((Get-ADDomain).DomainSID.Value)-513"'),
        lines.index('RefuseIfPrivileged $rdpGroup.DistinguishedName "the group $rdpGroupName"'),
        lines.index('RefuseIfPrivileged $domainUsers.DistinguishedName "the group $($domainUsers.Name)"'),
    ]
    assert checks == sorted(checks)
    # After Passport's group is found (or made) and put in the builtin Remote Desktop Users ...
    assert body.index("Add-ADGroupMember -Identity $builtinRdp -Members $rdpGroup") < body.index("RefuseIfPrivileged")
    # ... and before anything is done to the user.
    for step in ("New-ADUser", "Set-ADAccountPassword", "Set-ADUser -Identity $user -AccountExpirationDate"):
        assert body.index(step) > body.index("RefuseIfPrivileged $domainUsers"), step


def test_an_existing_user_leaves_every_group_but_passports_and_domain_users_then_is_looked_at() -> None:
    body = _body(_dc_create(admin_rights=False))
    start = body.index("if ($existing) {\n")
    block = body[start : body.index("\n}\n", start) + 2]
    assert [line for line in _lines(block) if not line.startswith("#")] == [
        "if ($existing) {",
        "$account = Get-ADUser -Identity $user -Properties MemberOf, PrimaryGroupID",
        # Its primary group (a membership no member attribute shows) is Domain Users again.
        "if ($account.PrimaryGroupID -ne 513) {",
        "if (@($account.MemberOf) -notcontains $domainUsers.DistinguishedName) {",
        "Add-ADGroupMember -Identity $domainUsers -Members $user",
        "}",
        "Set-ADUser -Identity $user -Replace @{ primaryGroupID = 513 }",
        "$account = Get-ADUser -Identity $user -Properties MemberOf, PrimaryGroupID",
        "}",
        # Out of every other group, each told by its SID.
        "foreach ($groupDn in @($account.MemberOf)) {",
        "$group = Get-ADGroup -Identity $groupDn",
        "$groupSid = $group.SID.Value",
        "if ($groupSid -eq $rdpGroup.SID.Value -or $groupSid -eq $domainUsers.SID.Value) { continue }",
        "Remove-ADGroupMember -Identity $group -Members $user -Confirm:$false",
        "}",
        # Then what it still reaches, through nested groups.
        'RefuseIfPrivileged $account.DistinguishedName "the user $user"',
        "}",
    ]
    # All of it before its password is set and the account enabled.
    assert body.index("Set-ADAccountPassword") > start + len(block)


def test_the_user_is_looked_at_again_once_in_passports_group_before_anything_else() -> None:
    body = _body(_dc_create(admin_rights=False))
    added = body.index("Add-ADGroupMember -Identity $rdpGroup -Members $user")
    last = body.index(
        '$userDn = (Get-ADUser -Identity $user).DistinguishedName\nRefuseIfPrivileged $userDn "the user $user"'
    )
    assert added < last < body.index("for ($round = 1;") < body.index('Write-Output "passport: $user ready"')


def test_domain_admins_is_never_named_without_admin_rights() -> None:
    script = _dc_create(admin_rights=False)
    # No command that grants it: the group is only ever a relative id in the refusal list.
    assert "-512" not in script and "$domainAdmins" not in script


@pytest.mark.parametrize("command", ["PrivilegedGroupReached", "RefuseIfPrivileged", "Remove-ADGroupMember", IN_CHAIN])
def test_a_create_with_admin_rights_checks_and_strips_nothing(command: str) -> None:
    script = _dc_create(admin_rights=True)
    assert command not in script
    assert "Add-ADGroupMember -Identity $domainAdmins -Members $user" in script
