"""The PowerShell template that removes a Windows grant's user; ``scripts`` fills it.

The grant's account is found by the SID its create reported (``windows_sid``), whatever it is
called now; a grant made before creates reported one goes by the account's name. Removal deletes
only an account that is still as Passport made it: the grant's name and Passport's marker (in its
description), and its SID when one is known. One of the user's name without the marker is someone
else's, left alone, unless the grant made it there (it was ready once; a user with administrator
rights may change its own description). That one, the grant's account renamed (the same rights
rename it), and an account of the grant's name whose SID is not the one reported go through every
step short of their deletion (below) and are left, the removal ending with
``REMOVAL_REFUSED_EXIT_CODE`` for an operator, never as removed.

Removal ends what the user runs on the instance, for the same reason: the account is disabled (again
at each round), its processes (found by the owner's SID) ended and its sessions (those its processes
run in) logged off, in rounds until nothing is left; what survives ends the script with exit 4,
retried, before the account is deleted. A domain controller's domain user is also taken out of
Domain Admins and Passport's group first, and the computer accounts it added to the domain (its ms-
DS-CreatorSID) are deleted and named in the output (``deleted_computer_accounts``), a left account's
too, and, by the reported SID, those of an account an operator deleted after it was left; the DNS
records it may have added are not looked for. On a domain controller removal always takes the
directory branch, so a member-server grant's user made there by an older create is removed as the
domain user it is.
What removal cannot reach stays until it ends by itself: a domain user is a user of the whole
domain, so Kerberos tickets already issued to it on other machines stay valid until they expire
(a service ticket lasts up to 10 hours by default), and a logon it made on another machine of the
domain keeps its token, Domain Admins included, until that logon ends. Passport runs its script on
the domain controller the grant names, and other domain controllers learn of the change by replication.
"""

from __future__ import annotations

from fleet.windows_scripts import end_logons

# The line the removal writes for each computer account it deleted; the name is the user's text.
COMPUTER_DELETED = "passport: deleted computer account: "

# The removal's exit code when an account it went by is still there, disabled, not removed (without
# Passport's marker, renamed, or of the grant's name with another SID); the portal does not call
# that removed, and asks an operator.
REMOVAL_REFUSED_EXIT_CODE = 10
_LEFT = (
    "passport: $user was left here, disabled: it no longer carries Passport's marker (its description"
    " was changed), so it is not deleted; an operator must remove it"
)
_LEFT_RENAMED = (
    "passport: the account $($account.SID.Value) made as $user was left here, disabled: it was renamed, so it"
    " is not deleted; an operator must remove it"
)
_LEFT_FOREIGN = (
    "passport: $user was left here, disabled: its SID is not the one Passport made it with ($grantSid), so it"
    " is not deleted; an operator must remove it"
)

# Which account is the grant's ($account: found by the SID its create reported, else by its name into
# $named), and whether it is left ($left, what the script then writes to stderr) rather than deleted.
# __NAME__ is the property that holds the name the user logs on with.
_WHICH = r"""  # Found by its SID, it is the grant's own account whatever it is called now: renamed (the name is
  # what the grant was asked for by) or without the marker, it is left. Not found by it, while an
  # account has the grant's name: another SID, so another account, left too ($foreign: nothing that
  # is its own is deleted). A grant made before creates reported a SID goes by the name alone.
  $left = ''
  $foreign = $false
  if ($account) {
    if ($account.__NAME__ -ne $user) {
      $left = "__LEFT_RENAMED__"
    } elseif ($account.Description -ne $marker) {
      $left = "__LEFT__"
    }
  } elseif ($named) {
    $account = $named
    if ($grantSid) {
      $foreign = $true
      $left = "__LEFT_FOREIGN__"
    } elseif ($account.Description -ne $marker) {
      if (-not $madeByGrant) { Write-Output "passport: $user is not a Passport user; left untouched"; exit 0 }
      $left = "__LEFT__"
    }
  }
"""

