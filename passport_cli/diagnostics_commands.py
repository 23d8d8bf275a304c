"""`passport diagnostics` (a report for support, secrets redacted) and `install-ssm-plugin` (says when AWS's plugin
is needed: only for the AWS CLI's own sessions)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from passport_cli import __version__
from passport_cli.arguments import SharedArguments, Subcommands
from passport_cli.client import Portal, portal_without_userinfo, resolve_portal
from passport_cli.config import config_dir, ensure_private_dir, load_credentials, write_private
from passport_cli.errors import CliError, Exit
from passport_cli.executables import which
from passport_cli.output import progress

# The settings the CLI itself reads from the environment: only these are shown. Any other
# PASSPORT_* variable is the portal's (a CLI run on the portal's host sees its secret key, its CA
# and Logbook keys): named, never shown.
CLI_SETTINGS = frozenset({
    "PASSPORT_URL", "PASSPORT_CONFIG_DIR", "XDG_CONFIG_HOME", "PASSPORT_CONNECT_WATCH_SECONDS",
    "PASSPORT_PROXY_REASON_FILE", "PASSPORT_PROXY_UNDER_CONNECT", "PASSPORT_SSM_PAYLOAD_SIZE",
})  # fmt: skip


def _redact(value: str) -> str:
    return f"{value[:4]}…(redacted, {len(value)} chars)" if value else ""


def _environment() -> dict[str, str]:
    shown = {}
    for name, value in sorted(os.environ.items()):
        if name in CLI_SETTINGS:
            shown[name] = portal_without_userinfo(value) if name == "PASSPORT_URL" else value
        elif name.startswith("PASSPORT_"):
            shown[name] = "(set; not a CLI setting, left out)"
    return shown


def _ssh_version() -> str:
    ssh = which("ssh")
    if ssh is None:
        return "not found"
    return subprocess.run([ssh, "-V"], capture_output=True, text=True, check=False).stderr.strip()


def cmd_diagnostics(args: argparse.Namespace) -> int:
    credentials = load_credentials()
    report: dict[str, Any] = {
        "passport": __version__,
        "python": sys.version,
        "platform": platform.platform(),
        "ssh": _ssh_version(),
        "config_dir": str(config_dir()),
        "environment": _environment(),
        "credentials": None
        if credentials is None
        else {
            "portal": portal_without_userinfo(credentials.portal),
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


# AWS's page on installing the plugin, for the one use of Passport that needs it.
SSM_PLUGIN_GUIDE = (
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html"
)


def cmd_install_ssm_plugin(args: argparse.Namespace) -> int:
    print(
        "Passport's own commands do not need AWS's session-manager-plugin: passport speaks the Session\n"
        "Manager data-channel protocol itself (`passport proxy` is ssh's ProxyCommand; `passport connect`\n"
        "forwards ports for Windows).\n"
        "Using `passport aws-credentials` with the AWS CLI's `aws ssm start-session` needs AWS's\n"
        f"session-manager-plugin installed: {SSM_PLUGIN_GUIDE}"
    )
    return Exit.OK


def add_parsers(commands: Subcommands, shared: SharedArguments) -> None:
    """diagnostics and install-ssm-plugin."""
    diagnostics = commands.add_parser(
        "diagnostics",
        parents=[shared.common],
        help="write versions, configuration and checks to a file (secrets redacted)",
    )
    diagnostics.add_argument("--output", "-o", help="file to write (default: CONFIG_DIR/diagnostics.json)")
    diagnostics.set_defaults(handler=cmd_diagnostics)

    commands.add_parser(
        "install-ssm-plugin", help="not needed by passport; says when the AWS CLI needs it"
    ).set_defaults(handler=cmd_install_ssm_plugin)
