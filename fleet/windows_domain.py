"""What a domain controller's create script without administrator rights checks of the groups its
user will reach; ``windows_scripts`` puts it in the script.

Passport's Remote Desktop group is found by its name and a description, which anyone who can edit
the group can keep while nesting the group elsewhere, and an earlier grant with administrator
rights gave someone that right. Its user is also in Domain Users (its primary group), and a user
Passport made before may have been put anywhere meanwhile, its primary group changed too (a
membership no ``member`` attribute shows). So before the user is made, or an existing one's
password set, the script looks at every group Passport's group and Domain Users are members of,
directly or through nested groups: Active Directory's LDAP_MATCHING_RULE_IN_CHAIN
(``1.2.840.113556.1.4.1941``, [MS-ADTS] 3.1.1.3.4.4.3) follows the ``member`` links to any depth.
An existing user goes back to Domain Users as its primary group and out of every other group but
Passport's, as a member server's user leaves every local group but Remote Desktop Users and Users;
then it is looked at the same way, and once more (with Domain Users) after it was put in
Passport's group.

What may be reached is an allow-list, not a list of groups known to be dangerous: many groups that
give rights over the domain have no fixed SID (DnsAdmins, whose members load a DLL into the DNS
service that runs as SYSTEM on the domain controllers, gets its relative id when DNS is installed;
Exchange Windows Permissions, any group an administrator delegated rights to). A user without
administrator rights may reach only the groups Passport itself puts it in and what those are in
every domain: Passport's group, the builtin Remote Desktop Users Passport nests it in, Domain
Users (its primary group) and the builtin Users every domain puts Domain Users in. Any other group
ends the script for good (exit 7, another run would find the same), naming the group, and the user,
if there is one, is disabled first. A domain that put Domain Users in a group of its own (for a VPN,
say) has every grant without administrator rights refused until it is taken out: Passport cannot
tell what that group may do.

Every domain user's logon token also holds well-known principals (Authenticated Users, Everyone,
This Organization, INTERACTIVE ...), which a group holds through a foreignSecurityPrincipal object
(CN=<SID>,CN=ForeignSecurityPrincipals,<the domain's DN>): the builtin Users holds two so by
default. One put in Administrators or DnsAdmins gives every domain user that group, and no search
from Passport's group, Domain Users or the user would see it. So each such principal's object, when
there is one, is looked at the same way, allowed besides the groups above only where Windows puts
them: Pre-Windows 2000 Compatible Access and Certificate Service DCOM Access.

Groups are told by their whole SID, never by name (Windows translates names, and whoever may
rename a group may name another so); this domain's Domain Users and Passport's group only, never
another domain's with the same relative id. A group's name appears only in the refusal, through
``Shown``: it is the host's, and whoever may edit the group chose it. The in-chain search reads the
domain controller's own domain: a nesting into a group of another domain of the forest (its
Enterprise Admins, held by the forest's root domain) is seen only when the domain controller is in
the forest's root domain, the usual single-domain case.
"""

from __future__ import annotations

from fleet.windows_privilege import SHOWN_FUNCTION, TOKEN_SIDS, privilege_refusal

# The builtin groups a user without administrator rights may reach besides Passport's group and this
# domain's Domain Users: Remote Desktop Users (Passport's group is nested in it, which is how the
# user may log on) and Users (Domain Users is a member of it in every domain).
ALLOWED_BUILTIN_SIDS = ("S-1-5-32-555", "S-1-5-32-545")
# Well-known principals a domain user's logon token may hold (Microsoft's "Security identifiers"
# reference): Everyone, LOCAL, CONSOLE LOGON, NETWORK, INTERACTIVE, Remote Interactive Logon,
# Authenticated Users, This Organization (added by a domain controller to a directory account's),
# NTLM Authentication. They are no directory objects: a group holds one through a
# foreignSecurityPrincipal object named by its SID in the domain's ForeignSecurityPrincipals
# container (the builtin Users holds Authenticated Users and INTERACTIVE so by default), and one put
# in Administrators, Server Operators or DnsAdmins would give every domain user, Passport's too,
# that group.
DOMAIN_TOKEN_SIDS = TOKEN_SIDS
# Where those principals are by default besides the groups allowed above: Pre-Windows 2000
# Compatible Access (a backward compatibility group that may read every user and group of the
# domain; Authenticated Users is its member by default) and Certificate Service DCOM Access
# (connecting to the enterprise's certification authorities, which a certification authority's
# setup gives Authenticated Users). Reading the directory and asking for a certificate, every domain
# user may do anyway.
PRINCIPALS_ALLOWED_BUILTIN_SIDS = ("S-1-5-32-554", "S-1-5-32-574")
# A group not allowed refuses as a member server's broad local group member does (``windows_privilege``).
_REFUSE_IF_NOT_ALLOWED = privilege_refusal(
    name="RefuseIfNotAllowed",
    parameters="[string]$dn, [string]$what, [string[]]$allowed",
    find="GroupNotAllowedReached $dn $allowed",
    disable="""if (Get-ADUser -Filter "SamAccountName -eq '$user'") { Disable-ADAccount -Identity $user }""",
    message=(
        '"refusing: $what is a member of $(Shown $group.Name) ($($group.SID.Value)), directly or through " + `\n'
        '    "nested groups. Without administrator rights a Passport user may be in no group but Passport\'s, " + `\n'
        '    "Remote Desktop Users, Domain Users and Users (the well-known principals every domain user " + `\n'
        '    "holds also Pre-Windows 2000 Compatible Access and Certificate Service DCOM Access): any " + `\n'
        '    "other may give rights over the domain. An " + `\n'
        '    "administrator of the domain must take it out of that group, then ask again."'
    ),
)