# Both branches, last: the user's profile, where there is one, found by the account's SID
# (Win32_UserProfile.SID), never by its folder: a profile's folder is named after the first account
# of that name to log on, so C:\Users\<name> may be a same-named domain user's and the grant's
# account's <name>.<HOST>. Once the account is gone (a rerun), by the SID its create reported; a
# grant made before creates reported one then has no profile looked for.
_PROFILE_REMOVAL = r"""  $profileSid = if ($account) { $sid } else { $grantSid }
  if ($profileSid) {
    Get-CimInstance Win32_UserProfile | Where-Object { $_.SID -eq $profileSid } | Remove-CimInstance
  }
"""

_REFUSE_IF_LEFT = r"""  if ($left) {
    [Console]::Error.WriteLine($left)
    exit __REFUSED__
  }
"""

WINDOWS_REMOVE = (
    (
        r"""# Passport: remove short-lived user __USER__ (idempotent)
$ErrorActionPreference = 'Stop'
$user = '__USER__'
$marker = '__COMMENT__'
# Whether this grant made this account here (it was ready once): one of the name whose description
# is no longer the marker (a user with administrator rights may change its own) is then this
# grant's user all the same; it is not deleted, being perhaps no longer Passport's to delete, but
# disabled, and the removal ends with exit __REFUSED__ for an operator. Of another grant it is someone
# else's account, and left alone.
$madeByGrant = '__CREATED__' -eq 'yes'
# The SID the grant's create reported for its account ('' for a grant made before creates did):
# the account is found by it, whatever it was renamed to (``windows_sid``).
$grantSid = '__SID__'
# Exit 4: the user still runs processes; the portal tries again later.
# A domain controller (DomainRole 4 or 5) has no local accounts: there the local account cmdlets
# work on the domain, so what a member server's create made on one (before the create scripts
# asked the host's role) is a domain user, removed as one. The member-server branch never runs there.
$onDomainController = (Get-CimInstance Win32_ComputerSystem).DomainRole -ge 4
if (('__DOMAIN__' -eq 'yes') -or $onDomainController) {
  # Without the ActiveDirectory module a host that is no domain controller had no domain user made
  # here (a grant refused because the tag was wrong when it was asked for): nothing to remove. A
  # domain controller without it cannot remove its user: that fails, and is tried again.
  if (-not (Get-Module -ListAvailable -Name ActiveDirectory)) {
    if ($onDomainController) {
      [Console]::Error.WriteLine("passport: this domain controller has no ActiveDirectory module to remove $user with")
      exit 1
    }
    Write-Output "passport: no ActiveDirectory module here, so no domain user $user to remove"; exit 0
  }
  Import-Module ActiveDirectory
  $account = $null
  if ($grantSid) { $account = Get-ADUser -LDAPFilter "(objectSid=$grantSid)" -Properties Description }
  $named = Get-ADUser -Filter "SamAccountName -eq '$user'" -Properties Description
"""
        + _WHICH.replace("__NAME__", "SamAccountName")
        + r"""  # A left account too goes through every step short of its deletion (disabled, out of the groups,
  # its logons ended: a disabled account's logons go on, and could enable it again). Each step names
  # it by its SID: a renamed one has no longer the grant's name.
  if ($account) {
    $sid = $account.SID.Value
    $sessionNames = @($user, $account.SamAccountName)
    # No new logon from here on, and none with Domain Admins or Remote Desktop: disabled first,
    # then out of the groups (found as the create script finds them), so a removal that fails
    # after this leaves an account that can do nothing.
    Disable-ADAccount -Identity $sid
    $memberOf = (Get-ADUser -Identity $sid -Properties MemberOf).MemberOf
    $domainAdmins = Get-ADGroup -Identity "$((Get-ADDomain).DomainSID.Value)-512"
    if ($memberOf -contains $domainAdmins.DistinguishedName) {
      Remove-ADGroupMember -Identity $domainAdmins -Members $sid -Confirm:$false
    }
    $rdpGroupName = '__RDP_GROUP__'
    $rdpGroup = Get-ADGroup -Filter "Name -eq '$rdpGroupName'"
    if ($rdpGroup -and $memberOf -contains $rdpGroup.DistinguishedName) {
      Remove-ADGroupMember -Identity $rdpGroup -Members $sid -Confirm:$false
    }
    # A logon token keeps the groups it was made with: every process of this domain user on this
    # domain controller is ended, whatever session it runs in, and its sessions are logged off.
"""
        + end_logons(indent="    ", disable="Disable-ADAccount -Identity $sid", names="$sessionNames")
        + r"""  }
  # The computer accounts the user added (ms-DS-MachineAccountQuota, 10 by default, with
  # passwords it picked) would outlive it: AD records their creator in ms-DS-CreatorSID when
  # the quota allowed it, and each one that names the grant's account is deleted, with what it
  # holds, and named in the output; a left account's too (they are not the account, and their
  # passwords are the user's). The creator is the account's SID; once the account is gone (an
  # operator deleted a left one), the SID its create reported. Never those of an account that only
  # has the grant's name ($foreign). DNS records the user added are not looked for (README).
  $creatorSid = ''
  if ($account -and -not $foreign) { $creatorSid = $sid } elseif (-not $account) { $creatorSid = $grantSid }
  if ($creatorSid) {
    $created = @(Get-ADComputer -LDAPFilter '(mS-DS-CreatorSID=*)' -Properties 'mS-DS-CreatorSID' |
      Where-Object { $_.'mS-DS-CreatorSID'.Value -eq $creatorSid })
    foreach ($computer in $created) {
      Remove-ADObject -Identity $computer -Recursive -Confirm:$false
      Write-Output "__COMPUTER_DELETED__$($computer.SamAccountName)"
    }
  }
"""
        + _REFUSE_IF_LEFT
        + r"""  if ($account) { Remove-ADUser -Identity $sid -Confirm:$false }
"""
        + _PROFILE_REMOVAL
        + r"""} else {
  $account = $null
  if ($grantSid) { $account = Get-LocalUser -SID $grantSid -ErrorAction SilentlyContinue }
  $named = Get-LocalUser -Name $user -ErrorAction SilentlyContinue
"""
        + _WHICH.replace("__NAME__", "Name")
        + r"""  if ($account) {
    $sid = $account.SID.Value
    $sessionNames = @($user, $account.Name)
    # No new logon from here on: disabled at the start of each round (again, as a process running
    # as an administrator could enable it), then what the user runs is ended and its sessions
    # logged off, until nothing is left. By its SID: a renamed account has no longer the grant's name.
"""
        + end_logons(indent="    ", disable="Disable-LocalUser -SID $sid", names="$sessionNames")
        + r"""  }
"""
        + _REFUSE_IF_LEFT
        + r"""  if ($account) { Remove-LocalUser -SID $sid }
"""
        + _PROFILE_REMOVAL
        + r"""}
Write-Output "passport: $user removed"
# Done: a program's exit code left in $LASTEXITCODE (query, logoff) is not this script's.
exit 0
"""
    )
    .replace("__COMPUTER_DELETED__", COMPUTER_DELETED)
    .replace("__LEFT_RENAMED__", _LEFT_RENAMED)
    .replace("__LEFT_FOREIGN__", _LEFT_FOREIGN)
    .replace("__LEFT__", _LEFT)
    .replace("__REFUSED__", str(REMOVAL_REFUSED_EXIT_CODE))
)

# At most this many characters of each name reach the Logbook: the user picked the name.
COMPUTER_NAME_CHARS = 64


def deleted_computer_accounts(output: str) -> list[str]:
    """The computer accounts a Windows removal says it deleted (``COMPUTER_DELETED`` lines of its
    output), each cut to ``COMPUTER_NAME_CHARS``. The names are the user's own text (and the host's):
    data for the Logbook, shown through ``visible``, never anything to act on. Lines end at a line
    feed only (PowerShell writes CRLF), so a name holding another line break stays one name."""
    names = []
    for line in output.split("\n"):
        if line.startswith(COMPUTER_DELETED):
            name = line[len(COMPUTER_DELETED) :].removesuffix("\r").strip()
            if name:
                names.append(name[:COMPUTER_NAME_CHARS])
    return names
