"""`passport forward`'s LOCAL:REMOTE argument (no portal needed: argparse refuses bad ones with exit 2)."""

from __future__ import annotations

import argparse

import pytest

from passport_cli.forward_commands import port_pair
from passport_cli.main import main


@pytest.mark.parametrize(("value", "expected"), [("15432:5432", (15432, 5432)), ("0:3389", (0, 3389))])
def test_port_pairs(value: str, expected: tuple[int, int]) -> None:
    assert port_pair(value) == expected


@pytest.mark.parametrize("value", ["5432", ":5432", "1:0", "70000:22", "1:70000", "a:22", "1:²", "-1:22", " 1:22"])
def test_bad_port_pairs(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        port_pair(value)


def test_a_bad_pair_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["forward", "web-1", "22"])
    assert exit_info.value.code == 2
    assert "LOCAL:REMOTE" in capsys.readouterr().err
