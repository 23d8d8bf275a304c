"""``python -m devcloud.idp serve``: the two demo IdPs on one port until interrupted."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import devcloud.idp
from devcloud.idp.server import DemoServer


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write("idp: " + (format % args) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcloud.idp", description=devcloud.idp.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the two demo IdPs until interrupted")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4570)
    serve.add_argument("--sp-base", default="http://127.0.0.1:8000", help="Passport's base URL")
    serve.add_argument(
        "--manifest", type=Path, help="devcloud's manifest: its accounts get the demo groups and federated roles"
    )
    serve.add_argument("--out", type=Path, required=True, help="where to write Passport's PASSPORT_SAML_IDPS list")
    args = parser.parse_args(argv)
    account_ids: list[str] = []
    federated_roles: dict[str, dict[str, str]] = {}
    if args.manifest:
        manifest = json.loads(args.manifest.read_text())
        account_ids = [item["id"] for item in manifest["accounts"]]
        federated_roles = manifest.get("federated_roles") or {}
    app = DemoServer(f"http://{args.host}:{args.port}", args.sp_base, account_ids, federated_roles)
    with make_server(args.host, args.port, app, handler_class=_QuietHandler) as server:
        args.out.write_text(json.dumps(app.passport_config(), indent=2))
        print(f"demo IdPs on http://{args.host}:{args.port}/", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return 0
