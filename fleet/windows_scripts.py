"""The PowerShell templates for Windows instances; ``scripts`` fills and checks them.

What the user may do follows the request's administrator-rights flag, as sudo does on Linux:

- member server: always in Remote Desktop Users; in Administrators only with admin rights;
  without them in no local group but Remote Desktop Users and Users, and refused for good (exit 7)
  should a local group (Administrators, Backup Operators ...: all but a few allowed) hold a
  principal every local user is in (Everyone, Users, Domain Users ...: ``windows_privilege``);
- domain controller: always in a Passport group inside the builtin Remote Desktop Users; in
  the domain's admin group (Domain Admins) only with admin rights; without them in no group but
  Passport's and Domain Users, and refused for good (exit 7) should either of those, or the user,
  reach through nested groups any group but those two, Remote Desktop Users and Users (an
  allow-list, ``windows_domain``), or a well-known principal every domain user holds reach any
  but those and the two Windows puts Authenticated Users in.

Each script converges on what was asked: a run without admin rights also takes the user out
of the groups an earlier run (or the user itself, while it was an administrator) put it in, and
ends whatever the user runs, whose logon tokens would otherwise keep those groups until they
exit. Groups are named by well-known SID where there is one, because Windows translates their
names. The variant is picked here, when the script is rendered, so a script without admin rights
holds no command that grants them. Which kind of host a grant is for is what it recorded when the
request was made (``Grant.domain_controller``), never the instance's tag at the time of the
script; and since that came from a tag, each create script first asks Windows what the host is
(``Win32_ComputerSystem.DomainRole``) and refuses for good (exit 7) before reading the password or
touching an account when it is not that: on a domain controller the local account cmdlets would
make a domain user, and Administrators there is the whole domain's.

Removal: ``windows_removal``.
"""

from __future__ import annotations

from fleet.windows_domain import DOMAIN_NOT_ADMIN_CHECKS, DOMAIN_NOT_ADMIN_LAST_LOOK
from fleet.windows_privilege import MEMBER_NOT_ADMIN_CHECKS, MEMBER_NOT_ADMIN_LAST_LOOK
from fleet.windows_sid import ACCOUNT_SID_LINE

# The Passport group on a domain controller: found by name, but used only if its description
# says Passport made it, so a group someone else named so is never given Remote Desktop.
WINDOWS_RDP_GROUP = "Passport Remote Desktop Users"
WINDOWS_RDP_GROUP_MARKER = "Passport: Remote Desktop for short-lived users"

_CREATE_HEAD = r"""# Passport: create short-lived user __USER__ (idempotent)
$ErrorActionPreference = 'Stop'
$user = '__USER__'
$marker = '__COMMENT__'
# Exit codes 3 and 7 tell the portal not to retry, so a refusal must reach its exit: under
# 'Stop' an error record would end the script with 1 (retried) first. Exit 4 (the user still runs
# processes) is retried.
function Refuse([int]$code, [string]$message) { [Console]::Error.WriteLine($message); exit $code }
"""

# What the host is, as Windows says (Win32_ComputerSystem.DomainRole: 4 and 5 are domain
# controllers), asked before the password is read or any account touched. The grant's kind came
# from the instance's PassportDomainController tag when the request was made; on a domain
# controller the local account cmdlets make a domain user and Administrators (S-1-5-32-544) is the
# domain's, so a wrong tag must stop the script, for good: another run would find the same host.
_REFUSE_DOMAIN_CONTROLLER = (
    "refusing: this instance is a domain controller, but the request was approved for a member server "
    "because the instance was not tagged PassportDomainController=true. Nothing was changed; correct "
    "the tag and ask again."
)
_REFUSE_MEMBER_SERVER = (
    "refusing: this instance is not a domain controller, but the request was approved for one because "
    "the instance was tagged PassportDomainController=true. Nothing was changed; correct the tag and ask again."
)
_ROLE_MEMBER_SERVER = (
    r"""# Never on a domain controller (DomainRole 4 or 5): there these cmdlets make a domain user.
if ((Get-CimInstance Win32_ComputerSystem).DomainRole -ge 4) {
  Refuse 7 '"""
    + _REFUSE_DOMAIN_CONTROLLER
    + """'
}
"""
)
_ROLE_DOMAIN_CONTROLLER = (
    r"""# Only on a domain controller (DomainRole 4 or 5).
if ((Get-CimInstance Win32_ComputerSystem).DomainRole -lt 4) {
  Refuse 7 '"""
    + _REFUSE_MEMBER_SERVER
    + """'
}
"""
)

