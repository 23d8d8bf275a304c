"""The searchable text never leaves out what the terminal showed, or what a shell was typed.

The printed stream is cleaned as a VT500-style terminal reads it: the live terminal (xterm.js 6.0)
and the player (asciinema-player's emulator, avt). An escape string (OSC, DCS, SOS, PM, APC) ends
where they end it: at CAN or SUB (which cancel it), at ST (U+009C), and at any other C1 control;
an OSC also at BEL. Everything after shows, so it is text. The expected texts below are what both
emulators show for each stream (where they differ, what either shows). Each stream is also fed in
pieces, cut at every point, since a recording's events cut escape sequences anywhere.
"""

from __future__ import annotations

import random

import pytest

from terminal import transcript
from terminal.transcript import strip_escapes, transcript_from_events

# (stream printed, the text of what the terminal shows)
SHOWN = [
    # The review's case: a prompt ending in ESC ] CAN, and a command typed after it.
    ("$ \x1b]\x18cat /etc/shadow\r\nroot:x:0:0\r\n", "$ cat /etc/shadow\nroot:x:0:0\n"),
    ("$ \x1b]\x1acat /etc/shadow\r\n", "$ cat /etc/shadow\n"),
    ("$ \x1b]\x9ccat /etc/shadow\r\n", "$ cat /etc/shadow\n"),
    ("$ \x1b]0;title\x18cat /etc/shadow\r\n", "$ cat /etc/shadow\n"),
    # DCS, SOS, PM and APC strings end at CAN, SUB and ST too.
    ("a\x1bPq\x18secret", "asecret"),
    ("a\x1bPqsixel\x1asecret", "asecret"),
    ("a\x1bPqsixel\x9csecret", "asecret"),
    ("a\x1bX\x18secret", "asecret"),
    ("a\x1b^\x1asecret", "asecret"),
    ("a\x1b_\x18secret", "asecret"),
    ("a\x1b_apc\x9csecret", "asecret"),
    # The 8-bit introducers (each a character of its own in the recording's UTF-8).
    ("a\x9d0;title\x07secret", "asecret"),
    ("a\x9d0;title\x18secret", "asecret"),
    ("a\x9b31msecret\x9b0m", "asecret"),
    ("a\x90qdata\x9csecret", "asecret"),
    ("a\x98sos\x9csecret", "asecret"),
    ("a\x9epm\x9csecret", "asecret"),
    ("a\x9fapc\x9csecret", "asecret"),
    ("a\x9b\x18secret", "asecret"),
    # Any other C1 control ends a string too, and NEL and IND start a line.
    ("a\x1b]x\x85secret", "a\nsecret"),
    ("a\x1b_x\x84secret", "a\nsecret"),
    ("a\x1b]x\x9b1msecret", "asecret"),
    ("a\x1b]x\x90qz\x9csecret", "asecret"),
    ("a\x85b\x1bEc\x1bDd", "a\nb\nc\nd"),
    # A character from U+00A0 on ends a DCS before its final byte, or an SOS/PM/APC (xterm.js);
    # in a CSI being ignored it ends the CSI (avt).
    ("a\x1b_é secret", "a secret"),
    ("a\x1bPé secret", "a secret"),
    ("a\x1bP1é secret", "a secret"),
    ("a\x1b[<1<é12x secret", "a12x secret"),
    # Controls inside a CSI act; a DEL there is ignored.
    ("a\x1b[1\r\n2mb", "a\nb"),
    ("a\x1b[1\x7fmb", "ab"),
    # Still dropped: what no terminal shows.
    ("a\x1b]0;title\x07b", "ab"),
    ("a\x1b]8;;https://example.com/\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),
    ("a\x1b]x\ny\x07b", "ab"),
    ("a\x1bPqsixel\r\ndata\x1b\\b", "ab"),
    ("a\x1b_x\ny\x1b\\b", "ab"),
    ("a\x1bPqé b\x1b\\c", "ac"),
    ("a\x1b]é b\x07c", "ac"),
    ("a\x1b\x7fb", "a"),
    ("a\x1b(Bb\x1b[?2004h\x1b[2K", "ab"),
    ("\x1b[1;32mrs-ab12\x1b[0m@web:~$ ls\r\n", "rs-ab12@web:~$ ls\n"),
]


@pytest.mark.parametrize(("stream", "shown"), SHOWN)
def test_the_text_is_what_the_terminal_shows(stream: str, shown: str) -> None:
    assert strip_escapes(stream) == shown


@pytest.mark.parametrize(("stream", "shown"), SHOWN)
def test_the_same_text_when_the_stream_is_cut_anywhere(stream: str, shown: str) -> None:
    for cut in range(1, len(stream)):
        events = [[0.5, "o", stream[:cut]], [1.0, "o", stream[cut:]]]
        assert transcript_from_events(events).output == shown, (stream[:cut], stream[cut:])
    generator = random.Random(stream)
    for _ in range(20):
        cuts = sorted(generator.sample(range(1, len(stream)), min(3, len(stream) - 1)))
        pieces = [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        events = [[0.1 * (n + 1), "o", piece] for n, piece in enumerate(pieces)]
        assert transcript_from_events(events).output == shown, pieces


def test_text_after_a_cancelled_string_is_timed_by_its_own_event() -> None:
    events = [[1.0, "o", "$ \x1b]"], [2.0, "o", "\x18"], [3.0, "o", "cat /etc/shadow\r\n"]]
    built = transcript_from_events(events)
    assert built.output == "$ cat /etc/shadow\n"
    assert transcript.time_at(built.index["o"], built.output.index("cat")) == 3.0


def test_a_string_never_ended_hides_only_itself() -> None:
    # Without CAN, SUB, ST or another C1 the terminal shows nothing more either.
    assert strip_escapes("a\x1b]0;title and more\r\nstill the title") == "a"
    assert strip_escapes("a\x1bPq" + "x" * 10_000 + "\x1b\\b") == "ab"


# (what was typed, the typed text): a shell's line editor reads keys, not a terminal's strings; a line
# with any key but text is marked, the keys shown as placeholders (terminal.line_editor).
TYPED = [
    # readline takes ESC ] as one unbound key and ignores it: the rest is the command it runs.
    ("\x1b]id; echo exfil\r", "id; echo exfil  # typed: ⟨M-]⟩id; echo exfil\n"),
    ("\x1bPecho hi\r", "echo hi  # typed: ⟨M-P⟩echo hi\n"),
    ("\x1b_id\x07\r", "id  # typed: ⟨M-_⟩id⟨^G⟩\n"),
    # Where a sequence stops matching a key it knows (ESC [ 2 0 0 ~ is one), readline inserts the
    # rest: this runs `echo hi`, and `201e201c201h201o hi` with a ? after the [. What follows ESC [
    # in a sequence no terminal sends is typed text, all of it.
    (
        "\x1b[201e\x1b[201c\x1b[201h\x1b[201o hi\r",
        "201e201c201h201o hi  # typed: ⟨ESC[⟩201e⟨ESC[⟩201c⟨ESC[⟩201h⟨ESC[⟩201o hi\n",
    ),
    ("\x1b[?./x\r", "?./x  # typed: ⟨ESC[⟩?./x\n"),
    # Keys and answers a terminal sends are not text, but each marks its line.
    (
        "ls\x1b[A\x1b[1;5D\x1bOA\x1b[3~\x1b[Z\x1bb -la\r",
        "ls -la  # typed: ls⟨ESC[A⟩⟨ESC[1;5D⟩⟨ESCOA⟩⟨ESC[3~⟩⟨ESC[Z⟩⟨M-b⟩ -la\n",
    ),
    ("\x1b[200~ls\x1b[201~\r", "ls  # typed: ⟨ESC[200~⟩ls⟨ESC[201~⟩\n"),
    (
        "vim\r\x1b[?1;2c\x1b[12;40R\x1b[<0;10;5M\x1b[<0;10;5m\x1b[I\x1b[O",
        "vim\n  # typed: ⟨ESC[?1;2c⟩⟨ESC[12;40R⟩⟨ESC[<0;10;5M⟩⟨ESC[<0;10;5m⟩⟨ESC[I⟩⟨ESC[O⟩",
    ),
    # A key sequence a control breaks is not one: the control (Enter here) is still typed.
    ("ls\x1b\r", "ls  # typed: ls⟨ESC⟩\n"),
    ("ls\x1b[1\r", "ls1  # typed: ls⟨ESC[⟩1\n"),
]


@pytest.mark.parametrize(("typed", "text"), TYPED)
def test_typed_text_is_what_the_line_editor_was_given(typed: str, text: str) -> None:
    assert transcript_from_events([[1.0, "i", typed]]).input == text
    for cut in range(1, len(typed)):
        assert transcript_from_events([[1.0, "i", typed[:cut]], [2.0, "i", typed[cut:]]]).input == text


def test_a_command_typed_after_esc_bracket_has_its_marker() -> None:
    built = transcript_from_events([[1.0, "i", "\x1b]id; echo exfil-$((6*7))\r"], [2.0, "i", "\x1b]whoami\r"]])
    assert built.index["commands"] == [
        [1.0, "id; echo exfil-$((6*7))  # typed: ⟨M-]⟩id; echo exfil-$((6*7))"],
        [2.0, "whoami  # typed: ⟨M-]⟩whoami"],
    ]


def test_the_shortcut_for_a_whole_csi_is_what_both_parsers_do() -> None:
    """terminal.vt.screen reads ESC [ digits final at once from ground: the same as a character at a time."""
    from terminal.vt import screen as vt

    generator = random.Random(20261206)
    for _ in range(2000):
        parameters = generator.choice(["", "<", "=", ">", "?"])
        parameters += "".join(generator.choice("0123456789;") for _ in range(generator.randint(0, 8)))
        sequence = "\x1b[" + parameters + chr(generator.randint(0x40, 0x7E))
        assert vt._PLAIN_CSI.fullmatch(sequence)
        state = vt._BOTH_GROUND
        for character in sequence:
            state, adds = vt._joint(state).moves[min(ord(character), 0xA0)]
            assert adds == vt._NOTHING, sequence
        assert state == vt._BOTH_GROUND, sequence
