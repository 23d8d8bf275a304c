"""`passport forward`'s LOCAL:REMOTE argument and `connect`'s --local-port and --remote-port (no portal
needed: argparse refuses bad ones with exit 2), and a LOCAL port that cannot be bound."""

from __future__ import annotations

import argparse
import socket

import pytest

from passport_cli.errors import CliError, Exit
from passport_cli.forward_commands import port_pair
from passport_cli.main import build_parser, main
from passport_cli.tunnel import run_port_forward


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


@pytest.mark.parametrize(
    "option", [("--local-port", "70000"), ("--local-port", "-5"), ("--remote-port", "0"), ("--remote-port", "65536")]
)
def test_connect_ports_out_of_range_are_usage_errors(
    option: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["connect", "win-1", *option])
    assert exit_info.value.code == 2
    assert "..65535, not " in capsys.readouterr().err


def test_connect_takes_local_port_0_for_a_free_one_and_any_port_up_to_65535() -> None:
    parsed = build_parser().parse_args(["connect", "win-1", "--local-port", "0", "--remote-port", "65535"])
    assert (parsed.local_port, parsed.remote_port) == (0, 65535)


def test_a_local_port_in_use_is_a_cli_error_before_any_session_or_ready_line() -> None:
    """A LOCAL port that is taken (or privileged): one CliError, not a traceback; nothing asked of
    the portal (no portal here at all) and ``ready`` never called."""
    told: list[int] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CliError) as refused:
            run_port_forward(None, 1, "i-0123456789abcdef0", 5432, port, told.append)  # type: ignore[arg-type]
    assert refused.value.code == Exit.ERROR and f"could not listen on 127.0.0.1:{port}" in refused.value.message
    assert "\n" not in refused.value.message and not told
