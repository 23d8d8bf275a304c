"""The Run Command scripts that create and remove short-lived users.

Besides reading the rendered text, the Linux scripts are run under bash on a fake host:
the account commands (``id``, ``useradd``, ``userdel`` ...) are stubs on a PATH that holds
nothing else, and the script's few absolute paths (/var/lib/passport, /etc/sudoers.d,
/home) are moved under a temporary directory, so the marker-group rule and the removal
tombstone are checked by what the script does while nothing on this machine is touched.
The real commands run in the devcloud and integration tests.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.usernames import InvalidUsername
from fleet.scripts import (
    MARKER_GROUP,
    REMOVAL_REFUSED_EXIT_CODE,
    UID_FIRST,
    UnsafeScriptValue,
    authorized_keys,
    password_parameter_name,
    render_create,
    render_create_per_host,
    render_list_users,
    render_remove,
    render_remove_per_host,
    render_windows_expiry,
)
from fleet.ssh_keys import USER_STEP_SECONDS

USERNAME = "rs-abcdefgh"
GRANT_UID = "0b5e8c1e-6f0a-4c55-9d1e-2a7f3c9b8d41"
PRINCIPAL = f"grant-{GRANT_UID}"
DC_USERNAME = "rs-abcdefgh-wxyz"
EXPIRES_AT = datetime(2030, 3, 4, 10, 0, tzinfo=UTC)  # the request's end


def lines_until_end(**kw: Any) -> str:
    """A grant's lines as a create for a request ending at ``EXPIRES_AT`` writes them."""
    return authorized_keys(expires_at=EXPIRES_AT, **kw)


PASSWORD = "S3cret'\"$(reboot)`\n;x"  # every character that could end a quoted string
# The account's ports: what the grant's SSH forwards may reach on the instance itself.
PORTS = (22, 3389, 5432)
OPTIONS = (
    f'cert-authority,principals="{PRINCIPAL}",'
    + ",".join(f'permitopen="{host}:{port}"' for port in PORTS for host in ("localhost", "127.0.0.1", "[::1]"))
    + ',permitlisten="localhost:1"'
)
CA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb0Ik1Q5lmqk7cCc8DSK7zS4Tb5lYq4TIpQKQd2SKlR passport-ca"
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

Render = Callable[..., str]


def create(platform: str, username: str = USERNAME, **kw: object) -> str:
    kw.setdefault("grant_uid", GRANT_UID)
    if platform == "windows":
        kw.setdefault("region", "eu-west-1")
    else:
        kw.setdefault("ca_public_keys", [CA_KEY])
        kw.setdefault("forward_ports", PORTS)
    return render_create(platform=platform, username=username, expires_at=EXPIRES_AT, **kw)  # type: ignore[arg-type]


def set_expiry(platform: str, username: str = USERNAME, **kw: object) -> str:
    assert platform == "windows"  # Linux moves it with its (idempotent) create script
    return render_windows_expiry(username=username, expires_at=EXPIRES_AT, **kw)  # type: ignore[arg-type]


def remove(platform: str, username: str = USERNAME, **kw: object) -> str:
    if platform == "linux":
        kw.setdefault("grant_uid", GRANT_UID)
    return render_remove(platform=platform, username=username, **kw)  # type: ignore[arg-type]


# Two hosts of one request, each with its own grant: what one Run Command for both carries.
HOST_A, HOST_B = "i-0123456789abcdef0", "i-0fedcba987654321f"
GRANT_B = "7c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e"
PER_HOST = {HOST_A: GRANT_UID, HOST_B: GRANT_B}


def create_per_host(grants: dict[str, str] = PER_HOST, **kw: object) -> str:
    kw.setdefault("ca_public_keys", [CA_KEY])
    kw.setdefault("forward_ports", PORTS)
    return render_create_per_host(username=USERNAME, expires_at=EXPIRES_AT, grants=grants, **kw)  # type: ignore[arg-type]


def remove_per_host(grants: dict[str, str] = PER_HOST, created: tuple[str, ...] = ()) -> str:
    return render_remove_per_host(username=USERNAME, grants=grants, created=created)


def bash_syntax_errors(script: str) -> str:
    checked = subprocess.run([BASH, "-n"], input=script, capture_output=True, text=True, check=False)
    return checked.stderr if checked.returncode else ""


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


@pytest.mark.parametrize("grant_uid", ["1", "../../etc/passwd", GRANT_UID.upper(), GRANT_UID + "\n", "x" * 36])
def test_the_linux_create_script_refuses_a_grant_uid_that_is_not_a_uuid(grant_uid: str) -> None:
    with pytest.raises(UnsafeScriptValue):
        create("linux", grant_uid=grant_uid)


@pytest.mark.parametrize("grant_uid", ["1", "../../etc/passwd", GRANT_UID + "'; reboot; '"])
def test_the_linux_remove_script_refuses_a_grant_uid_that_is_not_a_uuid(grant_uid: str) -> None:
    with pytest.raises(UnsafeScriptValue):
        remove("linux", grant_uid=grant_uid)


@pytest.mark.parametrize(
    "key",
    [
        'command="/bin/sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5',
        "ssh-ed25519 AAAA'$(reboot)'",
        'ssh-ed25519 AAAA"',
        "ssh-dss AAAAB3NzaC1kc3M",
        "not a key",
        "",
    ],
)
def test_a_ca_key_that_is_not_an_openssh_public_key_is_refused(key: str) -> None:
    with pytest.raises(UnsafeScriptValue):
        authorized_keys(grant_uid=GRANT_UID, ca_public_keys=[key], forward_ports=PORTS)
    with pytest.raises(UnsafeScriptValue):
        create("linux", ca_public_keys=[key])


def test_authorized_keys_trust_each_ca_for_this_grants_principal_only() -> None:
    rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 old-ca"
    lines = authorized_keys(grant_uid=GRANT_UID, ca_public_keys=[CA_KEY, rsa], forward_ports=PORTS).splitlines()
    assert lines == [
        f"{OPTIONS} {' '.join(CA_KEY.split()[:2])}",
        f"{OPTIONS} ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7",
    ]


def test_only_the_type_and_blob_of_a_ca_key_are_kept() -> None:
    lines = authorized_keys(grant_uid=GRANT_UID, ca_public_keys=[CA_KEY + "\nrm -rf / 'x\""], forward_ports=PORTS)
    assert lines == f"{OPTIONS} {' '.join(CA_KEY.split()[:2])}\n"


def test_forwards_reach_only_the_instance_itself_on_the_accounts_ports_and_never_listen() -> None:
    (line,) = authorized_keys(grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=[5432, 22, 3389]).splitlines()
    options, _, key = line.partition(" ")
    assert key == " ".join(CA_KEY.split()[:2])
    opens = [f'permitopen="{host}:{port}"' for port in (22, 3389, 5432) for host in ("localhost", "127.0.0.1", "[::1]")]
    assert options.split(",") == ["cert-authority", f'principals="{PRINCIPAL}"', *opens, 'permitlisten="localhost:1"']


def test_with_no_port_the_grants_lines_forward_nothing() -> None:
    # Without any permitopen sshd would open every host and port: no ports is no forwarding.
    line = authorized_keys(grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=[])
    assert line == f'cert-authority,principals="{PRINCIPAL}",no-port-forwarding {" ".join(CA_KEY.split()[:2])}\n'


@pytest.mark.parametrize("port", [0, 65536, -22, True, "22", '22",command="/bin/sh', 22.0, None])
def test_a_forwarding_port_that_is_not_a_port_number_is_refused(port: object) -> None:
    with pytest.raises(UnsafeScriptValue):
        authorized_keys(grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=[22, port])
    with pytest.raises(UnsafeScriptValue):
        create("linux", forward_ports=[22, port])


