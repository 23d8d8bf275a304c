"""Plain text out of an asciicast v2 recording, for searching it.

What the terminal printed (``o`` events) and what was typed (``i`` events) become two texts
with the escape sequences (colours, cursor moves, titles) removed. Each keeps an index of
``[offset, seconds]`` pairs, one where the text of a new event starts, so a match found in
the text can be played back from the moment it appeared. Pure functions: no Django, so a
migration can use them too.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One token at a time: an escape sequence (dropped) or a run of ordinary text (kept).
# Scanning the whole stream at once handles a sequence split across two events.
_TOKEN = re.compile(
    r"""
    (?P<escape>
        \x1b\[[0-?]*[\x20-/]*[@-~]                 # CSI: colours, cursor, erase
      | \x9b[0-?]*[\x20-/]*[@-~]                   # the same, 8-bit introducer
      | \x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?         # OSC: window title, hyperlinks
      | \x1b[PX^_][^\x1b]*(?:\x1b\\)?              # DCS, SOS, PM, APC strings
      | \x1b[\x20-/]*[0-~]                         # two- and three-byte escapes, charsets
      | \x1b$                                      # a lone ESC at the very end
    )
    | (?P<text>[^\x1b\x9b]+)
    | (?P<other>[\x1b\x9b])
    """,
    re.VERBOSE,
)
# Control characters other than newline and tab carry no text.
_CONTROLS = re.compile(r"[\x00-\x07\x0b-\x1f\x7f]")


@dataclass
class Transcript:
    output: str = ""
    input: str = ""
    # {"o": [[offset, seconds], ...], "i": [...]}, "commands": [[seconds, line], ...] (the first
    # MAX_MARKERS) and "commands_not_shown": how many lines typed after those have no marker
    index: dict[str, Any] = field(default_factory=dict)


def strip_escapes(raw: str) -> str:
    """The text of a terminal stream, escape sequences and control characters removed."""
    return _clean(raw, [(0, 0.0)])[0]


def _apply_text(chunk: str, into: list[str], *, typed: bool) -> int:
    """Append ``chunk``; returns how much longer the text became.

    Printed: a carriage return adds nothing (CRLF ends a line). Typed: Enter (CR) ends a line
    and DEL is the backspace key. A backspace removes the character before it on its line.
    """
    if typed:
        chunk = chunk.replace("\r", "\n").replace("\x7f", "\x08")
    grown = 0
    for piece in re.split(r"(\x08)", chunk):
        if piece == "\x08":
            while into and not into[-1]:
                into.pop()
            if into and into[-1][-1] != "\n":
                into[-1] = into[-1][:-1]
                grown -= 1
            continue
        piece = _CONTROLS.sub("", piece.replace("\r", ""))
        if piece:
            into.append(piece)
            grown += len(piece)
    return grown


def _clean(raw: str, starts: list[tuple[int, float]], *, typed: bool = False) -> tuple[str, list[list[float]]]:
    """Strip ``raw``; ``starts`` are (raw offset, seconds) where each event began, ascending."""
    raw_offsets = [offset for offset, _ in starts]
    pieces: list[str] = []
    length = 0
    index: list[list[float]] = []
    last_event = -1
    for match in _TOKEN.finditer(raw):
        if match.lastgroup != "text":
            continue
        event = bisect.bisect_right(raw_offsets, match.start()) - 1
        # A text run may cross event boundaries: split it there so each part keeps its time.
        stop = bisect.bisect_left(raw_offsets, match.end(), lo=event + 1)
        boundaries = [match.start(), *raw_offsets[event + 1 : stop], match.end()]
        for position, (begin, end) in enumerate(itertools.pairwise(boundaries)):
            here = event + position
            if here != last_event:
                index.append([length, starts[here][1]])
                last_event = here
            length += _apply_text(raw[begin:end], pieces, typed=typed)
    return "".join(pieces), index


# Text kept for search per direction: what a session prints beyond this (a binary dump, a huge log) is in the
# recording and its digest, not in the search index, which stays small enough to seal and query quickly.
TRANSCRIPT_MAX_CHARS = 8 * 2**20
# The player's markers, one per line typed: asciinema-player draws a DOM node for each and never finishes
# with tens of thousands (a pasted script, ``ssh web-1 bash < script``). The first ones are kept; the
# rest are counted (``commands_not_shown``) and stay in the typed text.
MAX_MARKERS = 1000


def transcript_from_events(events: Iterable[Any]) -> Transcript:
    """Build the transcript of asciicast v2 events (``[seconds, code, data]``), each direction's text
    up to ``TRANSCRIPT_MAX_CHARS``."""
    streams: dict[str, list[str]] = {"o": [], "i": []}
    starts: dict[str, list[tuple[int, float]]] = {"o": [], "i": []}
    sizes = {"o": 0, "i": 0}
    commands: list[list[Any]] = []
    commands_not_shown = 0
    line = ""
    for event in events:
        if not isinstance(event, list) or len(event) != 3:
            continue
        seconds, code, data = event
        if code not in streams or not isinstance(data, str) or not isinstance(seconds, int | float):
            continue
        if sizes[code] >= TRANSCRIPT_MAX_CHARS:
            continue
        data = data[: TRANSCRIPT_MAX_CHARS - sizes[code]]
        starts[code].append((sizes[code], float(seconds)))
        streams[code].append(data)
        sizes[code] += len(data)
        if code == "i":
            # What was typed up to each Enter: the player's markers ("jump to the next command").
            for character in data:
                if character in "\r\n":
                    typed = strip_escapes(line).strip()
                    if typed and len(commands) < MAX_MARKERS:
                        commands.append([round(float(seconds), 3), typed[:80]])
                    elif typed:
                        commands_not_shown += 1
                    line = ""
                elif character in "\x7f\x08":
                    line = line[:-1]
                else:
                    line += character
    output, output_index = _clean("".join(streams["o"]), starts["o"] or [(0, 0.0)])
    typed_text, input_index = _clean("".join(streams["i"]), starts["i"] or [(0, 0.0)], typed=True)
    index = {"o": output_index, "i": input_index, "commands": commands, "commands_not_shown": commands_not_shown}
    return Transcript(output=output, input=typed_text, index=index)


def read_events(path: Path) -> Iterable[Any]:
    """The events of an asciicast v2 file, skipping its header and any line that is not JSON."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        handle.readline()
        for line in handle:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def transcript_from_file(path: Path) -> Transcript:
    return transcript_from_events(read_events(path))


def events_from_lines(lines: Iterable[str]) -> Iterable[Any]:
    """The events of asciicast v2 lines, skipping the header and any line that is not JSON."""
    for number, line in enumerate(lines):
        if number == 0:
            continue
        try:
            yield json.loads(line)
        except ValueError:
            continue


def transcript_from_bytes(data: bytes) -> Transcript:
    """The transcript of a whole recording (or a kept prefix of one) in memory."""
    return transcript_from_events(events_from_lines(data.decode("utf-8", errors="replace").split("\n")))


def time_at(index: list[list[float]], offset: int) -> float:
    """When the text at ``offset`` appeared, from a ``[[offset, seconds], ...]`` index."""
    if not index:
        return 0.0
    position = bisect.bisect_right([entry[0] for entry in index], offset) - 1
    return float(index[max(position, 0)][1])
