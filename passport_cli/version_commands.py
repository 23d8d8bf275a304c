"""`passport version [--self-update [--to-version X]]`."""

from __future__ import annotations

import argparse
import platform

from passport_cli import __version__
from passport_cli.arguments import SharedArguments, Subcommands
from passport_cli.client import Portal, resolve_portal
from passport_cli.config import load_credentials
from passport_cli.display import printable
from passport_cli.errors import EXIT_CODES_HELP, CliError, Exit
from passport_cli.output import emit_json, progress
from passport_cli.self_update import self_update


def cmd_version(args: argparse.Namespace) -> int:
    if args.to_version and not args.self_update:
        raise CliError("--to-version goes with --self-update.", Exit.USAGE)
    if args.self_update:
        base = resolve_portal(args.portal, load_credentials())
        result = self_update(Portal(base), args.to_version, progress)
        if args.json:
            emit_json(result.as_dict())
        elif result.updated:
            print(f"passport {printable(result.previous)} -> {printable(result.version)}")
        else:
            print(f"passport {printable(result.version)} is already installed.")
        return Exit.OK
    if args.json:
        emit_json({"version": __version__, "python": platform.python_version()})
    else:
        print(f"passport {__version__}")
    return Exit.OK


def add_parsers(commands: Subcommands, shared: SharedArguments) -> None:
    """version."""
    version = commands.add_parser(
        "version",
        parents=[shared.common, shared.as_json],
        help="print the version, or update this CLI from the portal",
        description="--self-update installs the portal's latest published version (or --to-version, which may be "
        "older) with this Python's pip, only when the wheel is signed by a release key built into this CLI and "
        "its SHA-256 is the signed one. Without --to-version it never installs an older version.",
        epilog=EXIT_CODES_HELP,
        formatter_class=shared.formatter,
    )
    version.add_argument("--self-update", action="store_true", help="install the latest version the portal publishes")
    version.add_argument("--to-version", metavar="VERSION", help="with --self-update: this version instead")
    version.set_defaults(handler=cmd_version)