# What a host without AWS Tools for PowerShell says (in double quotes: no $ or backtick in it).
_NO_AWS_TOOLS = (
    "AWS Tools for PowerShell is not installed on this instance (Passport reads the password with its"
    " Get-SSMParameter). Install the AWS.Tools.SimpleSystemsManagement module (Install-Module"
    " AWS.Tools.SimpleSystemsManagement) or AWSPowerShell, then ask again."
)
_CREATE_HANDOFF = (
    r"""# The password is handed over in Parameter Store (SecureString), never in this script.
if (-not (Get-Command Get-SSMParameter -ErrorAction SilentlyContinue)) {
  Refuse 7 """
    + f'"{_NO_AWS_TOOLS}"'
    + r"""
}
# Turned into a SecureString by a .NET call, not by a cmdlet: with PowerShell module logging on,
# every cmdlet's parameter bindings (ConvertTo-SecureString -String included) are written to the
# host's PowerShell event log (event 4103), where the plaintext would outlive the grant. A method
# call binds no parameter; [type]::new needs PowerShell 5, which the LocalAccounts cmdlets used
# here need too. Only the SecureString is passed on, to the account cmdlets.
$password = [Net.NetworkCredential]::new('', `
  (Get-SSMParameter -Name '__PARAMETER__' -WithDecryption $true -Region '__REGION__').Value).SecurePassword
# The request's end, in UTC: the account's own expiry, a second lock should removal not run.
$expires = [datetime]::ParseExact('__EXPIRY__', 'o', [Globalization.CultureInfo]::InvariantCulture, `
  [Globalization.DateTimeStyles]::RoundtripKind)
"""
)

# What the user runs ends, and its sessions are logged off, in rounds until a round finds nothing
# (a process may start another meanwhile); after 10 rounds what is left ends the script with exit
# 4, which the portal retries. A process is the user's by its owner's SID ($sid), so a same-named
# account of another domain is never touched; one that exits while it is asked for its owner is
# skipped (-ErrorAction SilentlyContinue), so it cannot stop the script under 'Stop'. query user
# prints one line per session (USERNAME, SESSIONNAME when connected, ID, STATE ...) with no domain,
# so a name alone may be a same-named account's of another domain: a session is logged off only
# when one of the user's own processes (by the owner's SID, above) runs in it, and query user names
# it one of __NAMES__ (the user's name; for the removal also the name its account has now, which
# never reaches query's command line: it lists every session). Only a session id, as a number, is
# taken from its output. Both are programs: with no session, query writes to stderr and exits 1,
# which must not stop the script. __DISABLE__ is the removal's: each round
# disables the account again, since a process running as an administrator could have enabled it.
_END_LOGONS = r"""for ($round = 1; $round -le 10; $round++) {
__DISABLE__  $running = @(Get-CimInstance Win32_Process | Where-Object {
    (Invoke-CimMethod -InputObject $_ -MethodName GetOwnerSid -ErrorAction SilentlyContinue).Sid -eq $sid
  })
  $ownSessions = @($running | ForEach-Object { [int]$_.SessionId })
  foreach ($process in $running) { Stop-Process -Id $process.ProcessId -Force -ErrorAction SilentlyContinue }
  $ErrorActionPreference = 'Continue'
  $sessions = query user 2>$null
  foreach ($line in @($sessions)) {
    if ("$line" -match '^\s*>?(\S+)\s+(?:\S+\s+)?(\d{1,5})\s') {
      if ((__NAMES__ -contains $Matches[1]) -and ($ownSessions -contains [int]$Matches[2])) {
        $sessionId = [int]$Matches[2]
        logoff $sessionId
      }
    }
  }
  $ErrorActionPreference = 'Stop'
  if ($running.Count -eq 0) { break }
  Start-Sleep -Seconds 2
}
if ($running.Count -gt 0) {
  [Console]::Error.WriteLine("passport: $user still runs $($running.Count) process(es) here; to be tried again")
  exit 4
}
"""


def end_logons(*, indent: str = "", disable: str = "", names: str = "@($user)") -> str:
    """``_END_LOGONS`` at ``indent``, each round starting with ``disable`` (a command) if given; the
    sessions logged off are those of a user of ``names`` (a PowerShell array of names)."""
    text = _END_LOGONS.replace("__DISABLE__", f"  {disable}\n" if disable else "").replace("__NAMES__", names)
    return "".join(indent + line if line.strip() else line for line in text.splitlines(keepends=True))


