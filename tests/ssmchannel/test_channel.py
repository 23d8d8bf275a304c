"""DataChannel against a scripted agent: every frame it sends and every reaction is checked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os

import pytest

from ssmchannel.channel import CLIENT_VERSION, DataChannel
from ssmchannel.errors import ChannelClosedError, HandshakeError, TransportClosed
from ssmchannel.link_terms import LinkConfig
from ssmchannel.messages import (
    ActionStatus,
    ClientMessage,
    Flag,
    HandshakeRequest,
    MessageType,
    PayloadType,
    RequestedClientAction,
    encode_flag,
)
from ssmchannel.transport import memory_pair
from tests.ssmchannel.aio import FakeClock, ScriptedAgent, async_test, open_scripted


class TestOpening:
    @async_test
    async def test_open_frame_carries_the_token(self) -> None:
        channel, _, opening = await open_scripted()
        fields = json.loads(opening)
        assert fields["MessageSchemaVersion"] == "1.0"
        assert fields["TokenValue"] == "tok"
        assert fields["ClientVersion"] == CLIENT_VERSION
        assert fields["ClientId"] == channel.client_id
        assert fields["RequestId"]
        await channel.close(terminate=False)

    @async_test
    async def test_handshake_records_what_the_agent_said(self) -> None:
        channel, _, _ = await open_scripted()
        assert channel.agent_version == "3.3.1142.0"
        assert channel.session_type == "Port"
        assert channel.session_properties == {"portNumber": "22"}
        assert channel.customer_message == "welcome"
        await channel.close(terminate=False)

    @async_test
    async def test_handshake_response_reports_each_action(self) -> None:
        client_end, agent_end = memory_pair()
        channel = DataChannel(client_end, token="tok", ping_interval=None)
        agent = ScriptedAgent(agent_end)
        start = asyncio.create_task(channel.start(handshake_timeout=5))
        await agent.frame()
        response = await agent.handshake(
            actions=(
                RequestedClientAction("SessionType", {"SessionType": "Port", "Properties": {}}),
                RequestedClientAction("KMSEncryption", {"KMSKeyId": "arn:aws:kms:eu-west-1:111:key/k"}),
                RequestedClientAction("Teleport", {}),
            ),
            complete=False,
        )
        assert response.client_version == CLIENT_VERSION
        statuses = [(a.action_type, a.action_status) for a in response.processed_client_actions]
        assert statuses == [
            ("SessionType", ActionStatus.SUCCESS),
            ("KMSEncryption", ActionStatus.FAILED),
            ("Teleport", ActionStatus.UNSUPPORTED),
        ]
        assert "KMS encryption" in response.processed_client_actions[1].error
        assert len(response.errors) == 2
        # The agent refuses an unencrypted session: it closes the channel, with a reason.
        await agent.close_channel("KMSEncryption failed on client with status 2")
        with pytest.raises(ChannelClosedError, match="KMSEncryption failed"):
            await start
        assert channel.closed_reason == "KMSEncryption failed on client with status 2"
        await channel.close()

    # A JSON list or object is no session type either: ``in`` on the frozenset of known ones raised
    # TypeError for them, which ended the channel as an internal error instead of this answer.
    @pytest.mark.parametrize("session_type", ["Quantum", ["Port"], {"SessionType": "Port"}, 5, None])
    @async_test
    async def test_unknown_session_type_fails_the_action(self, session_type: object) -> None:
        client_end, agent_end = memory_pair()
        channel = DataChannel(client_end, token="tok", ping_interval=None)
        agent = ScriptedAgent(agent_end)
        start = asyncio.create_task(channel.start(handshake_timeout=5))
        await agent.frame()
        response = await agent.handshake(
            actions=(RequestedClientAction("SessionType", {"SessionType": session_type}),), complete=False
        )
        (action,) = response.processed_client_actions
        assert action.action_status == ActionStatus.FAILED
        assert action.error == f"Failed to process action SessionType: unknown session type {session_type!r}"
        assert channel.session_type is None and channel.closed_reason is None
        await agent.close_channel("handshake failed")
        with pytest.raises(ChannelClosedError):
            await start

    @async_test
    async def test_a_second_handshake_request_is_acknowledged_and_not_answered(self) -> None:
        """An agent performs one handshake per session (amazon-ssm-agent's sessionplugin.go); a
        second request changes nothing (not the session type, the agent version or the port mode)
        and gets no HandshakeResponse: answering each made the window grow without bound."""
        channel, agent, _ = await open_scripted()
        again = HandshakeRequest(
            agent_version="9.9.9.9",
            requested_client_actions=(RequestedClientAction("SessionType", {"SessionType": "Standard_Stream"}),),
        )
        request = await agent.send_output(again.to_payload(), PayloadType.HANDSHAKE_REQUEST)
        after = await agent.send_output(b"after it")
        assert await asyncio.wait_for(channel.read(), 3) == b"after it"
        with pytest.raises(TimeoutError):
            reply = await agent.data(timeout=0.2)
            pytest.fail(f"the client answered with payload type {reply.payload_type}")
        assert agent.acks == [request.sequence_number, after.sequence_number]
        assert (channel.agent_version, channel.session_type) == ("3.3.1142.0", "Port")
        assert len(channel.link.window) == 0 and channel.closed_reason is None
        await channel.close(terminate=False)

    @async_test
    async def test_handshake_timeout(self) -> None:
        client_end, agent_end = memory_pair()
        channel = DataChannel(client_end, token="tok", ping_interval=None)
        with pytest.raises(HandshakeError):
            await channel.start(handshake_timeout=0.1)
        await channel.close()
        assert agent_end is not None

    @async_test
    async def test_agent_without_handshake_is_a_shell_session(self) -> None:
        client_end, agent_end = memory_pair()
        channel = DataChannel(client_end, token="tok", ping_interval=None)
        agent = ScriptedAgent(agent_end)
        start = asyncio.create_task(channel.start(handshake_timeout=5))
        await agent.frame()
        await agent.send_output(b"$ ")
        await start
        assert channel.session_type == "Standard_Stream"
        assert await channel.read() == b"$ "
        await channel.close(terminate=False)

    @async_test
    async def test_refused_websocket_close_before_handshake(self) -> None:
        client_end, agent_end = memory_pair()
        channel = DataChannel(client_end, token="tok", ping_interval=None)
        start = asyncio.create_task(channel.start(handshake_timeout=5))
        await agent_end.recv()
        await agent_end.close("invalid token")
        with pytest.raises(ChannelClosedError, match="invalid token"):
            await start


@async_test
async def test_connect_refuses_websocket_messages_larger_than_the_protocol_needs() -> None:
    """``DataChannel.connect`` sets the WebSocket's max_size to ``MAX_MESSAGE_SIZE`` (the largest
    message either end sends, with a margin), not websockets' default 1 MiB: each message the
    agent sends ahead is held, so its size multiplies what a hostile far end can make us keep.
    A message of the largest legitimate size still passes; a larger one ends the channel."""
    from websockets.asyncio.server import ServerConnection, serve

    from ssmchannel.channel import INPUT_PAYLOAD_SIZE, MAX_MESSAGE_SIZE

    def output(seq: int, payload: bytes) -> bytes:
        return ClientMessage(
            message_type=MessageType.OUTPUT_STREAM_DATA, sequence_number=seq, payload_type=1, payload=payload
        ).encode()

    assert INPUT_PAYLOAD_SIZE + 120 <= MAX_MESSAGE_SIZE  # Passport's own largest message fits

    async def agent(websocket: ServerConnection) -> None:
        await websocket.recv()  # the opening frame
        # No handshake: output first makes a legacy shell session (handshake done).
        await websocket.send(output(0, b"$ "))
        await websocket.send(output(1, b"a" * (MAX_MESSAGE_SIZE - 120)))  # exactly the limit
        await websocket.send(output(2, b"b" * (MAX_MESSAGE_SIZE - 119)))  # one byte over
        await websocket.wait_closed()

    server = await serve(agent, "127.0.0.1", 0, compression=None, ping_interval=None, max_size=None)
    port = server.sockets[0].getsockname()[1]
    try:
        channel = await DataChannel.connect(f"ws://127.0.0.1:{port}/", "tok", ping_interval=None)
        received = bytearray()
        while data := await asyncio.wait_for(channel.read(), 10):
            received += data
        assert received == b"$ " + b"a" * (MAX_MESSAGE_SIZE - 120)
        assert "1009" in (channel.closed_reason or ""), channel.closed_reason  # message too big
        await channel.close(terminate=False)
    finally:
        server.close()
        await server.wait_closed()


class TestSending:
    @async_test
    async def test_input_is_chunked_to_the_payload_size(self) -> None:
        channel, agent, _ = await open_scripted(payload_size=1024)  # the plugin's size
        await channel.write(bytes(range(256)) * 10)  # 2,560 bytes
        sent = [await agent.data() for _ in range(3)]
        assert [m.sequence_number for m in sent] == [1, 2, 3]  # 0 was the HandshakeResponse
        assert [len(m.payload) for m in sent] == [1024, 1024, 512]
        assert {m.payload_type for m in sent} == {PayloadType.OUTPUT}
        assert {m.flags for m in sent} == {0}
        assert b"".join(m.payload for m in sent) == bytes(range(256)) * 10
        for message in sent:
            await agent.acknowledge(message)
        assert await channel.drain(1.0)
        await channel.close(terminate=False)

    @async_test
    async def test_input_goes_in_64_kib_messages_by_default(self) -> None:
        channel, agent, _ = await open_scripted()
        data = os.urandom(150_000)
        await channel.write(data)
        sent = [await agent.data() for _ in range(3)]
        assert [len(m.payload) for m in sent] == [65_536, 65_536, 18_928]
        assert b"".join(m.payload for m in sent) == data
        for message in sent:
            await agent.acknowledge(message)
        assert await channel.drain(1.0)
        await channel.close(terminate=False)

    @pytest.mark.parametrize(
        ("value", "size"), [("1024", 1024), ("", 65_536), ("0", 65_536), ("1e9", 65_536), ("70000", 65_536)]
    )
    def test_the_payload_size_can_be_set_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch, value: str, size: int
    ) -> None:
        """Should AWS's service refuse large messages, PASSPORT_SSM_PAYLOAD_SIZE=1024 gives the plugin's size."""
        monkeypatch.setenv("PASSPORT_SSM_PAYLOAD_SIZE", value)
        a, _ = memory_pair()
        assert DataChannel(a, token="t").payload_size == size

    @async_test
    async def test_writer_waits_while_too_many_bytes_are_unacknowledged(self) -> None:
        config = LinkConfig(max_unacked_bytes=3 * (1024 + 120), resend_interval=3600)
        channel, agent, _ = await open_scripted(config=config, payload_size=1024)
        writer = asyncio.create_task(channel.write(b"x" * 4 * 1024))
        sent = [await agent.data() for _ in range(3)]
        await agent.nothing()
        assert not writer.done()  # 3 frames of 1,144 bytes fill the window
        await agent.acknowledge(sent[0])
        assert (await agent.data()).sequence_number == 4
        await writer
        await channel.close(terminate=False)

    @async_test
    async def test_unacknowledged_message_is_resent_after_the_timeout(self) -> None:
        clock = FakeClock()
        # A resend pass that never runs by itself: the test drives it.
        channel, agent, _ = await open_scripted(clock=clock, config=LinkConfig(resend_interval=3600))
        await channel.write(b"abc")
        first = await agent.data()
        # 200 ms at first; the handshake's one round trip (0 s on this clock) lowered it a little.
        rto = channel.link.rtt.rto
        assert 0.15 < rto <= 0.2
        clock.now = rto - 0.001
        assert await channel.link.resend_due() == 0
        clock.now = rto
        assert await channel.link.resend_due() == 1
        again = await agent.data()
        assert again.encode() == first.encode()  # the same frame: same id, same sequence number
        await agent.acknowledge(first)
        await asyncio.sleep(0.01)
        clock.now = 10.0
        assert await channel.link.resend_due() == 0
        await channel.close(terminate=False)

    @async_test
    async def test_later_ack_triggers_resend_of_the_gap(self) -> None:
        clock = FakeClock()
        channel, agent, _ = await open_scripted(clock=clock, config=LinkConfig(resend_interval=3600), payload_size=1024)
        await channel.write(b"a" * 3000)  # seq 1, 2, 3
        one, two, three = [await agent.data() for _ in range(3)]
        await agent.acknowledge(one)
        await agent.acknowledge(three)  # 2 was lost
        await asyncio.sleep(0.01)
        clock.now = channel.link.rtt.loss_delay
        assert await channel.link.resend_due() == 1
        assert (await agent.data()).sequence_number == 2
        await agent.acknowledge(two)
        await channel.close(terminate=False)

    @async_test
    async def test_writer_waits_while_the_window_is_full(self) -> None:
        channel, agent, _ = await open_scripted(
            config=LinkConfig(max_unacked=2, resend_interval=3600), payload_size=1024
        )
        writer = asyncio.create_task(channel.write(b"x" * 3 * 1024))
        first, second = await agent.data(), await agent.data()
        await agent.nothing()
        assert not writer.done()
        await agent.acknowledge(first)
        third = await agent.data()
        assert third.sequence_number == 3
        await agent.acknowledge(second)
        await agent.acknowledge(third)
        await writer
        await channel.close(terminate=False)

    @async_test
    async def test_pause_and_start_publication(self) -> None:
        channel, agent, _ = await open_scripted()
        await agent.control(MessageType.PAUSE_PUBLICATION)
        await asyncio.sleep(0.01)
        await channel.write(b"held")
        await agent.nothing(0.3)  # not even resent while paused
        await agent.control(MessageType.START_PUBLICATION)
        message = await agent.data()
        assert message.payload == b"held"
        await agent.acknowledge(message)
        await channel.close(terminate=False)


class TestReceiving:
    @async_test
    async def test_out_of_order_output_is_acked_at_once_and_delivered_in_order(self) -> None:
        channel, agent, _ = await open_scripted()
        agent.next_sequence_number = 2
        first, second, third = agent.output(b"one "), agent.output(b"two "), agent.output(b"three")
        await agent.send(third)
        await agent.send(second)
        assert [await agent.ack(), await agent.ack()] == [4, 3]  # buffered ones are acknowledged too
        assert channel._read_buffer == b""
        await agent.send(first)
        assert await agent.ack() == 2
        assert await channel.read() == b"one two three"
        await channel.close(terminate=False)

    @async_test
    async def test_duplicate_is_acked_again_but_delivered_once(self) -> None:
        channel, agent, _ = await open_scripted()
        message = await agent.send_output(b"once")
        assert await agent.ack() == 2
        await agent.send(message)
        assert await agent.ack() == 2
        await agent.send_output(b"!")
        assert await agent.ack() == 3
        assert await channel.read() == b"once!"
        await channel.close(terminate=False)

    @async_test
    async def test_copies_faster_than_a_sender_resends_are_answered_once_per_timeout(self) -> None:
        """A sender resends at most once per retransmission timeout: copies of one message
        faster than that are a flood, and answering each would write as much as it sends."""
        clock = FakeClock()
        channel, agent, _ = await open_scripted(clock=clock)
        message = await agent.send_output(b"once")
        assert await agent.ack() == 2
        for _ in range(20):
            await agent.send(message)
        assert await agent.ack() == 2  # the first copy: the agent missed our ack
        await agent.nothing()
        clock.now += 3 * channel.link.rtt.rto
        await agent.send(message)
        assert await agent.ack() == 2  # a timeout later: a resend, answered
        await agent.nothing()
        await channel.close(terminate=False)

    @async_test
    async def test_copies_of_a_held_message_are_answered_once_per_timeout(self) -> None:
        channel, agent, _ = await open_scripted(clock=FakeClock())
        agent.next_sequence_number = 2
        first, second = agent.output(b"one "), agent.output(b"two")
        for _ in range(3):
            await agent.send(second)
        assert [await agent.ack(), await agent.ack()] == [3, 3]  # held, then its first copy
        await agent.nothing()
        await agent.send(first)
        assert await agent.ack() == 2
        assert await channel.read() == b"one two"
        await channel.close(terminate=False)

    @async_test
    async def test_corrupted_frame_is_not_acknowledged(self) -> None:
        channel, agent, _ = await open_scripted()
        frame = bytearray(agent.output(b"payload", seq=2).encode())
        frame[-1] ^= 0xFF
        await agent.send(bytes(frame))
        await agent.transport.send("a stray text frame")
        await agent.nothing()
        assert channel.closed_reason is None
        await channel.close(terminate=False)

    @async_test
    async def test_far_end_text_in_a_warning_is_quoted(self, caplog: pytest.LogCaptureFixture) -> None:
        # Under the CLI these warnings reach the engineer's terminal: OSC 52 writes the clipboard,
        # CSI clears the screen, a newline fakes a line of the CLI's own.
        caplog.set_level(logging.WARNING, logger="ssmchannel")
        channel, agent, _ = await open_scripted()
        await agent.transport.send("\x1b]52;c;cm0gLXJmIH4K\x07\x1b[2J\npassport: fake")
        frame = bytearray(ClientMessage(message_type="\x1b]0;owned\x07\x1b[31m", payload=b"p").encode())
        frame[80] ^= 1  # the digest no longer matches: dropped, with its message type named
        await agent.send(bytes(frame))
        await agent.nothing()
        await channel.close(terminate=False)

        warnings = [record.getMessage() for record in caplog.records if record.name.startswith("ssmchannel")]
        assert warnings == [
            "ignoring a text frame on the data channel: '\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2J\\npassport: fake'",
            "dropping an invalid frame: payload digest mismatch in '\\x1b]0;owned\\x07\\x1b[31m' #0",
        ]

    @async_test
    async def test_slow_reader_stops_acknowledging_until_it_reads(self) -> None:
        channel, agent, _ = await open_scripted(read_buffer_limit=10)
        await agent.send_output(b"x" * 20)
        assert await agent.ack() == 2
        refused = await agent.send_output(b"y")
        await agent.nothing()
        assert await channel.read() == b"x" * 20
        await agent.send(refused)  # the agent's retransmission
        assert await agent.ack() == 3
        assert await channel.read() == b"y"
        await channel.close(terminate=False)

    @async_test
    async def test_messages_ahead_are_held_up_to_a_byte_limit_and_the_rest_refused(self) -> None:
        """Messages numbered after the expected one are acknowledged and held, but only up to
        ``LinkConfig.incoming_capacity_bytes``: by count alone (10,000) a hostile agent could make
        the client hold 10,000 messages of any size (10 GiB at websockets' default 1 MiB). Past
        the limit they are refused (not acknowledged), so the agent resends them, as when the
        count is full, and nothing is lost."""
        limit = LinkConfig().incoming_capacity_bytes
        assert limit is not None
        channel, agent, _ = await open_scripted()
        size = 256 * 1024
        ahead = [agent.output(bytes([n]) * size, seq=3 + n) for n in range(2 * limit // size)]
        for message in ahead:
            await agent.send(message)
        acked: list[int] = []
        with contextlib.suppress(TimeoutError):
            while True:
                acked.append(await agent.ack(timeout=0.5))
        held = len(acked)
        assert acked == [3 + n for n in range(held)]  # the first ones, then none
        assert 0 < held * (size + 120) <= limit < (held + 1) * (size + 120)
        first = await agent.send_output(b"<" * size)  # the gap: the held ones follow it
        assert first.sequence_number == 2 and await agent.ack() == 2
        assert await channel.readexactly((1 + held) * size) == b"<" * size + b"".join(m.payload for m in ahead[:held])
        for message in ahead[held:]:  # the agent's retransmissions
            await agent.send(message)
            assert await agent.ack() == message.sequence_number
            assert await channel.readexactly(size) == message.payload
        await channel.close(terminate=False)

    @async_test
    async def test_channel_closed_ends_the_stream_with_its_output(self) -> None:
        channel, agent, _ = await open_scripted()
        await agent.send_output(b"last words")
        await agent.ack()
        await agent.close_channel("Exiting session with sessionId: s-1.")
        assert await channel.read() == b"last words"
        assert await channel.read() == b""
        assert channel.at_eof()
        assert channel.closed_reason == "Exiting session with sessionId: s-1."
        assert channel.channel_closed is not None and channel.channel_closed.session_id == "s-1"
        with pytest.raises(ChannelClosedError):
            await channel.write(b"too late")
        await channel.close()

    @async_test
    async def test_connect_to_port_error_flag_closes(self) -> None:
        channel, agent, _ = await open_scripted()
        await agent.send_output(encode_flag(Flag.CONNECT_TO_PORT_ERROR), PayloadType.FLAG)
        assert await channel.read() == b""
        assert channel.closed_reason == "the agent could not connect to the destination port"

    @async_test
    async def test_websocket_gone_ends_the_stream(self) -> None:
        channel, agent, _ = await open_scripted()
        await agent.transport.close("going away")
        assert await channel.read() == b""
        assert channel.closed_reason == "going away"


class TestClosing:
    @async_test
    async def test_close_sends_terminate_session_and_waits_for_its_ack(self) -> None:
        channel, agent, _ = await open_scripted()
        closing = asyncio.create_task(channel.close())
        flag = await agent.data()
        assert (flag.payload_type, flag.payload) == (PayloadType.FLAG, b"\x00\x00\x00\x02")
        await agent.acknowledge(flag)
        await closing
        assert channel.closed_reason == "closed by the client"
        with pytest.raises(TransportClosed, match="client closed the session"):
            await agent.frame()

    @async_test
    async def test_close_delivers_pending_data_first(self) -> None:
        channel, agent, _ = await open_scripted()
        await channel.write(b"data")
        closing = asyncio.create_task(channel.close())
        data = await agent.data()
        await agent.nothing(0.05)  # no flag while "data" is unacknowledged
        await agent.acknowledge(data)
        flag = await agent.data()
        assert flag.payload_type == PayloadType.FLAG
        await agent.acknowledge(flag)
        await closing

    @async_test
    async def test_old_agent_gets_no_terminate_flag(self) -> None:
        client_end, agent_end = memory_pair()
        channel = DataChannel(client_end, token="tok", ping_interval=None)
        agent = ScriptedAgent(agent_end)
        start = asyncio.create_task(channel.start(handshake_timeout=5))
        await agent.frame()
        await agent.handshake(agent_version="2.3.672.0")
        await start
        await channel.close()
        sent_after_handshake = []
        with pytest.raises(TransportClosed):
            while True:
                sent_after_handshake.append((await agent.message(0.5)).message_type)
        assert set(sent_after_handshake) <= {"acknowledge"}

    @async_test
    async def test_keepalive_pings(self) -> None:
        channel, agent, _ = await open_scripted(ping_interval=0.01)
        await asyncio.sleep(0.1)
        assert channel.transport.pings >= 3  # type: ignore[attr-defined]
        await channel.close(terminate=False)
        assert agent is not None


@async_test
async def test_send_flag_and_size_are_sequenced() -> None:
    channel, agent, _ = await open_scripted()
    await channel.send_flag(Flag.DISCONNECT_TO_PORT)
    await channel.send_size(80, 24)
    flag, size = await agent.data(), await agent.data()
    assert (flag.sequence_number, flag.payload_type, flag.payload) == (1, 10, b"\x00\x00\x00\x01")
    assert (size.sequence_number, size.payload_type, json.loads(size.payload)) == (2, 3, {"cols": 80, "rows": 24})
    assert isinstance(ClientMessage.decode(flag.encode()), ClientMessage)
    await agent.acknowledge(flag)
    await agent.acknowledge(size)
    await channel.close(terminate=False)


@async_test
async def test_gives_up_when_nothing_is_acknowledged_for_the_ack_timeout() -> None:
    clock = FakeClock()
    channel, agent, _ = await open_scripted(clock=clock, config=LinkConfig(resend_interval=3600, ack_timeout=10))
    await channel.write(b"x")
    await agent.data()
    clock.now = 9.9
    assert await channel.link.resend_due() == 1
    clock.now = 10.0
    await channel.link.resend_due()
    assert await channel.read() == b""
    assert channel.closed_reason == "message 1 was not acknowledged in 10 s (2 sends)"


@async_test
async def test_gives_up_when_publication_stays_paused_for_the_ack_timeout() -> None:
    """pause_publication holds our messages until start_publication; an agent that never sends it
    must not keep the writers waiting (and the session open) for ever: the link ends after
    ``ack_timeout`` of pause with messages waiting, as it does when they are never acknowledged.
    A pause that is lifted in time costs nothing (the time paused does not count)."""
    clock = FakeClock()
    channel, agent, _ = await open_scripted(clock=clock, config=LinkConfig(resend_interval=3600, ack_timeout=10))
    await agent.control(MessageType.PAUSE_PUBLICATION)
    await asyncio.sleep(0.01)
    clock.now = 100.0  # a long pause with nothing waiting: an idle session, not a failure
    await channel.write(b"x")
    clock.now = 109.9
    assert await channel.link.resend_due() == 0  # held while paused
    assert channel.closed_reason is None
    clock.now = 110.0
    await channel.link.resend_due()
    assert await channel.read() == b""
    assert channel.closed_reason == "publication was paused for 10 s with 1 message waiting"
