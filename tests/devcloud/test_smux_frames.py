"""devcloud's smux framing (the agent's side) against byte vectors written by hand.

Layout (xtaci/smux v1): version (1 byte, =1), command (1 byte: SYN 0, FIN 1, PSH 2, NOP 3),
data length (u16 little-endian), stream id (u32 little-endian), then the data.
"""

from __future__ import annotations

import pytest

from devcloud.streams.smux import FIN, NOP, PSH, SYN, UPD, Frame, FrameReader, SmuxProtocolError

# SYN for stream 1: 01 00 0000 01000000
SYN_1 = bytes([0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00])
# PSH "hi" on stream 3: 01 02 0200 03000000 6869
PSH_3_HI = bytes([0x01, 0x02, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x68, 0x69])
# FIN for stream 0x01020304: the id is little-endian.
FIN_BIG_ID = bytes([0x01, 0x01, 0x00, 0x00, 0x04, 0x03, 0x02, 0x01])
# NOP (keepalive) on stream 0.
NOP_0 = bytes([0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
# PSH of 0x0102 = 258 bytes on stream 5: the length is little-endian too.
PSH_5_LONG = bytes([0x01, 0x02, 0x02, 0x01, 0x05, 0x00, 0x00, 0x00]) + b"z" * 258


@pytest.mark.parametrize(
    ("frame", "wire"),
    [
        (Frame(SYN, 1), SYN_1),
        (Frame(PSH, 3, b"hi"), PSH_3_HI),
        (Frame(FIN, 0x01020304), FIN_BIG_ID),
        (Frame(NOP, 0), NOP_0),
        (Frame(PSH, 5, b"z" * 258), PSH_5_LONG),
    ],
)
def test_frames_encode_and_decode_as_written_by_hand(frame: Frame, wire: bytes) -> None:
    assert frame.encode() == wire
    assert FrameReader().feed(wire) == [frame]


def test_several_frames_in_one_payload_come_out_in_order() -> None:
    assert FrameReader().feed(SYN_1 + PSH_3_HI + NOP_0 + FIN_BIG_ID) == [
        Frame(SYN, 1),
        Frame(PSH, 3, b"hi"),
        Frame(NOP, 0),
        Frame(FIN, 0x01020304),
    ]


def test_a_frame_split_at_every_byte_is_reassembled() -> None:
    reader = FrameReader()
    out: list[Frame] = []
    wire = PSH_5_LONG + SYN_1
    for i in range(len(wire)):
        out += reader.feed(wire[i : i + 1])
        if i < len(PSH_5_LONG) - 1:
            assert out == []  # nothing before the last byte of the first frame
    assert out == [Frame(PSH, 5, b"z" * 258), Frame(SYN, 1)]


@pytest.mark.parametrize(
    "wire",
    [
        bytes([0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]),  # version 2 (smux v2) is not spoken
        bytes([0x01, 0x07, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]),  # unknown command
        bytes([0x01, 0x05, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]),
    ],
)
def test_broken_framing_is_a_protocol_error(wire: bytes) -> None:
    with pytest.raises(SmuxProtocolError):
        FrameReader().feed(wire)


def test_an_oversized_frame_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        Frame(PSH, 1, b"x" * 65536).encode()


def test_control_frames_are_the_header_alone_whatever_their_length_says() -> None:
    # As in the agent's smux v1.5.15: a SYN's length field is not read, so what follows is a header.
    syn_claiming_data = bytes([0x01, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00])
    assert FrameReader().feed(syn_claiming_data + NOP_0) == [Frame(SYN, 1), Frame(NOP, 0)]


def test_a_window_update_is_read_with_its_eight_bytes() -> None:
    upd = bytes([0x01, 0x04, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00]) + bytes(range(8))
    reader = FrameReader()
    assert reader.feed(upd[:12]) == []
    assert reader.feed(upd[12:] + SYN_1) == [Frame(UPD, 1, bytes(range(8))), Frame(SYN, 1)]
