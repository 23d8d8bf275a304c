"""`passport`: sign in, ask for access, connect. See `passport --help` and `passport COMMAND --help`."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import webbrowser
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from passport_cli import __version__
from passport_cli.client import Portal, resolve_portal
from passport_cli.config import (
    Credentials,
    config_dir,
    credentials_path,
    delete_credentials,
    ensure_private_dir,
    load_credentials,
    save_credentials,
    write_private,
)
from passport_cli.display import printable
from passport_cli.errors import EXIT_CODES_HELP, CliError, Exit
from passport_cli.keys import KEY_TYPES, ensure_key, write_certificates
from passport_cli.names import is_instance_id, is_login_name
from passport_cli.ssh_config import config_path, host_aliases, proxy_command

Handler = Callable[[argparse.Namespace], int]


# --- output ---------------------------------------------------------------------------


def progress(message: str) -> None:
    """Progress goes to stderr so that stdout stays data (and `--json` stays parseable)."""
    print(f"passport: {printable(message, keep_newlines=True)}", file=sys.stderr, flush=True)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)) for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


# --- auth -----------------------------------------------------------------------------


def cmd_auth_login(args: argparse.Namespace) -> int:
    base = resolve_portal(args.portal, load_credentials())
    portal = Portal(base)
    started = portal.post("/api/cli/device/", {"client_name": f"{platform.node()}"[:100]})
    code, uri = started["user_code"], started.get("verification_uri_complete") or started["verification_uri"]
    shown_uri, shown_code = printable(started["verification_uri"]), printable(code)
    print(f"To sign in, open {shown_uri} and confirm the code {shown_code}", file=sys.stderr)
    opened = False
    if not args.no_browser:
        try:
            opened = webbrowser.open(uri)
        except webbrowser.Error:
            opened = False
    if not opened:
        print(f"(No browser could be opened here: open {printable(uri)} yourself.)", file=sys.stderr)
    interval = max(1, int(started.get("interval", 2)))
    deadline = time.monotonic() + min(int(started.get("expires_in", 600)), args.timeout or 10**9)
    progress("waiting for confirmation in the portal (Ctrl-C to stop)...")
    while True:
        try:
            token = portal.post("/api/cli/token/", {"device_code": started["device_code"]})
            break
        except CliError as error:
            if "Waiting for the code" not in error.message and "pending" not in error.message:
                raise CliError(f"Sign-in failed: {error.message}", Exit.AUTH) from error
        if time.monotonic() > deadline:
            raise CliError("The code expired before it was confirmed: run `passport auth login` again.", Exit.AUTH)
        time.sleep(interval)
    path = save_credentials(
        Credentials(
            portal=base, token=token["access_token"], expires_at=token["expires_at"], username=token["username"]
        )
    )
    print(
        f"Signed in to {printable(base)} as {printable(token['username'])} until {printable(token['expires_at'])} "
        f"(token in {printable(path)})."
    )
    return Exit.OK


def cmd_auth_logout(args: argparse.Namespace) -> int:
    credentials = load_credentials()
    if credentials is None:
        print("Not signed in.")
        return Exit.OK
    if not credentials.expired:
        try:
            Portal(credentials.portal, credentials.token).post("/api/cli/token/revoke/")
        except CliError as error:
            progress(f"the portal did not revoke the token ({error.message}); it is deleted here anyway")
    delete_credentials()
    print(f"Signed out of {printable(credentials.portal)}.")
    return Exit.OK


def cmd_auth_status(args: argparse.Namespace) -> int:
    credentials = load_credentials()
    if credentials is None:
        status: dict[str, Any] = {"signed_in": False}
    else:
        status = {
            "signed_in": not credentials.expired,
            "expired": credentials.expired,
            "portal": credentials.portal,
            "username": credentials.username,
            "expires_at": credentials.expires_at,
            "credentials_file": str(credentials_path()),
        }
    if args.json:
        emit_json(status)
    elif credentials is None:
        print("Not signed in: run `passport auth login`.")
    elif credentials.expired:
        print(
            f"The sign-in to {printable(credentials.portal)} expired at {printable(credentials.expires_at)}: "
            "run `passport auth login`."
        )
    else:
        print(
            f"Signed in to {printable(credentials.portal)} as {printable(credentials.username)} "
            f"until {printable(credentials.expires_at)}."
        )
    return Exit.OK if status["signed_in"] else Exit.AUTH


# --- requests -------------------------------------------------------------------------


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


def _print_request(item: dict[str, Any]) -> None:
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
        print(_table(_request_rows(items), ["ID", "STATUS", "ACCOUNT", "INSTANCES", "EXPIRES", "REASON"]))
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
        _print_request(item)
    return Exit.OK


def _request_action(action: str, body: Callable[[argparse.Namespace], dict[str, Any]]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        item = Portal.signed_in(args.portal).post(f"/api/requests/{args.request}/{action}/", body(args))
        if args.json:
            emit_json(item)
        else:
            _print_request(item)
        return Exit.OK

    return handler


# --- instances of active requests -----------------------------------------------------


def _ready_grants(portal: Portal, platform_name: str | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(request, grant) for every ready grant of the person's active requests.

    The request id and the instance id go into URLs, file names, ssh configs and ssh's
    arguments, so a grant whose ids are not what ids look like is left out (with a warning).
    """
    active = portal.get_all("/api/requests/", {"scope": "mine", "status": "active"})
    found = []
    for item in active:
        for grant in item.get("grants", []):
            if grant.get("status") == "ready" and (platform_name is None or grant.get("platform") == platform_name):
                request_id, instance_id = item.get("id"), grant.get("instance_id")
                if type(request_id) is not int or not is_instance_id(instance_id):
                    progress(f"left out: {printable(instance_id)} of request {printable(request_id)} (not an id)")
                    continue
                found.append((item, grant))
    return found