# Before the user is made or its password set; $existing, $rdpGroup and $rdpGroupName are the
# script's, and Refuse its function.
DOMAIN_NOT_ADMIN_CHECKS = (
    (
        r"""# No administrator rights: the user reaches no group but Passport's, Remote Desktop Users, Domain
# Users (its primary group) and Users, directly or through nested groups, each told by its whole SID.
# Passport's group and Domain Users are looked at before the user is made or its password set.
__SHOWN_FUNCTION__function GroupNotAllowedReached([string]$dn, [string[]]$allowed) {
  # LDAP_MATCHING_RULE_IN_CHAIN: every group $dn is a member of, through nested groups too. The DN
  # is escaped for the filter (RFC 4515).
  $value = $dn.Replace('\', '\5c').Replace('*', '\2a').Replace('(', '\28').Replace(')', '\29')
  foreach ($group in @(Get-ADGroup -LDAPFilter "(member:1.2.840.113556.1.4.1941:=$value)")) {
    if ($allowed -notcontains $group.SID.Value) { return $group }
  }
  return $null
}
__REFUSE_IF_NOT_ALLOWED__function RefuseIfPrincipalsReachNotAllowed() {
  # The well-known principals every domain user may hold, each through its foreignSecurityPrincipal
  # object, found by its SID (a constant) in the domain's own container: a group they reach is
  # reached by the user too. A principal no group holds has no such object.
  foreach ($principalSid in $tokenSids) {
    foreach ($principal in @(Get-ADObject -LDAPFilter "(objectSid=$principalSid)" -SearchBase $foreignPrincipals)) {
      RefuseIfNotAllowed $principal.DistinguishedName "the well-known principal $principalSid" $principalAllowedSids
    }
  }
}
$domainUsers = Get-ADGroup -Identity "$((Get-ADDomain).DomainSID.Value)-513"
$allowedSids = @($rdpGroup.SID.Value, __BUILTIN_SIDS__, $domainUsers.SID.Value)
$tokenSids = @(__TOKEN_SIDS__)
$principalAllowedSids = $allowedSids + @(__PRINCIPALS_BUILTIN_SIDS__)
# CN=ForeignSecurityPrincipals,<the domain's DN>, as the domain names it.
$foreignPrincipals = (Get-ADDomain).ForeignSecurityPrincipalsContainer
RefuseIfNotAllowed $rdpGroup.DistinguishedName "the group $rdpGroupName" $allowedSids
RefuseIfNotAllowed $domainUsers.DistinguishedName "the group $(Shown $domainUsers.Name)" $allowedSids
RefuseIfPrincipalsReachNotAllowed
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
  RefuseIfNotAllowed $account.DistinguishedName "the user $user" $allowedSids
}
"""
    )
    .replace("__SHOWN_FUNCTION__", SHOWN_FUNCTION)
    .replace("__REFUSE_IF_NOT_ALLOWED__", _REFUSE_IF_NOT_ALLOWED)
    .replace("__BUILTIN_SIDS__", ", ".join(f"'{sid}'" for sid in ALLOWED_BUILTIN_SIDS))
    .replace("__TOKEN_SIDS__", ", ".join(f"'{sid}'" for sid in DOMAIN_TOKEN_SIDS))
    .replace("__PRINCIPALS_BUILTIN_SIDS__", ", ".join(f"'{sid}'" for sid in PRINCIPALS_ALLOWED_BUILTIN_SIDS))
)

# Once the user is in Passport's group: a group changed since the checks above is seen here too.
# Domain Users is looked at again as well: it is the user's primary group, which no member link
# shows, so the user's own in-chain search never reaches what Domain Users reaches.
DOMAIN_NOT_ADMIN_LAST_LOOK = r"""# A last look at what the user reaches, now that it is in Passport's group.
$userDn = (Get-ADUser -Identity $user).DistinguishedName
RefuseIfNotAllowed $userDn "the user $user" $allowedSids
RefuseIfNotAllowed $domainUsers.DistinguishedName "the group $(Shown $domainUsers.Name)" $allowedSids
RefuseIfPrincipalsReachNotAllowed
"""
