"""`passport connect`, `proxy` and `ssh-config`: reaching the ready instances of active requests.

Linux goes through ssh with a certificate the portal signs and ``passport proxy`` as the
ProxyCommand; Windows through a local port forwarded to Remote Desktop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from passport_cli import __version__
from passport_cli.access_state import access_ended_reason, ended_exit, forward_ended_reason
from passport_cli.arguments import SharedArguments, Subcommands, local_port_number, port_number
from passport_cli.client import Portal, field, texts
from passport_cli.config import check_writable_file, config_dir, pinned_config_dir, write_private
from passport_cli.display import printable
from passport_cli.errors import EXIT_CODES_HELP, CliError, Exit, Terminated
from passport_cli.executables import which
from passport_cli.keys import ensure_key, write_certificates
from passport_cli.known_hosts import DIRECT, RECORD, host_ca_lines, host_key_options, pin_host_cas, session_mode
from passport_cli.names import is_login_name
from passport_cli.output import emit_json, progress
from passport_cli.proxy_socket import REASON_FILE_ENV, read_reason
from passport_cli.ready_instances import active_grants, names_carried, pick, ready_grants
from passport_cli.signals import stop_signals_caught
from passport_cli.ssh_config import config_path, host_aliases, proxy_command

# Set in ssh's environment by `connect`, for the `passport proxy` it runs as its ProxyCommand.
PROXY_UNDER_CONNECT = "PASSPORT_PROXY_UNDER_CONNECT"


def _self_command() -> list[str]:
    """How ssh runs this CLI again (for ProxyCommand). ``-P``: ssh runs it from wherever it was
    started, and ``-m`` alone would put that directory first on the import path, so a
    ``passport_cli`` folder left there (a shared /tmp, a hostile checkout) would run instead."""
    return [sys.executable, "-P", "-m", "passport_cli"]


def _proxy_command(request_id: int, instance_id: str, portal: str | None = None) -> str:
    """The ProxyCommand for one grant: `passport proxy`, with the config dir when it is not the default
    (ssh runs it with whatever environment and working directory ssh has)."""
    argv = [*_self_command(), "proxy", str(request_id), instance_id]
    pinned = pinned_config_dir()
    if pinned is not None:
        config_path(pinned)  # refuses, with its reason, a directory that no ssh_config line can hold
        argv += ["--config-dir", str(pinned)]
    if portal:
        argv += ["--portal", portal]
    return proxy_command(argv)


def _ssh_options(certified: Certified) -> list[str]:
    """Options as ``Keyword=value``; ssh reads ``-o`` with its config parser, so paths are quoted for both.

    Recorded sessions check the host against the pinned host CA (``known_hosts``), direct ones
    learn the host key on first use.
    """
    options = [f"IdentityFile={config_path(key)}" for key in certified.keys] + ["IdentitiesOnly=yes"]
    options += host_key_options(certified.mode)
    options += [f"CertificateFile={config_path(cert)}" for cert in certified.certs]
    return options


def _login_name(value: object) -> str:
    """The short-lived username the portal gave: it becomes ssh's ``User`` and ``user@host``."""
    if not is_login_name(value):
        raise CliError(f"The portal gave '{printable(value)}' as the username: not a login name.")
    return str(value)


@dataclass(frozen=True)
class Certified:
    """What the portal issued for one grant: the keys and their certificates (in the order ssh offers
    them), the login, how ssh reaches it."""

    keys: list[Path]
    certs: list[Path]
    username: str
    mode: str  # known_hosts.RECORD or DIRECT
    host_cas: list[str]  # checked host CA lines (record mode only)


# Without --key-type: Ed25519, and on a direct account RSA after it.
DEFAULT_KEY_TYPE = "ed25519"
FALLBACK_KEY_TYPE = "rsa"