def _pick(portal: Portal, wanted: str | None, request_id: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    choices = _ready_grants(portal)
    if request_id is not None:
        choices = [(r, g) for r, g in choices if r["id"] == request_id]
    if wanted:
        # An instance id first: a Name (from the cloud) equal to another instance's id must not win.
        matches = [(r, g) for r, g in choices if g["instance_id"] == wanted] or [
            (r, g) for r, g in choices if g.get("name") == wanted
        ]
        if not matches:
            raise CliError(f"{printable(wanted)} is not a ready instance of your active requests.", Exit.NOT_FOUND)
        return matches[0]
    if not choices:
        raise CliError("You have no active request with a ready instance.", Exit.NOT_FOUND)
    if len(choices) == 1:
        return choices[0]
    listing = "\n".join(
        f"  {n}. {g['instance_id']} {printable(g['name'])} [{printable(g['platform'])}] (request {r['id']})"
        for n, (r, g) in enumerate(choices, 1)
    )
    if not _interactive():
        raise CliError(f"Which instance? Name one of:\n{listing}", Exit.USAGE)
    print(listing, file=sys.stderr)
    answer = input(f"Connect to [1-{len(choices)}]: ").strip()
    if not answer.isdigit() or not 1 <= int(answer) <= len(choices):
        raise CliError("No instance chosen.", Exit.USAGE)
    return choices[int(answer) - 1]


def _self_command() -> list[str]:
    """How ssh runs this CLI again (for ProxyCommand)."""
    return [sys.executable, "-m", "passport_cli"]


def _ssh_options(key: Path, certs: list[Path]) -> list[str]:
    """Options as ``Keyword=value``; ssh reads ``-o`` with its config parser, so paths are quoted for both."""
    known_hosts = config_dir() / "known_hosts"
    options = [
        f"IdentityFile={config_path(key)}",
        "IdentitiesOnly=yes",
        f"UserKnownHostsFile={config_path(known_hosts)}",
        "StrictHostKeyChecking=accept-new",
    ]
    options += [f"CertificateFile={config_path(cert)}" for cert in certs]
    return options


def _login_name(value: object) -> str:
    """The short-lived username the portal gave: it becomes ssh's ``User`` and ``user@host``."""
    if not is_login_name(value):
        raise CliError(f"The portal gave '{printable(value)}' as the username: not a login name.")
    return str(value)


def _certify(
    portal: Portal, item: dict[str, Any], grant: dict[str, Any], key_type: str
) -> tuple[Path, list[Path], str]:
    key, public = ensure_key(key_type)
    issued = portal.post(
        f"/api/requests/{item['id']}/grants/{grant['instance_id']}/certificate/", {"public_key": public}
    )
    certs = write_certificates(f"{item['id']}-{grant['instance_id']}-{key_type}", issued["certificates"])
    return key, certs, _login_name(issued["username"])


def cmd_connect(args: argparse.Namespace) -> int:
    portal = Portal.signed_in(args.portal)
    item, grant = _pick(portal, args.instance, args.request)
    if grant["platform"] == "windows":
        from passport_cli.tunnel import check_forward_port, run_port_forward

        remote_port = args.remote_port or 3389
        check_forward_port(item, remote_port)
        creds = portal.post(f"/api/requests/{item['id']}/grants/{grant['instance_id']}/password/")

        def ready(port: int) -> None:
            username, password = printable(creds["username"]), printable(creds["password"])
            print(f"Host: localhost:{port}\nUsername: {username}\nPassword: {password}", flush=True)
            progress(f"forwarding to Remote Desktop ({remote_port}); press Ctrl-C to end")

        run_port_forward(portal, item["id"], grant["instance_id"], remote_port, args.local_port, ready)
        return Exit.OK
    ssh = shutil.which("ssh")
    if ssh is None:
        raise CliError("OpenSSH's ssh was not found: install the OpenSSH client.")
    progress(f"getting a certificate for {grant['instance_id']} ({printable(grant['name'])})")
    key, certs, username = _certify(portal, item, grant, args.key_type)
    proxy_argv = [*_self_command(), "proxy", str(item["id"]), grant["instance_id"]]
    if args.portal:
        proxy_argv += ["--portal", args.portal]
    proxy = proxy_command(proxy_argv)
    command = [
        ssh,
        "-F",
        "/dev/null",
        *(f"-o{o}" for o in _ssh_options(key, certs)),
        f"-oProxyCommand={proxy}",
        f"{username}@{grant['instance_id']}",
        *args.remote_command,
    ]
    return subprocess.run(command, check=False).returncode


def cmd_proxy(args: argparse.Namespace) -> int:
    from passport_cli.tunnel import run_proxy

    run_proxy(Portal.signed_in(args.portal), args.request, args.instance, args.port)
    return Exit.OK


def cmd_ssh_config(args: argparse.Namespace) -> int:
    portal = Portal.signed_in(args.portal)
    grants = _ready_grants(portal, "linux")
    blocks = [
        f"# Written by passport {__version__} at {datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}; use: ssh -F <this file> HOST"
    ]
    hosts = []
    if args.proxy_command and printable(args.proxy_command) != args.proxy_command:
        raise CliError("--proxy-command cannot hold control characters.", Exit.USAGE)
    # Every value below is an id checked by _ready_grants, a checked alias or login name, or a quoted path:
    # nothing from the portal or the cloud can end a line or a token and so add an option of its own.
    aliases, warnings = host_aliases(
        (grant["instance_id"], str(grant.get("name") or ""), grant.get("name_is_host_alias") is not False)
        for _, grant in grants
    )
    for warning in warnings:
        progress(warning)
    for item, grant in grants:
        progress(f"certificate for {grant['instance_id']} ({printable(grant['name'])}), request {item['id']}")
        key, certs, username = _certify(portal, item, grant, args.key_type)
        proxy = args.proxy_command or proxy_command([*_self_command(), "proxy", str(item["id"]), grant["instance_id"]])
        names = aliases[grant["instance_id"]]
        lines = [f"Host {' '.join(names)}", f"  HostName {grant['instance_id']}", f"  User {username}"]
        lines += [f"  {option.replace('=', ' ', 1)}" for option in _ssh_options(key, certs)]
        lines.append(f"  ProxyCommand {proxy}")
        blocks.append("\n".join(lines))
        hosts.append(
            {
                "host": grant["instance_id"],
                "name": grant["name"],
                "aliases": names,
                "user": username,
                "request": item["id"],
            }
        )
    path = Path(args.output) if args.output else config_dir() / "ssh_config"
    write_private(path, "\n\n".join(blocks) + "\n")
    if args.json:
        emit_json({"path": str(path), "hosts": hosts})
    else:
        if not hosts:
            progress("no ready Linux instances in your active requests: the file has no hosts")
        print(path)
    return Exit.OK


# --- the rest -------------------------------------------------------------------------


def cmd_version(args: argparse.Namespace) -> int:
    if args.to_version and not args.self_update:
        raise CliError("--to-version goes with --self-update.", Exit.USAGE)
    if args.self_update:
        from passport_cli.self_update import self_update

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


def _redact(value: str) -> str:
    return f"{value[:4]}…(redacted, {len(value)} chars)" if value else ""


def cmd_diagnostics(args: argparse.Namespace) -> int:
    credentials = load_credentials()
    report: dict[str, Any] = {
        "passport": __version__,
        "python": sys.version,
        "platform": platform.platform(),
        "ssh": (
            subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip()
            if shutil.which("ssh")
            else "not found"
        ),
        "config_dir": str(config_dir()),
        "environment": {k: v for k, v in os.environ.items() if k.startswith("PASSPORT_") or k == "XDG_CONFIG_HOME"},
        "credentials": None
        if credentials is None
        else {
            "portal": credentials.portal,
            "username": credentials.username,
            "expires_at": credentials.expires_at,
            "expired": credentials.expired,
            "token": _redact(credentials.token),
        },
        "checks": {},
    }
    try:
        base: str | None = resolve_portal(args.portal, credentials)
    except CliError as error:
        base = None
        report["checks"]["portal"] = error.message
    if base:
        progress(f"checking {base}")
        checks = report["checks"]
        try:
            Portal(base).get("/api/schema/")
            checks["portal_reachable"] = "ok"
        except CliError as error:
            checks["portal_reachable"] = error.message
        if credentials is not None:
            try:
                accounts = Portal.signed_in(args.portal).get("/api/accounts/")
                checks["token"] = f"ok ({len(accounts) if isinstance(accounts, list) else '?'} accounts)"
            except CliError as error:
                checks["token"] = error.message
    text = json.dumps(report, indent=2, default=str)
    if credentials is not None:
        text = text.replace(credentials.token, "[redacted]")
    path = Path(args.output) if args.output else ensure_private_dir(config_dir()) / "diagnostics.json"
    write_private(path, text + "\n")
    print(path)
    return Exit.OK


def cmd_install_ssm_plugin(args: argparse.Namespace) -> int:
    print(
        "Not needed: passport speaks the Session Manager data-channel protocol itself\n"
        "(`passport proxy` is ssh's ProxyCommand; `passport connect` forwards ports for Windows).\n"
        "The AWS session-manager-plugin does not have to be installed."
    )
    return Exit.OK


# --- the parser -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--portal", metavar="URL", help="the portal (default: $PASSPORT_URL, else the signed-in one)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text")
    key_type = argparse.ArgumentParser(add_help=False)
    key_type.add_argument(
        "--key-type",
        choices=KEY_TYPES,
        default="ed25519",
        help="key pair to certify (default ed25519; rsa gets SHA-2 and SHA-1 certificates)",
    )
    fmt = argparse.RawDescriptionHelpFormatter

    parser = argparse.ArgumentParser(
        prog="passport",
        description="Just-in-time access to EC2 instances through the Passport portal.",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    parser.add_argument("-V", "--version", action="version", version=f"passport {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    auth = commands.add_parser("auth", help="sign in and out", epilog=EXIT_CODES_HELP, formatter_class=fmt)
    auth_commands = auth.add_subparsers(dest="auth_command", metavar="COMMAND", required=True)
    login = auth_commands.add_parser(
        "login",
        parents=[common],
        help="sign in through the portal in your browser",
        description="Shows a code, opens the portal to confirm it, and stores a token (mode 0600) in the config dir.",
    )
    login.add_argument("--no-browser", action="store_true", help="only print the URL")
    login.add_argument("--timeout", type=int, default=0, help="give up after this many seconds")
    login.set_defaults(handler=cmd_auth_login)
    auth_commands.add_parser("logout", parents=[common], help="revoke and delete the stored token").set_defaults(
        handler=cmd_auth_logout
    )
    auth_commands.add_parser(
        "status", parents=[common, as_json], help="who is signed in (exit 3 if nobody)"
    ).set_defaults(handler=cmd_auth_status)

    reqs = commands.add_parser("requests", help="your access requests", epilog=EXIT_CODES_HELP, formatter_class=fmt)
    req_commands = reqs.add_subparsers(dest="requests_command", metavar="COMMAND", required=True)
    listing = req_commands.add_parser("list", parents=[common, as_json], help="list your requests")
    listing.add_argument("--status", help="only this status (pending, active, completed...)")
    listing.add_argument("--all", action="store_true", help="every request you can see, not only yours")
    listing.set_defaults(handler=cmd_requests_list)
    create = req_commands.add_parser("create", parents=[common, as_json], help="ask for access")
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
    extend = req_commands.add_parser("extend", parents=[common, as_json], help="extend active access")
    extend.add_argument("request", type=int)
    extend.add_argument("--minutes", type=int, required=True)
    extend.set_defaults(handler=_request_action("extend", lambda a: {"minutes": a.minutes}))
    complete = req_commands.add_parser("complete", parents=[common, as_json], help="end access now")
    complete.add_argument("request", type=int)
    complete.set_defaults(handler=_request_action("complete", lambda a: {}))

    connect = commands.add_parser(
        "connect",
        parents=[common, key_type],
        help="ssh to a Linux instance, or forward RDP to a Windows one",
        description="Linux: certifies a local key pair and runs ssh through `passport proxy`. Windows: forwards a "
        "free local port to 3389 and prints the host and password until Ctrl-C. Without INSTANCE, offers the "
        "ready instances of your active requests.\n\nTo run a command instead of a shell: "
        "passport connect INSTANCE -- COMMAND",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    connect.add_argument("instance", nargs="?", metavar="INSTANCE", help="instance id or Name")
    connect.add_argument("--request", type=int, help="only instances of this request")
    connect.add_argument("--local-port", type=int, default=0, help="Windows: local port (default: a free one)")
    connect.add_argument(
        "--remote-port", type=int, help="Windows: remote port (default 3389); the account must open it"
    )
    connect.set_defaults(handler=cmd_connect)

    proxy = commands.add_parser(
        "proxy",
        parents=[common],
        help="ssh ProxyCommand: stdin/stdout to the instance",
        description="Opens a Session Manager session through the portal and copies "
        "stdin/stdout over its data channel. Used by `connect` and `ssh-config`.",
    )
    proxy.add_argument("request", type=int)
    proxy.add_argument("instance")
    proxy.add_argument("--port", type=int, help="remote port (default 22); the account must open it")
    proxy.set_defaults(handler=cmd_proxy)

    from passport_cli.aws_credentials import add_aws_credentials_parser

    add_aws_credentials_parser(commands, parents=[common], epilog=EXIT_CODES_HELP, formatter_class=fmt)

    ssh_config = commands.add_parser(
        "ssh-config",
        parents=[common, key_type, as_json],
        help="write an ssh config for your ready instances",
        description="Writes Host entries (the instance id, and the Name when it is a plain host name: letters, "
        "digits, '.', '_', '-') with User, CertificateFile, IdentityFile and ProxyCommand, and prints the file's "
        "path: then `ssh -F PATH HOST`, scp, ansible...",
    )
    ssh_config.add_argument("--output", "-o", help="where to write it (default: CONFIG_DIR/ssh_config)")
    ssh_config.add_argument("--proxy-command", help=argparse.SUPPRESS)  # tests and unusual networks
    ssh_config.set_defaults(handler=cmd_ssh_config)

    version = commands.add_parser(
        "version",
        parents=[common, as_json],
        help="print the version, or update this CLI from the portal",
        description="--self-update installs the portal's latest published version (or --to-version, which may be "
        "older) with this Python's pip, only when the wheel is signed by a release key built into this CLI and "
        "its SHA-256 is the signed one. Without --to-version it never installs an older version.",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    version.add_argument("--self-update", action="store_true", help="install the latest version the portal publishes")
    version.add_argument("--to-version", metavar="VERSION", help="with --self-update: this version instead")
    version.set_defaults(handler=cmd_version)

    diagnostics = commands.add_parser(
        "diagnostics", parents=[common], help="write versions, configuration and checks to a file (secrets redacted)"
    )
    diagnostics.add_argument("--output", "-o", help="file to write (default: CONFIG_DIR/diagnostics.json)")
    diagnostics.set_defaults(handler=cmd_diagnostics)

    commands.add_parser("install-ssm-plugin", help="not needed: passport speaks the protocol itself").set_defaults(
        handler=cmd_install_ssm_plugin
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
    try:
        return int(args.handler(args))
    except CliError as error:
        print(f"passport: {printable(error.message, keep_newlines=True)}", file=sys.stderr)
        return int(error.code)
    except KeyboardInterrupt:
        print("passport: interrupted", file=sys.stderr)
        return int(Exit.INTERRUPTED)
