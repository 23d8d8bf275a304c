"""Links on the way to the config dir: each one met while the path is resolved, in the path as written
or inside another link's target, has its owner checked and the directories it lies in, since whoever
may rename entries there could point it at a directory of their own. From the home directory up nothing
is checked, but only once the real path walked reaches home: a link that leads to home lies somewhere.

The suite runs as root: another user's link is one chowned to nobody."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from passport_cli.config import check_config_dir, ensure_private_dir
from passport_cli.errors import CliError
from passport_cli.keys import ensure_key
from tests.cli.test_config_dir_owner import OTHER, as_root


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    return home


def _directory(path: Path, mode: int) -> Path:
    path.mkdir(parents=True)
    path.chmod(mode)  # not left to the umask
    return path


def _config_at(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(path))
    path.mkdir(mode=0o700)
    return path


@pytest.mark.parametrize("mode", [0o777, 0o757])
def test_a_link_to_home_in_a_directory_others_may_change_is_refused(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    """SHARED/link -> HOME, the config dir SHARED/link/passport: the link leads to home, but whoever may
    rename entries in SHARED could point it at a home of their own."""
    shared = _directory(tmp_path / "shared", mode)
    (shared / "link").symlink_to(home)
    config = _config_at(shared / "link" / "passport", monkeypatch)

    with pytest.raises(CliError, match=f"{shared} can be written by others .* could swap {config}"):
        check_config_dir(config)
    with pytest.raises(CliError, match=f"{shared} can be written by others"):
        ensure_private_dir(config)
    with pytest.raises(CliError, match=f"{shared} can be written by others"):
        ensure_key("ed25519")
    assert not (home / "passport" / "keys").exists()


@pytest.mark.parametrize("relative", [False, True])
def test_a_link_met_inside_another_links_target_is_checked_where_it_lies(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    """HOME/a -> SHARED/b/c and SHARED/b -> HOME/real: the link SHARED/b is on neither the path as
    written nor the one it resolves to, and lies in a directory anyone may rename entries in."""
    _directory(home / "real" / "c", 0o700)
    shared = _directory(tmp_path / "shared", 0o777)
    (shared / "b").symlink_to(Path("../home/real") if relative else home / "real")
    (home / "a").symlink_to(Path("../shared/b/c") if relative else shared / "b" / "c")
    config = _config_at(home / "a" / "passport", monkeypatch)
    assert config.resolve() == home / "real" / "c" / "passport"

    with pytest.raises(CliError, match=f"{shared} can be written by others"):
        check_config_dir(config)
    with pytest.raises(CliError, match=f"{shared} can be written by others"):
        ensure_private_dir(config)


@as_root
def test_another_users_link_inside_a_links_target_is_refused(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directories are in order, but the link met inside the other link's target is not the
    engineer's or root's: its owner could point it elsewhere (a link's target cannot change, but its
    owner may replace it in a directory that lets them, and says where it leads meanwhile)."""
    _directory(home / "real" / "c", 0o700)
    mine = _directory(tmp_path / "mine", 0o755)
    (mine / "b").symlink_to(home / "real")
    os.chown(mine / "b", OTHER, OTHER, follow_symlinks=False)
    (home / "a").symlink_to(mine / "b" / "c")
    config = _config_at(home / "a" / "passport", monkeypatch)

    with pytest.raises(CliError, match=f"{mine / 'b'} belongs to uid {OTHER}"):
        check_config_dir(config)


def test_a_link_to_home_in_a_directory_of_ones_own_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path walked reaches home: the directories above it are not checked (here one anyone may
    write to, as a site's shared /u), while the one the link lies in is, and passes."""
    shared = _directory(tmp_path / "shared", 0o777)
    home = _directory(shared / "home", 0o700)
    monkeypatch.setenv("HOME", str(home))
    mine = _directory(tmp_path / "mine", 0o700)
    (mine / "link").symlink_to(home)
    config = _config_at(mine / "link" / "passport", monkeypatch)

    check_config_dir(config)
    assert ensure_key("ed25519")[1].startswith("ssh-ed25519 ")
    assert (home / "passport" / "keys" / "id_ed25519").exists()


def test_links_within_home_are_used(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME/.config -> dotfiles/config (relative) and a link in it to another directory of home's: all
    the engineer's own, nothing above home looked at."""
    _directory(home / "dotfiles" / "config" / "real", 0o700)
    (home / ".config").symlink_to("dotfiles/config")
    (home / "dotfiles" / "config" / "passport").symlink_to("real")
    config = home / ".config" / "passport"
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(config))
    home.parent.chmod(0o777)  # above home: the system's to answer for

    check_config_dir(config)
    assert ensure_key("ed25519")[1].startswith("ssh-ed25519 ")


def test_a_loop_of_links_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "one").symlink_to(home / "two")
    (home / "two").symlink_to(home / "one")
    config = home / "one" / "passport"
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(config))

    with pytest.raises(CliError, match=f"Cannot use {config}: Too many levels of symbolic links"):
        check_config_dir(config)