def _certify(portal: Portal, item: dict[str, Any], grant: dict[str, Any], key_type: str | None) -> Certified:
    """Certificates for the chosen key type; without one, for Ed25519 and, when ssh meets the instance's
    own sshd (a direct account), for RSA too: ssh offers the Ed25519 certificate first and the RSA ones
    (SHA-2, then SHA-1) only if the host refuses it (RHEL in FIPS mode, PubkeyAcceptedAlgorithms, an old
    OpenSSH). On a recorded account ssh meets the portal's proxy, which takes Ed25519 and itself logs in
    to the instance with RSA when it must."""
    first = _certify_key(portal, item, grant, key_type or DEFAULT_KEY_TYPE)
    if key_type is not None or first.mode != DIRECT:
        return first
    progress(
        f"{printable(grant['instance_id'])}: offering an RSA key after the Ed25519 one, for a host that takes no "
        "Ed25519 key (--key-type ed25519 offers Ed25519 alone)"
    )
    fallback = _certify_key(portal, item, grant, FALLBACK_KEY_TYPE)
    if fallback.mode != DIRECT or fallback.username != first.username:
        raise CliError("The portal answered the second certificate for this instance differently; try again.")
    return Certified(first.keys + fallback.keys, first.certs + fallback.certs, first.username, DIRECT, [])


def _certify_key(portal: Portal, item: dict[str, Any], grant: dict[str, Any], key_type: str) -> Certified:
    key, public = ensure_key(key_type)
    issued = portal.post_object(
        f"/api/requests/{item['id']}/grants/{grant['instance_id']}/certificate/", {"public_key": public}
    )
    username = _login_name(field(issued, "username", str))
    mode = session_mode(issued)
    # Checked before anything is written: a bad host CA line stops the command here.
    host_cas = host_ca_lines(issued) if mode == RECORD else []
    certs = write_certificates(f"{item['id']}-{grant['instance_id']}-{key_type}", texts(issued, "certificates"))
    return Certified([key], certs, username, mode, host_cas)


def cmd_connect(args: argparse.Namespace) -> int:
    portal = Portal.signed_in(args.portal)
    item, grant = pick(portal, args.instance, args.request)
    if field(grant, "platform", str) == "windows":
        # Imported here, not above: the data channel (asyncio, websockets) costs every other command ~0.1 s.
        from passport_cli.tunnel import check_forward_port, run_port_forward

        remote_port = args.remote_port or 3389
        check_forward_port(item, remote_port)

        def ready(port: int) -> None:
            # Asked for only once the local port is bound: a port that cannot be fails first,
            # without the password viewed (and logged) for nothing.
            creds = portal.post_object(f"/api/requests/{item['id']}/grants/{grant['instance_id']}/password/")
            username, password = printable(field(creds, "username", str)), printable(field(creds, "password", str))
            # The address the listener is bound to (IPv4 only), under the header the product notes show.
            print(
                f"Windows Login Credentials:\nHost: 127.0.0.1:{port}\nUsername: {username}\nPassword: {password}",
                flush=True,
            )
            progress(f"forwarding to Remote Desktop ({remote_port}); press Ctrl-C to end")

        ended = run_port_forward(
            portal,
            item["id"],
            grant["instance_id"],
            remote_port,
            args.local_port,
            ready,
            lambda: forward_ended_reason(portal, item["id"], remote_port),
        )
        if ended:
            progress(ended)
            return ended_exit(ended)
        return Exit.OK
    ssh = which("ssh")
    if ssh is None:
        raise CliError("OpenSSH's ssh was not found: install the OpenSSH client.")
    progress(f"getting a certificate for {grant['instance_id']} ({printable(field(grant, 'name', str))})")
    certified = _certify(portal, item, grant, args.key_type)
    if certified.mode == RECORD:
        pin_host_cas(certified.host_cas, [grant["instance_id"]])
    proxy = _proxy_command(item["id"], grant["instance_id"], args.portal)
    command = [
        ssh,
        "-F",
        "/dev/null",
        *(f"-o{o}" for o in _ssh_options(certified)),
        f"-oProxyCommand={proxy}",
        f"{certified.username}@{grant['instance_id']}",
        *args.remote_command,
    ]
    with tempfile.TemporaryDirectory(prefix="passport-connect-") as scratch:
        reason_file = os.path.join(scratch, "reason")
        code = _run_ssh(command, {REASON_FILE_ENV: reason_file})
        told = read_reason(reason_file)
    if told is not None and code == SSH_CONNECTION_LOST:
        # The portal's recording proxy ended the session and said why (the request ended, an approver).
        progress(told[1])
        return told[0]
    if code == SSH_CONNECTION_LOST:
        ended = access_ended_reason(portal, item["id"])
        if ended:
            progress(ended)
            return ended_exit(ended)
    return code


