"""The argument groups every command group shares, and the handler type the commands register."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from passport_cli.keys import KEY_TYPES

if TYPE_CHECKING:
    from typing import TypeAlias

    # What ``add_subparsers()`` returns; argparse names the class privately and it is generic only in typeshed.
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subcommands = argparse._SubParsersAction

Handler = Callable[[argparse.Namespace], int]


class CommandParser(argparse.ArgumentParser):
    """An argument no command knows is reported by the command it was given to, with that command's
    usage (`passport requests create --hours 13`), not the top level's. Subcommands' parsers are of
    their parent's class, so every level is one of these."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def port_number(value: str) -> int:
    """A TCP port, 1..65535, as an argparse type: anything else is a usage error (exit 2)."""
    return _port(value, lowest=1)


def local_port_number(value: str) -> int:
    """A local TCP port to listen on, 0..65535 (0: a free one), as an argparse type."""
    return _port(value, lowest=0)


def _port(value: str, *, lowest: int) -> int:
    if not value.isascii() or not value.isdigit() or not lowest <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"ports are {lowest}..65535, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class SharedArguments:
    common: argparse.ArgumentParser  # --portal
    as_json: argparse.ArgumentParser  # --json
    key_type: argparse.ArgumentParser  # --key-type (or --keyType)
    formatter: type[argparse.HelpFormatter] = argparse.RawDescriptionHelpFormatter


def shared_arguments() -> SharedArguments:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--portal", metavar="URL", help="the portal (default: $PASSPORT_URL, else the signed-in one)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text")
    key_type = argparse.ArgumentParser(add_help=False)
    key_type.add_argument(
        "--key-type",
        "--keyType",  # the name Passport v1's notes give it
        dest="key_type",
        choices=KEY_TYPES,
        default=None,
        help="key pair to certify (default ed25519, and on accounts whose sessions are direct rsa as well, "
        "offered after it for hosts that take no Ed25519; rsa gets SHA-2 and SHA-1 certificates)",
    )
    return SharedArguments(common=common, as_json=as_json, key_type=key_type)