# A request's forwarding destinations beyond the instance (core.destinations spells them).
DESTINATIONS = ("mydb.abc123xyz.eu-west-1.rds.amazonaws.com:3306", "10.0.12.7:5432", "[fd00::5]:6379")


def test_a_requests_destinations_are_each_one_more_permitopen_and_nothing_else() -> None:
    (line,) = authorized_keys(
        grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=PORTS, forward_destinations=DESTINATIONS
    ).splitlines()
    options, _, key = line.partition(" ")
    assert key == " ".join(CA_KEY.split()[:2])
    opens = [f'permitopen="{host}:{port}"' for port in PORTS for host in ("localhost", "127.0.0.1", "[::1]")]
    beyond = [f'permitopen="{destination}"' for destination in DESTINATIONS]
    assert options.split(",") == [
        "cert-authority",
        f'principals="{PRINCIPAL}"',
        *opens,
        *beyond,
        'permitlisten="localhost:1"',
    ]
    # Destinations alone still limit forwards to them (no ports is not "anything").
    only = authorized_keys(
        grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=[], forward_destinations=DESTINATIONS[:1]
    )
    assert only.startswith(f'cert-authority,principals="{PRINCIPAL}",permitopen="{DESTINATIONS[0]}",permitlisten=')


@pytest.mark.parametrize(
    "destination",
    ['db:3306,permitopen="*:*"', 'db:3306" ssh-ed25519 AAAA', "db:3306\n", "*:*", "db:*", "[::1:3306", "db:0",
     "db:70000", "MyDB:3306", "[FD00::5]:3306", "fd00::5:3306", 3306, None],
)  # fmt: skip
def test_a_destination_not_in_its_one_spelling_never_reaches_a_line(destination: object) -> None:
    with pytest.raises(UnsafeScriptValue):
        authorized_keys(
            grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=PORTS, forward_destinations=[destination]
        )
    with pytest.raises(UnsafeScriptValue):
        create("linux", forward_destinations=[destination])


@pytest.mark.parametrize("grant_uid", ["", "rs-abcdefgh", GRANT_UID + '" ssh-ed25519', GRANT_UID.upper()])
def test_authorized_keys_refuse_anything_but_a_grant_uid(grant_uid: str) -> None:
    with pytest.raises(UnsafeScriptValue):
        authorized_keys(grant_uid=grant_uid, ca_public_keys=[CA_KEY], forward_ports=PORTS)


@pytest.mark.parametrize(
    "script",
    [
        create("linux"),
        create("linux", admin_rights=True),
        remove("linux"),
        create("windows"),
        create("windows", admin_rights=True),
        remove("windows"),
        create("windows", DC_USERNAME, domain_controller=True),
        create("windows", DC_USERNAME, domain_controller=True, admin_rights=True),
        remove("windows", DC_USERNAME, domain_controller=True),
        render_list_users(),
        create_per_host(),
        remove_per_host(),
    ],
)
def test_no_placeholder_is_left_unfilled(script: str) -> None:
    assert not re.search(r"__[A-Z][A-Z0-9_]*__", script)


# --- Linux ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        create("linux"),
        create("linux", DC_USERNAME),
        create("linux", admin_rights=True),
        create("linux", ca_public_keys=[]),
        remove("linux"),
        remove("linux", DC_USERNAME),
        remove("linux", grant_uid=""),
        remove("linux", created=True),
        render_list_users(),
        create_per_host(),
        create_per_host(admin_rights=True),
        remove_per_host(),
        remove_per_host(created=(HOST_A,)),
    ],
    ids=[
        "create",
        "create-dc-name",
        "create-sudo",
        "create-no-ca",
        "remove",
        "remove-dc-name",
        "remove-no-grant",
        "remove-made-by-grant",
        "list",
        "create-per-host",
        "create-per-host-sudo",
        "remove-per-host",
        "remove-per-host-made",
    ],
)
def test_the_linux_scripts_are_valid_bash(script: str) -> None:
    assert bash_syntax_errors(script) == ""


@pytest.mark.parametrize("render", [create, remove], ids=["create", "remove"])
def test_the_linux_scripts_check_the_marker_group_before_touching_an_existing_user(render: Render) -> None:
    script = render("linux")
    assert f"marker='{MARKER_GROUP}'" in script
    assert "! id -nG \"$user\" | tr ' ' '\\n' | grep -qx \"$marker\"; then" in script


def test_the_linux_create_script_puts_the_user_in_the_marker_group_and_sets_its_expiry() -> None:
    script = create("linux")
    assert '--groups "$marker"' in script
    assert "--expiredate '2030-03-05'" in script


def test_the_linux_create_script_carries_the_authorized_keys_base64_encoded() -> None:
    script = create("linux")
    encoded = base64.b64encode(
        lines_until_end(grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=PORTS).encode()
    ).decode()
    assert f"printf '%s' '{encoded}' | base64 -d" in script
    assert CA_KEY.split()[1] not in script  # only the encoded form travels


@pytest.mark.parametrize(("admin_rights", "flag"), [(True, "yes"), (False, "no")])
def test_the_linux_create_script_grants_sudo_only_with_admin_rights(admin_rights: bool, flag: str) -> None:
    assert f"if [ '{flag}' = yes ]; then" in create("linux", admin_rights=admin_rights)


def test_the_linux_scripts_serialise_on_a_host_lock_and_name_their_grant() -> None:
    # What the grant name does (the removal tombstone) is run on the fake host below.
    created, removed = create("linux"), remove("linux")
    for script in (created, removed):
        assert "flock -w 300 9" in script
        assert f"grant='{GRANT_UID}'" in script


def test_the_linux_scripts_name_the_user_only_in_the_quoted_variable() -> None:
    for script in (create("linux"), remove("linux")):
        for line in script.splitlines():
            if USERNAME in line and not line.startswith("#"):
                assert line == f"user='{USERNAME}'"


def test_the_list_script_prints_only_passport_usernames() -> None:
    script = render_list_users()
    assert f"getent group '{MARKER_GROUP}'" in script
    assert "grep -E '^rs-[a-z2-7]{8}(-[a-z2-7]{4})?$'" in script


# --- Linux, run on a fake host ----------------------------------------------------------

# Each stub logs its call; these few also keep the state a test looks at.
_STUB_BODIES = {
    "id": 'case "$1" in\n'
    '  -nG) [ -f "$STATE/exists" ] || exit 1; echo "$(<"$STATE/groups")" ;;\n'
    '  -gn) echo "$2" ;;\n'
    '  -u) [ -f "$STATE/exists" ] && echo 1500 ;;\n'
    '  *) [ -f "$STATE/exists" ] ;;\n'
    "esac",
    "getent": 'case "$1 $2" in\n'
    '  "passwd "[0-9]*) exit 2 ;;\n'
    '  "passwd "*) echo "$2:x:1500:1500::$STATE/home/$2:/bin/bash" ;;\n'
    "  *) exit 2 ;;\n"
    "esac",
    "useradd": ': > "$STATE/exists"; echo "users passport-users" > "$STATE/groups"',
    "userdel": 'exec {rm} -f "$STATE/exists"',
    "pkill": "exit 1",
    "pgrep": "exit 1",
    # The user's own files are touched as the user: here, by the test's own user.
    "runuser": 'while [ "$1" != -- ]; do shift; done; shift; exec "$@"',
    "timeout": 'while [ "${1#-}" != "$1" ]; do shift; done; shift; exec "$@"',
    # A host whose sshd reads every option the lines carry (expiry-time, permitlisten).
    "sshd": 'echo "OpenSSH_9.6p1 Ubuntu-3ubuntu13, OpenSSL 3.0.13 30 Jan 2024" >&2',
}
_LOG_ONLY = ["groupadd", "groupdel", "usermod", "install", "chown", "chmod", "mv", "rm", "visudo", "sleep"]
# Real tools: text filters, and file tools that only ever see paths under the fake host.
_REAL = [
    "tr",
    "grep",
    "cut",
    "base64",
    "seq",
    "mkdir",
    "touch",
    "find",
    "flock",
    "sh",
    "cat",
    "wc",
    "mktemp",
    "sed",
    "head",
    "awk",
]
_MOVED = ("/var/", "/etc/sudoers.d", "/home/", "/tmp", "/dev/shm", "/run/", "/usr/sbin/", "/proc")
_ABSOLUTE_PATH = re.compile(r"(?<![\w$}./-])/[\w./*-]+")


