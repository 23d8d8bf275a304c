"""A Linux removal whose grant's account was renamed and moved out of Passport's uid range.

A user with sudo may rename its account and give it another uid in one go (``usermod -l NEW -u N``,
the same tool and sudo as a rename alone). The removal looked for the account by its name and by
the uids of Passport's range only: it found nothing, said "removed" (exit 0), and the account,
unlocked, and its processes lived on. Now it finds the account by its primary group (the gid
Passport gave with the uid) or its home (/home/<grant user>) too, and handles it as renamed: locked,
expired, ended and left for an operator (``REMOVAL_REFUSED_EXIT_CODE``), never called removed. The
real scripts in a devcloud host."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from fleet.scripts import REMOVAL_REFUSED_EXIT_CODE, linux_left_line, render_remove_per_host
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
from tests.stack import Cloud, wait_for

pytestmark = [pytest.mark.integration]


@pytest.fixture
def sshd(aws: Cloud) -> Iterator[LoopbackSshd]:
    yield from host_sshd(aws, "renamed-uid-moved")


@pytest.mark.parametrize(
    "also",
    ["", "-g 100", "-d /home/{renamed} -m"],
    ids=["uid-moved", "uid-and-group-moved-found-by-home", "uid-and-home-moved-found-by-group"],
)
@pytest.mark.parametrize("told_the_uid", [True, False], ids=["uid-from-the-portal", "uid-from-the-hosts-record"])
def test_renamed_with_its_uid_moved_is_locked_ended_and_left_never_called_removed(
    aws: Cloud, sshd: LoopbackSshd, also: str, told_the_uid: bool
) -> None:
    user, grant = username(), str(uuid.uuid4())
    renamed = "rvmov" + user[3:9]
    instance_id = aws.instance_id("web-1")
    new_uid = 40000 + int(uuid.uuid4().int % 10000)
    try:
        uid = create_with_sudo(sshd, user, grant)
        # With its sudo: another name and a uid out of Passport's range, then something left running.
        sshd.run(
            f"usermod -l {renamed} -u {new_uid} {also.format(renamed=renamed)} {user} && groupmod -n {renamed} {user}"
        )
        sshd.run(f"runuser -u {renamed} -- setsid sleep 600 </dev/null >/dev/null 2>&1 &")
        wait_for(lambda: running(sshd, new_uid), timeout=10, what="the renamed user's process")
        script = render_remove_per_host(
            username=user,
            grants={instance_id: grant},
            created=[instance_id],
            account_uids={instance_id: uid} if told_the_uid else {},
        )
        code, out = run_script(sshd, script, env=f"AWS_SSM_INSTANCE_ID={instance_id}")
        assert code == REMOVAL_REFUSED_EXIT_CODE, out
        assert f"passport: {user} removed" not in out, out
        assert linux_left_line(user) in out, out
        assert sshd.run(f"getent passwd {renamed} || true").strip(), "the account is left for an operator"
        assert locked_expired(sshd, renamed)
        assert not running(sshd, new_uid), out
        # A rerun says the same: the account is still there, and still not Passport's to delete.
        code, out = run_script(sshd, script, env=f"AWS_SSM_INSTANCE_ID={instance_id}")
        assert code == REMOVAL_REFUSED_EXIT_CODE and f"passport: {user} removed" not in out, out
    finally:
        sshd.run(f"pkill -KILL -u {new_uid}", check=False)
        forget(sshd, renamed, user)
        sshd.run(f"rm -rf /home/{renamed}", check=False)


def test_a_uid_shared_with_root_is_never_ended_nor_called_removed(aws: Cloud, sshd: LoopbackSshd) -> None:
    """Renamed and moved onto root's uid (usermod -o -u 0): the removal must not end root's processes."""
    user, grant = username(), str(uuid.uuid4())
    renamed = "rvroot" + user[3:9]
    instance_id = aws.instance_id("web-1")
    try:
        uid = create_with_sudo(sshd, user, grant)
        sshd.run(f"usermod -l {renamed} -o -u 0 {user} && groupmod -n {renamed} {user}")
        sshd.run("setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /tmp/passport-root-sleep.pid")
        script = render_remove_per_host(
            username=user, grants={instance_id: grant}, created=[instance_id], account_uids={instance_id: uid}
        )
        code, out = run_script(sshd, script, env=f"AWS_SSM_INSTANCE_ID={instance_id}")
        assert code in (4, REMOVAL_REFUSED_EXIT_CODE) and f"passport: {user} removed" not in out, out
        assert sshd.run("kill -0 $(cat /tmp/passport-root-sleep.pid) && echo alive", check=False).strip() == "alive"
        assert locked_expired(sshd, renamed)
    finally:
        sshd.run("kill $(cat /tmp/passport-root-sleep.pid); rm -f /tmp/passport-root-sleep.pid", check=False)
        sshd.run(f"userdel -f {renamed}; groupdel {renamed}; rm -rf /home/{user}", check=False)
