"""The Run Command scripts that create and remove short-lived users.

Besides reading the rendered text, the Linux scripts are run under bash with every
account command (``id``, ``useradd``, ``userdel`` ...) replaced by a stub on a PATH that
holds nothing else, so the marker-group rule is checked by what the script does, and
nothing on this machine is touched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from requests_app.usernames import InvalidUsername
from workers.fleet.scripts import MARKER_GROUP, render_create, render_remove

USERNAME = "rs-abcdefgh"
DC_USERNAME = "rs-abcdefgh-wxyz"
EXPIRES_ON = date(2030, 3, 5)
BASH = shutil.which("bash") or "/bin/bash"

HOSTILE = [
    "rs-abcdefgh;rm -rf /",
    "rs-abcdefgh'; rm -rf / #",
    "rs-ABCDEFGH",
    "rs-abcdefgh\n",
    "rs-abcdefgh\nrm -rf /",
    "rs-$(reboot)",
    "root",
    "",
    "rs-abcdefgh-abcdefghi",
]


def create(platform: str, username: str = USERNAME) -> str:
    return render_create(platform=platform, username=username, expires_on=EXPIRES_ON)


def remove(platform: str, username: str = USERNAME) -> str:
    return render_remove(platform=platform, username=username)


# --- what may reach a script ----------------------------------------------------------


@pytest.mark.parametrize("platform", ["linux", "windows"])
@pytest.mark.parametrize("username", HOSTILE)
def test_render_create_refuses_an_invalid_username(platform: str, username: str) -> None:
    with pytest.raises(InvalidUsername):
        create(platform, username)


@pytest.mark.parametrize("platform", ["linux", "windows"])
@pytest.mark.parametrize("username", HOSTILE)
def test_render_remove_refuses_an_invalid_username(platform: str, username: str) -> None:
    with pytest.raises(InvalidUsername):
        remove(platform, username)


@pytest.mark.parametrize("script", [create("linux"), remove("linux"), create("windows"), remove("windows")])
def test_no_placeholder_is_left_unfilled(script: str) -> None:
    assert not re.search(r"__[A-Z]+__", script)


# --- Linux ----------------------------------------------------------------------------


@pytest.mark.parametrize("username", [USERNAME, DC_USERNAME])
@pytest.mark.parametrize("render", [create, remove], ids=["create", "remove"])
def test_the_linux_scripts_are_valid_bash(render: object, username: str) -> None:
    script = render("linux", username)  # type: ignore[operator]
    checked = subprocess.run([BASH, "-n"], input=script, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_the_linux_create_script_puts_the_user_in_the_marker_group_and_sets_its_expiry() -> None:
    script = create("linux")
    assert f"marker='{MARKER_GROUP}'" in script
    assert f"user='{USERNAME}'" in script
    assert '--groups "$marker"' in script
    assert "--expiredate '2030-03-05'" in script


@pytest.mark.parametrize("render", [create, remove], ids=["create", "remove"])
def test_the_linux_scripts_check_the_marker_group_before_touching_an_existing_user(render: object) -> None:
    script = render("linux")  # type: ignore[operator]
    assert f"marker='{MARKER_GROUP}'" in script
    assert 'id -nG "$user"' in script
    assert 'grep -qx "$marker"' in script


def test_the_linux_scripts_name_the_user_only_through_the_quoted_variable() -> None:
    for script in (create("linux"), remove("linux")):
        code_lines = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
        for line in code_lines:
            if USERNAME in line:
                assert line == f"user='{USERNAME}'"


# --- Linux, run against stub account commands ------------------------------------------

_STUB = r"""#!{bash}
echo "{name} $*" >> "$STATE/log"
{body}
"""

_STUB_BODIES = {
    # id USER: exists or not; id -nG USER: the user's groups.
    "id": 'if [ "$1" = "-nG" ]; then [ -f "$STATE/exists" ] || exit 1; echo "$(<"$STATE/groups")"; exit 0; fi\n'
    '[ -f "$STATE/exists" ]',
    "getent": "exit 0",
    "groupadd": "exit 0",
    "useradd": ': > "$STATE/exists"; echo "users passport-users" > "$STATE/groups"',
    "usermod": "exit 0",
    "userdel": 'exec {rm} -f "$STATE/exists"',
    "pkill": "exit 1",
}


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A fake host: stub account commands on a PATH holding nothing else but tr and grep."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    rm = shutil.which("rm")
    assert rm is not None
    for name, body in _STUB_BODIES.items():
        stub = stubs / name
        stub.write_text(_STUB.format(bash=BASH, name=name, body=body.replace("{rm}", rm)))
        stub.chmod(0o755)
    for tool in ("tr", "grep"):
        found = shutil.which(tool)
        assert found is not None
        (stubs / tool).symlink_to(found)
    (tmp_path / "log").touch()
    return tmp_path


def run_on(host: Path, script: str, *, exists: bool, groups: str = "") -> tuple[int, list[str]]:
    # Only commands called by bare name reach the stubs; refuse to run a script that calls one by path.
    body = script.split("\n", 1)[1]  # past the #! line
    assert not re.search(r"(^|[;|&(!]|\b(?:then|do|else|if))\s*/", body, re.MULTILINE)
    if exists:
        (host / "exists").touch()
        (host / "groups").write_text(groups + "\n")
    result = subprocess.run(
        [BASH],
        input=script,
        capture_output=True,
        text=True,
        env={"PATH": str(host / "bin"), "STATE": str(host)},
        check=False,
        timeout=10,
    )
    return result.returncode, [line.split()[0] for line in (host / "log").read_text().splitlines()]


def test_remove_leaves_a_user_outside_the_marker_group_untouched(host: Path) -> None:
    code, commands = run_on(host, remove("linux"), exists=True, groups="users wheel")
    assert not {"usermod", "pkill", "userdel"} & set(commands)
    assert (host / "exists").exists()
    # Nothing of Passport's is there: a success, so cleanup is not retried for ever.
    assert code == 0


def test_remove_locks_ends_and_deletes_a_marked_user(host: Path) -> None:
    code, commands = run_on(host, remove("linux"), exists=True, groups=f"users {MARKER_GROUP}")
    assert code == 0
    assert [c for c in commands if c in {"usermod", "pkill", "userdel"}] == ["usermod", "pkill", "userdel"]
    assert not (host / "exists").exists()


def test_remove_of_an_absent_user_succeeds_without_doing_anything(host: Path) -> None:
    code, commands = run_on(host, remove("linux"), exists=False)
    assert code == 0
    assert commands == ["id"]


def test_create_refuses_an_existing_user_outside_the_marker_group(host: Path) -> None:
    code, commands = run_on(host, create("linux"), exists=True, groups="users")
    assert code == 3
    assert not {"useradd", "usermod"} & set(commands)


def test_create_adds_a_new_user_and_running_it_again_is_harmless(host: Path) -> None:
    code, commands = run_on(host, create("linux"), exists=False)
    assert code == 0
    assert "useradd" in commands
    assert "usermod" in commands

    (host / "log").write_text("")
    code, commands = run_on(host, create("linux"), exists=False)  # the user now exists, in the group
    assert code == 0
    assert "useradd" not in commands


# --- Windows --------------------------------------------------------------------------


def _outside_single_quotes(line: str) -> str:
    return re.sub(r"'[^']*'", "''", line)


@pytest.mark.parametrize("username", [USERNAME, DC_USERNAME])
@pytest.mark.parametrize("render", [create, remove], ids=["create", "remove"])
def test_the_windows_scripts_hold_the_username_only_inside_single_quotes(render: object, username: str) -> None:
    script = render("windows", username)  # type: ignore[operator]
    assert f"$user = '{username}'" in script
    for line in script.splitlines():
        if line.lstrip().startswith("#"):
            # A comment; a validated name has no line break, so it cannot end the comment.
            continue
        assert username not in _outside_single_quotes(line), line


@pytest.mark.parametrize("render", [create, remove], ids=["create", "remove"])
def test_the_windows_scripts_stop_on_the_first_error(render: object) -> None:
    assert "$ErrorActionPreference = 'Stop'" in render("windows")  # type: ignore[operator]


def test_the_windows_remove_script_touches_only_passport_users() -> None:
    script = remove("windows")
    check = script.index("$account.Description -ne 'Passport short-lived user'")
    leave = script.index("exit", check)
    assert leave < script.index("Disable-LocalUser") < script.index("Remove-LocalUser")
    assert "-Description 'Passport short-lived user'" in create("windows")
