"""A far end's JSON payload nested deeper than any real one, and errors the link does not expect.

``json.loads(b"[" * 100_000)`` (well within MAX_MESSAGE_SIZE) raises RecursionError, not
ValueError: it escaped the payload parsers, killed the link's receive task, and left the channel
open with nothing reading it, its reader waiting for ever. Such a payload is a MessageError now,
like any other unreadable one, and an error the link's loops do not expect closes the link with
a reason instead of leaving it hung.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from ssmchannel.channel import DataChannel
from ssmchannel.errors import ChannelClosedError, MessageError
from ssmchannel.link import ReliableLink
from ssmchannel.messages import (
    AcknowledgeContent,
    ChannelClosed,
    ClientMessage,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    MessageType,
    OpenDataChannelInput,
    PayloadType,
)
from ssmchannel.messages.payloads import MAX_JSON_DEPTH
from ssmchannel.transport import memory_pair
from tests.ssmchannel.aio import ScriptedAgent, async_test, open_scripted

NESTED = b"[" * 100_000
PARSERS = [
    ChannelClosed.from_payload,
    HandshakeRequest.from_payload,
    HandshakeResponse.from_payload,
    HandshakeComplete.from_payload,
    AcknowledgeContent.from_payload,
    OpenDataChannelInput.from_json,
]


def _nested_object(depth: int) -> bytes:
    """A JSON object ``depth`` levels deep, as a HandshakeResponse's field might carry it."""
    return b'{"ClientVersion":"1.1.61.0","x":' + b'{"a":' * (depth - 1) + b"1" + b"}" * (depth - 1) + b"}"


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("payload", [NESTED, b"{" * 5000, b'{"a":' * 5000])
def test_a_payload_nested_beyond_the_limit_is_a_message_error(parse: Callable[[Any], object], payload: bytes) -> None:
    with pytest.raises(MessageError, match="nests deeper"):
        parse(payload)


def test_an_opening_as_text_nested_beyond_the_limit_is_a_message_error() -> None:
    with pytest.raises(MessageError, match="nests deeper"):
        OpenDataChannelInput.from_json(NESTED.decode())


@pytest.mark.parametrize("parse", PARSERS)
def test_what_the_parser_itself_cannot_take_is_a_message_error(parse: Callable[[Any], object]) -> None:
    with pytest.raises(MessageError):
        parse(b'{"a":' + b"\xff\xfe\x00\x1b[2J" + "\u202e".encode() + b"}")


def test_the_limit_counts_nesting_and_not_brackets_in_strings_or_side_by_side() -> None:
    assert HandshakeResponse.from_payload(_nested_object(MAX_JSON_DEPTH)).client_version == "1.1.61.0"
    with pytest.raises(MessageError, match="nests deeper"):
        HandshakeResponse.from_payload(_nested_object(MAX_JSON_DEPTH + 1))
    # Brackets inside strings (escaped quotes too) are text, and many lists side by side are shallow.
    text = '[[[{{{\\"' * 1000
    response = HandshakeResponse.from_payload(
        b'{"ClientVersion":"1.1.61.0","Errors":["' + text.encode() + b'"],"x":[' + b"[1]," * 1000 + b"[2]]}"
    )
    assert response.errors == (text.replace('\\"', '"'),)


@async_test
async def test_a_deeply_nested_channel_closed_ends_the_channel_and_wakes_its_reader() -> None:
    channel, agent, _ = await open_scripted()
    reading = asyncio.ensure_future(channel.read())
    await asyncio.sleep(0.05)
    await agent.control(MessageType.CHANNEL_CLOSED, NESTED)
    try:
        data = await asyncio.wait_for(reading, 3)
    except ChannelClosedError:
        data = b""
    assert data == b""
    assert channel.closed_reason is not None and channel.link.closed
    await channel.close(terminate=False)


@pytest.mark.parametrize("payload_type", [PayloadType.HANDSHAKE_REQUEST, PayloadType.HANDSHAKE_COMPLETE])
@async_test
async def test_a_deeply_nested_handshake_message_mid_session_does_not_stop_the_channel(
    payload_type: PayloadType,
) -> None:
    channel, agent, _ = await open_scripted()
    await agent.send_output(NESTED, payload_type)
    await agent.send_output(b"still here")
    assert await asyncio.wait_for(channel.read(), 3) == b"still here"
    assert channel.closed_reason is None
    await channel.close(terminate=False)


