"""ClientMessage and payloads against byte vectors written out by hand from the layout.

The vectors are literal hex typed field by field from the table in ssmchannel.messages
(and aws/session-manager-plugin's clientmessage.go), never produced by the encoder, so an
encoder and decoder that agree with each other but not with the wire fail here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import uuid

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ssmchannel.errors import MessageError
from ssmchannel.messages import (
    AcknowledgeContent,
    ActionStatus,
    ChannelClosed,
    ClientMessage,
    Flag,
    HandshakeComplete,
    HandshakeRequest,
    HandshakeResponse,
    MessageType,
    OpenDataChannelInput,
    PayloadType,
    ProcessedClientAction,
    acknowledge_frame,
    acknowledge_message,
    decode_flag,
    encode_flag,
    encode_frame,
    peek_message_type,
    version_tuple,
)
from ssmchannel.messages.fast import padded_type, read_acknowledged_sequence, read_stream_message


def h(text: str) -> bytes:
    """Hex with spaces and newlines allowed, so vectors can be laid out field by field."""
    return bytes.fromhex("".join(text.split()))


SPACES_15 = "20" * 15

# input_stream_data #5, payload "hi" (Output), CreatedDate 0x0102030405060708,
# MessageId 00112233-4455-6677-8899-aabbccddeeff.
INPUT_HI = h(
    f"""
    00000074
    696e7075745f73747265616d5f64617461 {SPACES_15}
    00000001
    0102030405060708
    0000000000000005
    0000000000000000
    8899aabbccddeeff 0011223344556677
    8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4
    00000001
    00000002
    6869
    """
)
MESSAGE_ID = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")

# acknowledge, sequence 0, flags 3 (SYN|FIN), empty-digest rules do not apply: payload below.
ACK_PAYLOAD = (
    b'{"AcknowledgedMessageType":"output_stream_data",'
    b'"AcknowledgedMessageId":"00112233-4455-6677-8899-aabbccddeeff",'
    b'"AcknowledgedMessageSequenceNumber":7,"IsSequentialMessage":true}'
)


def ack_frame() -> bytes:
    return (
        h(
            f"""
            00000074
            61636b6e6f776c65646765 {"20" * 21}
            00000001
            0000018bcfe56800
            0000000000000000
            0000000000000003
            0000000000000000 ffffffffffffffff
            """
        )
        + hashlib.sha256(ACK_PAYLOAD).digest()
        + h("00000000")
        + len(ACK_PAYLOAD).to_bytes(4, "big")
        + ACK_PAYLOAD
    )


class TestClientMessage:
    def test_decode_hand_vector(self) -> None:
        message = ClientMessage.decode(INPUT_HI)
        assert message.message_type == "input_stream_data"
        assert message.schema_version == 1
        assert message.created_date == 72623859790382856
        assert message.sequence_number == 5
        assert message.flags == 0
        assert message.message_id == MESSAGE_ID
        assert message.payload_type == PayloadType.OUTPUT
        assert message.payload == b"hi"

    def test_encode_matches_hand_vector(self) -> None:
        message = ClientMessage(
            message_type=MessageType.INPUT_STREAM_DATA,
            sequence_number=5,
            flags=0,
            payload_type=1,
            payload=b"hi",
            message_id=MESSAGE_ID,
            created_date=0x0102030405060708,
        )
        assert message.encode() == INPUT_HI

    def test_layout_offsets(self) -> None:
        assert len(INPUT_HI) == 122
        assert INPUT_HI[:4] == b"\x00\x00\x00\x74"  # 116: PayloadLength is not part of the header
        assert INPUT_HI[120:] == b"hi"  # payload at HeaderLength + 4
        # The UUID's halves are swapped: least significant 8 bytes first.
        assert INPUT_HI[64:80] == MESSAGE_ID.bytes[8:] + MESSAGE_ID.bytes[:8]

    def test_acknowledge_vector(self) -> None:
        message = ClientMessage.decode(ack_frame())
        assert message.message_type == MessageType.ACKNOWLEDGE
        assert message.flags == 3
        assert message.created_date == 0x18BCFE56800
        assert message.message_id == uuid.UUID("ffffffff-ffff-ffff-0000-000000000000")
        ack = AcknowledgeContent.from_payload(message.payload)
        assert ack == AcknowledgeContent("output_stream_data", str(MESSAGE_ID), 7, True)

    def test_negative_sequence_number_is_signed(self) -> None:
        frame = bytearray(INPUT_HI)
        frame[48:56] = h("ffffffffffffffff")
        assert ClientMessage.decode(bytes(frame)).sequence_number == -1

    @pytest.mark.parametrize(
        ("message_type", "padded"),
        [
            ("input_stream_data", "696e7075745f73747265616d5f64617461" + SPACES_15),
            ("output_stream_data", "6f75747075745f73747265616d5f64617461" + "20" * 14),
            ("acknowledge", "61636b6e6f776c65646765" + "20" * 21),
            ("channel_closed", "6368616e6e656c5f636c6f736564" + "20" * 18),
            ("start_publication", "73746172745f7075626c69636174696f6e" + SPACES_15),
            ("pause_publication", "70617573655f7075626c69636174696f6e" + SPACES_15),
        ],
    )
    def test_message_type_names_are_space_padded(self, message_type: str, padded: str) -> None:
        frame = ClientMessage(message_type=MessageType(message_type)).encode()
        assert frame[4:36] == h(padded)
        assert peek_message_type(frame) == message_type

    def test_payload_and_flag_numbers(self) -> None:
        assert [p.value for p in PayloadType] == list(range(1, 13))
        assert PayloadType.HANDSHAKE_REQUEST == 5
        assert PayloadType.FLAG == 10
        assert encode_flag(Flag.DISCONNECT_TO_PORT) == h("00000001")
        assert encode_flag(Flag.TERMINATE_SESSION) == h("00000002")
        assert encode_flag(Flag.CONNECT_TO_PORT_ERROR) == h("00000003")
        assert decode_flag(h("00000002")) is Flag.TERMINATE_SESSION
        assert decode_flag(h("00000009")) == 9

    def test_flag_payload_must_be_four_bytes(self) -> None:
        with pytest.raises(MessageError):
            decode_flag(b"\x00\x02")

    def test_decode_tolerates_nul_padding(self) -> None:
        frame = bytearray(INPUT_HI)
        frame[4 + 17 : 36] = b"\x00" * 15
        assert ClientMessage.decode(bytes(frame)).message_type == "input_stream_data"

    def test_publication_messages_need_no_digest(self) -> None:
        frame = bytearray(ClientMessage(message_type=MessageType.PAUSE_PUBLICATION, payload=b"x").encode())
        frame[80:112] = bytes(32)
        assert ClientMessage.decode(bytes(frame)).message_type == "pause_publication"

    def test_empty_payload_digest_is_sha256_of_nothing(self) -> None:
        frame = ClientMessage(message_type=MessageType.START_PUBLICATION).encode()
        assert frame[80:112] == h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        assert len(frame) == 120


class TestDecodeRejects:
    def test_truncated_header(self) -> None:
        with pytest.raises(MessageError, match="shorter"):
            ClientMessage.decode(INPUT_HI[:119])

    def test_wrong_header_length(self) -> None:
        with pytest.raises(MessageError, match="header length"):
            ClientMessage.decode(h("00000075") + INPUT_HI[4:])

    def test_payload_longer_than_declared(self) -> None:
        with pytest.raises(MessageError, match="payload length"):
            ClientMessage.decode(INPUT_HI + b"!")

    def test_payload_shorter_than_declared(self) -> None:
        with pytest.raises(MessageError, match="payload length"):
            ClientMessage.decode(INPUT_HI[:-1])

    def test_digest_mismatch(self) -> None:
        corrupted = INPUT_HI[:-1] + b"o"  # "ho" under the digest of "hi"
        with pytest.raises(MessageError, match="digest"):
            ClientMessage.decode(corrupted)

    def test_empty_message_type(self) -> None:
        with pytest.raises(MessageError, match="empty"):
            ClientMessage.decode(INPUT_HI[:4] + b" " * 32 + INPUT_HI[36:])

    def test_non_ascii_message_type(self) -> None:
        with pytest.raises(MessageError, match="ASCII"):
            ClientMessage.decode(INPUT_HI[:4] + b"\xff" * 32 + INPUT_HI[36:])

    def test_encode_refuses_out_of_range(self) -> None:
        with pytest.raises(MessageError):
            ClientMessage(message_type="x" * 33).encode()
        with pytest.raises(MessageError):
            ClientMessage(message_type="acknowledge", sequence_number=2**63).encode()
        with pytest.raises(MessageError):
            ClientMessage(message_type="acknowledge", flags=-1).encode()


class TestPayloads:
    def test_open_frame(self) -> None:
        text = OpenDataChannelInput(
            token_value="tok", client_id="cid", client_version="1.1.61.0", request_id="r"
        ).to_json()
        assert json.loads(text) == {
            "MessageSchemaVersion": "1.0",
            "RequestId": "r",
            "TokenValue": "tok",
            "ClientId": "cid",
            "ClientVersion": "1.1.61.0",
        }
        assert OpenDataChannelInput.from_json(text).token_value == "tok"

    def test_open_frame_requires_token(self) -> None:
        with pytest.raises(MessageError):
            OpenDataChannelInput.from_json('{"MessageSchemaVersion":"1.0"}')

    def test_acknowledge_payload_keys(self) -> None:
        payload = AcknowledgeContent("output_stream_data", "id", 3).to_payload()
        assert json.loads(payload) == {
            "AcknowledgedMessageType": "output_stream_data",
            "AcknowledgedMessageId": "id",
            "AcknowledgedMessageSequenceNumber": 3,
            "IsSequentialMessage": True,
        }

    def test_acknowledge_message_frame(self) -> None:
        received = ClientMessage.decode(INPUT_HI)
        ack = ClientMessage.decode(acknowledge_message(received).encode())
        assert (ack.message_type, ack.sequence_number, ack.flags, ack.payload_type) == ("acknowledge", 0, 3, 0)
        assert json.loads(ack.payload) == {
            "AcknowledgedMessageType": "input_stream_data",
            "AcknowledgedMessageId": "00112233-4455-6677-8899-aabbccddeeff",
            "AcknowledgedMessageSequenceNumber": 5,
            "IsSequentialMessage": True,
        }

    def test_acknowledge_frame_matches_the_message(self) -> None:
        received = ClientMessage.decode(INPUT_HI)
        fast = ClientMessage.decode(acknowledge_frame(received))
        slow = acknowledge_message(received)
        assert fast.payload == slow.payload  # byte for byte: the same JSON
        assert (fast.message_type, fast.sequence_number, fast.flags, fast.payload_type) == ("acknowledge", 0, 3, 0)
        assert fast.message_id.version == 4

    def test_encode_frame_matches_client_message(self) -> None:
        frame = encode_frame(MessageType.OUTPUT_STREAM_DATA, 7, 1, PayloadType.OUTPUT, b"abc")
        message = ClientMessage.decode(frame)
        same = ClientMessage(
            MessageType.OUTPUT_STREAM_DATA, 7, 1, PayloadType.OUTPUT, b"abc", message.message_id, message.created_date
        )
        assert same.encode() == frame
        assert message.message_id.version == 4
        assert message.message_id.variant == uuid.RFC_4122

    def test_acknowledge_in_another_shape_still_parses(self) -> None:
        # Keys reordered, spaces, a type that is not ours: the JSON parser reads what the fast path does not.
        payload = (
            b'{ "IsSequentialMessage": false, "AcknowledgedMessageSequenceNumber": 9,'
            b' "AcknowledgedMessageId": "x", "AcknowledgedMessageType": "Output \\"odd\\"" }'
        )
        assert AcknowledgeContent.from_payload(payload) == AcknowledgeContent('Output "odd"', "x", 9, False)

    def test_acknowledge_rejects_wrong_types(self) -> None:
        with pytest.raises(MessageError):
            AcknowledgeContent.from_payload(b'{"AcknowledgedMessageSequenceNumber":"7"}')
        with pytest.raises(MessageError):
            AcknowledgeContent.from_payload(b'{"AcknowledgedMessageSequenceNumber":true}')
        with pytest.raises(MessageError):
            AcknowledgeContent.from_payload(b"[1]")
        with pytest.raises(MessageError):
            AcknowledgeContent.from_payload(b"\xff")

    def test_handshake_request_as_the_agent_sends_it(self) -> None:
        payload = (
            b'{"AgentVersion":"3.3.1142.0","RequestedClientActions":['
            b'{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port",'
            b'"Properties":{"portNumber":"22"}}},'
            b'{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"arn:aws:kms:key"}}]}'
        )
        request = HandshakeRequest.from_payload(payload)
        assert request.agent_version == "3.3.1142.0"
        assert [a.action_type for a in request.requested_client_actions] == ["SessionType", "KMSEncryption"]
        assert request.requested_client_actions[0].action_parameters == {
            "SessionType": "Port",
            "Properties": {"portNumber": "22"},
        }
        assert HandshakeRequest.from_payload(request.to_payload()) == request

    def test_handshake_response_shape(self) -> None:
        response = HandshakeResponse(
            client_version="1.1.61.0",
            processed_client_actions=(
                ProcessedClientAction("SessionType", ActionStatus.SUCCESS),
                ProcessedClientAction("KMSEncryption", ActionStatus.FAILED, error="no KMS"),
            ),
            errors=("no KMS",),
        )
        assert json.loads(response.to_payload()) == {
            "ClientVersion": "1.1.61.0",
            "ProcessedClientActions": [
                {"ActionType": "SessionType", "ActionStatus": 1, "ActionResult": None, "Error": ""},
                {"ActionType": "KMSEncryption", "ActionStatus": 2, "ActionResult": None, "Error": "no KMS"},
            ],
            "Errors": ["no KMS"],
        }
        assert HandshakeResponse.from_payload(response.to_payload()) == response

    def test_handshake_response_from_go_with_null_errors(self) -> None:
        response = HandshakeResponse.from_payload(
            b'{"ClientVersion":"1.2.0.0","ProcessedClientActions":[],"Errors":null}'
        )
        assert response.errors == ()

    def test_handshake_complete(self) -> None:
        complete = HandshakeComplete.from_payload(b'{"HandshakeTimeToComplete":1500000000,"CustomerMessage":"hello"}')
        assert complete == HandshakeComplete(1_500_000_000, "hello")
        assert json.loads(complete.to_payload()) == {"HandshakeTimeToComplete": 1500000000, "CustomerMessage": "hello"}

    def test_channel_closed(self) -> None:
        payload = (
            b'{"MessageId":"m","CreatedDate":"2026-11-01T10:00:00.000Z","DestinationId":"i-0abc",'
            b'"SessionId":"alice-0123","MessageType":"channel_closed","SchemaVersion":1,"Output":"bye"}'
        )
        closed = ChannelClosed.from_payload(payload)
        assert (closed.session_id, closed.output, closed.destination_id) == ("alice-0123", "bye", "i-0abc")
        assert json.loads(closed.to_payload()) == json.loads(payload)

    def test_version_tuple(self) -> None:
        assert version_tuple("2.3.722.0") > version_tuple("2.3.672.0")
        assert version_tuple("3.0") > version_tuple("2.99.99.99")
        assert version_tuple("10") == (10,)

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "garbage",
            "2..3",
            "2.3.",
            ".2.3",
            "+2.3",
            "-1",
            "2.-3",
            " 2.3",
            "2.3 ",
            "2_3.1",
            "\u0662.3",
            "2.3.4a",
            "1" * 10,
        ],
    )
    def test_version_tuple_refuses_what_is_not_a_dotted_number(self, bad: str) -> None:
        # Unknown is older than every real version, so a minimum-version check refuses it.
        assert version_tuple(bad) == (0,)
        assert version_tuple(bad) < version_tuple("0.0.1")


messages = st.builds(
    ClientMessage,
    message_type=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=32),
    sequence_number=st.integers(-(2**63), 2**63 - 1),
    flags=st.integers(0, 2**64 - 1),
    payload_type=st.integers(0, 2**32 - 1),
    payload=st.binary(max_size=2048),
    message_id=st.uuids(),
    created_date=st.integers(0, 2**64 - 1),
    schema_version=st.integers(0, 2**32 - 1),
)


@given(messages)
def test_encode_decode_round_trip(message: ClientMessage) -> None:
    assert ClientMessage.decode(message.encode()) == message


@given(st.binary(max_size=400))
def test_decode_never_fails_other_than_message_error(frame: bytes) -> None:
    with contextlib.suppress(MessageError):
        ClientMessage.decode(frame)


@given(messages, st.integers(0, 10_000), st.integers(1, 255))
def test_any_corrupted_payload_byte_is_detected(message: ClientMessage, where: int, xor: int) -> None:
    assume(message.payload)
    assume(message.message_type not in (MessageType.START_PUBLICATION, MessageType.PAUSE_PUBLICATION))
    frame = bytearray(message.encode())
    frame[120 + where % len(message.payload)] ^= xor
    with pytest.raises(MessageError):
        ClientMessage.decode(bytes(frame))


@given(messages, st.sampled_from([MessageType.OUTPUT_STREAM_DATA, MessageType.INPUT_STREAM_DATA]))
def test_the_fast_read_of_a_stream_message_equals_decode(message: ClientMessage, kind: MessageType) -> None:
    message = dataclasses.replace(message, message_type=kind.value)
    frame = message.encode()
    fast = read_stream_message(frame, padded_type(kind))
    assert fast is not None
    for name in ("message_type", "sequence_number", "flags", "payload_type", "payload", "message_id", "created_date"):
        assert getattr(fast, name) == getattr(message, name), name
    assert acknowledge_frame(fast)[120:] == acknowledge_frame(message)[120:]  # the same ack payload
    assert read_stream_message(frame, padded_type(MessageType.ACKNOWLEDGE)) is None  # another type: decode's


@given(messages, st.booleans(), st.integers(0, 10_000), st.integers(1, 255))
def test_the_fast_reads_refuse_what_decode_refuses(message: ClientMessage, ack: bool, where: int, xor: int) -> None:
    """One corrupted byte in a field decode checks (lengths, type, digest, payload): never a message."""
    if ack:
        payload = AcknowledgeContent("output_stream_data", str(message.message_id), 7).to_payload()
        message = dataclasses.replace(message, message_type=MessageType.ACKNOWLEDGE.value, payload=payload)
    else:
        message = dataclasses.replace(message, message_type=MessageType.OUTPUT_STREAM_DATA.value)
    frame = bytearray(message.encode())
    checked = [*range(0, 36), *range(80, 112), *range(116, len(frame))]
    frame[checked[where % len(checked)]] ^= xor
    try:
        ClientMessage.decode(bytes(frame))
    except MessageError:
        assert read_stream_message(bytes(frame), padded_type(MessageType.OUTPUT_STREAM_DATA)) is None
        assert read_acknowledged_sequence(bytes(frame)) is None


def test_the_fast_read_of_an_acknowledge_takes_only_the_canonical_shape() -> None:
    ack = AcknowledgeContent("output_stream_data", str(uuid.uuid4()), 41)
    frame = ClientMessage(MessageType.ACKNOWLEDGE, 0, 3, 0, ack.to_payload()).encode()
    assert read_acknowledged_sequence(frame) == 41
    spaced = ClientMessage(
        MessageType.ACKNOWLEDGE, 0, 3, 0, json.dumps({"AcknowledgedMessageSequenceNumber": 5}).encode()
    )
    assert read_acknowledged_sequence(spaced.encode()) is None  # ClientMessage.decode and JSON take it
    data = ClientMessage(MessageType.OUTPUT_STREAM_DATA, 41, 0, 1, ack.to_payload()).encode()
    assert read_acknowledged_sequence(data) is None
