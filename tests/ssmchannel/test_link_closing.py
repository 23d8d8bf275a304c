"""A link's loops end when it closes, even when Python 3.11 loses the receiver's cancellation;
when a held link gives up; and closing a channel whose agent acknowledges nothing.

On 3.11 ``asyncio.wait_for`` returns its call's result and drops the cancellation when the
cancel and the result arrive in the same turn of the loop (CPython gh-86296). The receive loop
waits for its handler's room through ``wait_for``: room coming free just as the link closes is
that turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

from ssmchannel.errors import TransportClosed
from ssmchannel.link import ReliableLink
from ssmchannel.link_terms import LinkConfig
from ssmchannel.messages import ClientMessage, Flag, MessageType, PayloadType, encode_flag
from ssmchannel.transport import memory_pair
from ssmchannel.waiting import Event
from tests.ssmchannel.aio import FakeClock, async_test, open_scripted


class _Handler:
    """Takes everything, with room that the test clears and sets."""

    def __init__(self) -> None:
        self.room = Event()

    def accepts(self, message: ClientMessage) -> bool:
        return True

    async def deliver(self, message: ClientMessage) -> None:
        return None

    async def control(self, message: ClientMessage) -> None:
        return None


@async_test
async def test_a_receiver_whose_cancel_is_lost_as_room_comes_free_still_ends_with_the_link() -> None:
    client_end, _agent_end = memory_pair()  # the agent's end stays silent: a receiver in recv() waits for ever
    handler = _Handler()
    link = ReliableLink(
        client_end,
        handler,
        outgoing_type=MessageType.INPUT_STREAM_DATA,
        incoming_type=MessageType.OUTPUT_STREAM_DATA,
    )
    run = asyncio.create_task(link.run())
    for _ in range(5):
        await asyncio.sleep(0)  # the receiver is now waiting for room
    assert link._receiver is not None and not link._receiver.done()

    handler.room.set()  # room comes free ...
    await link.close("ended by the test")  # ... in the same turn as the close cancels the receiver

    done, _ = await asyncio.wait({run}, timeout=3)
    assert done, "the link's run() did not end after close()"
    assert run.result() == "ended by the test"
    assert link._receiver.done()
    if sys.version_info < (3, 12):
        # It ended by itself, not by the cancel: the cancel really was lost, as this test means it to be.
        assert not link._receiver.cancelled(), "the cancel was not lost: this test no longer shows what it is for"


@async_test
async def test_a_link_held_until_resumed_keeps_its_messages_past_the_ack_timeout_and_a_pause_does_not() -> None:
    """devcloud's agent holds its output while its client is Disconnected for as long as the session
    lasts (AWS's agent never gives up); a pause_publication gives up after ``ack_timeout``, and a
    pause arriving during such a hold does not shorten it."""
    clock = FakeClock(1000.0)
    near, far = memory_pair()
    config = LinkConfig(resend_interval=3600, ack_timeout=10)
    link = ReliableLink(near, _Handler(), outgoing_type=MessageType.OUTPUT_STREAM_DATA,
                        incoming_type=MessageType.INPUT_STREAM_DATA, config=config, clock=clock)  # fmt: skip
    link.hold_until_resumed()
    await link.pause()
    await link.send_data(PayloadType.OUTPUT, b"first")
    await link.send_data(PayloadType.OUTPUT, b"second")
    clock.now += 10_000
    assert await link.resend_due() == 0
    assert not link.closed and len(link.window) == 2

    await link.resume()  # the client is back: what waited goes out, in order

    sent = [ClientMessage.decode(await asyncio.wait_for(far.recv(), 1)) for _ in range(2)]  # type: ignore[arg-type]
    assert [(m.sequence_number, m.payload) for m in sent] == [(0, b"first"), (1, b"second")]

    await link.pause()  # a pause on its own: held messages end the link after ack_timeout
    await link.send_data(PayloadType.OUTPUT, b"third")
    clock.now += 9.9
    await link.resend_due()
    assert not link.closed
    clock.now += 0.1
    await link.resend_due()
    assert link.closed_reason == "publication was paused for 10 s with 3 messages waiting"


def _paused_link(clock: FakeClock) -> ReliableLink:
    near, _far = memory_pair()  # the far end acknowledges nothing
    config = LinkConfig(resend_interval=3600, ack_timeout=10)
    return ReliableLink(near, _Handler(), outgoing_type=MessageType.INPUT_STREAM_DATA,
                        incoming_type=MessageType.OUTPUT_STREAM_DATA, config=config, clock=clock)  # fmt: skip


@async_test
async def test_pausing_briefly_again_and_again_does_not_stop_the_ack_timeout() -> None:
    """Each start_publication restarted every message's delivery clock, so a far end that paused
    for a moment every minute kept a message it never acknowledged (and the writers waiting on a
    full window) for ever. The time paused is left out; the time before a pause still counts."""
    clock = FakeClock()
    link = _paused_link(clock)
    await link.send_data(PayloadType.OUTPUT, b"never acknowledged")
    unpaused = 0.0
    while not link.closed and clock.now < 100:
        for _ in range(4):  # 4 s unpaused (resent, never acknowledged) ...
            clock.now += 1.0
            unpaused += 1.0
            await link.resend_due()
            if link.closed:
                break
        await link.pause()  # ... then 1 s paused
        clock.now += 1.0
        await link.resend_due()
        await link.resume()
    assert link.closed_reason is not None and link.closed_reason.startswith("message 0 was not acknowledged in 10 s"), (
        f"after {clock.now:g} s ({unpaused:g} s unpaused) the link is {link.closed_reason or 'still open'}"
    )
    assert unpaused == 10.0


@async_test
async def test_a_long_pause_with_brief_resumes_still_ends_the_link() -> None:
    """The time paused counts towards giving up on its own: a pause that holds messages for
    ``ack_timeout`` ends the link, and resuming for a moment before the end does not start it again
    (an agent that resumes only briefly keeps the writers waiting no longer than one that never does)."""
    clock = FakeClock()
    link = _paused_link(clock)
    await link.send_data(PayloadType.OUTPUT, b"never acknowledged")
    paused = 0.0
    while not link.closed and clock.now < 100:
        await link.pause()
        for _ in range(9):  # 9 s paused ...
            clock.now += 1.0
            paused += 1.0
            await link.resend_due()
            if link.closed:
                break
        if link.closed:
            break
        await link.resume()  # ... then resumed for a moment
        clock.now += 0.1
        await link.resend_due()
    assert link.closed_reason == "publication was paused for 10 s with 1 message waiting", (
        f"after {clock.now:g} s ({paused:g} s paused) the link is {link.closed_reason or 'still open'}"
    )
    assert paused == 10.0


@async_test
async def test_a_pause_lifted_in_time_leaves_the_time_before_it_and_after_it_to_count() -> None:
    clock = FakeClock()
    link = _paused_link(clock)
    await link.send_data(PayloadType.OUTPUT, b"acknowledged late")
    clock.now += 6.0
    await link.resend_due()
    await link.pause()
    clock.now += 9.0  # paused, less than ack_timeout: nothing ends
    await link.resend_due()
    await link.resume()
    clock.now += 3.9  # 9.9 s unpaused in all
    await link.resend_due()
    assert not link.closed
    clock.now += 0.1
    await link.resend_due()
    assert link.closed_reason == "message 0 was not acknowledged in 10 s (4 sends)"


@async_test
async def test_closing_with_a_full_window_that_the_agent_never_acknowledges_ends_within_its_timeout() -> None:
    """An agent held back (its smux full, its destination not reading) acknowledges nothing: close()
    with the TerminateSession flag must not wait for ever for window space to send the flag."""
    channel, agent, _ = await open_scripted(config=LinkConfig(max_unacked=2))
    await channel.write(b"one")
    await channel.write(b"two")  # the window is full; the agent acknowledges nothing from now on
    started = time.monotonic()

    await asyncio.wait_for(channel.close(terminate=True, timeout=0.5), 5)

    assert time.monotonic() - started < 3
    assert channel.closed_reason == "closed by the client" and channel.link.closed
    sent: dict[int, ClientMessage] = {}  # by sequence number: resends come too
    with contextlib.suppress(TimeoutError, TransportClosed):  # the client closed the WebSocket
        while True:
            message = await agent.data(timeout=0.3)
            sent[message.sequence_number] = message
    assert [(m.payload_type, m.payload) for _, m in sorted(sent.items())] == [
        (PayloadType.OUTPUT, b"one"),
        (PayloadType.OUTPUT, b"two"),
        (PayloadType.FLAG, encode_flag(Flag.TERMINATE_SESSION)),  # still sent, after what was written
    ]
