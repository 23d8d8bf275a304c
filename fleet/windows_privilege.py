"""What a Windows create script without administrator rights refuses, on either kind of host; the
checks themselves are ``windows_domain`` (a domain controller's) and ``MEMBER_NOT_ADMIN_CHECKS`` here
(a member server's), and ``windows_scripts`` puts them in the script.

Both have one shape, rendered by ``privilege_refusal``: a function finds what would give the user
rights its request did not ask for; found, the user (made by an earlier run or this one) is disabled
first, then the script ends for good with ``PRIVILEGE_REFUSED_EXIT_CODE`` (another run would find the
same), naming what it found through ``Shown``: a name from the host or the directory, chosen by
whoever may edit that group or account.

On a member server a user without administrator rights is put in Remote Desktop Users only, but
every local user is also in principals Windows gives it by itself: Everyone, Authenticated Users,
This Organization, Users, INTERACTIVE (and Remote Interactive Logon), NETWORK or CONSOLE LOGON at
its logons, NTLM Authentication (local accounts are authenticated by NTLM), Local account, the
machine's own group of relative id 513 (its primary group, "None"). Should a local group hold one
of them, or the Remote Desktop Users Passport puts it in, or a domain's Domain Users, the user would
have that group's rights whatever its request said: an administrator through Administrators, every
file through Backup Operators, and so on. So, as on a domain controller, every local group is
looked at but an allow-list of those that give no more than what the user has anyway
(``MEMBER_ALLOWED_GROUP_SIDS``). Such a host is refused rather than repaired: someone made that
membership, and Passport cannot tell what else relies on it. The groups' members are read through
CIM (``Win32_GroupUser``), which leaves out a member that no longer resolves, where
``Get-LocalGroupMember`` fails for the whole group (``windows_scripts``).
"""

from __future__ import annotations

# The create script's exit code for a host where the user would reach rights its request did not ask
# for: final (``requests_app.services.provisioning.settle.FINAL_EXIT_CODES``), as the wrong role is.
PRIVILEGE_REFUSED_EXIT_CODE = 7
# A name from the host or the directory is cut to this many characters in a refusal (a group's cn
# holds 64).
SHOWN_NAME_CHARACTERS = 64

SHOWN_FUNCTION = r"""function Shown([string]$text) {
  # A name from the directory as a refusal shows it (whoever may edit a group names it): cut short,
  # every control, format (bidi, zero-width) or line-breaking character written as its code, so it
  # can neither add lines to the output nor hide what the message says, and in quotes.
  $hidden = @('Control', 'Format', 'LineSeparator', 'ParagraphSeparator')
  if ($text.Length -gt __SHOWN__) { $text = $text.Substring(0, __SHOWN__) + '...' }
  $shown = ''
  foreach ($char in $text.ToCharArray()) {
    $category = [string][Globalization.CharUnicodeInfo]::GetUnicodeCategory($char)
    if ($hidden -contains $category) { $shown += '\u{0:x4}' -f [int]$char } else { $shown += $char }
  }
  return "'$shown'"
}
""".replace("__SHOWN__", str(SHOWN_NAME_CHARACTERS))

_REFUSAL = r"""function __NAME__(__PARAMETERS__) {
  $group = __FIND__
  if (-not $group) { return }
  # No logon with rights the request did not ask for: the user, made by an earlier run or this one,
  # is disabled first.
  __DISABLE__
  Refuse __CODE__ (__MESSAGE__)
}
"""


def privilege_refusal(*, name: str, parameters: str, find: str, disable: str, message: str) -> str:
    """A PowerShell function ``name`` that calls ``find`` (its answer, the group found, in ``$group``)
    and, when it found one, runs ``disable`` then refuses with ``PRIVILEGE_REFUSED_EXIT_CODE`` and
    ``message`` (an expression naming ``$group`` through ``Shown``)."""
    return (
        _REFUSAL.replace("__NAME__", name)
        .replace("__PARAMETERS__", parameters)
        .replace("__FIND__", find)
        .replace("__DISABLE__", disable)
        .replace("__CODE__", str(PRIVILEGE_REFUSED_EXIT_CODE))
        .replace("__MESSAGE__", message)
    )


