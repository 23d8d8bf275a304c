"""A Linux script's exit code is the portal's reading of what happened on the host (``exit 10``:
the grant's user left Passport's group and waits for an operator; ``exit 3``: the name is another
account's, not retried; ...). The account tools the scripts call have exit codes of their own in
the same small numbers (userdel, useradd, usermod and groupadd exit 10 when they cannot lock
/etc/group, useradd 3, 6 or 9 for reasons of theirs), and under ``set -e`` a failing tool's code
would be the script's. Each tool here fails with each code the scripts give a meaning to, on the
fake host of ``test_scripts``: the script stops without saying any of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.scripts import REMOVAL_REFUSED_EXIT_CODE
from tests.fleet.test_scripts import create, create_per_host, fake_host, remove, run_on

# What the Linux scripts' own exits say: 3 the name is someone else's, 4 the user still has
# something, 5 the sudoers entry does not validate, 6 the grant was removed already, 8 the
# command names no grant for this host, 9 no uid left, 10 the grant's user left Passport's group.
MEANINGFUL = (3, 4, 5, 6, 8, 9, REMOVAL_REFUSED_EXIT_CODE)


def _failing(host: Path, tool: str, code: int) -> None:
    stub = host / "bin" / tool
    stub.unlink()
    stub.write_text(
        f'#!/bin/bash\necho "{tool} $*" >> "$STATE/log"\necho "{tool}: cannot lock /etc/group" >&2\nexit {code}\n'
    )
    stub.chmod(0o755)


@pytest.mark.parametrize("code", MEANINGFUL)
@pytest.mark.parametrize("tool", ["groupadd", "useradd", "usermod", "runuser"])
def test_a_failing_tool_in_a_create_never_ends_it_with_a_code_the_portal_reads(
    tmp_path: Path, tool: str, code: int
) -> None:
    host = fake_host(tmp_path)
    (host / "home" / "rs-abcdefgh" / ".ssh").mkdir(parents=True)
    _failing(host, tool, code)
    exit_code, commands = run_on(host, create("linux"), exists=False)
    assert tool in commands
    assert exit_code != 0 and exit_code not in MEANINGFUL, exit_code


@pytest.mark.parametrize("code", MEANINGFUL)
@pytest.mark.parametrize("tool", ["usermod", "userdel"])
def test_a_failing_tool_in_a_removal_never_ends_it_with_a_code_the_portal_reads(
    tmp_path: Path, tool: str, code: int
) -> None:
    host = fake_host(tmp_path)
    _failing(host, tool, code)
    exit_code, commands = run_on(host, remove("linux", created=True), exists=True, groups="users passport-users")
    assert tool in commands
    assert exit_code != 0 and exit_code not in MEANINGFUL, exit_code


@pytest.mark.parametrize("code", MEANINGFUL)
def test_locking_a_user_that_left_the_group_fails_as_an_ordinary_try_not_as_left(tmp_path: Path, code: int) -> None:
    host = fake_host(tmp_path)
    _failing(host, "usermod", code)
    exit_code, commands = run_on(host, remove("linux", created=True), exists=True, groups="users wheel")
    assert "usermod" in commands and "userdel" not in commands
    assert exit_code != 0 and exit_code not in MEANINGFUL, exit_code


def test_the_scripts_own_codes_still_end_them(tmp_path: Path) -> None:
    """What the scripts say on purpose is still said, from their top level and from the per-host case."""

    def on_new_host(name: str, script: str, **kw: object) -> int:
        (tmp_path / name).mkdir()
        return run_on(fake_host(tmp_path / name), script, **kw)[0]  # type: ignore[arg-type]

    assert (
        on_new_host("left", remove("linux", created=True), exists=True, groups="users wheel")
        == REMOVAL_REFUSED_EXIT_CODE
    )
    assert on_new_host("other", create("linux"), exists=True, groups="users wheel") == 3
    assert on_new_host("no-grant", create_per_host(), exists=False, instance_id="i-00000000000000000") == 8
    assert on_new_host("removed", remove("linux"), exists=True, groups="users passport-users") == 0
