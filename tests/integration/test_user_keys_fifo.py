"""What a Linux user without sudo leaves in its own .ssh directory does not hold the host's lock.

Every script that rewrites a user's keys (a second grant's create, an extension's or a CA
rotation's rerun of the create, the removal of one of two grants) writes them as the user
(``write_user_keys``) while holding the host's Passport lock (/var/lib/passport/lock). It wrote a
file of a known name (~/.ssh/authorized_keys.passport), with the lock's descriptor inherited: a
FIFO the user planted there blocked the write until Run Command's timeout, and every other
person's create and removal on the host failed waiting for the lock (``flock -w 300``). Now the
user's step writes a file of its own (mktemp), without the lock's descriptor, in bounded time.
The real scripts in a devcloud host.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from fleet.scripts import render_remove
from tests.integration.linux_host import exit_and_output, host_sshd, linux_create, username
from tests.sshd import LoopbackSshd
from tests.stack import Cloud

pytestmark = [pytest.mark.integration]

CA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb0Ik1Q5lmqk7cCc8DSK7zS4Tb5lYq4TIpQKQd2SKlR passport-ca"


@pytest.fixture
def sshd(aws: Cloud) -> Iterator[LoopbackSshd]:
    yield from host_sshd(aws, "keys-fifo")


def _create(user: str, grant: str) -> str:
    return linux_create(user, grant, ca_public_keys=[CA_KEY])


def _script(sshd: LoopbackSshd, text: str) -> tuple[int, str, float]:
    """Run a script in the host as root, as Run Command would; its exit code, its output and how long it took."""
    started = time.monotonic()
    out = sshd.run('bash 2>&1; echo "exit=$?"', input=text, timeout=120)
    took = time.monotonic() - started
    code, output = exit_and_output(out)
    return code, output, took


def _lock_free(sshd: LoopbackSshd) -> bool:
    return sshd.run("flock -w 5 /var/lib/passport/lock true && echo FREE || echo HELD").strip() == "FREE"


def _principals(sshd: LoopbackSshd, user: str) -> list[str]:
    text = sshd.run(f"cat /home/{user}/.ssh/authorized_keys")
    return sorted(line.split('principals="', 1)[1].split('"', 1)[0] for line in text.splitlines() if line)


def _forget(sshd: LoopbackSshd, user: str) -> None:
    sshd.run(f"pkill -KILL -u {user}; userdel -f -r {user}", check=False)


@pytest.mark.parametrize("planted", ["authorized_keys.passport", "authorized_keys"])
def test_a_fifo_the_user_planted_neither_blocks_the_next_script_nor_holds_the_lock(
    sshd: LoopbackSshd, planted: str
) -> None:
    user, grant_a, grant_b = username(), str(uuid.uuid4()), str(uuid.uuid4())
    try:
        assert _script(sshd, _create(user, grant_a))[0] == 0
        # The user, with no sudo, in its own home.
        sshd.run(f"runuser -u {user} -- rm -f /home/{user}/.ssh/{planted}")
        sshd.run(f"runuser -u {user} -- mkfifo /home/{user}/.ssh/{planted}")

        # A second grant of the person on the host: done at once, both grants' lines in a regular file.
        code, out, took = _script(sshd, _create(user, grant_b))
        assert code == 0, out
        assert took < 30, out
        assert _lock_free(sshd)
        assert sshd.run(f"stat -c %F /home/{user}/.ssh/authorized_keys").strip() == "regular file"
        assert _principals(sshd, user) == sorted([f"grant-{grant_a}", f"grant-{grant_b}"])

        # The removal of one of the two rewrites the file too, as the user: done as well.
        sshd.run(f"runuser -u {user} -- rm -f /home/{user}/.ssh/{planted}")
        sshd.run(f"runuser -u {user} -- mkfifo /home/{user}/.ssh/{planted}")
        code, out, took = _script(
            sshd,
            render_remove(platform="linux", username=user, grant_uid=grant_a, created=True, live_grant_uids=[grant_b]),
        )
        assert code == 0 and took < 30, out
        assert _lock_free(sshd)
        assert _principals(sshd, user) == [f"grant-{grant_b}"]
    finally:
        _forget(sshd, user)


def test_a_keys_file_the_user_made_a_directory_fails_the_grant_at_once_with_the_reason(sshd: LoopbackSshd) -> None:
    user, grant_a, grant_b = username(), str(uuid.uuid4()), str(uuid.uuid4())
    try:
        assert _script(sshd, _create(user, grant_a))[0] == 0
        sshd.run(f"runuser -u {user} -- sh -c 'rm -f ~/.ssh/authorized_keys && mkdir ~/.ssh/authorized_keys'")
        code, out, took = _script(sshd, _create(user, grant_b))
        assert code != 0 and took < 30, out
        assert f"passport: could not write {user}'s authorized_keys as the user" in out
        assert _lock_free(sshd)
        # Nothing of it went into the directory, nor stayed beside it.
        assert sshd.run(f"ls -A /home/{user}/.ssh/authorized_keys").strip() == ""
        assert "authorized_keys.passport" not in sshd.run(f"ls -A /home/{user}/.ssh")
    finally:
        _forget(sshd, user)
