"""A grant's ``authorized_keys`` lines stop taking certificates at its request's end (sshd's
``expiry-time`` option, which OpenSSH applies to ``cert-authority`` lines too): checked against a
real sshd, with a certificate still valid for an hour after its line's expiry-time."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from devcloud.localhost import LocalHosts
from fleet.scripts import (
    UnsafeScriptValue,
    authorized_keys,
    key_expiry_time,
    lines_without_expiry_time,
    render_create,
    render_create_per_host,
)
from fleet.ssh_keys import LINES_WITHOUT_EXPIRY_TIME
from tests.sshd import SSH_KEYGEN, LoopbackSshd, openssh_run, sshd_available

CA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZtT2bqk5mJmSfDq2DEtoHaPwm0mOw9+g8h8sCOdJA5"
GRANT = "5d7c2a59-2a4c-4a4e-9d7c-3f1c5a1e2b3d"


def test_the_expiry_time_is_the_ends_minute_in_utc_rounded_down() -> None:
    assert key_expiry_time(datetime(2030, 3, 4, 13, 59, 59, 999999, tzinfo=UTC)) == "203003041359Z"
    assert key_expiry_time(datetime(2030, 3, 4, 13, 0, tzinfo=UTC)) == "203003041300Z"
    # Another zone's moment, said in UTC (sshd reads a time without Z in the host's zone).
    east = timezone(timedelta(hours=5, minutes=30))
    assert key_expiry_time(datetime(2030, 3, 5, 1, 15, 30, tzinfo=east)) == "203003041945Z"


@pytest.mark.parametrize(
    "hostile",
    [
        datetime(2030, 3, 4, 13, 0),  # no zone: which minute is unknown
        '203003041300Z",command="sh',  # a string, whatever it says
        "203003041300Z\nssh-ed25519 AAAA",
        "\u202e203003041300Z",
        12345,
    ],
)
def test_an_expiry_that_is_not_a_moment_with_its_zone_is_refused(hostile: object) -> None:
    with pytest.raises(UnsafeScriptValue):
        key_expiry_time(hostile)  # type: ignore[arg-type]
    with pytest.raises(UnsafeScriptValue):
        authorized_keys(grant_uid=GRANT, ca_public_keys=[CA_KEY], forward_ports=[22], expires_at=hostile)  # type: ignore[arg-type]


def test_each_line_of_the_grant_carries_its_expiry_time_after_its_principal() -> None:
    end = datetime(2030, 3, 4, 21, 0, 42, tzinfo=UTC)
    lines = authorized_keys(
        grant_uid=GRANT, ca_public_keys=[CA_KEY, CA_KEY + " comment"], forward_ports=[], expires_at=end
    ).splitlines()
    assert (
        lines
        == [f'cert-authority,principals="grant-{GRANT}",expiry-time="203003042100Z",no-port-forwarding {CA_KEY}'] * 2
    )


def test_the_create_script_bounds_the_lines_by_the_grants_own_end_not_the_shared_users() -> None:
    shared_end = datetime(2030, 3, 5, 1, 0, tzinfo=UTC)
    own_end = datetime(2030, 3, 4, 23, 0, tzinfo=UTC)
    for script in (
        render_create(
            platform="linux",
            username="rs-abcdefgh",
            expires_at=shared_end,
            grant_uid=GRANT,
            ca_public_keys=[CA_KEY],
            lines_expire_at=own_end,
        ),
        render_create_per_host(
            username="rs-abcdefgh",
            expires_at=shared_end,
            grants={"i-0123456789abcdef0": GRANT},
            ca_public_keys=[CA_KEY],
            lines_expire_at=own_end,
        ),
    ):
        assert "--expiredate '2030-03-06'" in script
        encoded = re.search(r"'([A-Za-z0-9+/]{40,}={0,2})'", script)
        assert encoded is not None
        assert 'expiry-time="203003042300Z"' in base64.b64decode(encoded.group(1)).decode()


# --- against a real sshd ------------------------------------------------------------------

USER = "rs-keyexpir"


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[LoopbackSshd]:
    reason = sshd_available()
    if reason is not None:
        pytest.skip(reason)
    hosts = LocalHosts(tmp_path / "hosts")
    server = LoopbackSshd(hosts, "i-0aaaabbbbccccdddd", name="key-expiry")
    try:
        server.add_user(USER)
        server.start()
        yield server
    finally:
        server.stop()
        hosts.close()


def _keygen(path: Path) -> None:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def test_sshd_refuses_a_certificate_still_valid_once_its_grant_lines_expiry_time_passed(
    sshd: LoopbackSshd, tmp_path: Path
) -> None:
    grant = str(uuid.uuid4())
    ca, user = tmp_path / "ca", tmp_path / "user"
    _keygen(ca)
    _keygen(user)
    # Valid from five minutes ago for an hour more: the certificate alone would let the login in.
    subprocess.run(
        [SSH_KEYGEN, "-q", "-s", str(ca), "-I", "test", "-n", f"grant-{grant}", "-V", "-5m:+1h", str(user) + ".pub"],
        check=True,
    )
    certificate = tmp_path / "user-cert.pub"
    ca_line = ca.with_suffix(".pub").read_text()
    now = datetime.now(UTC)

    def login_with_lines_until(end: datetime) -> bool:
        lines = authorized_keys(grant_uid=grant, ca_public_keys=[ca_line], forward_ports=[], expires_at=end)
        sshd.set_authorized_keys(USER, lines.splitlines())
        assert sshd.port is not None
        result = openssh_run(port=sshd.port, username=USER, identity_file=user, certificate_file=certificate)
        return result.ok and result.stdout.strip() == USER

    assert login_with_lines_until(now + timedelta(minutes=30))
    mark = sshd.log_mark()
    # The request was shortened: its lines stop at a minute already past, the certificate does not.
    assert not login_with_lines_until(now - timedelta(minutes=1))
    # The same line but for its expiry-time let the same certificate in just before.
    sshd.wait_for_log(r"Refused by key options", since=mark)


@pytest.mark.parametrize(
    ("output", "version"),
    [
        (f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 704)\n", "7.4"),
        (f"passport: ready\n{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 100)", "1.0"),
        (f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 706)", "7.6"),
        (f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: unknown)", "unknown"),
        (f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 707)", None),
        (f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 7.4)", None),
        (f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 704)\r\n", None),
        (f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 704)\u200f", None),
        (f"{LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: $(id))", None),
        (f"> {LINES_WITHOUT_EXPIRY_TIME} (OpenSSH version here: 704)", None),
        ("passport: ready\n", None),
        ("", None),
    ],
)
def test_only_the_scripts_own_line_says_the_lines_went_without_expiry_time(output: str, version: str | None) -> None:
    assert lines_without_expiry_time(output) == version


# sshd -V's banners (on its standard error) of hosts whose OpenSSH reads expiry-time in the system's
# time zone, as 12 digits only (7.7 to 9.0: "Z" for UTC is 9.1's), and of one that takes UTC.
_LOCAL_TIME_SSHD = [
    "OpenSSH_8.7p1, OpenSSL 3.0.8 7 Feb 2023",  # Amazon Linux 2023, RHEL 9
    "OpenSSH_8.2p1 Ubuntu-4ubuntu0.11, OpenSSL 1.1.1f  31 Mar 2020",  # Ubuntu 20.04
    "OpenSSH_8.9p1 Ubuntu-3ubuntu0.10, OpenSSL 3.0.2 15 Mar 2022",  # Ubuntu 22.04
    "OpenSSH_7.9p1 Debian-10+deb10u4, OpenSSL 1.1.1n  15 Mar 2022",  # Debian 10
    "OpenSSH_7.7p1, OpenSSL 1.0.2k-fips  26 Jan 2017",
    "OpenSSH_9.0p1, OpenSSL 3.0.7 1 Nov 2022",
]


def _fitted(tmp_path: Path, banner: str, lines: str, tz: str | None = None) -> str:
    """The grant's lines as the create writes them on a host whose sshd says ``banner``."""
    from fleet.ssh_keys import LINUX_SSHD_FIT

    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "sshd").write_text(f"#!/bin/sh\necho '{banner}' >&2\nexit 1\n")
    (fake / "sshd").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin"} | ({"TZ": tz} if tz else {})
    script = "set -euo pipefail\n" + LINUX_SSHD_FIT + "\nfit_lines_to_sshd\n"
    done = subprocess.run(["bash", "-c", script], input=lines, capture_output=True, text=True, check=True, env=env)
    return done.stdout