@pytest.fixture
def host(tmp_path: Path) -> Path:
    return fake_host(tmp_path)


def fake_host(tmp_path: Path) -> Path:
    """A fake host: stub account commands on a PATH holding nothing else but a few real tools."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    real_rm = shutil.which("rm")
    assert real_rm is not None
    for name in [*_STUB_BODIES, *_LOG_ONLY]:
        body = _STUB_BODIES.get(name, "exit 0").replace("{rm}", real_rm)
        stub = stubs / name
        stub.write_text(f'#!{BASH}\necho "{name} $*" >> "$STATE/log"\n{body}\n')
        stub.chmod(0o755)
    for tool in _REAL:
        found = shutil.which(tool)
        assert found is not None, tool
        (stubs / tool).symlink_to(found)
    (tmp_path / "etc" / "sudoers.d").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "log").touch()
    return tmp_path


def on_fake_host(script: str, root: Path) -> str:
    """The script with its absolute paths moved under ``root``; refuses one that names any other path."""
    script = _ABSOLUTE_PATH.sub(lambda m: f"{root}{m[0]}" if m[0].startswith(_MOVED) else m[0], script)
    for path in _ABSOLUTE_PATH.findall(script):
        assert path.startswith(str(root)) or path in {"/dev/null", "/bin/bash"}, f"unexpected path {path}"
    return script


def run_on(
    host: Path, script: str, *, exists: bool | None = None, groups: str = "", instance_id: str | None = None
) -> tuple[int, list[str]]:
    """Run the script on the fake host; ``exists`` sets up the user first; ``instance_id`` is
    what the agent would put in AWS_SSM_INSTANCE_ID. Returns exit code and commands run."""
    if exists is not None:
        (host / "exists").unlink(missing_ok=True)
    if exists:
        (host / "exists").touch()
        (host / "groups").write_text(groups + "\n")
    result = subprocess.run(
        [BASH],
        input=on_fake_host(script, host),
        capture_output=True,
        text=True,
        env={
            "PATH": str(host / "bin"),
            "STATE": str(host),
            **({"AWS_SSM_INSTANCE_ID": instance_id} if instance_id is not None else {}),
        },
        check=False,
        timeout=30,
    )
    commands = [line.split()[0] for line in (host / "log").read_text().splitlines()]
    (host / "log").write_text("")
    return result.returncode, commands


def test_remove_leaves_a_user_outside_the_marker_group_untouched(host: Path) -> None:
    code, commands = run_on(host, remove("linux"), exists=True, groups="users wheel")
    assert not {"usermod", "pkill", "userdel", "rm"} & set(commands)
    assert (host / "exists").exists()
    # Nothing of Passport's is there: a success, so cleanup is not retried for ever.
    assert code == 0


def test_remove_locks_and_ends_the_grants_user_outside_the_marker_group_and_leaves_it_for_an_operator(
    host: Path,
) -> None:
    code, commands = run_on(host, remove("linux", created=True), exists=True, groups="users wheel")
    assert code == REMOVAL_REFUSED_EXIT_CODE
    assert "usermod" in commands and "pkill" in commands
    assert commands.index("usermod") < commands.index("pkill")  # locked before what it runs is ended
    assert "userdel" not in commands
    assert (host / "exists").exists()


def test_only_the_hosts_where_the_grant_made_the_user_say_so_in_a_removal_for_several(host: Path) -> None:
    lines = remove_per_host(created=(HOST_A,)).splitlines()
    told = "account_uid=''; live_known=yes; portal_live=''"
    assert f"  '{HOST_A}') grant='{GRANT_UID}'; made_by_grant='yes'; {told} ;;" in lines
    assert f"  '{HOST_B}') grant='{GRANT_B}'; made_by_grant='no'; {told} ;;" in lines
    # On the host whose grant never made it, an unmarked user is someone else's: untouched.
    code, commands = run_on(host, remove_per_host(created=(HOST_A,)), exists=True, groups="users", instance_id=HOST_B)
    assert code == 0 and not {"usermod", "pkill", "userdel"} & set(commands)
    code, commands = run_on(host, remove_per_host(created=(HOST_A,)), exists=True, groups="users", instance_id=HOST_A)
    assert code == REMOVAL_REFUSED_EXIT_CODE and "userdel" not in commands


def test_remove_locks_ends_and_deletes_a_marked_user(host: Path) -> None:
    code, commands = run_on(host, remove("linux"), exists=True, groups=f"users {MARKER_GROUP}")
    assert code == 0
    assert list(dict.fromkeys(c for c in commands if c in {"usermod", "pkill", "userdel"})) == [
        "usermod",
        "pkill",
        "userdel",
    ]
    assert not (host / "exists").exists()


def test_remove_of_an_absent_user_succeeds(host: Path) -> None:
    code, commands = run_on(host, remove("linux"), exists=False)
    assert code == 0
    assert not {"usermod", "pkill", "userdel"} & set(commands)


def test_create_refuses_an_existing_user_outside_the_marker_group(host: Path) -> None:
    code, commands = run_on(host, create("linux"), exists=True, groups="users")
    assert code == 3
    assert not {"useradd", "usermod", "install", "chown", "mv"} & set(commands)


@pytest.mark.parametrize("counter", ["", "abc", "0190000000", "-1", "19000000000", "1900000000 1"])
def test_create_refuses_a_uid_counter_it_cannot_read_and_makes_no_user(host: Path, counter: str) -> None:
    (host / "var" / "lib" / "passport").mkdir(parents=True)
    (host / "var" / "lib" / "passport" / "next-uid").write_text(counter + "\n")
    code, commands = run_on(host, create("linux"), exists=False)
    assert code == 9
    assert not {"useradd", "usermod"} & set(commands)
    assert commands.count("groupadd") == 1  # the marker group's, not the user's


def test_create_gives_the_next_uid_of_passports_range_and_records_it(host: Path) -> None:
    state = host / "var" / "lib" / "passport"
    code, _ = run_on(host, create("linux"), exists=False)
    assert code == 0
    assert (state / "uids" / str(UID_FIRST)).read_text() == USERNAME + "\n"
    assert (state / "next-uid.new").read_text() == f"{UID_FIRST + 1}\n"  # mv is a stub here


def test_create_adds_a_new_user_with_the_ca_lines_and_running_it_again_is_harmless(host: Path) -> None:
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)  # what useradd and install would make

    code, commands = run_on(host, create("linux"), exists=False)
    assert code == 0
    assert commands.index("useradd") < commands.index("usermod")
    written = _keys_file(host).read_text()
    assert written == lines_until_end(grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=PORTS)

    code, commands = run_on(host, create("linux"))  # the user now exists, in the group
    assert code == 0
    assert "useradd" not in commands


def test_create_writes_a_sudoers_entry_only_when_asked(host: Path) -> None:
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)
    code, _ = run_on(host, create("linux", admin_rights=True), exists=False)
    assert code == 0
    # One file per grant; mv is a stub, so it is still under its temp name.
    entry = host / "etc" / "sudoers.d" / f"passport-{USERNAME}-{GRANT_UID}.passport"
    assert entry.read_text() == f"{USERNAME} ALL=(ALL) NOPASSWD:ALL\n"


OTHER_GRANT = "5d1c3b2a-0000-4000-8000-000000000002"


def real_rm_and_mv(host: Path) -> None:
    """The fake host's rm and mv act for real (every path they see is under the fake host)."""
    real_tools(host, "rm", "mv")


