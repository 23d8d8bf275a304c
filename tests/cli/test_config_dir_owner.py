"""The config dir, keys/ and certs/ hold the key the portal certifies and the sign-in: the CLI uses them
only when they are this user's own and no one else may write to them (as ssh's StrictModes), and a key
pair only when the private key is a file of its own and the public key is its public half.

The suite runs as root: the files of "another user" are chowned to nobody, and the two-user test runs
the CLI's code as www-data (the engineer) against a directory nobody owns."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from passport_cli.config import Credentials, save_credentials
from passport_cli.errors import CliError
from passport_cli.keys import ensure_key, write_certificates
from passport_cli.main import main

ENGINEER, OTHER = 33, 65534  # www-data, nobody
ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"  # one www-data can run (the venv may live under /root)

as_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root to own files as another user")


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "passport"
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(directory))
    monkeypatch.setenv("PASSPORT_URL", "http://127.0.0.1:9")
    return directory


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_name(f"{path.name}.pub").read_text().strip()


def _refused(*parts: str) -> pytest.RaisesExc[CliError]:
    """A CliError whose message holds ``parts`` in order (paths taken as they are, not as patterns)."""
    return pytest.raises(CliError, match=".*".join(re.escape(part) for part in parts))


def test_a_key_pair_of_its_own_is_made_once_and_kept(config: Path) -> None:
    path, public = ensure_key("ed25519")

    assert ensure_key("ed25519") == (path, public)
    assert path.stat().st_mode & 0o777 == 0o600
    assert (config / "keys").stat().st_mode & 0o777 == 0o700


@as_root
def test_a_config_dir_another_user_owns_is_refused(config: Path) -> None:
    config.mkdir(mode=0o700)
    os.chown(config, OTHER, OTHER)

    with _refused(f"{config} belongs to uid {OTHER}, not to you (uid 0)"):
        ensure_key("ed25519")
    assert not (config / "keys").exists()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_config_dir_others_can_write_is_refused(config: Path, mode: int) -> None:
    config.mkdir()
    config.chmod(mode)

    with _refused(f"{config} can be written by others", f"chmod 700 {config}"):
        ensure_key("ed25519")
    with _refused("can be written by others"):
        save_credentials(Credentials(portal="http://127.0.0.1:9", token="t", expires_at="2099-01-01T00:00:00Z"))
    assert not (config / "credentials.json").exists()


@as_root
def test_a_sign_in_in_a_config_dir_another_user_owns_is_not_read(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_credentials(Credentials(portal="http://127.0.0.1:9", token="planted", expires_at="2099-01-01T00:00:00Z"))
    os.chown(config, OTHER, OTHER)

    assert main(["auth", "status"]) == 1

    assert f"{config} belongs to uid {OTHER}" in capsys.readouterr().err


@as_root
@pytest.mark.parametrize("name", ["keys", "certs"])
def test_a_keys_or_certs_dir_another_user_owns_is_refused(config: Path, name: str) -> None:
    (config / name).mkdir(parents=True, mode=0o700)
    os.chown(config / name, OTHER, OTHER)

    with _refused(f"{config / name} belongs to uid {OTHER}"):
        ensure_key("ed25519") if name == "keys" else write_certificates("web", ["ssh-ed25519-cert-v01@openssh.com AA"])


@pytest.mark.parametrize("name", ["keys", "certs"])
def test_a_keys_or_certs_dir_that_is_a_symlink_is_refused(config: Path, tmp_path: Path, name: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    config.mkdir(mode=0o700)
    (config / name).symlink_to(elsewhere)

    with _refused(f"{config / name} is a symbolic link"):
        ensure_key("ed25519") if name == "keys" else write_certificates("web", ["ssh-ed25519-cert-v01@openssh.com AA"])
    assert list(elsewhere.iterdir()) == []


def test_a_private_key_that_is_a_symlink_is_refused(config: Path, tmp_path: Path) -> None:
    # The reviewer's attack: the private key a link to the engineer's real one, the public key another's.
    real = tmp_path / "real" / "id_ed25519"
    real.parent.mkdir()
    _keygen(real)
    keys = config / "keys"
    keys.mkdir(parents=True, mode=0o700)
    (keys / "id_ed25519").symlink_to(real)
    shutil.copy(real.with_name("id_ed25519.pub"), keys / "id_ed25519.pub")

    with _refused(f"{keys / 'id_ed25519'} is a symbolic link"):
        ensure_key("ed25519")


def test_a_public_key_that_is_not_the_private_keys_is_refused(config: Path, tmp_path: Path) -> None:
    ensure_key("ed25519")
    planted = _keygen(tmp_path / "planted")
    public = config / "keys" / "id_ed25519.pub"
    public.write_text(planted + "\n")

    with _refused(f"{public} is not the public key of {config / 'keys' / 'id_ed25519'}"):
        ensure_key("ed25519")


def test_a_private_key_that_is_not_one_is_refused(config: Path) -> None:
    path, _ = ensure_key("ed25519")
    path.write_text("not a key\n")

    with _refused(f"{path} is not an unencrypted OpenSSH private key"):
        ensure_key("ed25519")


@as_root
def test_a_private_key_another_user_owns_is_refused(config: Path) -> None:
    path, _ = ensure_key("ed25519")
    os.chown(path, OTHER, OTHER)

    with _refused(f"{path} belongs to uid {OTHER}"):
        ensure_key("ed25519")


def _as_engineer(code: str, config: Path, home: Path, code_dir: Path) -> subprocess.CompletedProcess[str]:
    """``code`` run by /usr/bin/python3 as www-data, the CLI of this tree importable from ``code_dir``
    (``cli_copy``), CliError printed."""
    wrapped = (
        "import sys\nfrom passport_cli.errors import CliError\ntry:\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "except CliError as error:\n    sys.exit(f'passport: {error.message}')\n"
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PASSPORT_CONFIG_DIR": str(config)}
    env["PYTHONPATH"] = str(code_dir)
    return subprocess.run(
        [SYSTEM_PYTHON, "-P", "-c", wrapped], env=env, capture_output=True, text=True, cwd="/", timeout=60,
        preexec_fn=lambda: (os.setgid(ENGINEER), os.setuid(ENGINEER)),
    )  # fmt: skip


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory under /tmp that www-data can reach (pytest's own tmp_path is root's, mode 0700)."""
    directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="passport-shared-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def _system_python_has_cryptography() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    found = subprocess.run([SYSTEM_PYTHON, "-c", "import cryptography"], capture_output=True, timeout=60)
    return found.returncode == 0


