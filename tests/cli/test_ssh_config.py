"""ssh_config values the CLI writes: aliases, paths and ProxyCommand, checked with OpenSSH's own parser (ssh -G)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from passport_cli.errors import CliError
from passport_cli.names import is_host_alias, is_instance_id, is_login_name
from passport_cli.ssh_config import config_path, host_aliases, proxy_command

WEB, DB = "i-0123456789abcdef0", "i-0fedcba9876543210"

needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH's ssh is not installed")


@pytest.mark.parametrize("name", ["web-1", "db.internal", "A", "x_1", "9lives", "a" * 63])
def test_host_alias_accepts_plain_names(name: str) -> None:
    assert is_host_alias(name)


@pytest.mark.parametrize(
    "name",
    [
        "", "web 1", "web-1\n  ProxyCommand sh -c 'id'", "web-1\r", "a%hb", "%d", 'q"x', "it's", "*", "web-*",
        "web?", "!web", "a,b", "-oProxyCommand=x", ".hidden", "_x", "web\x1b", "web\u202e1", "wéb", "a" * 64,
        "web-1\n", None, 7,
    ],
)  # fmt: skip
def test_host_alias_refuses_anything_ssh_config_could_read_as_syntax(name: object) -> None:
    assert not is_host_alias(name)


def test_ids_and_login_names_are_checked_whole() -> None:
    assert is_instance_id(WEB) and is_instance_id("i-0123abcd") and is_instance_id("mi-0123456789abcdef0")
    for bad in (f"{WEB}\n", f"../{WEB}", "i-1", "i-XYZ", f"{WEB} x", "-oProxyCommand=x", None):
        assert not is_instance_id(bad)
    assert is_login_name("rs-abcdefgh") and is_login_name("rs-abcdefgh-wxyz") and is_login_name("ec2-user")
    for bad in ("-oProxyCommand=x", "root\n", "a b", "Rs", "a%u", "", "x" * 33):
        assert not is_login_name(bad)


def test_aliases_leave_out_unsafe_and_ambiguous_names_with_a_warning() -> None:
    written = [
        (WEB, "web-1\n  ProxyCommand sh -c 'id'", True),
        (DB, "db-1", True),
        ("i-0aaaaaaaaaaaaaaaa", "DB-1", True),  # ssh matches Host without regard to case
        ("i-0bbbbbbbbbbbbbbbb", DB, True),  # another instance's id
        ("i-0cccccccccccccccc", "plain", False),  # the portal says no: not an alias either
        ("i-0dddddddddddddddd", "i-0dddddddddddddddd", True),  # its own id: nothing to add
        ("i-0eeeeeeeeeeeeeeee", "ok-1", True),
    ]
    aliases, warnings = host_aliases(written, named=[(instance_id, name) for instance_id, name, _ in written])
    assert aliases == {
        WEB: [WEB],
        DB: [DB],
        "i-0aaaaaaaaaaaaaaaa": ["i-0aaaaaaaaaaaaaaaa"],
        "i-0bbbbbbbbbbbbbbbb": ["i-0bbbbbbbbbbbbbbbb"],
        "i-0cccccccccccccccc": ["i-0cccccccccccccccc"],
        "i-0dddddddddddddddd": ["i-0dddddddddddddddd"],
        "i-0eeeeeeeeeeeeeeee": ["i-0eeeeeeeeeeeeeeee", "ok-1"],
    }
    assert len(warnings) == 5
    assert all("\n" not in warning for warning in warnings)
    assert f"the Name 'web-1\\n  ProxyCommand sh -c 'id'' of {WEB} cannot be an ssh Host alias: use {WEB}" in warnings
    with pytest.raises(CliError):
        host_aliases([("i-1; id", "web", True)], named=[])


def test_a_name_an_instance_not_written_also_carries_is_no_alias() -> None:
    """Only ready Linux instances get a Host block, but a Name is unclear when any instance of the person's
    active requests (one still provisioning, a Windows one) carries it too: `connect` refuses it then."""
    aliases, warnings = host_aliases(
        [(WEB, "web-1", True), (DB, "db-1", True)],
        named=[(WEB, "web-1"), (DB, "db-1"), ("i-0aaaaaaaaaaaaaaaa", "WEB-1"), (DB, "db-1")],
    )
    assert aliases == {WEB: [WEB], DB: [DB, "db-1"]}  # db-1 twice is one instance in two requests
    assert warnings == [f"the Name 'web-1' of {WEB} could name another instance: use {WEB}"]


def test_paths_are_quoted_and_percent_escaped_or_refused(tmp_path: Path) -> None:
    assert config_path("/a b/%h/key") == '"/a b/%%h/key"'
    assert config_path(Path("relative")) == '"' + str(Path.cwd() / "relative") + '"'
    for bad in ("/a\nIdentityFile /x", '/a"b', "/a\\b", "/a/${HOME}", "/a\x1b"):
        with pytest.raises(CliError):
            config_path(bad)


def test_proxy_command_is_shell_quoted_and_percent_escaped() -> None:
    assert proxy_command(["/opt/py thon", "-m", "passport_cli", "proxy", "1", WEB, "--portal", "https://x/%41"]) == (
        f"'/opt/py thon' -m passport_cli proxy 1 {WEB} --portal https://x/%%41"
    )
    with pytest.raises(CliError):
        proxy_command(["python", "proxy", "1\nProxyCommand id"])


@needs_ssh
def test_ssh_reads_each_value_back_as_one_token(tmp_path: Path) -> None:
    """What OpenSSH itself makes of the quoted values: the paths and the command as written, nothing more."""
    odd = tmp_path / "a dir %h 'q' !*"
    config = tmp_path / "config"
    command = proxy_command(["/opt/py thon/bin/python", "-m", "passport_cli", "proxy", "1", WEB, "--portal", "%r"])
    config.write_text(
        f"Host {WEB}\n  HostName {WEB}\n  User rs-abcdefgh\n"
        f"  IdentityFile {config_path(odd / 'id')}\n  UserKnownHostsFile {config_path(odd / 'known')}\n"
        f"  CertificateFile {config_path(odd / 'cert')}\n  ProxyCommand {command}\n"
    )
    shown = subprocess.run(
        ["ssh", "-G", "-F", str(config), WEB], capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL
    ).stdout.splitlines()
    assert f"identityfile {odd}/id".replace("%", "%%") in shown
    assert f"certificatefile {odd}/cert".replace("%", "%%") in shown
    assert f"userknownhostsfile {odd}/known" in shown  # ssh -G shows this one with its tokens expanded: %% is %
    assert f"proxycommand {command}" in shown
    # What sh runs, once ssh has turned %% back into %: the arguments as given.
    words = subprocess.run(
        ["sh", "-c", f"set -- {command.replace('%%', '%')}; printf '%s\\n' \"$@\""],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert words == ["/opt/py thon/bin/python", "-m", "passport_cli", "proxy", "1", WEB, "--portal", "%r"]