def real_tools(host: Path, *tools: str) -> None:
    for tool in tools:
        found = shutil.which(tool)
        assert found is not None, tool
        (host / "bin" / tool).unlink()
        (host / "bin" / tool).symlink_to(found)


def test_a_create_without_admin_rights_leaves_its_user_no_passport_sudoers_file_of_any_grant(host: Path) -> None:
    """sudo belongs to the user, which a person's grants on a host share: another grant's file
    (an earlier request that failed before its cleanup ran, a host restored from a snapshot) must
    not give it sudo. Other users' files and the host's own are left alone."""
    real_rm_and_mv(host)
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)
    code, _ = run_on(host, create("linux", grant_uid=OTHER_GRANT, admin_rights=True), exists=False)
    assert code == 0
    sudoers = host / "etc" / "sudoers.d"
    assert (sudoers / f"passport-{USERNAME}-{OTHER_GRANT}").read_text() == f"{USERNAME} ALL=(ALL) NOPASSWD:ALL\n"
    # A temporary file an interrupted create left (sudo skips names with a dot; removed all the same).
    (sudoers / f"passport-{USERNAME}-{GRANT_B}.passport").write_text(f"{USERNAME} ALL=(ALL) NOPASSWD:ALL\n")
    kept = {
        f"passport-rs-zyxwvuts-{OTHER_GRANT}": "rs-zyxwvuts ALL=(ALL) NOPASSWD:ALL\n",  # another person's
        f"passport-{DC_USERNAME}-{OTHER_GRANT}": f"{DC_USERNAME} ALL=(ALL) NOPASSWD:ALL\n",  # another name
        f"passport-{USERNAME}-notes": "# not a grant's file\n",
        "90-cloud-init-users": "ubuntu ALL=(ALL) NOPASSWD:ALL\n",
    }
    for name, text in kept.items():
        (sudoers / name).write_text(text)

    code, _ = run_on(host, create("linux", admin_rights=False))

    assert code == 0
    assert {path.name: path.read_text() for path in sudoers.iterdir()} == kept


def test_a_create_with_admin_rights_leaves_the_other_grants_sudoers_files(host: Path) -> None:
    real_rm_and_mv(host)
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)
    assert run_on(host, create("linux", grant_uid=OTHER_GRANT, admin_rights=True), exists=False)[0] == 0

    assert run_on(host, create("linux", admin_rights=True))[0] == 0

    assert sorted(path.name for path in (host / "etc" / "sudoers.d").iterdir()) == sorted(
        [f"passport-{USERNAME}-{GRANT_UID}", f"passport-{USERNAME}-{OTHER_GRANT}"]
    )


def test_a_create_that_arrives_after_its_grant_was_removed_is_refused(host: Path) -> None:
    code, _ = run_on(host, remove("linux"), exists=False)
    assert code == 0

    code, commands = run_on(host, create("linux"), exists=False)

    assert code == 6
    assert "useradd" not in commands
    # Another grant for the same person is not affected.
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)
    code, _ = run_on(host, create("linux", grant_uid="5d1c3b2a-0000-4000-8000-000000000001"), exists=False)
    assert code == 0


def _keys_file(host: Path) -> Path:
    # write_user_keys writes a temp file of its own (mktemp), then mv (a stub here) would put it in place.
    written = sorted(
        (host / "home" / USERNAME / ".ssh").glob("authorized_keys.passport.*"), key=lambda p: p.stat().st_mtime_ns
    )
    assert written, "no keys were written"
    return written[-1]


def _install_keys(host: Path) -> None:
    written = _keys_file(host)
    written.rename(written.with_name("authorized_keys"))


def test_two_grants_of_one_person_each_have_their_line_and_ending_one_removes_only_its_own(host: Path) -> None:
    code, _ = run_on(host, create("linux", admin_rights=True), exists=False)
    assert code == 0
    _install_keys(host)
    code, commands = run_on(host, create("linux", grant_uid=OTHER_GRANT, admin_rights=True))
    assert code == 0 and "useradd" not in commands
    _install_keys(host)
    keys = host / "home" / USERNAME / ".ssh" / "authorized_keys"
    assert keys.read_text() == lines_until_end(
        grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=PORTS
    ) + lines_until_end(grant_uid=OTHER_GRANT, ca_public_keys=[CA_KEY], forward_ports=PORTS)

    code, commands = run_on(host, remove("linux", live_grant_uids=[OTHER_GRANT]))

    assert code == 0
    assert not {"usermod", "pkill", "userdel"} & set(commands)  # the user stays for the other grant
    assert _keys_file(host).read_text() == lines_until_end(
        grant_uid=OTHER_GRANT, ca_public_keys=[CA_KEY], forward_ports=PORTS
    )
    _install_keys(host)

    code, commands = run_on(host, remove("linux", grant_uid=OTHER_GRANT))

    # The last grant takes the user with it (rm is a stub here, so the home stays and the script says so).
    assert code == 4
    assert list(dict.fromkeys(c for c in commands if c in {"usermod", "pkill", "userdel"})) == [
        "usermod",
        "pkill",
        "userdel",
    ]


def test_the_users_step_does_not_get_the_hosts_lock(host: Path) -> None:
    """What runs as the user holds no descriptor of the host's lock: a process it left behind would
    otherwise keep every other script of the host waiting for the lock."""
    (host / "bin" / "runuser").write_text(
        f'#!{BASH}\n{{ : >&9; }} 2>/dev/null && echo open > "$STATE/lock-seen"\n'
        'while [ "$1" != -- ]; do shift; done; shift; exec "$@"\n'
    )
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)
    code, commands = run_on(host, create("linux"), exists=False)
    assert code == 0 and "timeout" in commands
    assert not (host / "lock-seen").exists()
    assert _keys_file(host).read_text() == lines_until_end(
        grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=PORTS
    )


def test_a_users_step_that_never_ends_fails_the_script_in_bounded_time_and_frees_the_lock(host: Path) -> None:
    """Whatever keeps the user's step from ending (here it sleeps): the script fails saying why, and
    the lock is free again; it never waits for Run Command's own timeout."""
    real_tools(host, "timeout")
    sleep = shutil.which("sleep")
    assert sleep is not None
    (host / "bin" / "runuser").write_text(f"#!{BASH}\nexec {sleep} 600\n")
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)
    script = create("linux")
    bound = f"timeout --kill-after=5 {USER_STEP_SECONDS} runuser"
    assert script.count(bound) == 1
    started = time.monotonic()
    result = subprocess.run(
        [BASH],
        input=on_fake_host(script.replace(bound, "timeout --kill-after=1 1 runuser"), host),
        capture_output=True,
        text=True,
        env={"PATH": str(host / "bin"), "STATE": str(host)},
        check=False,
        timeout=20,
    )
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert f"passport: could not write {USERNAME}'s authorized_keys as the user (exit 124" in result.stderr
    lock = host / "var" / "lib" / "passport" / "lock"
    assert subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode == 0


