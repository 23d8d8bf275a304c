"""Reading SFTP's wire format: uint32-length-prefixed packets, and the fields inside one."""

from __future__ import annotations


class ProtocolError(Exception):
    """The stream is not the protocol the observer expected; observing stops."""


class Framer:
    """Cuts one direction's byte stream, fragmented in any way, into whole packets.

    At most one unfinished packet is kept between calls, and a length over ``limit`` is refused before
    any of its body is buffered, so a hostile peer cannot make the observer hold more than that.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self.error: str | None = None  # set by a bad length; the packets before it are still returned

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def pending(self) -> bytes:
        """The start of a packet not yet whole."""
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self.error is not None:
            return []
        buffer = self._buffer
        buffer += data
        packets: list[bytes] = []
        position = 0
        while len(buffer) - position >= 4:
            length = int.from_bytes(buffer[position : position + 4], "big")
            if length == 0 or length > self.limit:
                buffer.clear()
                self.error = f"packet length {length} outside 1..{self.limit}"
                return packets
            end = position + 4 + length
            if end > len(buffer):
                break
            packets.append(bytes(buffer[position + 4 : end]))
            position = end
        del buffer[:position]
        return packets


class Fields:
    """The fields of one packet, read in order; reading past its end is a ProtocolError."""

    def __init__(self, packet: bytes) -> None:
        self._data = memoryview(packet)
        self._position = 0

    def _take(self, size: int) -> memoryview:
        end = self._position + size
        if end > len(self._data):
            raise ProtocolError("packet shorter than its fields")
        chunk = self._data[self._position : end]
        self._position = end
        return chunk

    def u8(self) -> int:
        return self._take(1)[0]

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self._take(8), "big")

    def string(self) -> memoryview:
        return self._take(self.u32())