@pytest.mark.parametrize("banner", _LOCAL_TIME_SSHD)
def test_an_openssh_before_9_1_gets_the_same_minute_in_the_hosts_local_time_without_z(
    tmp_path: Path, banner: str
) -> None:
    """7.7 to 9.0 refuse the whole line for a 13-character expiry-time ("invalid expires time"), so
    nobody could log in there: the value is the host's local time of the same minute, 12 digits; the
    agent's TZ (which sshd does not have) is not the zone it is read in."""
    end = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)
    lines = authorized_keys(grant_uid=GRANT, ca_public_keys=[CA_KEY], forward_ports=[], expires_at=end)
    written = _fitted(tmp_path, banner, lines, tz="Asia/Kolkata")
    values = re.findall(r'expiry-time="([^"]*)"', written)
    here = datetime.fromtimestamp(end.timestamp()).strftime("%Y%m%d%H%M")  # this machine's zone, as sshd's
    assert values == [here] * len(lines.splitlines())
    assert written.replace(f'expiry-time="{here}"', 'expiry-time="203012071830Z"') == lines.replace(
        key_expiry_time(end), "203012071830Z"
    )


def test_an_openssh_from_9_1_keeps_the_utc_expiry_time(tmp_path: Path) -> None:
    end = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)
    lines = authorized_keys(grant_uid=GRANT, ca_public_keys=[CA_KEY], forward_ports=[8080], expires_at=end)
    assert _fitted(tmp_path, "OpenSSH_9.1p1, OpenSSL 3.0.7 1 Nov 2022", lines) == lines


