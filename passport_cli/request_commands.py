"""`passport requests list|create|cancel|extend|complete`: a person's access requests."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any

from passport_cli.arguments import Handler, SharedArguments, Subcommands
from passport_cli.client import Portal, field, objects
from passport_cli.display import printable
from passport_cli.errors import EXIT_CODES_HELP, CliError, Exit
from passport_cli.names import instances_named, is_instance_id
from passport_cli.output import emit_json, table

ACCOUNT_ID_RE = re.compile(r"[0-9]{12}")

# Statuses with no end ahead: what is shown for them is when they ended, if they had begun.
_OVER = ("completing", "completed", "expired", "failed", "rejected", "cancelled")


def _when(value: object) -> str:
    """An API timestamp (ISO 8601) as ``YYYY-MM-DD HH:MM``."""
    return str(value or "")[:16].replace("T", " ")


def end_column(item: dict[str, Any]) -> str:
    """EXPIRES: the planned end while access lies ahead; once over, when it ended (not the old plan)."""
    if item.get("ended_at"):
        return f"ended {_when(item['ended_at'])}"
    if item.get("status") in _OVER:
        return ""
    return _when(item.get("expires_at"))


def _account_column(item: dict[str, Any]) -> str:
    account = item.get("account")
    return str(account.get("account_id", "")) if isinstance(account, dict) else str(account)


def _request_rows(items: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            str(field(item, "id", int)),
            field(item, "status", str),
            _account_column(item),
            ",".join(f"{field(g, 'instance_id', str)}({field(g, 'name', str)})" for g in objects(item, "grants")),
            end_column(item),
            field(item, "reason", str)[:40],
        ]
        for item in items
    ]


def print_request(item: dict[str, Any]) -> None:
    """A request as the portal answered it; a field it must hold that it does not is ``client.unreadable``."""
    p = printable  # every value here comes from the portal, and through it from people and the cloud
    print(f"Request {field(item, 'id', int)}: {p(field(item, 'status_label', str))} ({p(field(item, 'status', str))})")
    ticket = f" (ticket {p(item['ticket'])})" if item.get("ticket") else ""
    print(f"  reason: {p(field(item, 'reason', str))}{ticket}")
    if item.get("ended_at"):
        print(f"  ended: {p(item['ended_at'])}")
    elif item.get("expires_at") and item.get("status") not in _OVER:
        print(f"  expires: {p(item['expires_at'])}")
    for grant in objects(item, "grants"):
        user = f" as {p(grant['username'])}" if grant.get("username") else ""
        instance, name = p(field(grant, "instance_id", str)), p(field(grant, "name", str))
        print(f"  {instance} {name} [{p(field(grant, 'platform', str))}] {p(field(grant, 'status', str))}{user}")


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


def resolve_instances(portal: Portal, account: str, wanted: list[str]) -> list[str]:
    """Instance ids for ``-i`` values: an id is kept, a Name is looked up on the account.

    A value shaped like an instance id is always taken as one, so that a Name (from the cloud)
    equal to another instance's id cannot redirect the request. A Name must match exactly one
    instance the person may request on that account, compared as `connect` compares it
    (``names.instances_named``).
    """
    names = [value for value in wanted if not is_instance_id(value)]
    if not names:
        return wanted
    if not ACCOUNT_ID_RE.fullmatch(account):
        raise CliError(f"--account must be a 12-digit AWS account id, not '{printable(account)}'.", Exit.USAGE)
    found: dict[str, list[str]] = {}
    for name in dict.fromkeys(names):
        listed = portal.get_all(f"/api/accounts/{account}/instances/", {"search": name})
        found[name] = instances_named(
            name,
            ((str(row["instance_id"]), row.get("name")) for row in listed if is_instance_id(row.get("instance_id"))),
        )
    resolved = []
    for value in wanted:
        if value not in found:
            resolved.append(value)
            continue
        ids = found[value]
        if not ids and value.startswith(("i-", "mi-")):
            # Meant as an id, but not one: the portal refuses it with its own words.
            resolved.append(value)
            continue
        if not ids:
            raise CliError(
                f"No instance named '{printable(value)}' that you may request on account {account}.", Exit.NOT_FOUND
            )
        if len(ids) > 1:
            raise CliError(
                f"'{printable(value)}' names {len(ids)} instances on account {account} ({', '.join(ids)}): "
                "pass the instance id.",
                Exit.USAGE,
            )
        resolved.append(ids[0])
    return resolved


def cmd_requests_create(args: argparse.Namespace) -> int:
    portal = Portal.signed_in(args.portal)
    item = portal.post_object(
        "/api/requests/",
        {
            "account": args.account,
            "instances": resolve_instances(portal, args.account, args.instance),
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


# A request that cannot be cancelled may be completed, and the other way round: after the portal's
# refusal (409: not in this state), the command to use, when the portal offers that action now.
_INSTEAD = {
    "cancel": ("complete", "End it with `passport requests complete {id}`."),
    "complete": ("cancel", "Withdraw it with `passport requests cancel {id}`."),
}


def _instead(portal: Portal, request_id: int, action: str) -> str:
    """What to run instead of ``action`` on the request, from the actions the portal lists for it now; or ""."""
    if action not in _INSTEAD:
        return ""
    other, hint = _INSTEAD[action]
    try:
        actions = field(portal.get_object(f"/api/requests/{request_id}/"), "actions", list)
    except CliError:
        return ""  # the refusal is still the answer; the hint is only a help
    return hint.format(id=request_id) if other in actions else ""


def request_action(action: str, body: Callable[[argparse.Namespace], dict[str, Any]]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        portal = Portal.signed_in(args.portal)
        try:
            item = portal.post_object(f"/api/requests/{args.request}/{action}/", body(args))
        except CliError as error:
            hint = _instead(portal, args.request, action) if error.status == 409 else ""
            if not hint:
                raise
            raise CliError(
                f"{error.message} {hint}",
                error.code,
                portal_error=error.portal_error,
                retry_after=error.retry_after,
                status=error.status,
            ) from error
        if args.json:
            emit_json(item)
        else:
            print_request(item)
        return Exit.OK

    return handler


_REQUEST_ID_HELP = "the request's number (the ID column of `passport requests list`)"


def add_parsers(commands: Subcommands, shared: SharedArguments) -> None:
    """requests list|create|cancel|extend|complete."""
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
    create.add_argument(
        "--instance",
        "-i",
        action="append",
        required=True,
        help="instance id or Name (repeatable); a Name must match one instance of the account",
    )
    create.add_argument("--reason", "-r", required=True, help="why (required, at most 256 characters)")
    create.add_argument("--ticket", help="ticket reference")
    create.add_argument(
        "--duration", type=int, default=60, metavar="MINUTES", help="how long access lasts: 15 to 720, default 60"
    )
    create.add_argument(
        "--admin-rights",
        action="store_true",
        help="administrator rights: sudo on Linux, Administrators on Windows (else Remote Desktop Users only)",
    )
    # The flag's name before it meant both platforms; kept so scripts that use it still work.
    create.add_argument("--sudo", action="store_true", dest="admin_rights", help=argparse.SUPPRESS)
    create.set_defaults(handler=cmd_requests_create)
    cancel = req_commands.add_parser(
        "cancel",
        parents=[shared.common, shared.as_json],
        help="withdraw your request (pending, or approved before provisioning starts)",
    )
    cancel.add_argument("request", type=int, metavar="ID", help=_REQUEST_ID_HELP)
    cancel.set_defaults(handler=request_action("cancel", lambda a: {}))
    extend = req_commands.add_parser("extend", parents=[shared.common, shared.as_json], help="extend active access")
    extend.add_argument("request", type=int, metavar="ID", help=_REQUEST_ID_HELP)
    extend.add_argument("--minutes", type=int, required=True)
    extend.set_defaults(handler=request_action("extend", lambda a: {"minutes": a.minutes}))
    complete = req_commands.add_parser(
        "complete", parents=[shared.common, shared.as_json], help="end access now (a pending request: cancel it)"
    )
    complete.add_argument("request", type=int, metavar="ID", help=_REQUEST_ID_HELP)
    complete.set_defaults(handler=request_action("complete", lambda a: {}))
