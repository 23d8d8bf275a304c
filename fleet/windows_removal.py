"""The PowerShell template that removes a Windows grant's user; ``scripts`` fills it.

Removal deletes only an account that carries Passport's marker; one of the user's name without it
is someone else's, left alone, unless the grant made it there (it was ready once; a user with
administrator rights may change its own description): that one goes through every step short of its deletion
(below) and is left, the removal ending with ``REMOVAL_REFUSED_EXIT_CODE`` for an operator, never as removed.

Removal ends what the user runs on the instance, for the same reason: the account is disabled
(again at each round), its processes (found by the owner's SID) ended and its sessions logged
off, in rounds until nothing is left; what survives ends the script with exit 4, retried, before
the account is deleted. A domain controller's domain user is also taken out of Domain Admins and
Passport's group first, and the computer accounts it added to the domain (its ms-DS-CreatorSID)
are deleted and named in the output (``deleted_computer_accounts``); the DNS records it may have
added are not looked for. On a domain controller removal always takes the directory branch, so a
member-server grant's user made there by an older create is removed as the domain user it is.
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

# The removal's exit code when the grant's account is still there without Passport's marker: left
# (disabled), not removed; the portal does not call that removed, and asks an operator.
REMOVAL_REFUSED_EXIT_CODE = 10
_LEFT = (
    "passport: $user was left here, disabled: it no longer carries Passport's marker (its description"
    " was changed), so it is not deleted; an operator must remove it"
)

# Both branches, once the account is looked up as ``$account``: one of the name without the marker
# is left alone (exit 0) unless this grant made it, then marked ``$left`` (taken through every step
# short of its deletion). The template's placeholders stay as they are, for ``scripts`` to fill.
_UNMARKED_ACCOUNT = r"""  $left = $false
  if ($account -and $account.Description -ne $marker) {
    if (-not $madeByGrant) { Write-Output "passport: $user is not a Passport user; left untouched"; exit 0 }
    $left = $true
  }
"""

# Both branches, last: the user's profile, where there is one.
_PROFILE_REMOVAL = r"""  $profile = Get-CimInstance Win32_UserProfile | Where-Object { $_.LocalPath -like "*\$user" }
  if ($profile) { $profile | Remove-CimInstance }
"""


def _end_logons_or_leave(disable: str) -> str:
    """Within ``if ($account)``: its logons ended in rounds (each starting with ``disable``), then an
    account marked ``$left`` ends the script with ``__REFUSED__``, ``__LEFT__`` on its error stream."""
    return (
        end_logons(indent="    ", disable=disable)
        + r"""    if ($left) {
      [Console]::Error.WriteLine("__LEFT__")
      exit __REFUSED__
    }
"""
    )


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
  $account = Get-ADUser -Filter "SamAccountName -eq '$user'" -Properties Description
  # This grant's, unmarked: taken through the steps below up to its deletion (disabled, out of the
  # groups, its logons ended: a disabled account's logons go on, and could enable it again), then left.
"""
        + _UNMARKED_ACCOUNT
        + r"""  if ($account) {
    $sid = $account.SID.Value
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
    # A logon token keeps the groups it was made with: every process of this domain user on this
    # domain controller is ended, whatever session it runs in, and its sessions are logged off.
"""
        + _end_logons_or_leave("Disable-ADAccount -Identity $user")
        + r"""    # The computer accounts the user added (ms-DS-MachineAccountQuota, 10 by default, with
    # passwords it picked) would outlive it: AD records their creator in ms-DS-CreatorSID when
    # the quota allowed it, and each one that names this user is deleted, with what it holds,
    # and named in the output. DNS records the user added are not looked for (README).
    $created = @(Get-ADComputer -LDAPFilter '(mS-DS-CreatorSID=*)' -Properties 'mS-DS-CreatorSID' |
      Where-Object { $_.'mS-DS-CreatorSID'.Value -eq $sid })
    foreach ($computer in $created) {
      Remove-ADObject -Identity $computer -Recursive -Confirm:$false
      Write-Output "__COMPUTER_DELETED__$($computer.SamAccountName)"
    }
    Remove-ADUser -Identity $user -Confirm:$false
  }
"""
        + _PROFILE_REMOVAL
        + r"""} else {
  $account = Get-LocalUser -Name $user -ErrorAction SilentlyContinue
"""
        + _UNMARKED_ACCOUNT
        + r"""  if ($account) {
    $sid = $account.SID.Value
    # No new logon from here on: disabled at the start of each round (again, as a process running
    # as an administrator could enable it), then what the user runs is ended and its sessions
    # logged off, until nothing is left.
"""
        + _end_logons_or_leave("Disable-LocalUser -Name $user")
        + r"""    Remove-LocalUser -Name $user
  }
"""
        + _PROFILE_REMOVAL
        + r"""}
Write-Output "passport: $user removed"
# Done: a program's exit code left in $LASTEXITCODE (query, logoff) is not this script's.
exit 0
"""
    )
    .replace("__COMPUTER_DELETED__", COMPUTER_DELETED)
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
