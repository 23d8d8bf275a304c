"""A Linux removal of a user still in Passport's group whose userdel cannot lock /etc/group
(a config-management run, a package's postinst holding /etc/group.lock): userdel exits 10, its
E_GRP_UPDATE, which under ``set -e`` was the script's code, ``REMOVAL_REFUSED_EXIT_CODE``, read by
the portal as "the user left Passport's group". The script now ends such a failure with its own
ordinary code, and once the lock is gone a rerun removes the user. The real scripts in a devcloud host."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from fleet.linux_scripts import TOOL_FAILED_EXIT_CODE
from fleet.scripts import MARKER_GROUP, linux_left_line, render_remove
from tests.integration.linux_host import host_sshd, linux_create, run_script, username
from tests.sshd import LoopbackSshd
from tests.stack import Cloud

pytestmark = [pytest.mark.integration]


@pytest.fixture
def sshd(aws: Cloud) -> Iterator[LoopbackSshd]:
    yield from host_sshd(aws, "group-lock")


def test_a_removal_stopped_by_the_group_files_lock_is_an_ordinary_failure(aws: Cloud, sshd: LoopbackSshd) -> None:
    user = username()
    grant = str(uuid.uuid4())
    try:
        code, out = run_script(sshd, linux_create(user, grant, admin_rights=True))
        assert code == 0, out
        sshd.run("printf 1 > /etc/group.lock")
        code, out = run_script(sshd, render_remove(platform="linux", username=user, grant_uid=grant, created=True))
        assert MARKER_GROUP in sshd.run(f"id -nG {user}").split()  # still a Passport user, in the group
        assert "userdel: cannot lock /etc/group" in out, out  # userdel's own failure, its exit 10
        assert code == TOOL_FAILED_EXIT_CODE, f"exit {code}\n{out}"
        assert linux_left_line(user) not in out.splitlines()

        sshd.run("rm -f /etc/group.lock")
        code, out = run_script(sshd, render_remove(platform="linux", username=user, grant_uid=grant, created=True))
        assert code == 0, out
        assert sshd.run(f"id {user} 2>/dev/null || echo none").strip() == "none"
    finally:
        sshd.run("rm -f /etc/group.lock", check=False)
        sshd.run(f"pkill -KILL -u {user}; userdel -f -r {user}; rm -f /etc/sudoers.d/passport-{user}*", check=False)
