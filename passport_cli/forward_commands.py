"""`passport forward INSTANCE LOCAL:REMOTE`: a local port to any port the request's account opens.

Like `connect` to Windows without the password: the instance by id or Name, `--request` to
narrow, a refused port said before listening (exit 5), and exit 7 with the reason when the
request ends or an administrator takes the port off the account. Every connection to the local
port is a stream of one multiplexed session when the agent can (``ssmchannel.forwarding``), a
session of its own otherwise.
"""

from __future__ import annotations

import argparse

from passport_cli.access_state import ended_exit, forward_ended_reason
from passport_cli.arguments import SharedArguments, Subcommands
from passport_cli.client import Portal
from passport_cli.display import printable
from passport_cli.errors import EXIT_CODES_HELP, Exit
from passport_cli.output import progress
from passport_cli.ready_instances import pick


def port_pair(value: str) -> tuple[int, int]:
    """'LOCAL:REMOTE' (LOCAL 0: a free port) -> (local, remote); argparse turns errors into exit 2."""
    local, sep, remote = value.partition(":")
    if not sep or not local.isascii() or not remote.isascii() or not local.isdigit() or not remote.isdigit():
        raise argparse.ArgumentTypeError(f"expected LOCAL:REMOTE port numbers, e.g. 15432:5432, not {value!r}")
    local_port, remote_port = int(local), int(remote)
    if local_port > 65535 or not 1 <= remote_port <= 65535:
        raise argparse.ArgumentTypeError("ports are 1..65535 (LOCAL may be 0 for a free one)")
    return local_port, remote_port


def cmd_forward(args: argparse.Namespace) -> int:
    # Imported here: the data channel (asyncio, websockets) costs every other command ~0.1 s.
    from passport_cli.tunnel import check_forward_port, run_port_forward

    local_port, remote_port = args.ports
    portal = Portal.signed_in(args.portal)
    item, grant = pick(portal, args.instance, args.request)
    check_forward_port(item, remote_port)
    instance_id = grant["instance_id"]

    def ready(port: int) -> None:
        print(f"127.0.0.1:{port}", flush=True)
        name = printable(grant.get("name", ""))
        progress(
            f"forwarding 127.0.0.1:{port} to port {remote_port} of {printable(instance_id)} ({name}), "
            f"request {item['id']}; press Ctrl-C to end"
        )

    ended = run_port_forward(
        portal,
        item["id"],
        instance_id,
        remote_port,
        local_port,
        ready,
        lambda: forward_ended_reason(portal, item["id"], remote_port),
    )
    if ended:
        progress(ended)
        return ended_exit(ended)
    return Exit.OK


def add_parsers(commands: Subcommands, shared: SharedArguments) -> None:
    forward = commands.add_parser(
        "forward",
        parents=[shared.common],
        help="forward a local port to a port of an instance",
        description="Forwards 127.0.0.1:LOCAL (0: a free one) to port REMOTE of a ready instance of your active "
        "requests, over Session Manager, until Ctrl-C or the request ends (exit 7, saying why). Prints "
        "127.0.0.1:PORT when it listens. REMOTE must be a port the request's account opens (22, 3389 and its "
        "extra forwarding ports). Many connections share one session when the instance's agent can multiplex. "
        "On Linux it refuses connections from other users of the machine; elsewhere (macOS, Windows) it cannot "
        "tell them apart, and on a shared machine the port is open to every local user.",
        epilog=EXIT_CODES_HELP,
        formatter_class=shared.formatter,
    )
    forward.add_argument("instance", metavar="INSTANCE", help="instance id, or a Name only one of your instances has")
    forward.add_argument("ports", metavar="LOCAL:REMOTE", type=port_pair, help="e.g. 15432:5432, or 0:5432")
    forward.add_argument("--request", type=int, help="only instances of this request")
    forward.set_defaults(handler=cmd_forward)
