"""smux v1 client: frames checked against bytes written by hand from the format, then sessions and
streams against a hand-written server (tests/ssmchannel/smux_peer.py)."""

from __future__ import annotations

import asyncio

import pytest

from ssmchannel.errors import ChannelClosedError
from ssmchannel.smux import Command, Frame, FrameDecoder, MuxSession, SmuxProtocolError, encode_frame
from tests.ssmchannel.aio import async_test
from tests.ssmchannel.smux_peer import FIN, NOP, PSH, SYN, frame, pipe


class TestFrames:
    def test_encodings_match_the_format(self) -> None:
        # version 1 | cmd | length u16 LE | stream id u32 LE | data
        assert encode_frame(Command.SYN, 3) == bytes.fromhex("01 00 0000 03000000")
        assert encode_frame(Command.FIN, 5) == bytes.fromhex("01 01 0000 05000000")
        assert encode_frame(Command.PSH, 3, b"hi") == bytes.fromhex("01 02 0200 03000000 6869")
        assert encode_frame(Command.NOP, 0) == bytes.fromhex("01 03 0000 00000000")
        long = encode_frame(Command.PSH, 0x01020304, b"x" * 258)
        assert long[:8] == bytes.fromhex("01 02 0201 04030201")
        assert long[8:] == b"x" * 258

    def test_encoding_refuses_what_the_format_cannot_hold(self) -> None:
        with pytest.raises(ValueError):
            encode_frame(Command.PSH, 3, b"x" * 65536)
        with pytest.raises(ValueError):
            encode_frame(Command.PSH, 2**32, b"")
        with pytest.raises(ValueError):
            encode_frame(Command.FIN, 3, b"x")

    def test_decoder_joins_frames_split_anywhere(self) -> None:
        wire = bytes.fromhex("01 02 0300 07000000 616263") + bytes.fromhex("01 01 0000 07000000")
        wire += bytes.fromhex("01 03 0000 00000000")
        decoder = FrameDecoder()
        frames = []
        for byte in wire:
            frames += decoder.feed(bytes([byte]))
        assert frames == [Frame(Command.PSH, 7, b"abc"), Frame(Command.FIN, 7), Frame(Command.NOP, 0)]
        assert FrameDecoder().feed(wire) == frames

    @pytest.mark.parametrize(
        "wire",
        [
            bytes.fromhex("02 02 0100 03000000 61"),  # version 2
            bytes.fromhex("01 04 0800 03000000") + bytes(8),  # UPD: version 2 only
            bytes.fromhex("01 07 0000 03000000"),  # no such command
            bytes.fromhex("01 01 0100 03000000 61"),  # FIN with data
            bytes.fromhex("01 03 0100 00000000 61"),  # NOP with data
        ],
    )
    def test_decoder_refuses_what_version_1_does_not_allow(self, wire: bytes) -> None:
        decoder = FrameDecoder()
        good = bytes.fromhex("01 02 0100 03000000 7a")
        assert decoder.feed(good + wire + good) == [Frame(Command.PSH, 3, b"z")]  # stops at the bad one
        assert isinstance(decoder.error, SmuxProtocolError)
        with pytest.raises(SmuxProtocolError):
            decoder.feed(good)