# The principals every local user Passport makes is in, by SID (Microsoft's "Security identifiers"
# reference describes each): Everyone; LOCAL and CONSOLE LOGON (logons at the machine's own
# terminals and console); INTERACTIVE and Remote Interactive Logon (every interactive logon, Remote
# Desktop's included, holds the first, a Remote Desktop logon both); NETWORK (a logon over the
# network, SMB say, which Users may make by default); Authenticated Users; This Organization (the
# reference has it added by a domain controller for directory accounts, yet a member server's
# local accounts hold it too, as whoami /groups shows, and every domain user does); NTLM
# Authentication (present when the NTLM package authenticated the logon, as it does a local
# account's, Remote Desktop with Network Level Authentication included); Local account; Users;
# Remote Desktop Users. Whether a given logon holds each one varies, so all are looked for. A group
# of relative id 513 of any machine or domain is matched too: the machine's own ("None", every local
# user's primary group) and a domain's Domain Users.
# The well-known principals of a logon's token (a domain controller's check follows them too:
# ``windows_domain.DOMAIN_TOKEN_SIDS``).
TOKEN_SIDS = (
    "S-1-1-0",
    "S-1-2-0",
    "S-1-2-1",
    "S-1-5-2",
    "S-1-5-4",
    "S-1-5-14",
    "S-1-5-11",
    "S-1-5-15",
    "S-1-5-64-10",
)
MEMBER_BROAD_SIDS = (
    *TOKEN_SIDS,
    "S-1-5-113",
    "S-1-5-32-545",
    "S-1-5-32-555",
)
MEMBER_BROAD_RID_PATTERN = r"^S-1-5-21-\d+-\d+-\d+-513$"

# The local groups a broad principal may be in: what they give, every user made here may have.
# Users (after installation its only member is Authenticated Users, and INTERACTIVE and a domain's
# Domain Users join it): the ordinary user's rights. Remote Desktop Users: the right to log on
# remotely, which Passport gives the user itself. Guests: a logon with limited privileges, less
# than Users'. Certificate Service DCOM Access: the right to connect to the enterprise's
# certification authorities, which a certification authority's setup gives Authenticated Users.
# Every other local group is looked at, whatever its name or SID: Backup Operators (back up and
# restore every file, whatever protects it), Power Users, Hyper-V Administrators (all of Hyper-V),
# Remote Management Users, Event Log Readers, Distributed COM Users, and any group made on the host.
MEMBER_ALLOWED_GROUP_SIDS = ("S-1-5-32-545", "S-1-5-32-555", "S-1-5-32-546", "S-1-5-32-574")

_BROAD_MESSAGE = (
    '"refusing: the local group $(Shown $group.Group.Name) ($([string]$group.Group.SID)) holds " + `\n'
    '    "$(Shown $group.Member.Name) ($([string]$group.Member.SID)), which every user Passport makes " + `\n'
    '    "here belongs to: without administrator rights the user would have what that group gives. An " + `\n'
    '    "administrator of the instance must take it out of that group, then ask again."'
)

# Before the user is made or its password set, and once more after its groups are set ($user and
# Refuse are the script's); only in a member server's create without administrator rights.
MEMBER_NOT_ADMIN_CHECKS = (
    (
        r"""# No administrator rights: no local group but those allowed may hold a principal every user
# made here belongs to, or the user would have that group's rights all the same (``windows_privilege``).
"""
        + SHOWN_FUNCTION
        + r"""function BroadGroupMember() {
  # Every local group, each told by its SID (Windows translates names), its members read through CIM.
  $localGroups = @(Get-CimInstance Win32_Group -Filter "LocalAccount = TRUE")
  if (-not ($localGroups | Where-Object { [string]$_.SID -eq 'S-1-5-32-544' })) {
    throw "passport: no local Administrators group (S-1-5-32-544) found"
  }
  foreach ($localGroup in $localGroups) {
    if ($allowedGroupSids -contains [string]$localGroup.SID) { continue }
    $members = Get-CimAssociatedInstance -InputObject $localGroup -Association Win32_GroupUser `
      -ResultRole PartComponent
    foreach ($member in @($members)) {
      $memberSid = [string]$member.SID
      if ($broadSids -contains $memberSid -or $memberSid -match '__BROAD_RID__') {
        return [pscustomobject]@{ Group = $localGroup; Member = $member }
      }
    }
  }
  return $null
}
"""
        + privilege_refusal(
            name="RefuseIfBroadMember",
            parameters="",
            find="BroadGroupMember",
            disable="if (Get-LocalUser -Name $user -ErrorAction SilentlyContinue) { Disable-LocalUser -Name $user }",
            message=_BROAD_MESSAGE,
        )
        + r"""$broadSids = @(__BROAD_SIDS__)
$allowedGroupSids = @(__ALLOWED_GROUP_SIDS__)
RefuseIfBroadMember
"""
    )
    .replace("__BROAD_RID__", MEMBER_BROAD_RID_PATTERN)
    .replace("__BROAD_SIDS__", ", ".join(f"'{sid}'" for sid in MEMBER_BROAD_SIDS))
    .replace("__ALLOWED_GROUP_SIDS__", ", ".join(f"'{sid}'" for sid in MEMBER_ALLOWED_GROUP_SIDS))
)

# Once the user's groups are set: a membership made since the check above is seen here too.
MEMBER_NOT_ADMIN_LAST_LOOK = r"""# A last look at the local groups, now that the user's groups are set.
RefuseIfBroadMember
"""
