"""A grant's lines as the host's sshd reads them: an option it does not know makes it refuse the whole
line ("Bad options in authorized_keys"), so nobody logs in. ``expiry-time`` is OpenSSH 7.7's and
``permitlisten`` 7.8's; Amazon Linux 2 and CentOS 7 ship 7.4. The create wrote both whatever the
host's version; now it reads the version and writes a line without ``expiry-time`` below 7.7 (said
on its output), and ``no-port-forwarding`` instead of the forward rules below 7.8 (forwards refused,
never logins). The real script in a devcloud host, with a fake ``sshd``/``ssh`` first on PATH."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from fleet.scripts import authorized_keys, key_expiry_time, render_create
from fleet.ssh_keys import LINES_WITHOUT_EXPIRY_TIME
from requests_app.models import Grant, Instance
from requests_app.services.provisioning.expiry import key_expiry_said
from tests.integration.linux_host import forget, host_sshd, run_script, username
from tests.sshd import LoopbackSshd
from tests.stack import Cloud

pytestmark = [pytest.mark.integration]

CA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZtT2bqk5mJmSfDq2DEtoHaPwm0mOw9+g8h8sCOdJA5"
# What sshd 7.4 prints for -V, an option it does not have: its usage, on stderr, with its version.
OLD_SSHD = "unknown option -- V\nOpenSSH_7.4p1, OpenSSL 1.0.2k-fips  26 Jan 2017\nusage: sshd [-46DdeiqTt]\n"


@pytest.fixture
def sshd(aws: Cloud) -> Iterator[LoopbackSshd]:
    yield from host_sshd(aws, "old-sshd-lines")


def _fake(sshd: LoopbackSshd, *, sshd_says: str | None, ssh_says: str | None = None) -> str:
    """A directory for the front of PATH whose sshd (and ssh) print what they are given, as an old one would."""
    directory = f"/tmp/passport-fake-openssh-{uuid.uuid4().hex[:8]}"
    sshd.run(f"mkdir -p {directory}")
    for tool, says in (("sshd", sshd_says), ("ssh", ssh_says)):
        if says is None:
            continue
        sshd.run(f"cat > {directory}/{tool}.out && chmod 0755 {directory}", input=says)
        sshd.run(
            f"printf '#!/bin/sh\\ncat {directory}/{tool}.out >&2\\nexit 1\\n' > {directory}/{tool} && "
            f"chmod 0755 {directory}/{tool}"
        )
    return directory


def _create(sshd: LoopbackSshd, user: str, grant: str, *, end: datetime, ports: list[int], path: str) -> str:
    script = render_create(
        platform="linux",
        username=user,
        expires_at=end,
        grant_uid=grant,
        ca_public_keys=[CA_KEY],
        forward_ports=ports,
    )
    code, out = run_script(sshd, script, env=f'PATH="{path}:$PATH"' if path else "")
    assert code == 0, out
    return out


def _written(sshd: LoopbackSshd, user: str) -> str:
    return sshd.run(f"cat /home/{user}/.ssh/authorized_keys")


@pytest.mark.parametrize("ports", [[], [8080]], ids=["no-forwards", "forwards"])
def test_an_openssh_7_4_host_gets_its_lines_without_the_options_it_would_refuse(
    sshd: LoopbackSshd, ports: list[int]
) -> None:
    user, grant = username(), str(uuid.uuid4())
    end = datetime.now(UTC) + timedelta(hours=1)
    full = authorized_keys(grant_uid=grant, ca_public_keys=[CA_KEY], forward_ports=ports, expires_at=end)
    plain = authorized_keys(grant_uid=grant, ca_public_keys=[CA_KEY], forward_ports=[])
    fake = _fake(sshd, sshd_says=OLD_SSHD, ssh_says="OpenSSH_7.4p1, OpenSSL 1.0.2k-fips  26 Jan 2017\n")
    try:
        out = _create(sshd, user, grant, end=end, ports=ports, path=fake)
        written = _written(sshd, user)
        assert "expiry-time" not in written and "permit" not in written, written
        # Otherwise the line the portal rendered; with forwards, none (a 7.4 line cannot refuse -R alone).
        assert written == plain, (written, full)
        assert LINES_WITHOUT_EXPIRY_TIME in out and "OpenSSH version here: 704" in out, out
    finally:
        forget(sshd, user)
        sshd.run(f"rm -rf {fake}", check=False)


def test_an_openssh_7_7_host_keeps_expiry_time_in_local_time_but_not_permitlisten(sshd: LoopbackSshd) -> None:
    """7.7 reads expiry-time as 12 digits in the system's zone (9.1 added "Z" for UTC)."""
    user, grant = username(), str(uuid.uuid4())
    end = datetime.now(UTC) + timedelta(hours=1)
    fake = _fake(sshd, sshd_says="unknown option -- V\nOpenSSH_7.7p1 Ubuntu-4, OpenSSL 1.0.2n  7 Dec 2017\n")
    try:
        out = _create(sshd, user, grant, end=end, ports=[8080], path=fake)
        written = _written(sshd, user)
        utc = key_expiry_time(end)
        here = datetime.fromtimestamp(end.timestamp()).strftime("%Y%m%d%H%M")  # the host's zone: this machine's
        expected = authorized_keys(grant_uid=grant, ca_public_keys=[CA_KEY], forward_ports=[], expires_at=end)
        assert written == expected.replace(f'expiry-time="{utc}"', f'expiry-time="{here}"')
        assert LINES_WITHOUT_EXPIRY_TIME not in out, out
    finally:
        forget(sshd, user)
        sshd.run(f"rm -rf {fake}", check=False)


