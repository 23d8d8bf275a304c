"""A domain controller's create script without administrator rights, read as text (no PowerShell
here): the groups its user reaches, through nested groups too.

Passport's Remote Desktop group is trusted by its name and description only. Once someone with
Domain Admins (an earlier grant's user with administrator rights, say) nests it in Domain Admins
or Administrators, every later grant without them would be made a domain administrator; and a
user Passport made before, found again, may have been put in any group, or given another primary
group. So the script looks at what Passport's group, Domain Users and the user reach, by the
in-chain matching rule, before the user is made or its password set; an existing user first
leaves every group but those two; and any group reached but Passport's, Remote Desktop Users, Domain
Users and Users refuses the grant for good. An allow-list: DnsAdmins, Exchange Windows Permissions
or a group someone delegated rights to have no fixed SID a deny-list could hold.
"""

from __future__ import annotations

import re
import unicodedata

import pytest

from fleet.windows_domain import DOMAIN_TOKEN_SIDS, PRINCIPALS_ALLOWED_BUILTIN_SIDS
from requests_app.services.provisioning.settle import FINAL_EXIT_CODES
from tests.fleet.windows_script import ps_function, script_lines, windows_create

IN_CHAIN = "1.2.840.113556.1.4.1941"


def _body(script: str) -> str:
    """The script outside its two functions: what it runs, in order."""
    for name in ("Shown", "GroupNotAllowedReached", "RefuseIfNotAllowed", "RefuseIfPrincipalsReachNotAllowed"):
        script = script.replace(ps_function(script, name), "")
    return script


# A domain of the forest, and the groups of it these tests look at by SID.
DOMAIN_SID = "S-1-5-21-1004336348-1177238915-682003330"
PASSPORT_GROUP_SID = f"{DOMAIN_SID}-1142"
ALLOWED = {
    "$rdpGroup.SID.Value": PASSPORT_GROUP_SID,
    "'S-1-5-32-555'": "S-1-5-32-555",  # builtin Remote Desktop Users
    "'S-1-5-32-545'": "S-1-5-32-545",  # builtin Users
    "$domainUsers.SID.Value": f"{DOMAIN_SID}-513",
}


def _allowed_sids(script: str) -> set[str]:
    """The SIDs the script lets a user without administrator rights reach, its variables resolved
    as the domain above would resolve them (Passport's group found by name, Domain Users by SID)."""
    lines = script_lines(script)
    found = [at for at, line in enumerate(lines) if line.startswith("$allowedSids = @(")]
    assert len(found) == 1, "no single allow-list: any group not on a deny-list would be accepted"
    domain_users = '$domainUsers = Get-ADGroup -Identity "$((Get-ADDomain).DomainSID.Value)-513"'
    assert lines.index(domain_users) < found[0]  # this domain's Domain Users, by its whole SID
    listed = lines[found[0]].removeprefix("$allowedSids = @(").removesuffix(")")
    entries = [entry.strip() for entry in listed.split(",")]
    unknown = [entry for entry in entries if entry not in ALLOWED]
    assert not unknown, f"allowed beyond Passport's group, Remote Desktop Users, Users and Domain Users: {unknown}"
    return {ALLOWED[entry] for entry in entries}


def test_a_group_reached_is_accepted_only_if_its_sid_is_on_a_short_allow_list() -> None:
    reached = ps_function(windows_create(admin_rights=False, domain_controller=True), "GroupNotAllowedReached")
    lines = script_lines(reached)
    # Every group reached through nested groups (the in-chain rule follows member links to any
    # depth), the DN escaped for the LDAP filter: a backslash, *, ( or ) in it cannot change the filter.
    assert lines[1:4] == [
        "# LDAP_MATCHING_RULE_IN_CHAIN: every group $dn is a member of, through nested groups too. The DN",
        "# is escaped for the filter (RFC 4515).",
        "$value = $dn.Replace('\\', '\\5c').Replace('*', '\\2a').Replace('(', '\\28').Replace(')', '\\29')",
    ]
    # Any group whose SID is not on the list is returned: nothing else decides.
    assert lines[4:] == [
        f'foreach ($group in @(Get-ADGroup -LDAPFilter "(member:{IN_CHAIN}:=$value)")) {{',
        "if ($allowed -notcontains $group.SID.Value) { return $group }",
        "}",
        "return $null",
        "}",
    ]
    assert "Name" not in reached.replace("$group.SID", "")  # never told by a name


