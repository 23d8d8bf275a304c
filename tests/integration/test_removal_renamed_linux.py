"""A Linux removal whose grant's account was renamed, or whose host holds a grant record the portal
never made.

A user with sudo may rename its own account (``usermod -l``, ``groupmod -n``). The removal went by
the grant's name alone: it found no user of that name, took the "rerun after an interruption"
branch (which skipped the recorded uid, its owner being another name now), said "removed" and exited
0, while the account (same uid, unlocked, still in Passport's group) and its processes lived on.
Now the create reports the account's uid, the portal keeps it (``Grant.account_uid``) and the
removal finds the account by it (else by the host's record of the uids given to the name): renamed,
it is locked, expired, ended and left for an operator (``REMOVAL_REFUSED_EXIT_CODE``).

A user with sudo may also write a grant record of its own in /var/lib/passport/grants: the removal
of its last real grant counted it as live and kept the account. Now only the grants the portal
holds live keep it. The real scripts in a devcloud host, and through the worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from fleet import CommandResult
from fleet.scripts import (
    MARKER_GROUP,
    REMOVAL_REFUSED_EXIT_CODE,
    linux_left_line,
    render_list_users,
    render_remove,
    render_remove_per_host,
)
from requests_app import services
from requests_app.models import AccessRequest, GrantStatus, RequestStatus
from requests_app.services.provisioning.remove import NEEDS_OPERATOR_PREFIX
from requests_app.services.reconcile import listed_users
from tests.factories import make_membership, make_user
from tests.integration.linux_host import (
    create_with_sudo,
    forget,
    host_sshd,
    locked_expired,
    run_script,
    running,
    username,
)
from tests.sshd import LoopbackSshd
from tests.stack import Cloud, direct_active_request, wait_for

pytestmark = [pytest.mark.integration]


@pytest.fixture
def sshd(aws: Cloud) -> Iterator[LoopbackSshd]:
    yield from host_sshd(aws, "removal-renamed")


def _rename(sshd: LoopbackSshd, user: str, renamed: str, uid: int) -> None:
    """With its sudo, the user renames its own account and leaves something running."""
    sshd.run(f"usermod -l {renamed} {user} && groupmod -n {renamed} {user}")
    sshd.run(f"runuser -u {renamed} -- setsid sleep 600 </dev/null >/dev/null 2>&1 &")
    wait_for(lambda: running(sshd, uid), timeout=10, what="the renamed user's process")


@pytest.mark.parametrize("told_the_uid", [True, False], ids=["uid-from-the-portal", "uid-from-the-hosts-record"])
def test_a_renamed_account_is_locked_ended_and_left_for_an_operator_never_called_removed(
    aws: Cloud, sshd: LoopbackSshd, told_the_uid: bool
) -> None:
    user, grant = username(), str(uuid.uuid4())
    renamed = "rvren" + user[3:9]
    instance_id = aws.instance_id("web-1")
    try:
        uid = create_with_sudo(sshd, user, grant)
        _rename(sshd, user, renamed, uid)

        script = render_remove_per_host(
            username=user,
            grants={instance_id: grant},
            created=[instance_id],
            account_uids={instance_id: uid} if told_the_uid else {},
        )
        code, out = run_script(sshd, script, env=f"AWS_SSM_INSTANCE_ID={instance_id}")

        assert code == REMOVAL_REFUSED_EXIT_CODE, out
        assert linux_left_line(user) in out.splitlines()
        assert f"passport: {user} removed" not in out
        # Still there under its new name, but it can do nothing: locked, expired, nothing running,
        # no sudo from Passport, no record of the grant.
        assert sshd.run(f"getent passwd {uid} | cut -d: -f1").strip() == renamed
        assert locked_expired(sshd, renamed)
        assert not running(sshd, uid)
        assert sshd.run(f"ls /etc/sudoers.d/ | grep -c '^passport-{user}' || true").strip() == "0"
        assert sshd.run(f"test -e /var/lib/passport/grants/{grant} && echo KEPT || echo GONE").strip() == "GONE"
        # Tried again, the same: a renamed account is never deleted, nor called removed.
        code, out = run_script(sshd, script, env=f"AWS_SSM_INSTANCE_ID={instance_id}")
        assert code == REMOVAL_REFUSED_EXIT_CODE and sshd.run(f"getent passwd {uid} || true").strip()

        # An operator deletes the account: the next try finishes the removal.
        sshd.run(f"userdel --remove {renamed}")
        code, out = run_script(sshd, script, env=f"AWS_SSM_INSTANCE_ID={instance_id}")
        assert (code, out.splitlines()[-1]) == (0, f"passport: {user} removed")
    finally:
        forget(sshd, renamed, user)


def test_a_reconcile_removal_of_the_name_leaves_a_renamed_account_for_an_operator(sshd: LoopbackSshd) -> None:
    """The sweep lists the account by the name Passport gave it, though it has another now; its
    removal has no grant, and the host's record of the uid given to the name still finds the
    account, which it locks and ends, and says so (exit 10), never "removed"."""
    user, grant = username(), str(uuid.uuid4())
    renamed = "rvrec" + user[3:9]
    try:
        uid = create_with_sudo(sshd, user, grant)
        _rename(sshd, user, renamed, uid)
        code, out = run_script(sshd, render_list_users())
        assert code == 0 and user in out.splitlines() and renamed not in out, out
        assert listed_users(
            CommandResult(command_id="cmd-list", status="Success", exit_code=0, stdout=out, stderr="")
        ) >= {user}
        code, out = run_script(sshd, render_remove(platform="linux", username=user))
        assert code == REMOVAL_REFUSED_EXIT_CODE, out
        assert linux_left_line(user) in out.splitlines()
        assert locked_expired(sshd, renamed)
        assert not running(sshd, uid)
    finally:
        forget(sshd, renamed, user)


def test_an_account_renamed_to_a_hostile_name_is_still_locked_and_ended(aws: Cloud, sshd: LoopbackSshd) -> None:
    """usermod refuses such a name, but a user with sudo may edit /etc/passwd itself: a space,
    shell syntax, a leading dash; the removal runs none of it and still locks and ends the account."""
    user, grant = username(), str(uuid.uuid4())
    tag = user[3:]
    hostile = f"-rv {tag};$(touch /tmp/pwned-{tag})`touch /tmp/pwned-{tag}`"
    instance_id = aws.instance_id("web-1")
    uid = 0
    try:
        uid = create_with_sudo(sshd, user, grant)
        # The name glibc reads (a line starting with "-" is NIS syntax it skips: the dash goes second).
        hostile = "r" + hostile
        sshd.run(f"sed -i 's|^{user}:|{hostile}:|' /etc/passwd /etc/shadow")
        assert sshd.run(f"getent passwd {uid} | cut -d: -f1").strip() == hostile
        sshd.run(f"setpriv --reuid {uid} --regid {uid} --clear-groups setsid sleep 600 </dev/null >/dev/null 2>&1 &")
        wait_for(lambda: running(sshd, uid), timeout=10, what="the renamed user's process")
        script = render_remove_per_host(
            username=user, grants={instance_id: grant}, created=[instance_id], account_uids={instance_id: uid}
        )
        code, out = run_script(sshd, script, env=f"AWS_SSM_INSTANCE_ID={instance_id}")
        assert code == REMOVAL_REFUSED_EXIT_CODE, out
        assert linux_left_line(user) in out.splitlines()
        shadow = sshd.run(f"grep -F '{hostile}:' /etc/shadow").strip().split(":")
        assert shadow[1].startswith("!") and shadow[7] == "1"
        assert not running(sshd, uid)
        assert sshd.run(f"ls /tmp/pwned-{tag} 2>/dev/null || true").strip() == ""
    finally:
        sshd.run(
            f"{f'pkill -KILL -u {uid}; ' if uid else ''}grep -vF '{hostile}:' /etc/passwd > /tmp/pw-{tag} && "
            f"cat /tmp/pw-{tag} > /etc/passwd; grep -vF '{hostile}:' /etc/shadow > /tmp/pw-{tag} && "
            f"cat /tmp/pw-{tag} > /etc/shadow; rm -f /tmp/pw-{tag} /tmp/pwned-{tag}; gpasswd -d {user} {MARKER_GROUP}",
            check=False,
        )
        forget(sshd, user)


def test_a_grant_record_the_portal_does_not_hold_live_keeps_nothing(sshd: LoopbackSshd) -> None:
    """As root (its sudo), the user writes the record of a grant that never was, and a sudoers file
    beside it; the removal of its last real grant still removes it. A real live grant keeps it."""
    user, grant, fake, other = username(), str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    try:
        create_with_sudo(sshd, user, grant)
        create_with_sudo(sshd, user, other)
        sshd.run(f"printf '%s\\n%s\\n' {user} 'passport-grant-record 2' > /var/lib/passport/grants/{fake}")
        sshd.run(f"cp /etc/sudoers.d/passport-{user}-{grant} /etc/sudoers.d/passport-{user}-{fake}")
        sshd.run(f"runuser -u {user} -- setsid sleep 600 </dev/null >/dev/null 2>&1 &")
        wait_for(lambda: running(sshd, user), timeout=10, what="the user's process")

        # The portal holds the other grant live: it keeps the user, the planted one does not count.
        code, out = run_script(
            sshd,
            render_remove(platform="linux", username=user, grant_uid=grant, created=True, live_grant_uids=[other]),
        )
        assert code == 0, out
        assert out.splitlines()[-1] == f"passport: grant {grant} removed; {user} kept for 1 live grant(s)"

        # The last real grant: the planted record keeps nothing.
        code, out = run_script(sshd, render_remove(platform="linux", username=user, grant_uid=other, created=True))
        assert (code, out.splitlines()[-1]) == (0, f"passport: {user} removed"), out
        assert not sshd.run(f"getent passwd {user} || true").strip()
        assert not running(sshd, user)
        assert sshd.run(f"ls /etc/sudoers.d/ | grep -c '^passport-{user}' || true").strip() == "0"
        assert sshd.run(f"test -e /var/lib/passport/grants/{fake} && echo KEPT || echo GONE").strip() == "GONE"
    finally:
        sshd.run(f"rm -f /var/lib/passport/grants/{fake}", check=False)
        forget(sshd, user)


@pytest.mark.usefixtures("live_db", "worker")
def test_the_portal_keeps_the_uid_and_records_a_renamed_account_as_refused(
    prod: AwsAccount, aws: Cloud, sshd: LoopbackSshd
) -> None:
    """Through the worker: the grant keeps the uid its create reported; the request ends while its
    user, renamed, runs something: the grant waits for an operator (``grant.removal_refused``)."""
    dana, approver = make_user("dana"), make_user("approver")
    make_membership(dana, prod, "admin")
    make_membership(approver, prod, "admin", can_approve=True)
    access_request = direct_active_request(prod, dana, approver, admin_rights=True)
    grant = access_request.grants.get()
    user = grant.username
    renamed = "rvpor" + user[3:9]
    try:
        uid = int(sshd.run(f"id -u {user}").strip())
        assert grant.account_uid == uid
        ready = LogbookEntry.objects.get(request_id=access_request.pk, action="grant.ready")
        assert ready.detail["account_uid"] == uid
        _rename(sshd, user, renamed, uid)

        services.access_request_complete(access_request=access_request, actor=dana)
        refused = wait_for(
            lambda: LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.removal_refused").first(),
            what="grant.removal_refused",
        )
        assert refused.detail["username"] == user and refused.detail["account_uid"] == uid
        grant.refresh_from_db()
        assert grant.status == GrantStatus.REMOVING and grant.last_error.startswith(NEEDS_OPERATOR_PREFIX)
        assert f"uid {uid}" in grant.last_error and MARKER_GROUP in grant.last_error
        assert AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETING
        assert not LogbookEntry.objects.filter(request_id=access_request.pk, action="grant.removed").exists()
        assert locked_expired(sshd, renamed)
        assert not running(sshd, uid)

        # An operator deletes the account; the grant's retry (or the sweep) then removes the grant.
        sshd.run(f"userdel --remove {renamed}")
        wait_for(
            lambda: AccessRequest.objects.get(pk=access_request.pk).status == RequestStatus.COMPLETED,
            timeout=90,
            what="the request completed once the account is gone",
        )
    finally:
        forget(sshd, renamed, user)