@pytest.mark.parametrize(
    "says",
    [
        "dropbear v2022.83\n",
        "x OpenSSH_9.9p1\n",  # not at the line's start
        "OpenSSH_9\n",  # no minor
        "OpenSSH_9.9.9\n",
        "",
    ],
    ids=["not-openssh", "not-at-start", "no-minor", "three-parts", "silent"],
)
def test_a_version_not_told_strictly_counts_as_old_so_no_bound_is_claimed_and_no_forward_loosened(
    sshd: LoopbackSshd, says: str
) -> None:
    user, grant = username(), str(uuid.uuid4())
    end = datetime.now(UTC) + timedelta(hours=1)
    fake = _fake(sshd, sshd_says=says, ssh_says=says)
    try:
        out = _create(sshd, user, grant, end=end, ports=[8080], path=fake)
        assert _written(sshd, user) == authorized_keys(grant_uid=grant, ca_public_keys=[CA_KEY], forward_ports=[])
        assert LINES_WITHOUT_EXPIRY_TIME in out and "OpenSSH version here: unknown" in out, out
    finally:
        forget(sshd, user)
        sshd.run(f"rm -rf {fake}", check=False)


def test_the_hosts_own_new_sshd_gets_the_line_as_rendered(sshd: LoopbackSshd) -> None:
    user, grant = username(), str(uuid.uuid4())
    end = datetime.now(UTC) + timedelta(hours=1)
    try:
        out = _create(sshd, user, grant, end=end, ports=[8080], path="")
        rendered = authorized_keys(grant_uid=grant, ca_public_keys=[CA_KEY], forward_ports=[8080], expires_at=end)
        assert _written(sshd, user) == rendered
        assert "expiry-time" in rendered and "permitlisten" in rendered
        assert LINES_WITHOUT_EXPIRY_TIME not in out, out
    finally:
        forget(sshd, user)


@pytest.mark.parametrize(
    ("sshd_says", "recorded"),
    [
        (OLD_SSHD, (False, {"key_expiry_written": False, "openssh_version": "7.4"})),
        ("dropbear v2022.83\n", (False, {"key_expiry_written": False, "openssh_version": "unknown"})),
        ("unknown option -- V\nOpenSSH_7.7p1 Ubuntu-4, OpenSSL 1.0.2n  7 Dec 2017\n", (True, {})),
        (None, (True, {})),
    ],
    ids=["openssh-7.4", "not-told", "openssh-7.7", "the-hosts-own"],
)
def test_the_portal_records_from_the_real_scripts_output_whether_the_lines_have_their_bound(
    sshd: LoopbackSshd, sshd_says: str | None, recorded: tuple[bool, dict[str, object]]
) -> None:
    """What the grant records (``Grant.key_expiry_written``) and its Logbook entry carries, read by the
    portal's own reading (``provisioning.expiry.key_expiry_said``) from what the real script printed.
    The full stack's hosts share this machine's /usr, so a fake sshd cannot go first on the PATH of
    their Run Command alone; the script is run here as Run Command runs it, with one."""
    user, grant_uid = username(), str(uuid.uuid4())
    end = datetime.now(UTC) + timedelta(hours=1)
    fake = _fake(sshd, sshd_says=sshd_says, ssh_says=sshd_says) if sshd_says is not None else ""
    try:
        out = _create(sshd, user, grant_uid, end=end, ports=[8080], path=fake)
        grant = Grant(platform=Instance.Platform.LINUX, username=user)
        assert key_expiry_said(grant, out) == recorded, out
        grant.key_expiry_written = recorded[0]
        assert bool(grant.key_expiry_note) is (recorded[0] is False)
    finally:
        forget(sshd, user)
        if fake:
            sshd.run(f"rm -rf {fake}", check=False)
