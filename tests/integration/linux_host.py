"""What the scenarios that run the real Linux scripts in a devcloud host share: its sshd, a fresh
grant user's name, a script run as Run Command would and its exit code, the grant's create, and the
checks and clean-up of an account."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet.scripts import UID_FIRST, UID_LAST, created_account_uid, render_create
from tests.sshd import LoopbackSshd
from tests.stack import Cloud


def host_sshd(aws: Cloud, name: str) -> Iterator[LoopbackSshd]:
    """The body of a test module's ``sshd`` fixture: a loopback sshd in the host web-1."""
    server = LoopbackSshd(aws.devcloud.runtime.hosts, aws.instance_id("web-1"), name=name)
    server.start()
    yield server
    server.stop()


def username() -> str:
    """A grant user's name no other test has."""
    return "rs-" + "".join("abcdefghijklmnopqrstuvwxyz234567"[b % 32] for b in uuid.uuid4().bytes[:8])


def exit_and_output(out: str) -> tuple[int, str]:
    """Split what ``bash 2>&1; echo "exit=$?"`` printed into the script's exit code and its output."""
    *lines, last = out.rstrip("\n").split("\n")
    assert last.startswith("exit="), out
    return int(last.removeprefix("exit=")), "\n".join(lines)


def run_script(sshd: LoopbackSshd, text: str, env: str = "") -> tuple[int, str]:
    """Run a script in the host as Run Command would, as root; its exit code and its output."""
    return exit_and_output(sshd.run(f'{env} bash 2>&1; echo "exit=$?"', input=text, timeout=120))


def linux_create(user: str, grant: str, **options: Any) -> str:
    """The create script of a Linux grant ending in an hour."""
    return render_create(
        platform="linux",
        username=user,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        grant_uid=grant,
        **options,
    )


def create_with_sudo(sshd: LoopbackSshd, user: str, grant: str) -> int:
    """The grant's create, with sudo, run in the host; the uid it reports."""
    code, out = run_script(sshd, linux_create(user, grant, admin_rights=True))
    assert code == 0, out
    uid = created_account_uid(out)
    assert uid is not None and UID_FIRST <= uid <= UID_LAST, out
    assert str(uid) == sshd.run(f"id -u {user}").strip()
    return uid


def running(sshd: LoopbackSshd, user: int | str) -> bool:
    """Whether the user (a name or a uid) has a process in the host."""
    return bool(sshd.run(f"pgrep -u {user} || true").strip())


def locked_expired(sshd: LoopbackSshd, name: str) -> bool:
    fields = sshd.run(f"getent shadow {name}").strip().split(":")
    return fields[1].startswith("!") and fields[7] == "1"


def forget(sshd: LoopbackSshd, *names: str) -> None:
    """What a test left in the host of these accounts, whatever it got to."""
    for name in names:
        sshd.run(
            f"pkill -KILL -u {name}; userdel -f -r {name}; groupdel {name}; rm -f /etc/sudoers.d/passport-{name}*",
            check=False,
        )