# ssh's own exit code when the connection failed or was closed under it (not the remote command's).
SSH_CONNECTION_LOST = 255


def _run_ssh(command: list[str], extra_env: dict[str, str]) -> int:
    """Run ssh in this terminal and return its exit status (128 + N when a signal N ended it, as a shell
    says); SIGTERM or SIGHUP to passport is passed on to ssh, which restores the terminal and ends, and
    then passport ends as well (with 128 + the signal)."""
    env = {**os.environ, PROXY_UNDER_CONNECT: "1", **extra_env}
    process = subprocess.Popen(command, env=env)
    received: list[int] = []

    def pass_on(signum: int, frame: object) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)

    with stop_signals_caught(pass_on):
        code = process.wait()
    if received:
        raise Terminated(received[0])
    # Popen gives -N for an ssh ended by signal N (the OOM killer's SIGKILL, a SIGTERM sent to ssh alone);
    # as an exit status that would be 256 - N. Shells, and passport's own exit codes, say 128 + N.
    return 128 - code if code < 0 else code


def cmd_proxy(args: argparse.Namespace) -> int:
    from passport_cli.proxy_socket import UseDirect, run_recorded_proxy, say
    from passport_cli.tunnel import run_proxy

    if args.config_dir:
        # What `connect` or `ssh-config` used: for this process and the ones it starts.
        os.environ["PASSPORT_CONFIG_DIR"] = args.config_dir
    try:
        portal = Portal.signed_in(args.portal)
        if args.port in (None, 22):
            # Through the portal's recording SSH proxy; the account may say its sessions are direct.
            with contextlib.suppress(UseDirect):
                return run_recorded_proxy(portal, args.request, args.instance)
        run_proxy(portal, args.request, args.instance, args.port)
    except CliError as error:
        # Under `passport connect` the terminal is in ssh's raw mode: connect says why it ended, what
        # the portal refused (a moderated account's direct session) with the refusal's exit status.
        if os.environ.get(PROXY_UNDER_CONNECT) == "1":
            say(error.message, error.code)
            return Exit.ERROR
        raise
    return Exit.OK


def cmd_ssh_config(args: argparse.Namespace) -> int:
    portal = Portal.signed_in(args.portal)
    path = Path(args.output) if args.output else config_dir() / "ssh_config"
    # Before the portal signs anything: certificates (each on record) for a file that cannot be written serve nobody.
    check_writable_file(path)
    # Host blocks for the ready Linux grants; a Name is an alias only when no other active grant, of any
    # platform or status, carries it too (as `connect` refuses it).
    granted = active_grants(portal)
    grants = ready_grants(granted, "linux")
    blocks = [
        f"# Written by passport {__version__} at {datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}; use: ssh -F <this file> HOST"
    ]
    hosts = []
    if args.proxy_command and printable(args.proxy_command) != args.proxy_command:
        raise CliError("--proxy-command cannot hold control characters.", Exit.USAGE)
    # Every value below is an id checked by active_grants, a checked alias or login name, or a quoted path:
    # nothing from the portal or the cloud can end a line or a token and so add an option of its own.
    aliases, warnings = host_aliases(
        (
            (grant["instance_id"], str(grant.get("name") or ""), grant.get("name_is_host_alias") is not False)
            for _, grant in grants
        ),
        named=names_carried(granted),
    )
    for warning in warnings:
        progress(warning)
    recorded: list[str] = []
    host_cas: list[str] = []
    for item, grant in grants:
        name = field(grant, "name", str)
        progress(f"certificate for {grant['instance_id']} ({printable(name)}), request {item['id']}")
        certified = _certify(portal, item, grant, args.key_type)
        if certified.mode == RECORD:
            recorded.append(grant["instance_id"])
            host_cas += [line for line in certified.host_cas if line not in host_cas]
        username = certified.username
        proxy = args.proxy_command or _proxy_command(item["id"], grant["instance_id"], args.portal)
        names = aliases[grant["instance_id"]]
        lines = [f"Host {' '.join(names)}", f"  HostName {grant['instance_id']}", f"  User {username}"]
        lines += [f"  {option.replace('=', ' ', 1)}" for option in _ssh_options(certified)]
        lines.append(f"  ProxyCommand {proxy}")
        blocks.append("\n".join(lines))
        hosts.append(
            {
                "host": grant["instance_id"],
                "name": name,
                "aliases": names,
                "user": username,
                "request": item["id"],
            }
        )
    if recorded:
        pin_host_cas(host_cas, recorded)
    write_private(path, "\n\n".join(blocks) + "\n")
    if args.json:
        emit_json({"path": str(path), "hosts": hosts})
    else:
        if not hosts:
            progress("no ready Linux instances in your active requests: the file has no hosts")
        print(path)
    return Exit.OK


