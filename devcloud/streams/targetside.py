"""The agent's side towards the target: which port mode, dialling, and bytes both ways.

``TargetSide`` is mixed into ``AgentSession`` (``devcloud.streams.agent``): in basic mode one
TCP connection to the target (redialled on the client's next data after it closed, for port
forwarding), in smux mode a connection per stream the client opens (``SmuxServer``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from devcloud.streams.smux import SmuxProtocolError, SmuxServer
from devcloud.streams.target import StreamTarget
from ssmchannel.errors import ChannelClosedError
from ssmchannel.link import ReliableLink
from ssmchannel.messages import Flag, PayloadType, encode_flag, version_tuple

logger = logging.getLogger("devcloud.streams.agent")

# The agent's port plugin (port.go) serves smux to clients at or above this version...
MUX_CLIENT_VERSION = "1.1.70"
# ...and agents after this one have that plugin (the client's TCPMultiplexingSupportedAfterThisAgentVersion).
MUX_AGENT_VERSION_AFTER = "3.0.196.0"

BASIC = "basic"
MUX = "mux"
READ_SIZE = 256 * 1024  # what one read from the target may take (then cut into messages)


def port_mode(target: StreamTarget, client_version: str) -> str:
    """``MUX`` when the agent would run smux for this session, else ``BASIC`` (one TCP connection)."""
    if (
        target.port_forwarding
        and version_tuple(client_version) >= version_tuple(MUX_CLIENT_VERSION)
        and version_tuple(target.agent_version) > version_tuple(MUX_AGENT_VERSION_AFTER)
    ):
        return MUX
    return BASIC


class TargetSide:
    """Mixed into AgentSession, which sets these attributes and the two methods below."""

    target: StreamTarget
    link: ReliableLink
    session_id: str
    queue_limit: int
    room: asyncio.Event
    _connection: TargetConnection | None
    remote_addresses: tuple[str, ...] | None
    _mux: SmuxServer | None
    _to_target: asyncio.Queue[bytes]
    _queued: int

    def _spawn(self, coroutine: Any) -> None:
        raise NotImplementedError  # AgentSession's

    def _request_end(self, output: str) -> None:
        raise NotImplementedError  # AgentSession's

    async def _dial(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.target.port is None:
            raise OSError(f"nothing listens for port forwarding on {self.target.destination_id or 'the target'}")
        # The reader's buffer holds a whole READ_SIZE (asyncio's default limit, 64 KiB, pauses at 128).
        if self.remote_addresses is None:
            return await asyncio.open_connection(self.target.host, self.target.port, limit=READ_SIZE)
        # port.go DialCall: a remote host's addresses as checked, in order; the first that answers,
        # else the first address's error ("missing address" when there is none).
        first_error: OSError | None = None
        for address in self.remote_addresses:
            try:
                return await asyncio.open_connection(address, self.target.port, limit=READ_SIZE)
            except OSError as error:
                first_error = first_error or error
        raise first_error or OSError("missing address")

    async def _send_output(self, data: bytes) -> None:
        """Smux bytes to the client, cut into data-channel payloads (frames may span messages)."""
        await self.link.send_stream(PayloadType.OUTPUT, data, self.link.config.chunk_size)

    async def _dial_failed(self, error: OSError) -> None:
        logger.info("session %s: a stream could not reach its destination: %s", self.session_id, error)
        await self.link.send_data(PayloadType.FLAG, encode_flag(Flag.CONNECT_TO_PORT_ERROR))

    async def _connect(self) -> None:
        reader, writer = await self._dial()
        connection = TargetConnection(reader, writer)
        self._connection = connection
        self._spawn(self._read_from_target(connection))

    async def _read_from_target(self, connection: TargetConnection) -> None:
        chunk = self.link.config.chunk_size
        try:
            # (speed, #14) Read what is there, up to 256 KiB, and send it in messages of at most
            # chunk_size bytes (the agent's 1,024): one read per 256 messages, not one each.
            while data := await connection.reader.read(max(chunk, READ_SIZE)):
                await self.link.send_stream(PayloadType.OUTPUT, data, chunk)
        except (ConnectionError, ChannelClosedError):
            pass
        if connection.dropped:
            return
        if self.target.port_forwarding:
            # port_basic.go: a LocalPortForwarding session outlives its connection; the next
            # data from the client dials again.
            connection.drop()
            if self._connection is connection:
                self._connection = None
            return
        # AWS-StartSSHSession: the target hung up (sshd exited...), so the session is over.
        self._request_end("")

    async def _write_to_target(self) -> None:
        while True:
            data = await self._to_target.get()
            if not self._to_target.empty():
                # (speed, #14) Everything already delivered goes in one write.
                parts = [data]
                while not self._to_target.empty():
                    parts.append(self._to_target.get_nowait())
                data = b"".join(parts)
            if self._mux is not None:
                try:
                    # Waits while the smux streams hold MAX_RECEIVE_BUFFER unread, as the agent's
                    # write to its smux connection blocks. The bytes count against queue_limit
                    # until smux has taken them: then this queue fills, the link stops
                    # acknowledging, and the client's writes wait.
                    await self._mux.feed(data)
                except SmuxProtocolError as exc:
                    self._request_end(f"Port forwarding stream error: {exc}")
                    return
                self._taken(len(data))
                continue
            self._taken(len(data))
            if self._connection is None:
                # Port forwarding after DisconnectToPort: the agent reconnects on new data.
                try:
                    await self._connect()
                except OSError as exc:
                    self._request_end(f"Unable to connect to specified port: {exc}")
                    return
            assert self._connection is not None
            try:
                self._connection.writer.write(data)
                await self._connection.writer.drain()
            except ConnectionError:
                self._request_end("")
                return

    def _taken(self, size: int) -> None:
        """``size`` bytes of the client's left the queue for the target: room for more."""
        self._queued -= size
        if self._queued < self.queue_limit:
            self.room.set()

    async def _watch_terminated(self, terminated: threading.Event) -> None:
        # A threading.Event set by the API thread: polling keeps no thread blocked per session.
        while not terminated.is_set():
            await asyncio.sleep(0.1)
        self._request_end(f"Session {self.session_id} was terminated.")


@dataclass
class TargetConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    dropped: bool = False  # closed by us (DisconnectToPort), not by the target

    def drop(self) -> None:
        self.dropped = True
        self.writer.close()
