"""The terminal's envelope: what the browser may send, and the close code for everything else."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from terminal import frames

ROOT = Path(__file__).resolve().parents[2]


def envelope(**fields: object) -> str:
    return json.dumps({"v": 1, **fields})


def test_the_three_types_decode() -> None:
    assert frames.decode_text(envelope(type="input", data="ls caf\u00e9\r")) == frames.Input(data="ls café\r".encode())
    assert frames.decode_text(envelope(type="resize", cols=120, rows=40)) == frames.Resize(cols=120, rows=40)
    assert frames.decode_text(envelope(type="ping")) == frames.Ping()
    assert frames.decode_text(envelope(type="ack", id="Zm9v-YmFy_0")) == frames.Ack(id="Zm9v-YmFy_0")
    assert frames.decode_binary(b"\x1b[A") == frames.Input(data=b"\x1b[A")


def test_a_resize_is_kept_within_bounds() -> None:
    assert frames.decode_text(envelope(type="resize", cols=0, rows=10**9)) == frames.Resize(
        cols=1, rows=frames.MAX_ROWS
    )


@pytest.mark.parametrize(
    "text",
    [
        envelope(type="shell", command="id"),  # unknown type
        envelope(type=["input"], data="x"),
        envelope(data="x"),  # no type
        envelope(type="input"),  # no data
        envelope(type="input", data=["x"]),
        envelope(type="ack"),  # no id
        envelope(type="ack", id=7),
        envelope(type="ack", id=""),
        envelope(type="ack", id="x" * 65),
        envelope(type="ack", id="caf\u00e9"),  # not ASCII: never a mark the server sent
        envelope(type="ack", id="abc", bytes=1),  # an unexpected field
        envelope(type="input", data="x", extra=1),  # fields the type does not have
        envelope(type="resize", cols="80", rows=24),
        envelope(type="resize", cols=True, rows=24),
        envelope(type="resize", cols=80.5, rows=24),
        "not json",
        "[1, 2]",
        "null",
    ],
)
def test_a_malformed_frame_or_an_unknown_type_is_refused(text: str) -> None:
    with pytest.raises(frames.FrameRefused) as refused:
        frames.decode_text(text)
    assert refused.value.code == frames.CLOSE_BAD_FRAME == 4400


@pytest.mark.parametrize(
    "message",
    [
        {"type": "input", "data": "x"},  # no version
        {"v": 2, "type": "input", "data": "x"},
        {"v": 0, "type": "ping"},
        {"v": "1", "type": "ping"},
        {"v": True, "type": "ping"},
        {"v": 1.0, "type": "ping"},
    ],
)
def test_another_version_is_refused(message: dict[str, object]) -> None:
    with pytest.raises(frames.FrameRefused) as refused:
        frames.decode_text(json.dumps(message))
    assert refused.value.code == frames.CLOSE_UNSUPPORTED_VERSION == 4426
    assert "version 1" in refused.value.reason


def test_an_oversized_frame_is_refused_before_it_is_parsed() -> None:
    data = "x" * frames.MAX_FRAME_BYTES
    with pytest.raises(frames.FrameRefused) as refused:
        frames.decode_text(envelope(type="input", data=data))
    assert refused.value.code == frames.CLOSE_FRAME_TOO_LARGE == 4413
    # Counted in bytes, not characters: a frame of few but wide characters is too large as well.
    # (As JSON.stringify sends it: non-ASCII characters as they are.)
    wide = json.dumps({"v": 1, "type": "input", "data": "\u2603" * (frames.MAX_FRAME_BYTES // 3)}, ensure_ascii=False)
    assert len(wide) < frames.MAX_FRAME_BYTES
    with pytest.raises(frames.FrameRefused):
        frames.decode_text(wide)
    with pytest.raises(frames.FrameRefused) as binary:
        frames.decode_binary(b"x" * (frames.MAX_FRAME_BYTES + 1))
    assert binary.value.code == 4413
    # Just within the limit is fine.
    assert frames.decode_binary(b"x" * frames.MAX_FRAME_BYTES) == frames.Input(data=b"x" * frames.MAX_FRAME_BYTES)


def test_a_refusal_never_echoes_what_was_sent() -> None:
    with pytest.raises(frames.FrameRefused) as refused:
        frames.decode_text(envelope(type="<script>alert(1)</script>"))
    assert "script" not in refused.value.reason


def test_server_envelopes_carry_the_version() -> None:
    assert json.loads(frames.encode("closed", reason="bye")) == {"v": 1, "type": "closed", "reason": "bye"}


@pytest.mark.parametrize("module", ["terminal/frames.py", "terminal/session.py", "terminal/session_input.py"])
def test_the_session_and_its_frames_do_not_import_channels(module: str) -> None:
    # The consumer is the only part of a terminal written for Channels (the middleware aside).
    tree = ast.parse((ROOT / module).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not [name for name in imported if name == "channels" or name.startswith(("channels.", "daphne"))]


def test_a_refusal_quotes_unexpected_field_names_short_visible_and_few() -> None:
    # The reason is logged and becomes the session's end reason, shown to auditors.
    forged = "x\n2031-01-01 00:00:00 WARNING audit.integrity Logbook chain verified\u202e" + "y" * 500
    message = {"v": 1, "type": "ping", forged: 1, **{f"k{n}": n for n in range(20)}}

    with pytest.raises(frames.FrameRefused) as refused:
        frames.decode_text(json.dumps(message))

    reason = refused.value.reason
    assert "\n" not in reason and "\u202e" not in reason and "y" * 100 not in reason
    assert reason.startswith("Unexpected fields in a terminal frame: k0, k1, k10, k11, k12 and 16 more.")
    assert len(reason) < 200
    alone = {"v": 1, "type": "ping", forged: 1}
    with pytest.raises(frames.FrameRefused) as one:
        frames.decode_text(json.dumps(alone))
    assert one.value.reason == "Unexpected fields in a terminal frame: x\\x0a2031-01-01 00:00:00 WARNING audit.inte."


def test_a_frame_nested_past_the_recursion_limit_is_refused_not_raised() -> None:
    with pytest.raises(frames.FrameRefused) as refused:
        frames.decode_text("[" * 20000 + "]" * 20000)
    assert refused.value.code == frames.CLOSE_BAD_FRAME