@pytest.mark.parametrize(
    ("group", "sid"),
    [
        # Privileged groups with no fixed SID: a relative id assigned when DNS or Exchange is set up,
        # or any group someone delegated rights over the domain to.
        ("DnsAdmins", f"{DOMAIN_SID}-1101"),
        ("Exchange Windows Permissions", f"{DOMAIN_SID}-1117"),
        ("a delegated admin group", f"{DOMAIN_SID}-4242"),
        ("Domain Admins", f"{DOMAIN_SID}-512"),
        ("Administrators", "S-1-5-32-544"),
        ("Server Operators", "S-1-5-32-549"),
        # Another domain's Domain Users and Passport group: allowed are this domain's, by whole SID.
        ("another domain's Domain Users", "S-1-5-21-1-2-3-513"),
        ("another domain's group with Passport's relative id", "S-1-5-21-1-2-3-1142"),
    ],
)
def test_any_other_group_reached_refuses_the_grant(group: str, sid: str) -> None:
    assert sid not in _allowed_sids(windows_create(admin_rights=False, domain_controller=True)), group


def test_the_groups_a_user_without_admin_rights_may_reach_are_those_passport_puts_it_in() -> None:
    # Passport's group and the builtin Remote Desktop Users it is nested in; Domain Users (its
    # primary group) and the builtin Users that Domain Users is a member of in every domain.
    assert _allowed_sids(windows_create(admin_rights=False, domain_controller=True)) == set(ALLOWED.values())


def test_a_group_not_allowed_refuses_for_good_naming_it_and_disables_the_user_first() -> None:
    refuse = script_lines(ps_function(windows_create(admin_rights=False, domain_controller=True), "RefuseIfNotAllowed"))
    assert refuse[1:3] == ["$group = GroupNotAllowedReached $dn $allowed", "if (-not $group) { return }"]
    disable = refuse.index(
        "if (Get-ADUser -Filter \"SamAccountName -eq '$user'\") { Disable-ADAccount -Identity $user }"
    )
    # The group by its name, as Shown writes it, and its SID.
    message = (
        r"Refuse (\d+) \(\"refusing: \$what is a member of \$\(Shown \$group\.Name\) \(\$\(\$group\.SID\.Value\)\).*"
    )
    found = re.fullmatch(message, refuse[disable + 1])
    assert found, refuse[disable + 1]
    assert int(found.group(1)) == 7 and 7 in FINAL_EXIT_CODES  # another run would find the same groups


def test_a_name_from_the_directory_reaches_the_refusal_only_through_shown() -> None:
    script = windows_create(admin_rights=False, domain_controller=True)
    # Group names are the host's (anyone who may edit a group may name it): none is put in a
    # message as it is, where a line break could fake lines of the output or push the refusal out
    # of the few last lines the portal keeps, and bidi or zero-width characters hide what it says.
    assert not re.findall(r"\$\(\$[A-Za-z]+\.Name\)", script)
    refusals = [line for line in script_lines(script) if "Refuse" in line and ".Name" in line]
    assert refusals and all(re.search(r"\$\(Shown \$[A-Za-z]+\.Name\)", line) for line in refusals), refusals
    domain_users_refused = (
        'RefuseIfNotAllowed $domainUsers.DistinguishedName "the group $(Shown $domainUsers.Name)" $allowedSids'
    )
    assert domain_users_refused in script_lines(script)


