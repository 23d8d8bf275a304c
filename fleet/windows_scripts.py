"""The PowerShell templates for Windows instances; ``scripts`` fills and checks them.

What the user may do follows the request's administrator-rights flag, as sudo does on Linux:

- member server: always in Remote Desktop Users; in Administrators only with admin rights;
- domain controller: always in a Passport group inside the builtin Remote Desktop Users; in
  the domain's admin group (Domain Admins) only with admin rights.

Each script converges on what was asked: a run without admin rights also takes the user out
of the admin group an earlier run put it in, and ends its processes, whose logon tokens would
otherwise keep that group until they exit. Groups are named by well-known SID where there is
one, because Windows translates their names. The variant is picked here, when the script is
rendered, so a script without admin rights holds no command that grants them. Which kind of
host a grant is for is what it recorded when the request was made (``Grant.domain_controller``),
never the instance's tag at the time of the script.

Removal ends what the user runs on the instance, for the same reason: a member server's local
user is disabled, its processes ended, then it and its profile are deleted; a domain
controller's domain user is disabled, taken out of Domain Admins and Passport's group, its
processes ended and its sessions logged off, then it and its profile are deleted. What removal
cannot reach stays until it ends by itself: a domain user is a user of the whole domain, so
Kerberos tickets already issued to it on other machines stay valid until they expire (a service
ticket lasts up to 10 hours by default), and a logon it made on another machine of the domain
keeps its token, Domain Admins included, until that logon ends. Passport runs its script on the
domain controller the grant names, and other domain controllers learn of the change by replication.
"""

from __future__ import annotations

# The Passport group on a domain controller: found by name, but used only if its description
# says Passport made it, so a group someone else named so is never given Remote Desktop.
WINDOWS_RDP_GROUP = "Passport Remote Desktop Users"
WINDOWS_RDP_GROUP_MARKER = "Passport: Remote Desktop for short-lived users"

_CREATE_HEAD = r"""# Passport: create short-lived user __USER__ (idempotent)
$ErrorActionPreference = 'Stop'
$user = '__USER__'
$marker = '__COMMENT__'
# Exit codes 3 and 7 tell the portal not to retry, so a refusal must reach its exit: under
# 'Stop' an error record would end the script with 1 (retried) first.
function Refuse([int]$code, [string]$message) { [Console]::Error.WriteLine($message); exit $code }
# The password is handed over in Parameter Store (SecureString), never in this script.
if (-not (Get-Command Get-SSMParameter -ErrorAction SilentlyContinue)) {
  Refuse 7 "AWS Tools for PowerShell (Get-SSMParameter) is not installed"
}
$password = ConvertTo-SecureString -AsPlainText -Force -String `
  (Get-SSMParameter -Name '__PARAMETER__' -WithDecryption $true -Region '__REGION__').Value
# The request's end, in UTC: the account's own expiry, a second lock should removal not run.
$expires = [datetime]::ParseExact('__EXPIRY__', 'o', [Globalization.CultureInfo]::InvariantCulture, `
  [Globalization.DateTimeStyles]::RoundtripKind)
"""

# After the user left an admin group: a logon token keeps the groups it was made with, so
# the processes holding the old token are ended.
_END_PROCESSES = r"""  Get-CimInstance Win32_Process |
    Where-Object { (Invoke-CimMethod -InputObject $_ -MethodName GetOwner).User -eq $user } |
    ForEach-Object { Stop-Process -Id $_.ProcessId -Force -ErrorAction SilentlyContinue }
}
"""

_DOMAIN_USER = r"""Import-Module ActiveDirectory
$existing = Get-ADUser -Filter "SamAccountName -eq '$user'" -Properties Description
if ($existing -and $existing.Description -ne $marker) { Refuse 3 "refusing: $user is not a Passport user" }
if (-not $existing) {
  New-ADUser -Name $user -SamAccountName $user -Description $marker -AccountPassword $password `
    -Enabled $true -AccountExpirationDate $expires
} else {
  Set-ADAccountPassword -Identity $user -Reset -NewPassword $password
  Set-ADUser -Identity $user -AccountExpirationDate $expires -Enabled $true
}
# Remote Desktop through Passport's group, itself a member of the builtin Remote Desktop Users
# (S-1-5-32-555); the domain controllers' "Allow log on through Remote Desktop Services" right
# must include that builtin group.
$rdpGroupName = '__RDP_GROUP__'
$rdpGroupMarker = '__RDP_GROUP_MARKER__'
$rdpGroup = Get-ADGroup -Filter "Name -eq '$rdpGroupName'" -Properties Description
if ($rdpGroup -and $rdpGroup.Description -ne $rdpGroupMarker) {
  Refuse 3 "refusing: the group $rdpGroupName was not made by Passport"
}
if (-not $rdpGroup) {
  $rdpGroup = New-ADGroup -Name $rdpGroupName -GroupScope Global -GroupCategory Security `
    -Description $rdpGroupMarker -PassThru
}
$builtinRdp = Get-ADGroup -Identity 'S-1-5-32-555'
if ((Get-ADGroup -Identity $rdpGroup -Properties MemberOf).MemberOf -notcontains $builtinRdp.DistinguishedName) {
  Add-ADGroupMember -Identity $builtinRdp -Members $rdpGroup
}
$memberOf = (Get-ADUser -Identity $user -Properties MemberOf).MemberOf
if ($memberOf -notcontains $rdpGroup.DistinguishedName) {
  Add-ADGroupMember -Identity $rdpGroup -Members $user
}
# Domain Admins by its SID (the domain's SID and 512).
$domainAdmins = Get-ADGroup -Identity "$((Get-ADDomain).DomainSID.Value)-512"
"""

