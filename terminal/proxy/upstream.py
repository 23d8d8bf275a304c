"""The portal's own SSH connection to the instance, for one CLI connection through the proxy.

As the browser terminal logs in (terminal.session, terminal.bridge): a key that never leaves
memory, a certificate for it from the requests services (grant_issue_certificate; an RSA key
and its certificates too when the instance refuses Ed25519: terminal.bridge.LoginKeys), a Session
Manager session (grant_start_session, AWS-StartSSHSession, via "cli-proxy", which re-checks IAM
and the port), and asyncssh over the data channel. Closing it ends the Session Manager session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncssh
from asgiref.sync import sync_to_async

from accounts.models import User
from requests_app.models import Grant
from requests_app.services import grant_start_session
from ssmchannel import DataChannel
from ssmchannel.documents import SSH_DOCUMENT
from ssmchannel.tunnel import ChannelTunnel
from terminal import services
from terminal.bridge import ENCRYPTION_ALGS, LoginKeys, connect_with
from terminal.login_keys import grant_login_keys
from terminal.threads import in_db_thread

logger = logging.getLogger(__name__)

VIA = "cli-proxy"


class Upstream:
    """One SSH client connection from the portal to a grant's instance."""

    def __init__(self, *, grant: Grant, user: User) -> None:
        self.grant = grant
        self.user = user
        self.ssm_session_id = ""
        self.connection: asyncssh.SSHClientConnection | None = None
        # Its login keys, whose ``signers`` say which CA keys signed the certificates it logs in with.
        self.keys: LoginKeys | None = None
        self._stack = contextlib.AsyncExitStack()
        self._closed = False

    async def open(self) -> asyncssh.SSHClientConnection:
        """Certificate, StartSession, data channel, SSH login; raises RequestRuleError or OSError."""
        grant = self.grant
        keys = self.keys = grant_login_keys(grant=grant, user=self.user)
        await keys.prepare()
        started = await in_db_thread(grant_start_session)(
            grant=grant, user=self.user, document=SSH_DOCUMENT, port=22, via=VIA
        )
        self.ssm_session_id = started["SessionId"]
        try:
            channel = await self._stack.enter_async_context(
                DataChannel.open(started["StreamUrl"], started["TokenValue"])
            )
            self.connection = await connect_with(
                keys,
                # Straight over the channel: no socketpair, no copying tasks (ssmchannel.tunnel).
                tunnel=ChannelTunnel(channel),
                host=grant.instance.instance_id,
                username=grant.username,
                # The data channel is authenticated by AWS and leads to this one instance.
                known_hosts=None,
                agent_path=None,
                config=[],
                preferred_auth=["publickey"],
                keepalive_interval=30,
                encryption_algs=ENCRYPTION_ALGS,
            )
        except BaseException:
            await self.close()
            raise
        return self.connection

    async def close(self) -> None:
        """Close the SSH connection and the data channel, and end the Session Manager session; once."""
        if self._closed:
            return
        self._closed = True
        if self.connection is not None:
            self.connection.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.wait_closed(), 3)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._stack.aclose(), 5)
        if self.ssm_session_id:
            try:
                await sync_to_async(services.ssh_session_terminate, thread_sensitive=False)(
                    grant=self.grant, ssm_session_id=self.ssm_session_id
                )
            except Exception:
                logger.warning("TerminateSession %s failed", self.ssm_session_id, exc_info=True)
