"""`passport aws-credentials`: AWS credentials for Session Manager on one active request's instances.

The portal assumes the account's role with a session policy: the credentials can start
Session Manager sessions (SSH and port forwarding) on the request's ready instances and end
the sessions they started, nothing else, and only until the request ends. The default
output is what the AWS CLI's ``credential_process`` expects, so in ``~/.aws/config``::

    [profile web-access]
    credential_process = passport aws-credentials 12
    region = us-east-1

then ``aws ssm start-session --profile web-access --target i-...`` with AWS's
session-manager-plugin. Nothing is written to disk; each run asks the portal anew.

One set of credentials works in every region of the request's instances, but a session is
started in its instance's region: when they are in several, no region is exported and a note on
stderr names each instance's (``--region`` for the AWS CLI); ``--format json`` has them all.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from passport_cli.client import Portal, field
from passport_cli.display import printable
from passport_cli.errors import CliError, Exit

FORMATS = ("credential-process", "env", "json")
_CREDENTIAL_PROCESS_KEYS = ("Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")


def add_aws_credentials_parser(commands: Any, *, parents: list[argparse.ArgumentParser], **kwargs: Any) -> None:
    """Register the command on ``passport``'s subparsers."""
    parser = commands.add_parser(
        "aws-credentials",
        parents=parents,
        help="AWS credentials for Session Manager on one active request's instances",
        description="Prints credentials that can only start Session Manager sessions on the request's ready "
        "instances, until it ends. Default: credential_process JSON, for `credential_process = passport "
        "aws-credentials REQUEST_ID` in ~/.aws/config. Without REQUEST_ID, your only active request. "
        "Used with the AWS CLI's `aws ssm start-session`, which needs AWS's session-manager-plugin installed "
        "(see `passport install-ssm-plugin`); passport's own commands do not.",
        **kwargs,
    )
    parser.add_argument("request", nargs="?", type=int, metavar="REQUEST_ID", help="the active request")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="credential-process",
        help="credential-process (default), env (shell exports) or json (everything the portal said)",
    )
    parser.set_defaults(handler=cmd_aws_credentials)


def cmd_aws_credentials(args: argparse.Namespace) -> int:
    portal = Portal.signed_in(args.portal)
    request_id = args.request if args.request is not None else _only_active_request(portal)
    issued = portal.post_object(f"/api/requests/{request_id}/credentials/")
    print(render(issued, args.format))
    note = regions_note(issued) if args.format != "json" else ""
    if note:
        print(note, file=sys.stderr)
    return Exit.OK


def regions_note(issued: dict[str, Any]) -> str:
    """What the person needs to know that credentials alone do not say: each instance's region when they
    are in several, and the instances the credentials do not reach. Empty when there is nothing to add."""
    instances = issued.get("instances")
    withheld = issued.get("withheld")
    rows = instances if isinstance(instances, list) else []
    left_out = withheld if isinstance(withheld, list) else []
    lines: list[str] = []
    if len({str(row.get("region")) for row in rows if isinstance(row, dict)}) > 1:
        lines.append("These credentials work in several regions; start each session in its instance's (--region):")
        lines += [
            f"  {printable(row.get('instance_id'))} ({printable(row.get('name'))}): {printable(row.get('region'))}"
            for row in rows
            if isinstance(row, dict)
        ]
    for row in left_out:
        if isinstance(row, dict):
            lines.append(f"Not reached: {printable(row.get('reason'))}")
    return "\n".join(lines)


def render(issued: dict[str, Any], output_format: str) -> str:
    """The portal's answer in one of ``FORMATS``; an answer missing a field is an error, not empty output."""
    process = issued.get("credential_process")
    if not isinstance(process, dict) or any(key not in process for key in _CREDENTIAL_PROCESS_KEYS):
        raise CliError("The portal's answer holds no AWS credentials.", Exit.ERROR)
    if output_format == "credential-process":
        return json.dumps({key: process[key] for key in _CREDENTIAL_PROCESS_KEYS})
    if output_format == "env":
        # None when the instances are in several regions: exporting one would send the others' sessions astray.
        region = str(issued.get("region") or "")
        values = {
            "AWS_ACCESS_KEY_ID": process["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": process["SecretAccessKey"],
            "AWS_SESSION_TOKEN": process["SessionToken"],
            "AWS_CREDENTIAL_EXPIRATION": process["Expiration"],
        }
        if region:
            values |= {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
        # Quoted for the shell, but shown on a terminal too: a control character is refused, not printed.
        if any(printable(value) != str(value) for value in values.values()):
            raise CliError("The portal's answer holds control characters in the credentials.", Exit.ERROR)
        return "\n".join(f"export {name}={shlex.quote(str(value))}" for name, value in values.items())
    if output_format == "json":
        return json.dumps(issued, indent=2)
    raise CliError(f"Unknown format {output_format!r}: use one of {', '.join(FORMATS)}.", Exit.USAGE)


def _only_active_request(portal: Portal) -> int:
    active = portal.get_all("/api/requests/", {"scope": "mine", "status": "active"})
    if not active:
        raise CliError("You have no active request.", Exit.NOT_FOUND)
    if len(active) > 1:
        ids = ", ".join(str(field(item, "id", int)) for item in active)
        raise CliError(f"You have several active requests ({ids}): name one.", Exit.USAGE)
    return field(active[0], "id", int)