def test_shown_cuts_a_name_and_writes_every_hidden_character_as_its_code() -> None:
    shown = script_lines(ps_function(windows_create(admin_rights=False, domain_controller=True), "Shown"))
    code = [line for line in shown if not line.startswith("#")]
    assert code == [
        "function Shown([string]$text) {",
        "$hidden = @('Control', 'Format', 'LineSeparator', 'ParagraphSeparator')",
        "if ($text.Length -gt 64) { $text = $text.Substring(0, 64) + '...' }",
        "$shown = ''",
        "foreach ($char in $text.ToCharArray()) {",
        "$category = [string][Globalization.CharUnicodeInfo]::GetUnicodeCategory($char)",
        "if ($hidden -contains $category) { $shown += '\\u{0:x4}' -f [int]$char } else { $shown += $char }",
        "}",
        "return \"'$shown'\"",
        "}",
    ]


# .NET's names (System.Globalization.UnicodeCategory) of Unicode's general categories.
NET_CATEGORY = {
    "Cc": "Control",
    "Cf": "Format",
    "Zl": "LineSeparator",
    "Zp": "ParagraphSeparator",
    "Zs": "SpaceSeparator",
}


def test_shown_leaves_no_character_that_breaks_a_line_or_reorders_text() -> None:
    lines = script_lines(ps_function(windows_create(admin_rights=False, domain_controller=True), "Shown"))
    listed = next(line for line in lines if line.startswith("$hidden = @("))
    hidden = set(re.findall(r"'([A-Za-z]+)'", listed))
    # Every character the portal's summary of the output splits lines on, and the bidi overrides and
    # isolates, zero-width characters and the byte-order mark.
    breaks = [chr(code) for code in range(0x110000) if len(f"a{chr(code)}b".splitlines()) > 1]
    reorders = ["\u202e", "\u2066", "\u2069", "\u200b", "\u200f", "\ufeff"]
    assert breaks and all(NET_CATEGORY.get(unicodedata.category(char)) in hidden for char in breaks + reorders)
    # The same categories core.text.visible writes as codes (a lone surrogate aside: .NET sees each
    # half of a pair as one, and the pair is kept).
    assert {category for category, name in NET_CATEGORY.items() if name in hidden} == {"Cc", "Cf", "Zl", "Zp"}


def test_passports_group_and_domain_users_are_looked_at_before_the_user_is_made_or_its_password_set() -> None:
    body = _body(windows_create(admin_rights=False, domain_controller=True))
    lines = script_lines(body)
    checks = [
        lines.index('$domainUsers = Get-ADGroup -Identity "$((Get-ADDomain).DomainSID.Value)-513"'),
        lines.index('RefuseIfNotAllowed $rdpGroup.DistinguishedName "the group $rdpGroupName" $allowedSids'),
        lines.index(
            'RefuseIfNotAllowed $domainUsers.DistinguishedName "the group $(Shown $domainUsers.Name)" $allowedSids'
        ),
    ]
    assert checks == sorted(checks)
    # After Passport's group is found (or made) and put in the builtin Remote Desktop Users ...
    assert body.index("Add-ADGroupMember -Identity $builtinRdp -Members $rdpGroup") < body.index("RefuseIfNotAllowed")
    # ... and before anything is done to the user.
    for step in ("New-ADUser", "Set-ADAccountPassword", "Set-ADUser -Identity $user -AccountExpirationDate"):
        assert body.index(step) > body.index("RefuseIfNotAllowed $domainUsers"), step


def test_an_existing_user_leaves_every_group_but_passports_and_domain_users_then_is_looked_at() -> None:
    body = _body(windows_create(admin_rights=False, domain_controller=True))
    start = body.index("if ($existing) {\n")
    block = body[start : body.index("\n}\n", start) + 2]
    assert [line for line in script_lines(block) if not line.startswith("#")] == [
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
        'RefuseIfNotAllowed $account.DistinguishedName "the user $user" $allowedSids',
        "}",
    ]
    # All of it before its password is set and the account enabled.
    assert body.index("Set-ADAccountPassword") > start + len(block)