@async_test
async def test_a_deeply_nested_first_handshake_request_is_answered_with_the_reason() -> None:
    """Answered anyway, so the agent can fail the session with a reason instead of timing out."""
    client_end, agent_end = memory_pair()
    channel = DataChannel(client_end, token="tok", ping_interval=None)
    agent = ScriptedAgent(agent_end)
    start = asyncio.create_task(channel.start(handshake_timeout=5))
    await agent.frame()
    await agent.send_output(NESTED, PayloadType.HANDSHAKE_REQUEST)
    reply = await agent.data()
    assert reply.payload_type == PayloadType.HANDSHAKE_RESPONSE
    assert any("unreadable HandshakeRequest" in error for error in HandshakeResponse.from_payload(reply.payload).errors)
    start.cancel()
    await channel.close(terminate=False)


@async_test
async def test_handshake_requests_repeated_mid_session_do_not_grow_the_outgoing_window() -> None:
    """Each HandshakeRequest was answered, from inside the receiver and so without waiting for
    window space, with a response several times its size (the action type echoed in the action,
    its error and the errors, each non-ASCII character escaped to six bytes): 60 requests of 60 KB
    that the agent never acknowledged left 32 MB in the window, limited to 2.3 MB. Only the first
    request of a session is answered now (an agent sends one)."""
    channel, agent, _ = await open_scripted()
    action_type = "\u00e9" * 30_000
    payload = json.dumps(
        {"AgentVersion": "3.3.1142.0", "RequestedClientActions": [{"ActionType": action_type}]}, ensure_ascii=False
    ).encode()
    for _ in range(60):
        await agent.send_output(payload, PayloadType.HANDSHAKE_REQUEST)
    await agent.send_output(b"after them")
    assert await asyncio.wait_for(channel.read(), 5) == b"after them"  # every request was taken before it

    window = channel.link.window
    assert (len(window), window.bytes) == (0, 0)
    assert channel.closed_reason is None
    await channel.close(terminate=False)


@async_test
async def test_a_deeply_nested_acknowledge_is_ignored() -> None:
    channel, agent, _ = await open_scripted()
    await agent.control(MessageType.ACKNOWLEDGE, NESTED)
    await agent.send_output(b"after it")
    assert await asyncio.wait_for(channel.read(), 3) == b"after it"
    await channel.close(terminate=False)


class _Broken:
    """A handler with a bug: delivering a message raises what the link does not expect."""

    def accepts(self, message: ClientMessage) -> bool:
        return True

    async def deliver(self, message: ClientMessage) -> None:
        raise KeyError("\x1b[2J\nfar end's text")

    async def control(self, message: ClientMessage) -> None:
        return None


@async_test
async def test_an_unexpected_error_in_the_link_closes_it_with_a_reason() -> None:
    near, far = memory_pair()
    link = ReliableLink(near, _Broken(), outgoing_type=MessageType.INPUT_STREAM_DATA,
                        incoming_type=MessageType.OUTPUT_STREAM_DATA)  # fmt: skip
    running = asyncio.ensure_future(link.run())
    writer = asyncio.ensure_future(link.wait_all_acked())
    await link.send_data(PayloadType.OUTPUT, b"unacknowledged")  # something for a waiter to wait on
    message = ClientMessage(message_type=MessageType.OUTPUT_STREAM_DATA, sequence_number=0, payload=b"x")
    await far.send(message.encode())

    reason = await asyncio.wait_for(running, 3)

    assert reason == "internal error in the data channel (KeyError)" == link.closed_reason
    assert await asyncio.wait_for(writer, 3) is False
    with pytest.raises(ChannelClosedError):
        await link.send_data(PayloadType.OUTPUT, b"more")


def test_a_string_left_open_is_one_match_to_the_payloads_end() -> None:
    """The depth check strips strings before counting brackets: one a far end leaves open (escaped
    quotes all the way) is matched once, from its first quote to the end, not tried again at every
    quote after it (which made a 64 KiB payload a quadratic 12 s scan on the event loop)."""
    from ssmchannel.messages.payloads import _JSON_STRING

    payload = b"{" + b"[" * 40 + b'"' + b'\\"' * 2000
    found = _JSON_STRING.search(payload)
    assert found is not None and (found.start(), found.end()) == (41, len(payload))
    assert _JSON_STRING.search(b'["a\\') is not None  # a lone backslash at the end, too
    for parse in PARSERS:
        with pytest.raises(MessageError):
            parse(payload)