def test_lines_the_user_wrote_and_lines_of_ended_grants_do_not_survive_a_create(host: Path) -> None:
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)
    keys = host / "home" / USERNAME / ".ssh" / "authorized_keys"
    forged_grant = "5d1c3b2a-0000-4000-8000-00000000000f"  # never created on this host
    keys.write_text(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPersonalKeyOfTheUser me@laptop\n"
        + lines_until_end(grant_uid=forged_grant, ca_public_keys=[CA_KEY], forward_ports=PORTS)
        + f'cert-authority,principals="rs-abcdefgh" {" ".join(CA_KEY.split()[:2])}\n'  # an earlier version's line
        + 'command="/bin/sh",cert-authority,principals="grant-'
        + OTHER_GRANT
        + '" '
        + " ".join(CA_KEY.split()[:2])
    )

    code, _ = run_on(host, create("linux"), exists=False)

    assert code == 0
    assert _keys_file(host).read_text() == lines_until_end(
        grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=PORTS
    )


def test_a_live_grants_line_of_the_earlier_format_survives_as_recorded_and_a_widened_one_does_not(host: Path) -> None:
    code, _ = run_on(host, create("linux", grant_uid=OTHER_GRANT), exists=False)
    assert code == 0
    _install_keys(host)
    key = " ".join(CA_KEY.split()[:2])
    earlier = f'cert-authority,principals="grant-{OTHER_GRANT}" {key}'  # before forwards were limited: kept
    # ... as its create recorded it (a line no create recorded is the user's own, and dropped).
    (host / "var" / "lib" / "passport" / "keys" / OTHER_GRANT).write_text(earlier + "\n")
    widened = (  # a VPC host, a listen anywhere, a command: not what the portal writes
        f'cert-authority,principals="grant-{OTHER_GRANT}",permitopen="10.0.0.5:5432" {key}',
        f'cert-authority,principals="grant-{OTHER_GRANT}",permitopen="localhost:22",permitlisten="0.0.0.0:8080" {key}',
        f'cert-authority,principals="grant-{OTHER_GRANT}",permitopen="localhost:22",command="/bin/sh" {key}',
        f'cert-authority,principals="grant-{OTHER_GRANT}",permitopen="localhost:*" {key}',
    )
    (host / "home" / USERNAME / ".ssh" / "authorized_keys").write_text("\n".join([earlier, *widened]) + "\n")

    code, _ = run_on(host, create("linux"))

    assert code == 0
    assert _keys_file(host).read_text() == earlier + "\n" + lines_until_end(
        grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=PORTS
    )


def test_a_live_grants_destinations_survive_another_create_exactly_and_a_widened_line_does_not(host: Path) -> None:
    """keep_grant_lines keeps a line that reaches beyond the instance only as its grant's create
    wrote it: one more host or port, in a line that looks like Passport's own, is dropped."""
    code, _ = run_on(host, create("linux", grant_uid=OTHER_GRANT, forward_destinations=DESTINATIONS), exists=False)
    assert code == 0
    _install_keys(host)
    keys = host / "home" / USERNAME / ".ssh" / "authorized_keys"
    approved = lines_until_end(
        grant_uid=OTHER_GRANT, ca_public_keys=[CA_KEY], forward_ports=PORTS, forward_destinations=DESTINATIONS
    )
    assert keys.read_text() == approved
    widened = [
        lines_until_end(
            grant_uid=OTHER_GRANT, ca_public_keys=[CA_KEY], forward_ports=PORTS, forward_destinations=extra
        ).rstrip("\n")
        for extra in (
            [*DESTINATIONS, "10.0.0.9:22"],  # one more host
            ["mydb.abc123xyz.eu-west-1.rds.amazonaws.com:3307"],  # another port of it
            ["otherdb.abc123xyz.eu-west-1.rds.amazonaws.com:3306"],
        )
    ]
    keys.write_text(approved + "\n".join(widened) + "\n")

    code, _ = run_on(host, create("linux"))

    assert code == 0
    assert _keys_file(host).read_text() == approved + lines_until_end(
        grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=PORTS
    )
    _install_keys(host)
    # The removal of this grant keeps the other's line as it was, and only it.
    keys.write_text(keys.read_text() + widened[0] + "\n")
    code, _ = run_on(host, remove("linux", live_grant_uids=[OTHER_GRANT]))
    assert code == 0
    assert _keys_file(host).read_text() == approved


def test_a_removal_of_the_last_grant_line_removes_the_user_even_with_forged_lines_left(host: Path) -> None:
    code, _ = run_on(host, create("linux"), exists=False)
    assert code == 0
    _install_keys(host)
    keys = host / "home" / USERNAME / ".ssh" / "authorized_keys"
    forged = lines_until_end(
        grant_uid="5d1c3b2a-0000-4000-8000-00000000000f", ca_public_keys=[CA_KEY], forward_ports=PORTS
    )
    keys.write_text(keys.read_text() + forged)

    _, commands = run_on(host, remove("linux"))

    assert "userdel" in commands


def test_a_removal_without_a_grant_leaves_no_tombstone(host: Path) -> None:
    run_on(host, remove("linux", grant_uid=""), exists=False)
    assert list((host / "var" / "lib" / "passport" / "removed").iterdir()) == []


# Another person's user on the same host, and its live grant as its create registered it.
NEIGHBOUR = "rs-zyxwvuts"
NEIGHBOUR_GRANT = "5d1c3b2a-0000-4000-8000-0000000000aa"
OWN_CA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwnCaOfTheUserNotPassportsAtAllxxxxxxxxxxxxx"


def _register(host: Path, grant: str, user: str, lines: str, *, earlier_version: bool = False) -> None:
    """``grant``'s records as this version's create writes them, or as an earlier version's did."""
    state = host / "var" / "lib" / "passport"
    for sub in ("grants", "keys"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "grants" / grant).write_text(user + "\n" + ("" if earlier_version else "passport-grant-record 2\n"))
    (state / "keys" / grant).write_text(lines)


@pytest.mark.parametrize("render", [create, remove], ids=["create", "remove"])
def test_passports_state_on_a_host_is_roots_alone_on_a_new_host_and_on_an_older_one(render: Render, host: Path) -> None:
    """Which grants a host holds, and for whom, is no other user's to list: /var/lib/passport and
    what is in it are created 0700, and a directory an earlier version left open is closed."""
    real_tools(host, "chmod", "rm", "mv")
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)
    state = host / "var" / "lib" / "passport"

    assert run_on(host, render("linux"), exists=False)[0] == 0
    modes = {path.name: path.stat().st_mode & 0o777 for path in [state, *state.iterdir()] if path.is_dir()}
    assert set(modes) == {"passport", "removed", "grants", "keys", "uids"}
    assert set(modes.values()) == {0o700}

    for path in [state, *state.iterdir()]:
        if path.is_dir():
            path.chmod(0o755)
    assert run_on(host, render("linux"), exists=False)[0] == 0
    assert (state.stat().st_mode & 0o777, (state / "grants").stat().st_mode & 0o777) == (0o700, 0o700)