# Passport's group first: a create without administrator rights looks at what it reaches
# (``windows_domain``) before the user is made or its password set.
_DOMAIN_USER_FIND = r"""Import-Module ActiveDirectory
$existing = Get-ADUser -Filter "SamAccountName -eq '$user'" -Properties Description
if ($existing -and $existing.Description -ne $marker) { Refuse 3 "refusing: $user is not a Passport user" }
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
"""

_DOMAIN_USER_MAKE = r"""if (-not $existing) {
  New-ADUser -Name $user -SamAccountName $user -Description $marker -AccountPassword $password `
    -Enabled $true -AccountExpirationDate $expires
} else {
  Set-ADAccountPassword -Identity $user -Reset -NewPassword $password
  Set-ADUser -Identity $user -AccountExpirationDate $expires -Enabled $true
}
$memberOf = (Get-ADUser -Identity $user -Properties MemberOf).MemberOf
if ($memberOf -notcontains $rdpGroup.DistinguishedName) {
  Add-ADGroupMember -Identity $rdpGroup -Members $user
}
"""

_DOMAIN_ADMIN = r"""# Administrator rights asked for: Domain Admins, by its SID (the domain's SID and 512).
$domainAdmins = Get-ADGroup -Identity "$((Get-ADDomain).DomainSID.Value)-512"
if ($memberOf -notcontains $domainAdmins.DistinguishedName) {
  Add-ADGroupMember -Identity $domainAdmins -Members $user
}
"""

_DOMAIN_NOT_ADMIN = (
    DOMAIN_NOT_ADMIN_CHECKS
    + _DOMAIN_USER_MAKE
    + DOMAIN_NOT_ADMIN_LAST_LOOK
    + r"""# A logon token keeps the groups it was made with: what the user runs is ended whenever it runs
# anything, demoted by this run or by an earlier one that stopped before this point.
$sid = (Get-ADUser -Identity $user).SID.Value
"""
    + end_logons()
)

_LOCAL_USER_FIND = r"""$existing = Get-LocalUser -Name $user -ErrorAction SilentlyContinue
if ($existing -and $existing.Description -ne $marker) { Refuse 3 "refusing: $user is not a Passport user" }
"""

_LOCAL_USER = r"""if (-not $existing) {
  New-LocalUser -Name $user -Password $password -Description $marker -AccountExpires $expires | Out-Null
} else {
  Set-LocalUser -Name $user -Password $password -AccountExpires $expires
  Enable-LocalUser -Name $user
}
# Well-known SIDs: Remote Desktop Users and Administrators.
$remoteDesktopUsers = 'S-1-5-32-555'
$administrators = 'S-1-5-32-544'
# A membership is changed and the answer caught, never read first: Get-LocalGroupMember fails for a
# whole group one of whose members no longer resolves (a deleted domain account, say), and that
# failure silenced would read as "not a member" (PowerShell issue 2996). Any other error ends the
# script (exit 1, tried again). The exception is told by its name: a type literal in a catch clause
# must resolve when the script is compiled, before the LocalAccounts module has loaded.
try { Add-LocalGroupMember -SID $remoteDesktopUsers -Member $user }
catch { if ($_.Exception.GetType().Name -ne 'MemberExistsException') { throw } }
"""

_LOCAL_ADMIN = r"""# Administrator rights asked for: Administrators.
try { Add-LocalGroupMember -SID $administrators -Member $user }
catch { if ($_.Exception.GetType().Name -ne 'MemberExistsException') { throw } }
"""

_LOCAL_NOT_ADMIN = (
    r"""# No administrator rights: Remote Desktop Users (and Users, every local user's) only, even if an
# earlier run made it an administrator and it added itself to other groups meanwhile (Backup
# Operators, Remote Management Users ...). Every local group by its SID: Windows translates names.
$usersGroup = 'S-1-5-32-545'
foreach ($group in @(Get-LocalGroup)) {
  $groupSid = $group.SID.Value
  if ($groupSid -eq $remoteDesktopUsers -or $groupSid -eq $usersGroup) { continue }
  # Removed, or found not a member; Administrators included, so the answer is never "cannot tell".
  try { Remove-LocalGroupMember -SID $groupSid -Member $user }
  catch { if ($_.Exception.GetType().Name -ne 'MemberNotFoundException') { throw } }
}
"""
    + MEMBER_NOT_ADMIN_LAST_LOOK
    + r"""# A logon token keeps the groups it was made with: what the user runs is ended whenever it runs
# anything, demoted by this run or by an earlier one that stopped before this point.
$sid = (Get-LocalUser -Name $user).SID.Value
"""
    + end_logons()
)

