"""``python -m devcloud serve``: devcloud in the foreground, for the demo and by hand."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from devcloud.seed import seed_demo
from devcloud.server import DevCloud
from devcloud.streams import Faults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcloud", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the AWS endpoint until SIGTERM or SIGINT")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4566, help="0 picks a free port")
    serve.add_argument("--state-dir", type=Path, default=Path("var/devcloud"))
    serve.add_argument("--seed", choices=["demo"], help="create the demo accounts, instances and people")
    serve.add_argument(
        "--stream-base-url", help="where StreamUrls point, if not at the data-channel server itself (a proxy)"
    )
    serve.add_argument("--stream-port", type=int, default=0, help="port of the data-channel server (0: a free one)")
    faults = serve.add_argument_group("data-channel faults", "what goes wrong between the agent and the client")
    faults.add_argument("--faults-loss", type=float, default=0.0, help="share of stream messages lost, each way")
    faults.add_argument("--faults-dup", type=float, default=0.0, help="share of the agent's messages sent twice")
    faults.add_argument("--faults-reorder", type=int, default=0, help="reorder the agent's messages in windows of N")
    faults.add_argument("--faults-delay", type=float, default=0.0, help="extra latency, up to this many seconds")
    faults.add_argument("--faults-seed", type=int, default=0)
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=20.0,
        help="minutes without client input before a Session Manager session ends (AWS's default: 20)",
    )
    serve.add_argument("--log-requests", action="store_true", help="log every API request to stderr")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    cloud = DevCloud(
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        stream_base_url=args.stream_base_url,
        stream_port=args.stream_port,
        faults=Faults(
            loss=args.faults_loss,
            duplication=args.faults_dup,
            reorder_window=args.faults_reorder,
            delay=args.faults_delay,
            incoming_loss=args.faults_loss,
            seed=args.faults_seed,
        ),
        log_requests=args.log_requests,
        idle_timeout=args.idle_timeout * 60,
    ).start()
    try:
        print(f"devcloud: data channel on {cloud.streams.base_url}", file=sys.stderr, flush=True)
        if args.seed == "demo":
            seed_demo(cloud.endpoint_url, args.state_dir)
            print(f"devcloud: demo manifest in {args.state_dir / 'manifest.json'}", file=sys.stderr, flush=True)
        # Printed once everything is ready, so a script may wait for this line.
        print(cloud.endpoint_url, flush=True)
        stop.wait()
    finally:
        cloud.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