def test_a_removal_of_the_last_grant_removes_the_user_whatever_its_file_says_of_others_grants(host: Path) -> None:
    """A line naming another person's live grant (its principal, a CA of the user's own; or
    Passport's own line for that grant, copied byte for byte) keeps nothing: whether the user has
    live grants is read from /var/lib/passport, never from the user's own file."""
    neighbour_lines = lines_until_end(grant_uid=NEIGHBOUR_GRANT, ca_public_keys=[CA_KEY], forward_ports=PORTS)
    _register(host, NEIGHBOUR_GRANT, NEIGHBOUR, neighbour_lines)
    assert run_on(host, create("linux"), exists=False)[0] == 0
    _install_keys(host)
    keys = host / "home" / USERNAME / ".ssh" / "authorized_keys"
    forged = f'cert-authority,principals="grant-{NEIGHBOUR_GRANT}",no-port-forwarding {OWN_CA_KEY}\n'
    keys.write_text(keys.read_text() + forged + neighbour_lines)

    _, commands = run_on(host, remove("linux"))

    assert list(dict.fromkeys(c for c in commands if c in {"usermod", "pkill", "userdel"})) == [
        "usermod",
        "pkill",
        "userdel",
    ]


def test_a_rewrite_keeps_of_the_users_file_only_the_lines_passport_recorded_for_its_own_live_grants(
    host: Path,
) -> None:
    """The user's file is Passport's alone: a line the user wrote, even one naming its own live
    grant in Passport's very format (with a CA of its own), or one copied from another person's
    grant, does not survive a create or a removal; each live grant's recorded lines do."""
    real_rm_and_mv(host)
    _register(
        host,
        NEIGHBOUR_GRANT,
        NEIGHBOUR,
        neighbour := lines_until_end(grant_uid=NEIGHBOUR_GRANT, ca_public_keys=[CA_KEY], forward_ports=PORTS),
    )
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)
    assert run_on(host, create("linux", grant_uid=OTHER_GRANT), exists=False)[0] == 0
    keys = host / "home" / USERNAME / ".ssh" / "authorized_keys"
    other = lines_until_end(grant_uid=OTHER_GRANT, ca_public_keys=[CA_KEY], forward_ports=PORTS)
    assert keys.read_text() == other
    written = [
        lines_until_end(grant_uid=OTHER_GRANT, ca_public_keys=[OWN_CA_KEY], forward_ports=PORTS),
        f'cert-authority,principals="grant-{OTHER_GRANT}",no-port-forwarding {OWN_CA_KEY}\n',
        f'cert-authority,principals="grant-{OTHER_GRANT}" {OWN_CA_KEY}\n',
        neighbour,
        OWN_CA_KEY + " me@laptop\n",
    ]
    keys.write_text(keys.read_text() + "".join(written))

    assert run_on(host, create("linux"))[0] == 0

    this = lines_until_end(grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=PORTS)
    assert keys.read_text() == other + this
    keys.write_text(keys.read_text() + "".join(written))

    assert run_on(host, remove("linux", live_grant_uids=[OTHER_GRANT]))[0] == 0

    assert keys.read_text() == other


def test_every_removal_clears_the_grants_of_its_user_from_passports_state(host: Path) -> None:
    """A grant's record left behind would count as live for its user later: a removal without a
    grant (the reconciliation's), and one that finds the user already gone, clear every grant of
    that user; other users' grants stay."""
    real_rm_and_mv(host)
    _register(host, NEIGHBOUR_GRANT, NEIGHBOUR, "")
    state = host / "var" / "lib" / "passport"
    for exists in (True, False):
        _register(host, GRANT_UID, USERNAME, "")
        _register(host, OTHER_GRANT, USERNAME, "")
        grant_uid = "" if exists else GRANT_UID
        code, _ = run_on(host, remove("linux", grant_uid=grant_uid), exists=exists, groups=f"users {MARKER_GROUP}")
        assert code in (0, 4)  # 4: the home a stub userdel leaves
        assert sorted(p.name for p in (state / "grants").iterdir()) == [NEIGHBOUR_GRANT]
        assert sorted(p.name for p in (state / "keys").iterdir()) == [NEIGHBOUR_GRANT]


@pytest.mark.parametrize("user_exists", [False, True], ids=["user-gone", "user-kept"])
def test_records_an_earlier_version_left_behind_keep_neither_the_user_nor_their_lines(
    host: Path, user_exists: bool
) -> None:
    """An earlier version's removals left a grant's records behind (one without a grant, the
    reconciliation's, kept every record of the user; one that found the user gone kept the
    grant's, and its tombstone goes after 3 days): after the upgrade, such a record neither
    brings back the ended grant's line nor keeps the user past its last live grant."""
    real_rm_and_mv(host)
    _register(host, NEIGHBOUR_GRANT, NEIGHBOUR, "")
    ended = lines_until_end(grant_uid=OTHER_GRANT, ca_public_keys=[CA_KEY], forward_ports=PORTS)
    _register(host, OTHER_GRANT, USERNAME, ended, earlier_version=True)
    groups = f"users {MARKER_GROUP}" if user_exists else ""
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)

    assert run_on(host, create("linux"), exists=user_exists, groups=groups)[0] == 0
    keys = host / "home" / USERNAME / ".ssh" / "authorized_keys"
    assert keys.read_text() == lines_until_end(grant_uid=GRANT_UID, ca_public_keys=[CA_KEY], forward_ports=PORTS)

    _, commands = run_on(host, remove("linux"))

    assert "userdel" in commands
    state = host / "var" / "lib" / "passport"
    assert sorted(p.name for p in (state / "grants").iterdir()) == [NEIGHBOUR_GRANT]


# --- Windows --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{"grant_uid": ""}, {"grant_uid": "../../etc"}, {"region": ""}, {"region": "eu-west-1'; Remove-Item C:\\"}],
)
def test_a_windows_user_needs_its_hand_off_named_exactly(changes: dict[str, str]) -> None:
    kw = {"grant_uid": GRANT_UID, "region": "eu-west-1", **changes}
    with pytest.raises(UnsafeScriptValue):
        render_create(platform="windows", username=USERNAME, expires_at=EXPIRES_AT, **kw)


def _outside_single_quotes(line: str) -> str:
    return re.sub(r"'[^']*'", "''", line)


@pytest.mark.parametrize("username", [USERNAME, DC_USERNAME])
@pytest.mark.parametrize("domain_controller", [False, True])
@pytest.mark.parametrize("render", [create, set_expiry, remove], ids=["create", "set_expiry", "remove"])
def test_the_windows_scripts_hold_the_username_only_inside_single_quotes(
    render: Render, username: str, domain_controller: bool
) -> None:
    script = render("windows", username, domain_controller=domain_controller)
    assert f"$user = '{username}'" in script
    for line in script.splitlines():
        if line.lstrip().startswith("#"):
            # A comment; a validated name has no line break, so it cannot end the comment.
            continue
        assert username not in _outside_single_quotes(line), line


def test_the_windows_password_is_read_from_parameter_store_not_carried() -> None:
    """Run Command keeps a command's parameters; the script names where to read, nothing more."""
    script = create("windows")
    name = password_parameter_name(GRANT_UID)
    assert name == f"/passport/handoff/{GRANT_UID}"
    assert f"(Get-SSMParameter -Name '{name}' -WithDecryption $true -Region 'eu-west-1').Value" in script
    assert "FromBase64String" not in script
    with pytest.raises(TypeError):  # there is no way to put a password into it
        create("windows", password=PASSWORD)
    # Without AWS Tools for PowerShell the script says so and stops (exit 7: not retried).
    assert 'Refuse 7 "AWS Tools for PowerShell' in script


