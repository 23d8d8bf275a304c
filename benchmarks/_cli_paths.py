"""The three ways OpenSSH reaches the host for cli_proxy.py; not a benchmark itself.

``CliPaths`` signs the real `passport` CLI in against the stack's daphne (``passport auth login``,
its code confirmed on the portal's device page by the benchmark's person over HTTP), then writes
one ssh config per path, each for the same sshd, the same short-lived user and the same host:

- ``direct``: OpenSSH straight to the host's sshd on loopback, with a key and the portal's
  certificate for it (the baseline; the host key is not checked);
- ``mode-direct``: the config ``passport ssh-config`` writes while the account's CLI sessions are
  ``direct``: its ProxyCommand ``passport proxy`` is refused by the portal's proxy (4409) and speaks
  the Session Manager data channel itself (not recorded);
- ``record``: the config it writes while they are ``record`` (the default): ``passport proxy``
  carries the SSH connection over the portal's WebSocket to the portal's own SSH server, which
  records it and relays it over its own data channel to the same sshd (the host CA pinned).

The account's mode is switched (``use``) before each path runs: the portal reads it at every
connection. ``ProxiedShell`` is the concurrency measurement's client: one idle PTY shell through
the recording proxy, asyncssh over the proxy's WebSocket in this process (a socket pair between
them), so that hundreds of sessions do not need hundreds of ssh and `passport proxy` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _terminal_shells import stack_portal
from _terminal_stack import COLS, ROOT, ROWS, Stack, fail

PATHS = ("direct", "mode-direct", "record")
HOST = "web-1"
CODE_RE = re.compile(r"confirm the code ([A-Z0-9]{4}-[A-Z0-9]{4})")


class CliPaths:
    """The signed-in CLI and an ssh config per path (see the module doc)."""

    def __init__(self, stack: Stack) -> None:
        assert stack.target is not None
        self.stack = stack
        self.home = stack.tmp / "workstation"
        self.env = {
            **os.environ,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "PASSPORT_URL": stack.base_url,
            "BROWSER": "true",
        }
        for name in ("PASSPORT_CONFIG_DIR", "SSH_AUTH_SOCK"):
            self.env.pop(name, None)
        self.home.mkdir(parents=True, exist_ok=True)
        self.configs: dict[str, Path] = {}
        self.request_id = 0

    # --- the CLI ----------------------------------------------------------------------------
    def passport(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "passport_cli", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise fail(f"passport {' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def sign_in(self) -> None:
        """`passport auth login`, its code confirmed on the device page as the benchmark's person."""
        process = subprocess.Popen(
            [sys.executable, "-m", "passport_cli", "auth", "login", "--no-browser", "--timeout", "60"],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stderr is not None
        seen = ""
        deadline = time.monotonic() + 60
        while (match := CODE_RE.search(seen)) is None:
            line = process.stderr.readline()
            if not line and (process.poll() is not None or time.monotonic() > deadline):
                process.kill()
                raise fail(f"passport auth login showed no code: {seen[-2000:]}")
            seen += line
        portal = stack_portal(self.stack)
        http = portal_session(portal)
        page = http.get(f"{portal.base_url}/cli/device/", params={"code": match.group(1)}, timeout=30)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if page.status_code != 200 or token is None:
            raise fail(f"the device page gave HTTP {page.status_code} without a form")
        confirmed = http.post(
            f"{portal.base_url}/cli/device/",
            data={"user_code": match.group(1), "csrfmiddlewaretoken": token.group(1)},
            headers={"Referer": f"{portal.base_url}/cli/device/", "Origin": portal.base_url},
            timeout=30,
        )
        _, err = process.communicate(timeout=60)
        if confirmed.status_code != 200 or process.returncode != 0:
            raise fail(f"signing the CLI in failed (HTTP {confirmed.status_code}, exit {process.returncode}): {err}")

    @property
    def token(self) -> str:
        data = json.loads((self.home / "config" / "passport" / "credentials.json").read_text())
        return str(data["token"])

    # --- the account's mode and the configs -------------------------------------------------
    def use(self, mode: str) -> None:
        """Set the account's CLI sessions to "record" or "direct" (the portal reads it per connection)."""
        from django.db import close_old_connections

        from accounts.models import AwsAccount
        from requests_app.models import Grant

        assert self.stack.target is not None
        close_old_connections()
        grant = Grant.objects.select_related("request").get(pk=self.stack.target.grant_id)
        self.request_id = grant.request_id
        AwsAccount.objects.filter(pk=grant.request.account_id).update(cli_sessions=mode)

    def write_configs(self) -> None:
        for label, mode in (("mode-direct", "direct"), ("record", "record")):
            self.use(mode)
            written = Path(json.loads(self.passport("ssh-config", "--json"))["path"])
            self.configs[label] = self.home / f"{label}.ssh_config"
            self.configs[label].write_text(written.read_text())
        self.configs["direct"] = self._direct_config()

    def _direct_config(self) -> Path:
        target = self.stack.target
        assert target is not None
        key, certificates = self.stack.credentials()
        key_path = self.home / "direct_ed25519"
        key_path.write_bytes(key.export_private_key("openssh"))
        key_path.chmod(0o600)
        (self.home / "direct_ed25519-cert.pub").write_text(certificates[0].strip() + "\n")
        path = self.home / "direct.ssh_config"
        path.write_text(
            f"Host {HOST}\n  HostName 127.0.0.1\n  Port {target.sshd_port}\n  User {target.username}\n"
            f'  IdentityFile "{key_path}"\n  CertificateFile "{key_path}-cert.pub"\n  IdentitiesOnly yes\n'
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        )
        return path

    def ssh_argv(self, label: str, program: str = "ssh") -> list[str]:
        """``program`` (ssh or scp) with the path's config, as a person runs it after `passport ssh-config`."""
        return [program, "-F", str(self.configs[label]), "-o", "BatchMode=yes", "-o", "ConnectTimeout=60"]


def portal_session(portal: Any) -> Any:
    """A requests session carrying the signed-in benchmark person's cookie."""
    import requests

    http = requests.Session()
    name, _, value = portal.cookie.partition("=")
    http.cookies.set(name, value)
    return http


class ProxiedShell:
    """One idle PTY shell through the recording proxy: the CLI's WebSocket, asyncssh over it."""

    def __init__(self, *, url: str, token: str, username: str, key: Any, certificates: list[str]) -> None:
        self.url, self.token, self.username = url, token, username
        self.key, self.certificates = key, certificates
        self.websocket: Any = None
        self.connection: Any = None
        self.process: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        import asyncssh
        from websockets.asyncio.client import connect

        self.websocket = await connect(
            self.url, additional_headers={"Authorization": f"Bearer {self.token}"}, max_size=None, compression=None,
            open_timeout=60,
        )  # fmt: skip
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours)
        self._tasks = [asyncio.create_task(self._up(reader)), asyncio.create_task(self._down(writer))]
        self.connection = await asyncssh.connect(
            sock=theirs, host=HOST, username=self.username,
            client_keys=[(self.key, asyncssh.import_certificate(c)) for c in self.certificates],
            known_hosts=None, agent_path=None, config=[], preferred_auth=["publickey"],
        )  # fmt: skip
        self.process = await self.connection.create_process(
            term_type="xterm-256color", term_size=(COLS, ROWS), encoding=None, stderr=asyncssh.STDOUT
        )

    async def _up(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                await self.websocket.send(data)

    async def _down(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            async for message in self.websocket:
                if isinstance(message, bytes):
                    writer.write(message)
                    await writer.drain()
        writer.close()

    async def answer(self, number: int, timeout: float = 60) -> None:
        """Type an ``echo`` and wait for its output: the shell is alive."""
        expected = f"held-{number + 1}".encode()
        self.process.stdin.write(f"echo held-$(({number}+1))\r".encode())
        seen = b""
        async with asyncio.timeout(timeout):
            while expected not in seen:
                data = await self.process.stdout.read(4096)
                if not data:
                    raise RuntimeError("the shell ended")
                seen = seen[-64:] + data

    async def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.wait_closed(), 10)
        if self.websocket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.websocket.close(), 10)
        for task in self._tasks:
            task.cancel()