_DOMAIN_ADMIN = r"""# Administrator rights asked for: Domain Admins.
if ($memberOf -notcontains $domainAdmins.DistinguishedName) {
  Add-ADGroupMember -Identity $domainAdmins -Members $user
}
"""

_DOMAIN_NOT_ADMIN = (
    r"""# No administrator rights: never Domain Admins, even if an earlier run made it one.
$demoted = $memberOf -contains $domainAdmins.DistinguishedName
if ($demoted) {
  Remove-ADGroupMember -Identity $domainAdmins -Members $user -Confirm:$false
"""
    + _END_PROCESSES
)

_LOCAL_USER = r"""$existing = Get-LocalUser -Name $user -ErrorAction SilentlyContinue
if ($existing -and $existing.Description -ne $marker) { Refuse 3 "refusing: $user is not a Passport user" }
if (-not $existing) {
  New-LocalUser -Name $user -Password $password -Description $marker -AccountExpires $expires | Out-Null
} else {
  Set-LocalUser -Name $user -Password $password -AccountExpires $expires
  Enable-LocalUser -Name $user
}
# Well-known SIDs: Remote Desktop Users and Administrators.
$remoteDesktopUsers = 'S-1-5-32-555'
$administrators = 'S-1-5-32-544'
if (-not (Get-LocalGroupMember -SID $remoteDesktopUsers -Member $user -ErrorAction SilentlyContinue)) {
  Add-LocalGroupMember -SID $remoteDesktopUsers -Member $user
}
"""

_LOCAL_ADMIN = r"""# Administrator rights asked for: Administrators.
if (-not (Get-LocalGroupMember -SID $administrators -Member $user -ErrorAction SilentlyContinue)) {
  Add-LocalGroupMember -SID $administrators -Member $user
}
"""

_LOCAL_NOT_ADMIN = (
    r"""# No administrator rights: Remote Desktop Users only, even if an earlier run made it an admin.
$demoted = [bool](Get-LocalGroupMember -SID $administrators -Member $user -ErrorAction SilentlyContinue)
if ($demoted) {
  Remove-LocalGroupMember -SID $administrators -Member $user
"""
    + _END_PROCESSES
)

_CREATE_TAIL = r"""Write-Output "passport: $user ready"
"""