@pytest.mark.parametrize("admin_rights", [False, True])
@pytest.mark.parametrize("domain_controller", [False, True])
def test_a_windows_refusal_reaches_its_exit_code(domain_controller: bool, admin_rights: bool) -> None:
    """Under 'Stop', Write-Error throws (exit 1, retried) before an ``exit 3`` could run."""
    script = create("windows", domain_controller=domain_controller, admin_rights=admin_rights)
    assert "Write-Error" not in script
    refuse = "function Refuse([int]$code, [string]$message) { [Console]::Error.WriteLine($message); exit $code }"
    assert refuse in script
    assert 'Refuse 3 "refusing: $user is not a Passport user"' in script


@pytest.mark.parametrize("render", [create, set_expiry, remove], ids=["create", "set_expiry", "remove"])
def test_the_windows_scripts_stop_on_the_first_error(render: Render) -> None:
    assert "$ErrorActionPreference = 'Stop'" in render("windows")


@pytest.mark.parametrize(("domain_controller", "flag"), [(True, "yes"), (False, "no")])
def test_the_windows_remove_script_uses_the_directory_only_on_a_domain_controller(
    domain_controller: bool, flag: str
) -> None:
    # Or on a host that says it is a domain controller, whatever the grant was for
    # (tests/fleet/test_windows_remove.py).
    assert f"if (('{flag}' -eq 'yes') -or $onDomainController) {{" in remove(
        "windows", domain_controller=domain_controller
    )


@pytest.mark.parametrize("admin_rights", [False, True])
@pytest.mark.parametrize("domain_controller", [False, True])
def test_the_windows_create_script_uses_the_directory_only_on_a_domain_controller(
    domain_controller: bool, admin_rights: bool
) -> None:
    script = create("windows", domain_controller=domain_controller, admin_rights=admin_rights)
    directory = ["Import-Module ActiveDirectory", "New-ADUser", "Add-ADGroupMember"]
    local = ["New-LocalUser", "Add-LocalGroupMember"]
    assert all((command in script) is domain_controller for command in directory)
    assert all((command in script) is not domain_controller for command in local)


# --- the account's own expiry ---------------------------------------------------------

PARSE_EXACT = (
    "$expires = [datetime]::ParseExact('{}', 'o', [Globalization.CultureInfo]::InvariantCulture, `\n"
    "  [Globalization.DateTimeStyles]::RoundtripKind)"
)


@pytest.mark.parametrize(
    ("moment", "written"),
    [
        (datetime(2030, 3, 4, 10, 0, tzinfo=UTC), "2030-03-04T10:00:00.0000000Z"),
        (datetime(2030, 3, 4, 15, 30, 0, 123456, tzinfo=ZoneInfo("Asia/Kolkata")), "2030-03-04T10:00:00.1234560Z"),
        (datetime(2030, 3, 4, 23, 0, tzinfo=timezone(timedelta(hours=-5))), "2030-03-05T04:00:00.0000000Z"),
    ],
)
@pytest.mark.parametrize("domain_controller", [False, True])
def test_a_windows_account_expires_at_the_moment_given_read_as_utc_in_every_culture(
    moment: datetime, written: str, domain_controller: bool
) -> None:
    """.NET's round-trip form parsed with the invariant culture and RoundtripKind: a UTC DateTime,
    whatever the host's culture or zone; never [datetime]::Parse, which reads '04/03' as either."""
    created = render_create(
        platform="windows",
        username=USERNAME,
        expires_at=moment,
        grant_uid=GRANT_UID,
        region="eu-west-1",
        domain_controller=domain_controller,
    )
    moved = render_windows_expiry(username=USERNAME, expires_at=moment, domain_controller=domain_controller)
    for script in (created, moved):
        assert PARSE_EXACT.format(written) in script
        assert "[datetime]::Parse(" not in script
    setter = "-AccountExpirationDate $expires" if domain_controller else "-AccountExpires $expires"
    assert setter in created and setter in moved


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2030, 3, 4, 10, 0),  # no zone: a local guess on whichever machine reads it
        date(2030, 3, 4),
        "2030-03-04T10:00:00.0000000Z'); Remove-Item C:\\ -Recurse; ('",
        None,
    ],
)
def test_an_expiry_that_is_not_a_moment_with_its_zone_is_refused(moment: object) -> None:
    with pytest.raises(UnsafeScriptValue):
        render_create(platform="windows", username=USERNAME, expires_at=moment, grant_uid=GRANT_UID, region="eu-west-1")  # type: ignore[arg-type]
    with pytest.raises(UnsafeScriptValue):
        render_windows_expiry(username=USERNAME, expires_at=moment)  # type: ignore[arg-type]
    with pytest.raises(UnsafeScriptValue):
        render_create(
            platform="linux", username=USERNAME, expires_at=moment, grant_uid=GRANT_UID, ca_public_keys=[CA_KEY]
        )  # type: ignore[arg-type]


def test_moving_a_windows_expiry_touches_only_a_passport_user_and_only_its_expiry() -> None:
    script = set_expiry("windows")
    assert 'if (-not $account) { Refuse 9 "passport: no user $user here" }' in script
    assert "if ($account.Description -ne $marker) {" in script
    for other in ("Get-SSMParameter", "-Password", "New-LocalUser", "New-ADUser", "Enable-", "GroupMember"):
        assert other not in script


@pytest.mark.parametrize(
    ("moment", "day"),
    [
        (datetime(2030, 3, 4, 10, 0, tzinfo=UTC), "2030-03-05"),
        (datetime(2030, 3, 4, 23, 59, 59, tzinfo=UTC), "2030-03-05"),
        (datetime(2030, 3, 5, 0, 0, tzinfo=UTC), "2030-03-06"),
        # 2030-03-05 09:00 at UTC+14 is 2030-03-04 19:00 UTC.
        (datetime(2030, 3, 5, 9, 0, tzinfo=ZoneInfo("Pacific/Kiritimati")), "2030-03-05"),
    ],
)
def test_a_linux_account_expires_at_the_start_of_the_utc_day_after_the_end(moment: datetime, day: str) -> None:
    """shadow counts whole days since 1970-01-01 UTC and refuses logins from the day it names; the
    date is read in the zone of usermod's TZ, set to UTC so a far-east host does not read a day early."""
    script = render_create(
        platform="linux", username=USERNAME, expires_at=moment, grant_uid=GRANT_UID, ca_public_keys=[CA_KEY]
    )
    assert f"TZ=UTC0 usermod --password '*' --expiredate '{day}' \"$user\"" in script


# The group memberships a Windows create script may change, by well-known SID where there is one.
LOCAL_RDP = "Add-LocalGroupMember -SID $remoteDesktopUsers -Member $user"
LOCAL_ADMIN_ADD = "Add-LocalGroupMember -SID $administrators -Member $user"
# Without admin rights, out of every local group but Remote Desktop Users and Users (Administrators too).
LOCAL_ADMIN_REMOVE = "Remove-LocalGroupMember -SID $groupSid -Member $user"
DC_RDP = "Add-ADGroupMember -Identity $rdpGroup -Members $user"
DC_ADMIN_ADD = "Add-ADGroupMember -Identity $domainAdmins -Members $user"
# Likewise out of every domain group but Passport's and Domain Users (Domain Admins too), by SID.
DC_ADMIN_REMOVE = "Remove-ADGroupMember -Identity $group -Members $user"
LOCAL = [LOCAL_RDP, LOCAL_ADMIN_ADD, LOCAL_ADMIN_REMOVE]
DC = [DC_RDP, DC_ADMIN_ADD, DC_ADMIN_REMOVE]