def test_the_user_is_looked_at_again_once_in_passports_group_before_anything_else() -> None:
    body = _body(windows_create(admin_rights=False, domain_controller=True))
    added = body.index("Add-ADGroupMember -Identity $rdpGroup -Members $user")
    last = body.index(
        "$userDn = (Get-ADUser -Identity $user).DistinguishedName\n"
        'RefuseIfNotAllowed $userDn "the user $user" $allowedSids\n'
        'RefuseIfNotAllowed $domainUsers.DistinguishedName "the group $(Shown $domainUsers.Name)" $allowedSids'
    )
    assert added < last < body.index("for ($round = 1;") < body.index('Write-Output "passport: $user ready"')


def test_domain_admins_is_never_named_without_admin_rights() -> None:
    script = windows_create(admin_rights=False, domain_controller=True)
    # No command that grants it, nor any mention: nothing but the allow-list decides.
    assert "-512" not in script and "$domainAdmins" not in script


@pytest.mark.parametrize(
    "command", ["GroupNotAllowedReached", "RefuseIfNotAllowed", "$allowedSids", "Remove-ADGroupMember", IN_CHAIN]
)
def test_a_create_with_admin_rights_checks_and_strips_nothing(command: str) -> None:
    script = windows_create(admin_rights=True, domain_controller=True)
    assert command not in script
    assert "Add-ADGroupMember -Identity $domainAdmins -Members $user" in script


# Well-known principals a domain user's token holds, which a directory group holds through a
# foreignSecurityPrincipal object (CN=<SID>,CN=ForeignSecurityPrincipals,<domain>): Authenticated
# Users and INTERACTIVE are in the builtin Users so by default.
TOKEN = {
    "S-1-1-0": "Everyone",
    "S-1-5-11": "Authenticated Users",
    "S-1-5-15": "This Organization",
    "S-1-5-4": "INTERACTIVE",
    "S-1-5-14": "Remote Interactive Logon",
}


def test_dc_check_looks_at_well_known_principals_memberships() -> None:
    # One such principal put in Administrators, Server Operators or DnsAdmins gives every domain user
    # that group, and no search from Passport's group, Domain Users or the user finds it.
    script = windows_create(admin_rights=False, domain_controller=True)
    lines = script_lines(script)
    (listed,) = [line for line in lines if line.startswith("$tokenSids = @(")]
    assert set(TOKEN) <= set(re.findall(r"'(S-[0-9-]+)'", listed)) == set(DOMAIN_TOKEN_SIDS)
    # Each principal's object, by its SID in the domain's own ForeignSecurityPrincipals container.
    assert "$foreignPrincipals = (Get-ADDomain).ForeignSecurityPrincipalsContainer" in lines
    look = script_lines(ps_function(script, "RefuseIfPrincipalsReachNotAllowed"))
    assert [line for line in look if not line.startswith("#")] == [
        "function RefuseIfPrincipalsReachNotAllowed() {",
        "foreach ($principalSid in $tokenSids) {",
        'foreach ($principal in @(Get-ADObject -LDAPFilter "(objectSid=$principalSid)" '
        "-SearchBase $foreignPrincipals)) {",
        'RefuseIfNotAllowed $principal.DistinguishedName "the well-known principal $principalSid" '
        "$principalAllowedSids",
        "}",
        "}",
        "}",
    ]
    # Allowed besides the user's own groups only where Windows puts them: Pre-Windows 2000
    # Compatible Access and Certificate Service DCOM Access.
    assert "$principalAllowedSids = $allowedSids + @('S-1-5-32-554', 'S-1-5-32-574')" in lines
    assert set(PRINCIPALS_ALLOWED_BUILTIN_SIDS) == {"S-1-5-32-554", "S-1-5-32-574"}
    # Before the user is made or its password set, and again in the last look.
    body = script_lines(_body(script))
    calls = [at for at, line in enumerate(body) if line == "RefuseIfPrincipalsReachNotAllowed"]
    assert len(calls) == 2
    assert calls[0] < min(at for at, line in enumerate(body) if "New-ADUser" in line or "Set-ADAccountPassword" in line)
    assert body.index('RefuseIfNotAllowed $userDn "the user $user" $allowedSids') < calls[1]
    assert calls[1] < body.index("for ($round = 1; $round -le 10; $round++) {")
