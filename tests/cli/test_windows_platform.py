"""The CLI where Windows differs: no SIGHUP in ``signal``, no ``add_signal_handler`` on the event
loop (Windows' loops raise NotImplementedError), and the v1 spelling of ``--keyType``.

There is no Windows here: each test takes away what Windows lacks and runs the real code.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import pytest

from passport_cli import __version__
from passport_cli.connect_commands import _run_ssh
from passport_cli.errors import Terminated
from passport_cli.main import build_parser, main
from passport_cli.tunnel import run_port_forward


@pytest.fixture
def windows_signals(loop_without_signal_handlers: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """``signal`` as on Windows: SIGTERM and SIGINT, no SIGHUP; event loops without signal handlers."""
    monkeypatch.delattr(signal, "SIGHUP")


@pytest.fixture
def loop_without_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_signal_handlers(self: Any, *args: object) -> None:
        raise NotImplementedError  # what asyncio's ProactorEventLoop and SelectorEventLoop do on Windows

    probe = asyncio.new_event_loop()
    loop_class = type(probe)
    probe.close()
    monkeypatch.setattr(loop_class, "add_signal_handler", no_signal_handlers)
    monkeypatch.setattr(loop_class, "remove_signal_handler", no_signal_handlers)


def test_passport_version_runs_without_sighup(windows_signals: None, capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGTERM)

    assert main(["version"]) == 0

    assert __version__ in capsys.readouterr().out
    assert signal.getsignal(signal.SIGTERM) is before  # the handler it set while running is gone


def test_connect_runs_ssh_without_sighup(windows_signals: None) -> None:
    assert _run_ssh([sys.executable, "-c", "raise SystemExit(3)"], {}) == 3


def test_a_port_forward_without_loop_signal_handlers_listens_and_ends_on_sigterm(windows_signals: None) -> None:
    """The listener comes up, and SIGTERM (delivered through a plain handler) ends it as the
    loop's own handler would: the connections closed, then Terminated."""
    before = signal.getsignal(signal.SIGTERM)
    ports: list[int] = []

    def ready(port: int) -> None:
        ports.append(port)
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Terminated) as ended:
        run_port_forward(None, 1, "i-0123456789abcdef0", 3389, 0, ready)  # type: ignore[arg-type]

    assert ended.value.signum == signal.SIGTERM
    assert ports and ports[0] > 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_port_forward_ends_on_sighup_through_a_plain_handler_where_the_loop_has_none(
    loop_without_signal_handlers: None,
) -> None:
    with pytest.raises(Terminated) as ended:
        run_port_forward(None, 1, "i-0123456789abcdef0", 3389, 0, lambda port: os.kill(os.getpid(), signal.SIGHUP))  # type: ignore[arg-type]
    assert ended.value.signum == signal.SIGHUP


@pytest.mark.parametrize("command", ["connect", "ssh-config"])
@pytest.mark.parametrize("flag", ["--key-type", "--keyType"])
def test_the_key_type_is_taken_under_either_name(command: str, flag: str) -> None:
    args = build_parser().parse_args([command, flag, "rsa"])
    assert args.key_type == "rsa"
    # Not given: Ed25519, with RSA offered too on a direct account (connect_commands).
    assert build_parser().parse_args([command]).key_type is None


@pytest.mark.parametrize("flag", ["--key-type", "--keyType"])
def test_an_unknown_key_type_is_a_usage_error_under_either_name(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ssh-config", flag, "dsa"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'dsa'" in capsys.readouterr().err
