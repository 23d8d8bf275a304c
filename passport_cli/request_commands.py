"""`passport requests list|create|extend|complete`: a person's access requests."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from passport_cli.arguments import Handler, SharedArguments, Subcommands
from passport_cli.client import Portal
from passport_cli.display import printable
from passport_cli.errors import EXIT_CODES_HELP, Exit
from passport_cli.output import emit_json, table


def _request_rows(items: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            str(item["id"]),
            item["status"],
            item["account"].get("account_id", "")
            if isinstance(item.get("account"), dict)
            else str(item.get("account")),
            ",".join(f"{g['instance_id']}({g['name']})" for g in item.get("grants", [])),
            (item.get("expires_at") or "")[:19],
            item.get("reason", "")[:40],
        ]
        for item in items
    ]


def print_request(item: dict[str, Any]) -> None:
    p = printable  # every value here comes from the portal, and through it from people and the cloud
    print(f"Request {p(item['id'])}: {p(item['status_label'])} ({p(item['status'])})")
    print(f"  reason: {p(item['reason'])}" + (f" (ticket {p(item['ticket'])})" if item.get("ticket") else ""))
    if item.get("expires_at"):
        print(f"  expires: {p(item['expires_at'])}")
    for grant in item.get("grants", []):
        user = f" as {p(grant['username'])}" if grant.get("username") else ""
        print(f"  {p(grant['instance_id'])} {p(grant['name'])} [{p(grant['platform'])}] {p(grant['status'])}{user}")


def cmd_requests_list(args: argparse.Namespace) -> int:
    params = {"scope": "all" if args.all else "mine"}
    if args.status:
        params["status"] = args.status
    items = Portal.signed_in(args.portal).get_all("/api/requests/", params)
    if args.json:
        emit_json(items)
    elif not items:
        print("No requests.")
    else:
        print(table(_request_rows(items), ["ID", "STATUS", "ACCOUNT", "INSTANCES", "EXPIRES", "REASON"]))
    return Exit.OK


def cmd_requests_create(args: argparse.Namespace) -> int:
    portal = Portal.signed_in(args.portal)
    item = portal.post(
        "/api/requests/",
        {
            "account": args.account,
            "instances": args.instance,
            "reason": args.reason,
            "ticket": args.ticket or "",
            "duration_minutes": args.duration,
            "admin_rights": args.admin_rights,
        },
    )
    if args.json:
        emit_json(item)
    else:
        print_request(item)
    return Exit.OK


def request_action(action: str, body: Callable[[argparse.Namespace], dict[str, Any]]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        item = Portal.signed_in(args.portal).post(f"/api/requests/{args.request}/{action}/", body(args))
        if args.json:
            emit_json(item)
        else:
            print_request(item)
        return Exit.OK

    return handler


def add_parsers(commands: Subcommands, shared: SharedArguments) -> None:
    """requests list|create|extend|complete."""
    reqs = commands.add_parser(
        "requests", help="your access requests", epilog=EXIT_CODES_HELP, formatter_class=shared.formatter
    )
    req_commands = reqs.add_subparsers(dest="requests_command", metavar="COMMAND", required=True)
    listing = req_commands.add_parser("list", parents=[shared.common, shared.as_json], help="list your requests")
    listing.add_argument("--status", help="only this status (pending, active, completed...)")
    listing.add_argument("--all", action="store_true", help="every request you can see, not only yours")
    listing.set_defaults(handler=cmd_requests_list)
    create = req_commands.add_parser("create", parents=[shared.common, shared.as_json], help="ask for access")
    create.add_argument("--account", required=True, help="12-digit AWS account id")
    create.add_argument("--instance", "-i", action="append", required=True, help="EC2 instance id (repeatable)")
    create.add_argument("--reason", "-r", required=True, help="why (required, at most 256 characters)")
    create.add_argument("--ticket", help="ticket reference")
    create.add_argument("--duration", type=int, default=60, metavar="MINUTES", help="default 60")
    create.add_argument(
        "--admin-rights",
        action="store_true",
        help="administrator rights: sudo on Linux, Administrators on Windows (else Remote Desktop Users only)",
    )
    # The flag's name before it meant both platforms; kept so scripts that use it still work.
    create.add_argument("--sudo", action="store_true", dest="admin_rights", help=argparse.SUPPRESS)
    create.set_defaults(handler=cmd_requests_create)
    extend = req_commands.add_parser("extend", parents=[shared.common, shared.as_json], help="extend active access")
    extend.add_argument("request", type=int)
    extend.add_argument("--minutes", type=int, required=True)
    extend.set_defaults(handler=request_action("extend", lambda a: {"minutes": a.minutes}))
    complete = req_commands.add_parser("complete", parents=[shared.common, shared.as_json], help="end access now")
    complete.add_argument("request", type=int)
    complete.set_defaults(handler=request_action("complete", lambda a: {}))