def add_parsers(commands: Subcommands, shared: SharedArguments) -> None:
    """connect and proxy."""
    connect = commands.add_parser(
        "connect",
        parents=[shared.common, shared.key_type],
        help="ssh to a Linux instance, or forward RDP to a Windows one",
        description="Linux: certifies a local key pair and runs ssh through `passport proxy`. Windows: forwards a "
        "free port of 127.0.0.1 to 3389 and prints the host and password, until Ctrl-C or the request ends "
        "(exit 7, saying why); on Linux only for you (other users of the machine are refused), elsewhere for "
        "every local user. Without INSTANCE, offers the "
        "ready instances of your active requests.\n\nTo run a command instead of a shell: "
        "passport connect INSTANCE -- COMMAND",
        epilog=EXIT_CODES_HELP,
        formatter_class=shared.formatter,
    )
    connect.add_argument(
        "instance", nargs="?", metavar="INSTANCE", help="instance id, or a Name only one of your instances has"
    )
    connect.add_argument("--request", type=int, help="only instances of this request")
    connect.add_argument(
        "--local-port", type=local_port_number, default=0, help="Windows: local port (default: a free one)"
    )
    connect.add_argument(
        "--remote-port", type=port_number, help="Windows: remote port (default 3389); the account must open it"
    )
    connect.set_defaults(handler=cmd_connect)

    proxy = commands.add_parser(
        "proxy",
        parents=[shared.common],
        help="ssh ProxyCommand: stdin/stdout to the instance",
        description="Copies stdin/stdout to the portal's recording SSH proxy for the instance (or, when the "
        "account's CLI sessions are direct, or with --port, over a Session Manager data channel). Used by "
        "`connect` and `ssh-config`.",
    )
    proxy.add_argument("request", type=int)
    proxy.add_argument("instance")
    proxy.add_argument("--port", type=port_number, help="remote port (default 22); the account must open it")
    proxy.add_argument(
        "--config-dir",
        metavar="DIR",
        help="the config directory to sign in from (connect and ssh-config pass theirs when it is not the default)",
    )
    proxy.set_defaults(handler=cmd_proxy)


def add_ssh_config_parser(commands: Subcommands, shared: SharedArguments) -> None:
    """ssh-config (registered apart so `passport --help` keeps its order)."""
    ssh_config = commands.add_parser(
        "ssh-config",
        parents=[shared.common, shared.key_type, shared.as_json],
        help="write an ssh config for your ready instances",
        description="Writes Host entries (the instance id, and the Name when it is a plain host name: letters, "
        "digits, '.', '_', '-', that no other instance of your active requests carries) with User, "
        "CertificateFile, IdentityFile and ProxyCommand, and prints the file's path: then `ssh -F PATH HOST`, "
        "scp, ansible...",
    )
    ssh_config.add_argument("--output", "-o", help="where to write it (default: CONFIG_DIR/ssh_config)")
    ssh_config.add_argument("--proxy-command", help=argparse.SUPPRESS)  # tests and unusual networks
    ssh_config.set_defaults(handler=cmd_ssh_config)