# The account's SID, for the portal (``windows_sid``): its removal finds the account by it,
# whatever the account is called by then.
_LOCAL_SID = r"""$accountSid = (Get-LocalUser -Name $user).SID.Value
"""
_DOMAIN_SID = r"""$accountSid = (Get-ADUser -Identity $user).SID.Value
"""
_CREATE_TAIL = (
    r"""Write-Output "__ACCOUNT_SID__$accountSid"
Write-Output "passport: $user ready"
"""
).replace("__ACCOUNT_SID__", ACCOUNT_SID_LINE)

# An extension moves the account's expiry, and nothing else: no password, no group, and a user
# that is gone (removed meanwhile) is not made again. The account is found as the removal finds it
# (``windows_removal``): by the SID its create reported ('' only for a grant made ready before creates
# reported one: by its name), and moved only while it is still as Passport made it, the grant's name
# and Passport's marker. A user with administrator rights may rename its account or change its
# description; such an account is not Passport's to keep alive (its removal leaves it for an
# operator), so the move is refused (exit 3) and the account expires when it was to. An account not
# found by the SID is gone, whatever else has the grant's name: nothing is moved.
_EXPIRY_CHECKS = r"""  if ($account.__NAME__ -ne $user) {
    Refuse 3 "refusing: the account $($account.SID.Value) made as $user was renamed; expiry not moved"
  }
  if ($account.Description -ne $marker) {
    Refuse 3 "refusing: $user no longer carries Passport's marker (description changed); expiry not moved"
  }
"""
WINDOWS_SET_EXPIRY = (
    r"""# Passport: move short-lived user __USER__'s account expiry to its request's end (idempotent)
$ErrorActionPreference = 'Stop'
$user = '__USER__'
$marker = '__COMMENT__'
$grantSid = '__SID__'
function Refuse([int]$code, [string]$message) { [Console]::Error.WriteLine($message); exit $code }
$expires = [datetime]::ParseExact('__EXPIRY__', 'o', [Globalization.CultureInfo]::InvariantCulture, `
  [Globalization.DateTimeStyles]::RoundtripKind)
if ('__DOMAIN__' -eq 'yes') {
  if (-not (Get-Module -ListAvailable -Name ActiveDirectory)) { Refuse 9 "passport: no domain user $user here" }
  Import-Module ActiveDirectory
  if ($grantSid) {
    $account = Get-ADUser -LDAPFilter "(objectSid=$grantSid)" -Properties Description
    if (-not $account) { Refuse 9 "passport: no account $grantSid (made as $user) here" }
  } else {
    $account = Get-ADUser -Filter "SamAccountName -eq '$user'" -Properties Description
    if (-not $account) { Refuse 9 "passport: no user $user here" }
  }
"""
    + _EXPIRY_CHECKS.replace("__NAME__", "SamAccountName")
    + r"""  Set-ADUser -Identity $account.SID.Value -AccountExpirationDate $expires
} else {
  if ($grantSid) {
    $account = Get-LocalUser -SID $grantSid -ErrorAction SilentlyContinue
    if (-not $account) { Refuse 9 "passport: no account $grantSid (made as $user) here" }
  } else {
    $account = Get-LocalUser -Name $user -ErrorAction SilentlyContinue
    if (-not $account) { Refuse 9 "passport: no user $user here" }
  }
"""
    + _EXPIRY_CHECKS.replace("__NAME__", "Name")
    + r"""  Set-LocalUser -SID $account.SID -AccountExpires $expires
}
Write-Output "passport: $user expires __EXPIRY__"
"""
)


def windows_create_template(*, domain_controller: bool, admin_rights: bool) -> str:
    """The create script for this kind of host and this request, placeholders still to fill."""
    if domain_controller:
        role = _ROLE_DOMAIN_CONTROLLER
        account = _DOMAIN_USER_FIND + (_DOMAIN_USER_MAKE + _DOMAIN_ADMIN if admin_rights else _DOMAIN_NOT_ADMIN)
        account += _DOMAIN_SID
    else:
        role = _ROLE_MEMBER_SERVER
        if admin_rights:
            account = _LOCAL_USER_FIND + _LOCAL_USER + _LOCAL_ADMIN + _LOCAL_SID
        else:
            # Administrators looked at before the user is made or its password set (``windows_privilege``).
            account = _LOCAL_USER_FIND + MEMBER_NOT_ADMIN_CHECKS + _LOCAL_USER + _LOCAL_NOT_ADMIN + _LOCAL_SID
    return _CREATE_HEAD + role + _CREATE_HANDOFF + account + _CREATE_TAIL
