"""`passport`: sign in, ask for access, connect. See `passport --help` and `passport COMMAND --help`.

The parser and the entry point (``passport_cli.main:main``); each command group lives in its
own module and registers its subcommands here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import threading
from collections.abc import Sequence
from typing import cast

from passport_cli import (
    __version__,
    auth_commands,
    aws_credentials,
    connect_commands,
    diagnostics_commands,
    forward_commands,
    request_commands,
    version_commands,
)
from passport_cli.arguments import CommandParser, Subcommands, shared_arguments
from passport_cli.display import printable
from passport_cli.errors import EXIT_CODES_HELP, CliError, Exit, Terminated
from passport_cli.logs import log_to_stderr
from passport_cli.signals import stop_signals_caught


def build_parser() -> argparse.ArgumentParser:
    shared = shared_arguments()
    parser = CommandParser(
        prog="passport",
        description="Just-in-time access to EC2 instances through the Passport portal.",
        epilog=EXIT_CODES_HELP,
        formatter_class=shared.formatter,
    )
    parser.add_argument("-V", "--version", action="version", version=f"passport {__version__}")
    # Typed as plain ArgumentParsers (typeshed's is invariant): they are CommandParsers, as their parent.
    commands = cast("Subcommands", parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    # The order of `passport --help`.
    auth_commands.add_parsers(commands, shared)
    request_commands.add_parsers(commands, shared)
    connect_commands.add_parsers(commands, shared)
    forward_commands.add_parsers(commands, shared)
    aws_credentials.add_aws_credentials_parser(
        commands, parents=[shared.common], epilog=EXIT_CODES_HELP, formatter_class=shared.formatter
    )
    connect_commands.add_ssh_config_parser(commands, shared)
    version_commands.add_parsers(commands, shared)
    diagnostics_commands.add_parsers(commands, shared)
    return parser


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _replace_unencodable_characters() -> None:
    """A terminal whose encoding cannot show a character (a Latin-1 locale, an emoji in a reason)
    gets ``\\U0001f680`` for it, not a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            with contextlib.suppress(ValueError):  # closed
                stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _replace_unencodable_characters()
    log_to_stderr()
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    # `passport connect [INSTANCE] -- COMMAND...`: what follows `--` is for ssh, not for us.
    remote: list[str] = []
    if "--" in arguments:
        split = arguments.index("--")
        arguments, remote = arguments[:split], arguments[split + 1 :]
    args = parser.parse_args(arguments)
    if remote and args.command != "connect":
        parser.error("only `connect` takes a command after --")
    args.remote_command = remote
    # `proxy` is left to the default: ssh ends its ProxyCommand with SIGHUP, and nothing of it needs unwinding.
    catch = args.command != "proxy" and threading.current_thread() is threading.main_thread()
    with stop_signals_caught(_terminate) if catch else contextlib.nullcontext():
        try:
            code = int(args.handler(args))
            sys.stdout.flush()  # here, where a closed pipe is caught, not at the interpreter's exit
            return code
        except CliError as error:
            print(f"passport: {printable(error.message, keep_newlines=True)}", file=sys.stderr)
            return int(error.code)
        except KeyboardInterrupt:
            print("passport: interrupted", file=sys.stderr)
            return int(Exit.INTERRUPTED)
        except Terminated as stop:
            print("passport: terminated", file=sys.stderr)
            return 128 + stop.signum
        except BrokenPipeError:
            # The reader went away (`passport requests list | head`): end quietly, as coreutils do. stdout
            # points at /dev/null from here on, so the interpreter's last flush cannot fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return int(Exit.BROKEN_PIPE)
        except OSError as error:
            # Last resort for a file the commands did not expect to fail on (most say which file themselves).
            where = f"{printable(error.filename)}: " if error.filename else ""
            print(f"passport: {where}{printable(error.strerror or error)}", file=sys.stderr)
            return int(Exit.ERROR)