@pytest.mark.parametrize(
    ("domain_controller", "admin_rights", "present"),
    [
        # Member server: Remote Desktop Users always; Administrators added only with admin
        # rights, and taken away without them (an earlier run may have added it).
        (False, False, [LOCAL_RDP, LOCAL_ADMIN_REMOVE]),
        (False, True, [LOCAL_RDP, LOCAL_ADMIN_ADD]),
        # Domain controller: Passport's Remote Desktop group always; Domain Admins likewise.
        (True, False, [DC_RDP, DC_ADMIN_REMOVE]),
        (True, True, [DC_RDP, DC_ADMIN_ADD]),
    ],
    ids=["member-server", "member-server-admin", "domain-controller", "domain-controller-admin"],
)
def test_the_windows_create_script_gives_admin_groups_only_with_admin_rights(
    domain_controller: bool, admin_rights: bool, present: list[str]
) -> None:
    username = DC_USERNAME if domain_controller else USERNAME
    script = create("windows", username, domain_controller=domain_controller, admin_rights=admin_rights)
    for command in LOCAL + DC:
        assert (command in script) is (command in present), command


@pytest.mark.parametrize("domain_controller", [False, True])
def test_the_windows_admin_groups_are_named_by_sid(domain_controller: bool) -> None:
    script = create("windows", domain_controller=domain_controller, admin_rights=True)
    if domain_controller:
        assert '$domainAdmins = Get-ADGroup -Identity "$((Get-ADDomain).DomainSID.Value)-512"' in script
        assert "$builtinRdp = Get-ADGroup -Identity 'S-1-5-32-555'" in script
    else:
        assert "$administrators = 'S-1-5-32-544'" in script
        assert "$remoteDesktopUsers = 'S-1-5-32-555'" in script


@pytest.mark.parametrize("domain_controller", [False, True])
def test_taking_admin_rights_away_ends_the_sessions_that_still_hold_them(domain_controller: bool) -> None:
    """A logon token keeps the groups it was made with, so a demoted user's processes are ended
    (tests/fleet/test_windows_create.py: whenever it has any, demoted by this run or not)."""
    without = create("windows", domain_controller=domain_controller)
    remove_admin = DC_ADMIN_REMOVE if domain_controller else LOCAL_ADMIN_REMOVE
    assert without.index(remove_admin) < without.index("Stop-Process")
    assert "Stop-Process" not in create("windows", domain_controller=domain_controller, admin_rights=True)


def test_the_domain_remote_desktop_group_is_passports_own() -> None:
    script = create("windows", DC_USERNAME, domain_controller=True)
    assert "$rdpGroupName = 'Passport Remote Desktop Users'" in script
    # A group of that name that Passport did not make is refused before it is given anything.
    refused = script.index("$rdpGroup.Description -ne $rdpGroupMarker")
    assert refused < script.index("New-ADGroup -Name $rdpGroupName")
    assert refused < script.index("Add-ADGroupMember -Identity $builtinRdp -Members $rdpGroup")
    assert refused < script.index(DC_RDP)


@pytest.mark.parametrize("admin_rights", [False, True])
@pytest.mark.parametrize("domain_controller", [False, True])
def test_the_windows_create_script_refuses_a_user_passport_did_not_make_before_changing_groups(
    domain_controller: bool, admin_rights: bool
) -> None:
    script = create("windows", domain_controller=domain_controller, admin_rights=admin_rights)
    refused = script.index("$existing.Description -ne $marker")
    first_change = min(script.index(command) for command in LOCAL + DC if command in script)
    assert refused < first_change


def test_the_windows_remove_script_touches_only_passport_users() -> None:
    script = remove("windows")
    assert "$marker = 'Passport short-lived user'" in script
    directory, local = script.split("\n} else {\n", 1)
    for branch, remover in ((directory, "Remove-ADUser"), (local, "Remove-LocalUser")):
        check = branch.index("$account.Description -ne $marker")
        assert "exit 0" in branch[check : branch.index(remover)]


# --- one script for several hosts ---------------------------------------------------------


@pytest.mark.parametrize("instance_id, grant_uid", [(HOST_A, GRANT_UID), (HOST_B, GRANT_B)])
def test_a_create_for_several_hosts_creates_on_each_the_grant_named_for_it(
    host: Path, instance_id: str, grant_uid: str
) -> None:
    (host / "home" / USERNAME / ".ssh").mkdir(parents=True)
    code, commands = run_on(host, create_per_host(), exists=False, instance_id=instance_id)
    assert code == 0
    assert "useradd" in commands
    written = _keys_file(host).read_text()
    # Exactly the line that host would get from its own create script: its grant's principal only.
    assert written == lines_until_end(grant_uid=grant_uid, ca_public_keys=[CA_KEY], forward_ports=PORTS)
    assert sorted(p.name for p in (host / "var/lib/passport/grants").iterdir()) == [grant_uid]


@pytest.mark.parametrize("instance_id", [None, "", "i-00000000000000000", f"{HOST_A} ", "*"])
def test_a_script_for_several_hosts_touches_nothing_on_a_host_it_does_not_name(
    host: Path, instance_id: str | None
) -> None:
    for script in (create_per_host(), remove_per_host()):
        code, commands = run_on(host, script, exists=True, groups=f"users {MARKER_GROUP}", instance_id=instance_id)
        assert code == 8
        assert commands == []
        assert (host / "exists").exists()
        assert not (host / "var/lib/passport/grants").exists() or not any((host / "var/lib/passport/grants").iterdir())


def test_a_removal_for_several_hosts_tombstones_only_the_grant_of_the_host_it_runs_on(host: Path) -> None:
    code, commands = run_on(host, remove_per_host(), exists=True, groups=f"users {MARKER_GROUP}", instance_id=HOST_B)
    assert code == 0
    assert "userdel" in commands
    assert sorted(p.name for p in (host / "var/lib/passport/removed").iterdir()) == [GRANT_B]
    # The tombstone then refuses a late create of that grant on that host, as for one host alone.
    code, _ = run_on(host, create_per_host(), exists=False, instance_id=HOST_B)
    assert code == 6


@pytest.mark.parametrize(
    "grants",
    [
        {"i-0123456789abcdef0'; reboot; '": GRANT_UID},
        {"i-0123456789abcdef0) reboot ;;": GRANT_UID},
        {"i-0123456789ABCDEF0": GRANT_UID},
        {"i-0123456789abcdef0\n": GRANT_UID},
        {"*": GRANT_UID},
        {HOST_A: "$(reboot)"},
        {HOST_A: GRANT_UID + "'"},
        {},
    ],
    ids=["quote", "case-syntax", "upper-case", "newline", "glob", "grant-substitution", "grant-quote", "none"],
)
def test_a_script_for_several_hosts_refuses_anything_but_instance_ids_and_grant_uids(grants: dict[str, str]) -> None:
    with pytest.raises(UnsafeScriptValue):
        create_per_host(grants)
    with pytest.raises(UnsafeScriptValue):
        remove_per_host(grants)


def test_a_script_for_several_hosts_names_each_host_once_in_its_own_case() -> None:
    script = create_per_host()
    assert 'case "${AWS_SSM_INSTANCE_ID:-}" in' in script
    assert script.count(f"'{HOST_A}') grant='{GRANT_UID}'") == 1
    assert script.count(f"'{HOST_B}') grant='{GRANT_B}'") == 1
    assert (
        render_create_per_host(
            username=USERNAME, expires_at=EXPIRES_AT, grants={HOST_A: GRANT_UID}, ca_public_keys=[CA_KEY]
        ).count("grant=")
        == 1
    )