class TestSession:
    @async_test
    async def test_streams_have_odd_ids_from_3_and_carry_data(self) -> None:
        client_end, server_end = pipe()
        session = MuxSession(client_end)
        session.start()
        first, second = await session.open_stream(), await session.open_stream()
        assert (first.id, second.id) == (3, 5)
        await first.write(b"hello")
        await second.close_write()
        assert await server_end.read() == (
            bytes.fromhex("01 00 0000 03000000")
            + bytes.fromhex("01 00 0000 05000000")
            + bytes.fromhex("01 02 0500 03000000")
            + b"hello"
            + bytes.fromhex("01 01 0000 05000000")
        )
        await server_end.write(frame(PSH, 3, b"wor") + frame(PSH, 3, b"ld") + frame(FIN, 3))
        assert await first.read() == b"world"
        assert await first.read() == b""
        assert second.id in session.streams
        await server_end.write(frame(FIN, 5))
        await asyncio.sleep(0)
        assert session.streams.keys() == {first.id}  # 5: FIN both ways, forgotten
        await session.close()

    @async_test
    async def test_writes_are_split_into_frames_and_never_interleave(self) -> None:
        client_end, server_end = pipe()
        session = MuxSession(client_end, max_frame_data=1000)
        session.start()
        a, b = await session.open_stream(), await session.open_stream()
        await asyncio.gather(a.write(b"A" * 2500), b.write(b"B" * 1500))
        wire = await server_end.read()
        frames = []
        while wire:
            length, sid = int.from_bytes(wire[2:4], "little"), int.from_bytes(wire[4:8], "little")
            frames.append((wire[1], sid, wire[8 : 8 + length]))
            wire = wire[8 + length :]
        data = [(sid, payload) for cmd, sid, payload in frames if cmd == PSH]
        assert [len(p) for s, p in data if s == a.id] == [1000, 1000, 500]
        assert [len(p) for s, p in data if s == b.id] == [1000, 500]
        assert all(set(p) == {ord("A" if s == a.id else "B")} for s, p in data)
        await session.close()

    @async_test
    async def test_data_for_unknown_or_closed_streams_is_dropped(self) -> None:
        client_end, server_end = pipe()
        session = MuxSession(client_end)
        session.start()
        stream = await session.open_stream()
        await stream.close()
        await server_end.write(frame(PSH, 99, b"nobody") + frame(PSH, stream.id, b"late") + frame(SYN, 2))
        fresh = await session.open_stream()
        await server_end.write(frame(PSH, fresh.id, b"ok"))
        assert await fresh.read() == b"ok"
        assert stream.id not in session.streams and 2 not in session.streams
        await session.close()

    @async_test
    async def test_protocol_error_ends_every_stream(self) -> None:
        client_end, server_end = pipe()
        session = MuxSession(client_end)
        session.start()
        stream = await session.open_stream()
        await server_end.write(frame(PSH, stream.id, b"kept") + bytes.fromhex("01 04 0800 03000000") + bytes(8))
        await session.wait_closed()
        assert session.closed_reason is not None and "protocol" in session.closed_reason
        assert await stream.read() == b"kept"  # what arrived before still reads
        assert await stream.read() == b""
        with pytest.raises(ChannelClosedError):
            await stream.write(b"x")
        with pytest.raises(ChannelClosedError):
            await session.open_stream()

    @async_test
    async def test_channel_end_ends_the_session_with_its_reason(self) -> None:
        client_end, server_end = pipe()
        session = MuxSession(client_end)
        session.start()
        stream = await session.open_stream()
        server_end.end("The access request was completed")
        await session.wait_closed()
        assert session.closed_reason == "The access request was completed"
        assert await stream.read() == b""

    @async_test
    async def test_a_full_receive_buffer_stops_reading_the_channel(self) -> None:
        client_end, server_end = pipe()
        session = MuxSession(client_end, max_receive_buffer=100)
        session.start()
        stream = await session.open_stream()
        await server_end.write(frame(PSH, stream.id, b"a" * 120))
        await asyncio.sleep(0.05)
        read_before = client_end.bytes_read
        await server_end.write(frame(PSH, stream.id, b"b" * 10))
        await asyncio.sleep(0.05)
        assert client_end.bytes_read == read_before  # held back: nobody read stream's 120 bytes
        assert await stream.read() == b"a" * 120
        assert await stream.read() == b"b" * 10  # reading resumed
        await session.close()

    @async_test
    async def test_keepalive_sends_nops_on_stream_0(self) -> None:
        client_end, server_end = pipe()
        session = MuxSession(client_end, keepalive_interval=0.02)
        session.start()
        await asyncio.sleep(0.07)
        wire = await server_end.read()
        assert len(wire) >= 16 and wire[:16] == frame(NOP, 0) * 2
        await session.close()
        quiet, _ = pipe()
        assert MuxSession(quiet).keepalive_interval is None
