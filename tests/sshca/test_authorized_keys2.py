"""sshd reads keys from every file its AuthorizedKeysFile names, and its built-in default is
".ssh/authorized_keys .ssh/authorized_keys2" (devcloud's host sshd sets none, like Debian/Ubuntu whose
sshd_config leaves it commented out). Passport's scripts rewrite authorized_keys, so they must leave the
user no other such file under its home: a line the user kept in one (its direct grant's, a grant's whose
request ended, a plain key) would outlive every rewrite (README: "a certificate issued before logs in to
no sshd by any route"; "Lines the user adds themselves are dropped at every change"). A file sshd reads
outside the home is root's: left, and said. Real sshd, real scripts (``fleet.sshd_key_files``)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devcloud.localhost import LocalHosts
from fleet.scripts import render_create, render_remove
from fleet.sshd_key_files import KEY_FILE_LEFT
from tests.sshd import LoopbackSshd, openssh_run, sshd_available

HOST = "i-0ca0ca0ca0ca0ca01"
EXPLICIT_DEFAULT = "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys2\n"


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _certify(tmp_path: Path, name: str, principal: str) -> tuple[Path, Path]:
    key = tmp_path / name
    _keygen(key)
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-s",
            str(tmp_path / "passport_ca"),
            "-I",
            "x",
            "-n",
            principal,
            "-V",
            "-5m:+1h",
            str(key.with_suffix(".pub")),
        ],
        check=True,
    )
    return key, key.with_name(f"{name}-cert.pub")


@dataclass
class Host:
    tmp_path: Path
    sshd: LoopbackSshd
    port: int
    user: str
    ca: str
    expires: datetime

    def create(self, grant: str, *, direct_login: bool) -> str:
        return self.sshd.run(
            "bash 2>&1",
            input=render_create(
                platform="linux",
                username=self.user,
                expires_at=self.expires,
                grant_uid=grant,
                ca_public_keys=[self.ca],
                forward_ports=[22],
                direct_login=direct_login,
            ),
            timeout=120,
        )

    def login(self, key: Path, cert: Path | None = None) -> bool:
        return openssh_run(
            port=self.port, username=self.user, identity_file=key, certificate_file=cert, command="id -un"
        ).ok

    def as_user(self, command: str) -> str:
        return self.sshd.run(f"runuser -u {self.user} -- sh -c '{command}'")


@pytest.fixture
def host(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Host]:
    """A host whose sshd reads ``request.param`` (sshd_config lines first; None: no AuthorizedKeysFile
    at all, so sshd's built-in default, as on devcloud's hosts and Debian's)."""
    if sshd_available() is not None:
        pytest.skip(sshd_available())
    hosts = LocalHosts(tmp_path / "hosts")
    sshd = LoopbackSshd(hosts, HOST, name="ak2")
    config: str | None = request.param
    port = sshd.start(config_extra=config or "", builtin_key_files=config is None)
    user = "rs-" + "".join("abcdefghijklmnopqrstuvwxyz234567"[b % 32] for b in uuid.uuid4().bytes[:8])
    ca = _keygen(tmp_path / "passport_ca")
    try:
        yield Host(tmp_path, sshd, port, user, ca, datetime.now(UTC) + timedelta(hours=1))
    finally:
        sshd.run(f"pkill -KILL -u {user}; userdel -rf {user}", check=False)
        sshd.stop()
        hosts.close()


@pytest.mark.parametrize("host", [EXPLICIT_DEFAULT, None], indirect=True, ids=["explicit-default", "built-in"])
def test_a_direct_certificate_logs_in_nowhere_once_the_account_is_recorded(host: Host) -> None:
    grant = str(uuid.uuid4())
    key, cert = _certify(host.tmp_path, "person", f"direct-grant-{grant}")
    plain = host.tmp_path / "plain"
    plain_public = _keygen(plain)
    host.create(grant, direct_login=True)  # a direct account: the person's certificate logs in to sshd
    assert host.login(key, cert)
    # During that unrecorded session, the user keeps a copy of its line, and a plain key of its own,
    # where sshd reads keys too.
    host.as_user(f"cp ~/.ssh/authorized_keys ~/.ssh/authorized_keys2 && echo {plain_public} >> ~/.ssh/authorized_keys2")
    assert host.login(plain)
    # An admin makes the account's CLI sessions recorded: the grant's lines are rewritten without it.
    host.create(grant, direct_login=False)
    assert "direct-grant" not in host.as_user("cat ~/.ssh/authorized_keys")
    assert not host.login(key, cert), "the direct certificate still logs in to sshd, unrecorded (authorized_keys2)"
    assert not host.login(plain), "a plain key in authorized_keys2 still logs in"
    assert host.as_user("ls -A ~/.ssh") == "authorized_keys\n"


# An explicit list of two files, the second of them not authorized_keys2 and in a directory of its own:
# read from the running sshd's own configuration (its -f), with sshd's tokens.
@pytest.mark.parametrize("host", ["AuthorizedKeysFile .ssh/authorized_keys %h/.config/./keys-%u\n"], indirect=True)
def test_every_other_file_the_running_sshd_names_is_removed(host: Host) -> None:
    grant = str(uuid.uuid4())
    key, cert = _certify(host.tmp_path, "person", f"direct-grant-{grant}")
    host.create(grant, direct_login=True)
    host.as_user(f"mkdir -p ~/.config && cp ~/.ssh/authorized_keys ~/.config/keys-{host.user}")
    host.as_user("rm ~/.ssh/authorized_keys")
    assert host.login(key, cert)  # through the second file alone
    host.create(grant, direct_login=False)
    assert not host.login(key, cert)
    assert host.as_user("ls -A ~/.config") == ""


# A file sshd reads outside the user's home is root's: Passport leaves it, and says so.
@pytest.mark.parametrize("host", ["AuthorizedKeysFile .ssh/authorized_keys /etc/passport-ak2-keys/%u\n"], indirect=True)
def test_a_key_file_outside_the_home_is_left_and_said(host: Host) -> None:
    grant = str(uuid.uuid4())
    host.sshd.run("mkdir -p /etc/passport-ak2-keys")
    host.sshd.run(f"echo '# root keeps this' > /etc/passport-ak2-keys/{host.user}")
    output = host.create(grant, direct_login=False)
    assert f"{KEY_FILE_LEFT} /etc/passport-ak2-keys/{host.user}" in output
    assert host.sshd.run(f"cat /etc/passport-ak2-keys/{host.user}") == "# root keeps this\n"
    assert "passport: " + host.user + " ready" in output


# The removal of one grant that keeps the user for another rewrites the file, and leaves no other either:
# the ended grant's copied line no longer logs in.
@pytest.mark.parametrize("host", [EXPLICIT_DEFAULT], indirect=True)
def test_a_removal_keeping_the_user_leaves_no_copied_line(host: Host) -> None:
    ended, kept = str(uuid.uuid4()), str(uuid.uuid4())
    key, cert = _certify(host.tmp_path, "person", f"direct-grant-{ended}")
    host.create(ended, direct_login=True)
    host.create(kept, direct_login=True)
    host.as_user("cp ~/.ssh/authorized_keys ~/.ssh/authorized_keys2")
    assert host.login(key, cert)
    output = host.sshd.run(
        "bash 2>&1",
        input=render_remove(platform="linux", username=host.user, grant_uid=ended, live_grant_uids=[kept]),
        timeout=120,
    )
    assert "kept for 1 live grant" in output
    assert not host.login(key, cert), "the ended grant's copied line still logs in"
    assert host.as_user("ls -A ~/.ssh") == "authorized_keys\n"