@pytest.mark.parametrize(
    ("zone", "end", "read_early"),
    [
        ("America/New_York", datetime(2026, 7, 1, 16, 0, tzinfo=UTC), 0),  # summer time
        ("America/New_York", datetime(2026, 1, 15, 16, 0, tzinfo=UTC), 0),
        ("Australia/Sydney", datetime(2026, 1, 15, 3, 7, tzinfo=UTC), 0),  # summer in January
        ("Asia/Kolkata", datetime(2026, 7, 1, 16, 45, tzinfo=UTC), 0),  # +05:30, no summer time
        # tzdata gives Dublin's winter as its "summer time" (a negative one): read an hour early.
        ("Europe/Dublin", datetime(2026, 7, 1, 16, 0, tzinfo=UTC), 3600),
    ],
)
def test_sshd_before_9_1_reads_the_local_expiry_time_as_the_requests_end_never_later(
    tmp_path: Path, zone: str, end: datetime, read_early: int
) -> None:
    """OpenSSH 7.7 to 9.0 read expiry-time with mktime from a zeroed struct tm (tm_isdst 0): in the
    system's zone at its standard offset. Run where /etc/localtime is ``zone`` (a private mount
    namespace), the written minute read that way is the request's end (or, where the zone's standard
    offset is its larger one, an hour before), never after it."""
    if not Path(f"/usr/share/zoneinfo/{zone}").exists() or os.geteuid() != 0:
        pytest.skip("needs tzdata and root (a private mount namespace)")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sshd").write_text("#!/bin/sh\necho 'OpenSSH_8.9p1 Ubuntu-3ubuntu0.10' >&2\nexit 1\n")
    (fake / "sshd").chmod(0o755)
    from fleet.ssh_keys import LINUX_SSHD_FIT

    (tmp_path / "fit.sh").write_text("set -euo pipefail\n" + LINUX_SSHD_FIT + "\nfit_lines_to_sshd\n")
    line = f'cert-authority,expiry-time="{key_expiry_time(end)}" ssh-ed25519 AAAA\n'
    (tmp_path / "line").write_text(line)
    # sshd's reading: strptime into a zeroed struct tm, then mktime.
    read = (
        "import sys, time; s = sys.argv[1]; "
        "print(int(time.mktime((int(s[:4]), int(s[4:6]), int(s[6:8]), int(s[8:10]), int(s[10:12]), 0, 0, 0, 0))))"
    )
    inner = (
        f"mount --bind /usr/share/zoneinfo/{zone} /etc/localtime && unset TZ && "
        f"written=$(PATH={fake}:/usr/bin:/bin bash {tmp_path / 'fit.sh'} < {tmp_path / 'line'}) && "
        "stamp=$(printf '%s' \"$written\" | sed -n 's/.*expiry-time=\"\\([0-9]\\{12\\}\\)\".*/\\1/p') && "
        f"{sys.executable} -c '{read}' \"$stamp\""
    )
    out = subprocess.run(["unshare", "-m", "bash", "-c", inner], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) == int(end.timestamp()) - read_early