def cli_copy(shared_tmp: Path) -> Path:
    """A copy of this tree's CLI package that www-data can read: the tree itself may sit in a directory
    only root can enter (a clone under mktemp -d, a home of mode 0700)."""
    code_dir = shared_tmp / "code"
    shutil.copytree(ROOT / "passport_cli", code_dir / "passport_cli", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [code_dir, *code_dir.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return code_dir


@as_root
@pytest.mark.skipif(not _system_python_has_cryptography(), reason="no /usr/bin/python3 with cryptography for www-data")
def test_a_config_dir_another_user_owns_under_tmp_is_refused_by_the_engineer(shared_tmp: Path) -> None:
    """The reviewer's case, as two real users: the engineer is pointed at a (world-writable) config dir
    under /tmp that nobody owns, who could later swap the key pair there for one of their own (the
    private key a link to the engineer's, the public key theirs). The engineer's CLI refuses it."""
    home = shared_tmp / "home"
    home.mkdir()
    os.chown(home, ENGINEER, ENGINEER)
    shared = shared_tmp / "passport"
    shared.mkdir()
    shared.chmod(0o777)
    os.chown(shared, OTHER, OTHER)
    code = "from passport_cli.keys import ensure_key\nprint(ensure_key('ed25519')[1])"
    code_dir = cli_copy(shared_tmp)

    run = _as_engineer(code, shared, home, code_dir)

    assert run.returncode != 0, f"the CLI made and used a key pair in {shared}: {run.stdout.strip()[:40]}"
    assert f"{shared} belongs to uid {OTHER}, not to you (uid {ENGINEER})" in run.stderr
    assert list(shared.iterdir()) == []
    # The engineer's own config dir, made by the CLI, is used.
    own = home / "passport"
    run = _as_engineer(code, own, home, code_dir)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ssh-ed25519 ")
    assert (own / "keys" / "id_ed25519").stat().st_uid == ENGINEER


# The directories above the config dir, as OpenSSH's StrictModes checks those above ~/.ssh: whoever
# may rename entries in one of them could swap the config dir (or a directory on the way to it) for one
# of their own, with a key pair and sign-in of theirs in it.


def _parents_of(config: Path, *modes: tuple[str, int, int]) -> Path:
    """Directories ``name`` (mode, owner) one inside the other above ``config``'s parent; ``config`` below them."""
    where = config.parent
    for name, mode, owner in modes:
        where = where / name
        where.mkdir()
        where.chmod(mode)
        os.chown(where, owner, 0)
    return where


@as_root
@pytest.mark.parametrize(
    ("modes", "blamed", "why"),
    [
        ([("shared", 0o777, 0)], "shared", "can be written by others (mode 777)"),
        ([("team", 0o775, 0)], "team", "can be written by others (mode 775)"),
        ([("theirs", 0o755, OTHER)], "theirs", f"belongs to uid {OTHER}"),
        ([("sticky", 0o1777, OTHER)], "sticky", f"belongs to uid {OTHER}"),
        ([("open", 0o757, 0), ("mine", 0o700, 0)], "open", "can be written by others (mode 757)"),
    ],
)
def test_a_config_dir_under_a_directory_others_may_change_is_refused(
    config: Path, monkeypatch: pytest.MonkeyPatch, modes: list[tuple[str, int, int]], blamed: str, why: str
) -> None:
    above = _parents_of(config, *modes)
    inside = above / "passport"
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(inside))
    blamed_path = config.parent / modes[0][0] if blamed == modes[0][0] else above

    with _refused(f"{blamed_path} {why}", "could swap"):
        ensure_key("ed25519")
    assert not (inside / "keys").exists()
    with _refused(f"{blamed_path} {why}"):
        save_credentials(Credentials(portal="http://127.0.0.1:9", token="t", expires_at="2099-01-01T00:00:00Z"))
    assert not (inside / "credentials.json").exists()


@as_root
def test_a_sign_in_under_a_directory_others_may_change_is_not_read(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inside = config.parent / "shared" / "passport"
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(inside))
    save_credentials(Credentials(portal="http://127.0.0.1:9", token="planted", expires_at="2099-01-01T00:00:00Z"))
    (config.parent / "shared").chmod(0o777)

    assert main(["auth", "status"]) == 1

    assert f"{config.parent / 'shared'} can be written by others (mode 777)" in capsys.readouterr().err


@as_root
def test_a_link_to_a_config_dir_under_a_directory_others_may_change_is_refused(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config dir may be a link (``check_private`` follows it): what it leads to is checked, and the
    directories the link itself lies in, whose writers could point it elsewhere."""
    shared = _parents_of(config, ("shared", 0o777, 0))
    (shared / "passport").mkdir(mode=0o700)
    mine = _parents_of(config, ("mine", 0o700, 0))
    (mine / "passport").symlink_to(shared / "passport")
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(mine / "passport"))
    with _refused(f"{shared} can be written by others"):
        ensure_key("ed25519")

    (config.parent / "elsewhere").mkdir(mode=0o700)
    (shared / "link").symlink_to(config.parent / "elsewhere")
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(shared / "link" / "passport"))
    with _refused(f"{shared} can be written by others"):
        ensure_key("ed25519")
    assert not (config.parent / "elsewhere" / "passport" / "keys").exists()


@as_root
@pytest.mark.parametrize(
    "modes", [[("tmp", 0o1777, 0)], [("tmp", 0o1777, 0), ("mine", 0o755, 0)], [("home", 0o755, 0)]]
)
def test_a_config_dir_under_sticky_or_own_directories_is_used(
    config: Path, monkeypatch: pytest.MonkeyPatch, modes: list[tuple[str, int, int]]
) -> None:
    """/tmp (sticky: nobody renames what is not theirs), directories of root's or one's own: as for ~/.ssh."""
    inside = _parents_of(config, *modes) / "passport"
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(inside))

    assert ensure_key("ed25519")[1].startswith("ssh-ed25519 ")


@as_root
def test_the_directories_above_the_home_directory_are_not_checked(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As OpenSSH's StrictModes: from the home directory (checked) up, the system's layout is not the engineer's
    to answer for (an automounter's /home, a site's shared /u)."""
    home = _parents_of(config, ("shared", 0o777, 0), ("home", 0o700, 0))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(home / ".config" / "passport"))
    assert ensure_key("ed25519")[1].startswith("ssh-ed25519 ")

    home.chmod(0o777)
    with _refused(f"{home} can be written by others (mode 777)"):
        ensure_key("ed25519")