WINDOWS_REMOVE = r"""# Passport: remove short-lived user __USER__ (idempotent)
$ErrorActionPreference = 'Stop'
$user = '__USER__'
$marker = '__COMMENT__'
if ('__DOMAIN__' -eq 'yes') {
  # Without the ActiveDirectory module this host is no domain controller, so no domain user was
  # made here (a grant refused because the tag was wrong when it was asked for): nothing to remove.
  if (-not (Get-Module -ListAvailable -Name ActiveDirectory)) {
    Write-Output "passport: no ActiveDirectory module here, so no domain user $user to remove"; exit 0
  }
  Import-Module ActiveDirectory
  $account = Get-ADUser -Filter "SamAccountName -eq '$user'" -Properties Description
  if ($account -and $account.Description -ne $marker) {
    Write-Output "passport: $user is not a Passport user; left untouched"; exit 0
  }
  if ($account) {
    # No new logon from here on, and none with Domain Admins or Remote Desktop: disabled first,
    # then out of the groups (found as the create script finds them), so a removal that fails
    # after this leaves an account that can do nothing.
    Disable-ADAccount -Identity $user
    $memberOf = (Get-ADUser -Identity $user -Properties MemberOf).MemberOf
    $domainAdmins = Get-ADGroup -Identity "$((Get-ADDomain).DomainSID.Value)-512"
    if ($memberOf -contains $domainAdmins.DistinguishedName) {
      Remove-ADGroupMember -Identity $domainAdmins -Members $user -Confirm:$false
    }
    $rdpGroupName = '__RDP_GROUP__'
    $rdpGroup = Get-ADGroup -Filter "Name -eq '$rdpGroupName'"
    if ($rdpGroup -and $memberOf -contains $rdpGroup.DistinguishedName) {
      Remove-ADGroupMember -Identity $rdpGroup -Members $user -Confirm:$false
    }
    # A logon token keeps the groups it was made with: every process of this domain user on
    # this domain controller is ended, whatever session it runs in.
    $netbiosDomain = (Get-ADDomain).NetBIOSName
    Get-CimInstance Win32_Process |
      Where-Object {
        $owner = Invoke-CimMethod -InputObject $_ -MethodName GetOwner -ErrorAction SilentlyContinue
        $owner.User -eq $user -and $owner.Domain -eq $netbiosDomain
      } |
      ForEach-Object { Stop-Process -Id $_.ProcessId -Force -ErrorAction SilentlyContinue }
    # And its sessions are logged off. query user prints one line per session (USERNAME,
    # SESSIONNAME when connected, ID, STATE ...); only a session id, as a number, is taken from
    # it, and only from a line whose user is this user. Both are programs: with no session,
    # query writes to stderr and exits 1, which must not stop the removal.
    $ErrorActionPreference = 'Continue'
    $sessions = query user $user 2>$null
    foreach ($line in @($sessions)) {
      if ("$line" -match '^\s*>?(\S+)\s+(?:\S+\s+)?(\d{1,5})\s') {
        if ($Matches[1] -eq $user) {
          $sessionId = [int]$Matches[2]
          logoff $sessionId
        }
      }
    }
    $ErrorActionPreference = 'Stop'
    Remove-ADUser -Identity $user -Confirm:$false
  }
  $profile = Get-CimInstance Win32_UserProfile | Where-Object { $_.LocalPath -like "*\$user" }
  if ($profile) { $profile | Remove-CimInstance }
} else {
  $account = Get-LocalUser -Name $user -ErrorAction SilentlyContinue
  if ($account -and $account.Description -ne $marker) {
    Write-Output "passport: $user is not a Passport user; left untouched"; exit 0
  }
  if ($account) {
    Disable-LocalUser -Name $user
    Get-CimInstance Win32_Process |
      Where-Object { (Invoke-CimMethod -InputObject $_ -MethodName GetOwner).User -eq $user } |
      ForEach-Object { Stop-Process -Id $_.ProcessId -Force -ErrorAction SilentlyContinue }
    Remove-LocalUser -Name $user
  }
  $profile = Get-CimInstance Win32_UserProfile | Where-Object { $_.LocalPath -like "*\$user" }
  if ($profile) { $profile | Remove-CimInstance }
}
Write-Output "passport: $user removed"
# Done: a program's exit code left in $LASTEXITCODE (query, logoff) is not this script's.
exit 0
"""


# An extension moves the account's expiry, and nothing else: no password, no group, and a user
# that is gone (removed meanwhile) is not made again.
WINDOWS_SET_EXPIRY = r"""# Passport: move short-lived user __USER__'s account expiry to its request's end (idempotent)
$ErrorActionPreference = 'Stop'
$user = '__USER__'
$marker = '__COMMENT__'
function Refuse([int]$code, [string]$message) { [Console]::Error.WriteLine($message); exit $code }
$expires = [datetime]::ParseExact('__EXPIRY__', 'o', [Globalization.CultureInfo]::InvariantCulture, `
  [Globalization.DateTimeStyles]::RoundtripKind)
if ('__DOMAIN__' -eq 'yes') {
  if (-not (Get-Module -ListAvailable -Name ActiveDirectory)) { Refuse 9 "passport: no domain user $user here" }
  Import-Module ActiveDirectory
  $account = Get-ADUser -Filter "SamAccountName -eq '$user'" -Properties Description
  if (-not $account) { Refuse 9 "passport: no user $user here" }
  if ($account.Description -ne $marker) { Refuse 3 "refusing: $user is not a Passport user" }
  Set-ADUser -Identity $user -AccountExpirationDate $expires
} else {
  $account = Get-LocalUser -Name $user -ErrorAction SilentlyContinue
  if (-not $account) { Refuse 9 "passport: no user $user here" }
  if ($account.Description -ne $marker) { Refuse 3 "refusing: $user is not a Passport user" }
  Set-LocalUser -Name $user -AccountExpires $expires
}
Write-Output "passport: $user expires __EXPIRY__"
"""


def windows_create_template(*, domain_controller: bool, admin_rights: bool) -> str:
    """The create script for this kind of host and this request, placeholders still to fill."""
    if domain_controller:
        account = _DOMAIN_USER + (_DOMAIN_ADMIN if admin_rights else _DOMAIN_NOT_ADMIN)
    else:
        account = _LOCAL_USER + (_LOCAL_ADMIN if admin_rights else _LOCAL_NOT_ADMIN)
    return _CREATE_HEAD + account + _CREATE_TAIL
