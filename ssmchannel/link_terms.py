"""What a ``ReliableLink`` (``ssmchannel.link``) is given: its tunables (``LinkConfig``) and the
end's handler for messages once they are in order (``LinkHandler``).

Kept apart from the link so that its receiving half (``ssmchannel.receiving``), which the link
builds on, can name them without importing the link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ssmchannel.messages import ClientMessage
from ssmchannel.reliability import (
    CLOCK_GRANULARITY,
    DEFAULT_RETRANSMISSION_TIMEOUT,
    DEFAULT_ROUND_TRIP_TIME,
    MAX_RETRANSMISSION_TIMEOUT,
)

# What the agent and the plugin put in one stream message (both read 1,024 bytes at a time).
STREAM_DATA_PAYLOAD_SIZE = 1024


@dataclass(frozen=True)
class LinkConfig:
    """Tunables; the defaults are the plugin's, except where a comment says otherwise."""

    chunk_size: int = STREAM_DATA_PAYLOAD_SIZE
    # The plugin's buffers hold 10,000 messages each way. It never makes a writer wait (it
    # drops the oldest unacked message instead); we block the writer at this many, or at
    # this many bytes of frames, whichever comes first (for payloads above 1,024 bytes).
    max_unacked: int = 2048
    max_unacked_bytes: int = 2048 * (STREAM_DATA_PAYLOAD_SIZE + 120)
    # The plugin holds up to 10,000 messages that arrive ahead of the expected one, whatever
    # their size; we also stop at this many bytes of them (payload and header), else a far end
    # sending ahead could make us hold 10,000 messages of any size. What does not fit is not
    # acknowledged, so the peer resends it later (as when the count is full). A peer with our
    # own window (max_unacked_bytes) never has this much ahead. None: no byte limit (the agent's).
    incoming_capacity: int = 10_000
    incoming_capacity_bytes: int | None = 4 * 1024 * 1024
    # Whether a message ahead is held only if the handler ``accepts`` it (as it would in order),
    # so that what it cannot take is resent rather than held. False: held whenever there is room
    # in the buffer, as AWS's agent does (datachannel.go handleStreamDataMessage asks nothing of
    # its handler), except while the handler's ``room`` is clear (the agent, blocked writing to
    # its target, reads nothing then).
    ask_handler_ahead: bool = True
    initial_rtt: float = DEFAULT_ROUND_TRIP_TIME
    initial_rto: float = DEFAULT_RETRANSMISSION_TIMEOUT
    max_rto: float = MAX_RETRANSMISSION_TIMEOUT
    clock_granularity: float = CLOCK_GRANULARITY
    # How often the resend pass runs. The plugin: every 100 ms, the oldest message only, so
    # recovering n lost messages takes n passes; we also resend those that later acks show
    # lost (see OutgoingWindow.due), up to resend_batch per pass.
    resend_interval: float = 0.02
    resend_batch: int = 256
    # Give up when a message stays unacknowledged this long (the plugin: 3,000 resends at
    # 100 ms, i.e. 5 minutes). A time, not a count, because our resend cadence follows the RTT.
    ack_timeout: float = 300.0
    # While its handler has no room and our own messages wait for acks, the receiver reads on
    # this often (see _receive_loop), so that a writer waiting for window space is not stuck
    # behind a reader that waits for the write.
    room_wait: float = 1.0
    # Past this much unsent in our write buffer (a far end that sends and never reads would pile
    # our acks up there) the receiver stops reading until it drains, and closes after
    # drain_timeout. A reading peer leaves less: our window (~2.3 MB) and acks for its (~0.6 MB).
    write_backlog_limit: int = 4 * 1024 * 1024
    drain_timeout: float = 60.0


class LinkHandler(Protocol):
    """What an end does with messages once the link has put them in order."""

    def accepts(self, message: ClientMessage) -> bool:
        """May this in-order message be acknowledged now? False: not ready, resend later.

        A handler may also have ``room``, an Event (asyncio's or ssmchannel.waiting's) clear while it cannot take more
        (see ReliableLink._receive_loop).
        """
        ...

    async def deliver(self, message: ClientMessage) -> None:
        """An acknowledged message, in sequence order. Must not wait on the peer."""
        ...

    async def control(self, message: ClientMessage) -> None:
        """Any unsequenced message other than an acknowledge (channel_closed, publication...)."""
        ...

    # Optional, for the receiving fast path (ssmchannel.receiving): ``output_room() -> int | None``
    # (bytes of in-order OUTPUT it can take now, <= 0 for none, as ``accepts`` would refuse;
    # None: let ``deliver`` decide) and ``take_outputs(payloads)`` (``deliver`` for each, at once).
