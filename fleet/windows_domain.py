"""What a domain controller's create script without administrator rights checks of the groups its
user will reach; ``windows_scripts`` puts it in the script.

Passport's Remote Desktop group is found by its name and a description, which anyone who can edit
the group can keep while adding the group to Domain Admins, and an earlier grant with
administrator rights gave someone that right. Its user is also in Domain Users (its primary
group), and a user Passport made before may have been put anywhere meanwhile, its primary group
changed too (a membership no ``member`` attribute shows). So before the user is made, or an
existing one's password set, the script looks at every group Passport's group and Domain Users
are members of, directly or through nested groups: Active Directory's
LDAP_MATCHING_RULE_IN_CHAIN (``1.2.840.113556.1.4.1941``, [MS-ADTS] 3.1.1.3.4.4.3) follows the
``member`` links to any depth. An existing user goes back to Domain Users as its primary group and
out of every other group but Passport's, as a member server's user leaves every local group but
Remote Desktop Users and Users; then it is looked at the same way, and once more after it was put
in Passport's group. A group that gives administrator rights on the domain ends the script for
good (exit 7, another run would find the same), naming the group, and the user, if there is one,
is disabled first.

Groups are told by SID, never by name (Windows translates names, and whoever may rename a group
may name another so): those of any domain of the forest by their relative id, the builtin ones by
their whole SID. The in-chain search reads the domain controller's own domain: a nesting into a
group of another domain of the forest (its Enterprise Admins, held by the forest's root domain) is
seen only when the domain controller is in the forest's root domain, the usual single-domain case.
"""

from __future__ import annotations

# Groups of a domain that give rights over the domain, or the forest, by relative id: Enterprise
# Read-only Domain Controllers (498), Domain Admins (512), Domain Controllers (516, replication:
# every password), Cert Publishers (517), Schema Admins (518), Enterprise Admins (519), Group Policy
# Creator Owners (520), Read-only Domain Controllers (521), Key Admins (526) and Enterprise Key
# Admins (527, both write any account's key credentials).
PRIVILEGED_DOMAIN_RIDS = (498, 512, 516, 517, 518, 519, 520, 521, 526, 527)
# The builtin groups of a domain controller that do: Administrators, Account Operators, Server
# Operators, Print Operators (load drivers there), Backup Operators, Replicator, Network
# Configuration Operators, Incoming Forest Trust Builders, Hyper-V Administrators and Storage
# Replica Administrators.
PRIVILEGED_BUILTIN_SIDS = (
    "S-1-5-32-544",
    "S-1-5-32-548",
    "S-1-5-32-549",
    "S-1-5-32-550",
    "S-1-5-32-551",
    "S-1-5-32-552",
    "S-1-5-32-556",
    "S-1-5-32-557",
    "S-1-5-32-578",
    "S-1-5-32-582",
)

# Before the user is made or its password set; $existing, $rdpGroup and $rdpGroupName are the
# script's, and Refuse its function.
DOMAIN_NOT_ADMIN_CHECKS = (
    (
        r"""# No administrator rights: the user reaches no group that gives administrator rights on the
# domain, directly or through nested groups; groups told by SID. Its groups are Passport's and Domain
# Users (its primary group): both are looked at before the user is made or its password set.
$privilegedRids = @(__DOMAIN_RIDS__)
$privilegedBuiltin = @(__BUILTIN_SIDS__)
function PrivilegedGroupReached([string]$dn) {
  # LDAP_MATCHING_RULE_IN_CHAIN: every group $dn is a member of, through nested groups too. The DN
  # is escaped for the filter (RFC 4515).
  $value = $dn.Replace('\', '\5c').Replace('*', '\2a').Replace('(', '\28').Replace(')', '\29')
  foreach ($group in @(Get-ADGroup -LDAPFilter "(member:1.2.840.113556.1.4.1941:=$value)")) {
    $groupSid = $group.SID.Value
    if ($privilegedBuiltin -contains $groupSid) { return $group }
    if ($groupSid -match '^S-1-5-21-\d+-\d+-\d+-(\d+)$' -and $privilegedRids -contains [int]$Matches[1]) {
      return $group
    }
  }
  return $null
}
function RefuseIfPrivileged([string]$dn, [string]$what) {
  $group = PrivilegedGroupReached $dn
  if (-not $group) { return }
  # No logon with those rights: the user, made by an earlier run or this one, is disabled first.
  if (Get-ADUser -Filter "SamAccountName -eq '$user'") { Disable-ADAccount -Identity $user }
  Refuse 7 ("refusing: $what is a member of $($group.Name) ($($group.SID.Value)), directly or through " + `
    "nested groups, which gives administrator rights on the domain; this request has none. An " + `
    "administrator of the domain must take it out of that group, then ask again.")
}
$domainUsers = Get-ADGroup -Identity "$((Get-ADDomain).DomainSID.Value)-513"
RefuseIfPrivileged $rdpGroup.DistinguishedName "the group $rdpGroupName"
RefuseIfPrivileged $domainUsers.DistinguishedName "the group $($domainUsers.Name)"
if ($existing) {
  # An earlier run (or the user itself, while it had administrator rights) may have put it in other
  # groups, or made another one its primary group: Domain Users is made its primary group again,
  # then it leaves every group but that one and Passport's, each told by its SID.
  $account = Get-ADUser -Identity $user -Properties MemberOf, PrimaryGroupID
  if ($account.PrimaryGroupID -ne 513) {
    if (@($account.MemberOf) -notcontains $domainUsers.DistinguishedName) {
      Add-ADGroupMember -Identity $domainUsers -Members $user
    }
    Set-ADUser -Identity $user -Replace @{ primaryGroupID = 513 }
    $account = Get-ADUser -Identity $user -Properties MemberOf, PrimaryGroupID
  }
  foreach ($groupDn in @($account.MemberOf)) {
    $group = Get-ADGroup -Identity $groupDn
    $groupSid = $group.SID.Value
    if ($groupSid -eq $rdpGroup.SID.Value -or $groupSid -eq $domainUsers.SID.Value) { continue }
    Remove-ADGroupMember -Identity $group -Members $user -Confirm:$false
  }
  RefuseIfPrivileged $account.DistinguishedName "the user $user"
}
"""
    )
    .replace("__DOMAIN_RIDS__", ", ".join(str(rid) for rid in PRIVILEGED_DOMAIN_RIDS))
    .replace("__BUILTIN_SIDS__", ", ".join(f"'{sid}'" for sid in PRIVILEGED_BUILTIN_SIDS))
)

# Once the user is in Passport's group: a group changed since the checks above is seen here too.
DOMAIN_NOT_ADMIN_LAST_LOOK = r"""# A last look at what the user reaches, now that it is in Passport's group.
$userDn = (Get-ADUser -Identity $user).DistinguishedName
RefuseIfPrivileged $userDn "the user $user"
"""
