"""What a terminal shows of what was printed: the output's text, for a transcript (terminal.vt).

What was printed is read as the terminals that show it read it: the person's terminal (xterm.js 6.0)
and the recording's player (asciinema-player's emulator, avt). Both implement the VT500-style parser
of vt100.net's "DEC ANSI parser" description, with small differences; a character is text when
either of them shows it, so the text never leaves out what someone watching saw. In particular an
escape string (OSC, DCS, SOS, PM, APC) ends where they end it: at CAN or SUB (which cancel it), at
ST (U+009C) or any other C1 control, an OSC also at BEL, a DCS before its final byte or an SOS, PM
or APC at a character from U+00A0 on (xterm.js), and a control sequence being ignored at such a
character (avt). The 8-bit introducers (U+009B CSI, U+009D OSC, U+0090 DCS, U+0098 SOS, U+009E PM,
U+009F APC) start what their ESC forms start, anywhere, as both do with the decoded UTF-8 they are
given (a recording holds text: a byte 0x9B alone was never UTF-8 and is U+FFFD there).

``ScreenText`` is fed a piece at a time and holds only the two parsers' states.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# The parser's states (the names of vt100.net's description, which xterm.js and avt keep).
(
    GROUND,
    ESCAPE,
    ESCAPE_INTERMEDIATE,
    CSI_ENTRY,
    CSI_PARAM,
    CSI_INTERMEDIATE,
    CSI_IGNORE,
    OSC_STRING,
    SOS_PM_APC_STRING,
    DCS_ENTRY,
    DCS_PARAM,
    DCS_INTERMEDIATE,
    DCS_IGNORE,
    DCS_PASSTHROUGH,
) = range(14)
_STATES = 14

# What a character adds to the text: nothing; itself (printed, or a control the transcript reads:
# backspace, tab, line feed, carriage return); or a line end (VT, FF, IND and NEL start a new line).
_NOTHING, _ITSELF, _LINE_END = 0, 1, 2
# Every character from U+00A0 on is read alike, by both: one column of each table stands for them.
_NON_ASCII = 0xA0

_EXECUTABLE = (*range(0x00, 0x18), 0x19, *range(0x1C, 0x20))
_PRINTABLE = tuple(range(0x20, 0x7F))

# [state][character, up to _NON_ASCII] -> (next state, what it adds to the text)
_Table = list[list[tuple[int, int]]]


def _executed(code: int) -> int:
    """What a control character adds when the terminal executes it."""
    if code in (0x08, 0x09, 0x0A, 0x0D):
        return _ITSELF
    return _LINE_END if code in (0x0B, 0x0C, 0x84, 0x85) else _NOTHING


def _xterm_js_table() -> _Table:
    """The transitions of xterm.js 6.0's parser (its VT500 transition table), by what they show.

    A pair the table does not list is an error there: the character is dropped and the parser is
    back in ground. The later rules below win over the earlier, as in the table."""
    table: _Table = [[(GROUND, _NOTHING)] * (_NON_ASCII + 1) for _ in range(_STATES)]

    def on(states: tuple[int, ...], codes: tuple[int, ...] | range, to: int | None, adds: int = _NOTHING) -> None:
        for state in states:
            for code in codes:
                table[state][code] = (state if to is None else to, adds)

    everywhere = tuple(range(_STATES))
    on((GROUND,), (*_PRINTABLE, _NON_ASCII), GROUND, _ITSELF)
    # In any state: CAN, SUB and the C1 controls are executed and end what was being read; ST ends
    # it; ESC and the 8-bit introducers start a new one.
    for code in (0x18, 0x1A, *range(0x80, 0x90), *range(0x91, 0x98), 0x99, 0x9A):
        on(everywhere, (code,), GROUND, _executed(code))
    on(everywhere, (0x9C,), GROUND)
    on(everywhere, (0x1B,), ESCAPE)
    on(everywhere, (0x9D,), OSC_STRING)
    on(everywhere, (0x98, 0x9E, 0x9F), SOS_PM_APC_STRING)
    on(everywhere, (0x9B,), CSI_ENTRY)
    on(everywhere, (0x90,), DCS_ENTRY)
    # C0 controls act in ground, escapes and control sequences (a line feed inside a CSI is one).
    sequences = (ESCAPE, ESCAPE_INTERMEDIATE, CSI_ENTRY, CSI_PARAM, CSI_INTERMEDIATE, CSI_IGNORE)
    for code in _EXECUTABLE:
        on((GROUND, *sequences), (code,), None, _executed(code))
    on(sequences, (0x7F,), None)
    # Escapes: two or three characters; ESC D (IND) and ESC E (NEL) start a line.
    on((ESCAPE,), range(0x20, 0x30), ESCAPE_INTERMEDIATE)
    on((ESCAPE_INTERMEDIATE,), range(0x20, 0x30), None)
    on((ESCAPE_INTERMEDIATE,), range(0x30, 0x7F), GROUND)
    on((ESCAPE,), (*range(0x30, 0x50), *range(0x51, 0x58), 0x59, 0x5A, 0x5C, *range(0x60, 0x7F)), GROUND)
    on((ESCAPE,), (0x44, 0x45), GROUND, _LINE_END)
    on((ESCAPE,), (0x5B,), CSI_ENTRY)
    on((ESCAPE,), (0x5D,), OSC_STRING)
    on((ESCAPE,), (0x50,), DCS_ENTRY)
    on((ESCAPE,), (0x58, 0x5E, 0x5F), SOS_PM_APC_STRING)
    # OSC: its text up to BEL, CAN, SUB, ST or ESC (or a C1 control, above); other controls ignored.
    on((OSC_STRING,), (*_EXECUTABLE, *_PRINTABLE, 0x7F, _NON_ASCII), None)
    on((OSC_STRING,), (0x07,), GROUND)
    # SOS, PM, APC: up to CAN, SUB, ST, ESC or a C1 control; a character from U+00A0 on is not listed.
    on((SOS_PM_APC_STRING,), (*_EXECUTABLE, *_PRINTABLE, 0x7F), None)
    # CSI
    on((CSI_ENTRY,), range(0x30, 0x40), CSI_PARAM)
    on((CSI_PARAM,), range(0x30, 0x3C), None)
    on((CSI_PARAM,), range(0x3C, 0x40), CSI_IGNORE)
    on((CSI_ENTRY, CSI_PARAM, CSI_INTERMEDIATE), range(0x20, 0x30), CSI_INTERMEDIATE)
    on((CSI_INTERMEDIATE,), range(0x30, 0x40), CSI_IGNORE)
    on((CSI_ENTRY, CSI_PARAM, CSI_INTERMEDIATE, CSI_IGNORE), range(0x40, 0x7F), GROUND)
    on((CSI_IGNORE,), (*range(0x20, 0x40), _NON_ASCII), None)
    # DCS: its parameters, then the string (passed through) up to CAN, SUB, ST, ESC or a C1 control.
    dcs = (DCS_ENTRY, DCS_PARAM, DCS_INTERMEDIATE, DCS_IGNORE, DCS_PASSTHROUGH)
    on(dcs, (*_EXECUTABLE, 0x7F), None)
    on((DCS_ENTRY,), range(0x30, 0x40), DCS_PARAM)
    on((DCS_PARAM,), range(0x30, 0x3C), None)
    on((DCS_PARAM,), range(0x3C, 0x40), DCS_IGNORE)
    on((DCS_ENTRY, DCS_PARAM, DCS_INTERMEDIATE), range(0x20, 0x30), DCS_INTERMEDIATE)
    on((DCS_INTERMEDIATE,), range(0x30, 0x40), DCS_IGNORE)
    on((DCS_ENTRY, DCS_PARAM, DCS_INTERMEDIATE), range(0x40, 0x7F), DCS_PASSTHROUGH)
    on((DCS_IGNORE, DCS_PASSTHROUGH), (*_PRINTABLE, _NON_ASCII), None)
    return table


def _avt_step(state: int, code: int) -> tuple[int, int]:
    """One transition of avt's parser, by what it shows: its rules in its order, the first that
    applies wins. It reads a character from U+00A0 on as "A" (printed as itself in ground)."""
    if code >= _NON_ASCII:
        return (GROUND, _ITSELF) if state == GROUND else _avt_step(state, 0x41)
    csi = (CSI_ENTRY, CSI_PARAM, CSI_INTERMEDIATE, CSI_IGNORE)
    executable = code in _EXECUTABLE
    if state == GROUND and 0x20 <= code <= 0x7F:
        return GROUND, _ITSELF if code < 0x7F else _NOTHING
    if state == CSI_PARAM and 0x30 <= code <= 0x3B:
        return CSI_PARAM, _NOTHING
    if code == 0x1B:
        return ESCAPE, _NOTHING
    if state == ESCAPE and code == 0x5B:
        return CSI_ENTRY, _NOTHING
    if state in (CSI_ENTRY, CSI_PARAM, CSI_INTERMEDIATE) and 0x40 <= code <= 0x7E:
        return GROUND, _NOTHING
    if state == CSI_ENTRY and (0x30 <= code <= 0x39 or code == 0x3B):
        return CSI_PARAM, _NOTHING
    if state == GROUND and executable:
        return GROUND, _executed(code)
    if state == OSC_STRING and 0x20 <= code <= 0x7F:
        return OSC_STRING, _NOTHING
    if state == ESCAPE and 0x20 <= code <= 0x2F:
        return ESCAPE_INTERMEDIATE, _NOTHING
    if (state == ESCAPE_INTERMEDIATE and 0x30 <= code <= 0x7E) or (
        state == ESCAPE and (0x30 <= code <= 0x4F or 0x51 <= code <= 0x57 or code in (0x59, 0x5A, 0x5C))
    ):
        return GROUND, _LINE_END if state == ESCAPE and code in (0x44, 0x45) else _NOTHING
    if state == ESCAPE and 0x60 <= code <= 0x7E:
        return GROUND, _NOTHING
    if state == CSI_ENTRY and 0x3C <= code <= 0x3F:
        return CSI_PARAM, _NOTHING
    if state == DCS_PASSTHROUGH and (executable or 0x20 <= code <= 0x7E):
        return DCS_PASSTHROUGH, _NOTHING
    if state == CSI_IGNORE and 0x40 <= code <= 0x7E:
        return GROUND, _NOTHING
    if (
        (state == CSI_PARAM and 0x3C <= code <= 0x3F)
        or (state == CSI_INTERMEDIATE and 0x30 <= code <= 0x3F)
        or (state == CSI_ENTRY and code == 0x3A)
    ):
        return CSI_IGNORE, _NOTHING
    if state == ESCAPE and code == 0x5D:
        return OSC_STRING, _NOTHING
    if state == OSC_STRING and code == 0x07:
        return GROUND, _NOTHING
    if code in (0x18, 0x1A, 0x99, 0x9A) or 0x80 <= code <= 0x8F or 0x91 <= code <= 0x97:
        return GROUND, _executed(code)
    if state == ESCAPE and code == 0x50:
        return DCS_ENTRY, _NOTHING
    if state in (CSI_PARAM, CSI_ENTRY) and 0x20 <= code <= 0x2F:
        return CSI_INTERMEDIATE, _NOTHING
    if state == DCS_PARAM and (0x30 <= code <= 0x39 or code == 0x3B):
        return DCS_PARAM, _NOTHING
    if state == DCS_ENTRY and 0x3C <= code <= 0x3F:
        return DCS_PARAM, _NOTHING
    if state in (DCS_ENTRY, DCS_PARAM, DCS_INTERMEDIATE) and 0x40 <= code <= 0x7E:
        return DCS_PASSTHROUGH, _NOTHING
    if state in (DCS_ENTRY, DCS_PARAM) and 0x20 <= code <= 0x2F:
        return DCS_INTERMEDIATE, _NOTHING
    if state in (CSI_INTERMEDIATE, ESCAPE_INTERMEDIATE, DCS_INTERMEDIATE) and 0x20 <= code <= 0x2F:
        return state, _NOTHING
    if (
        (state in (DCS_ENTRY, DCS_PARAM) and code == 0x3A)
        or (state == DCS_INTERMEDIATE and 0x30 <= code <= 0x3F)
        or (state == DCS_PARAM and 0x3C <= code <= 0x3F)
    ):
        return DCS_IGNORE, _NOTHING
    if state == DCS_ENTRY and (0x30 <= code <= 0x39 or code == 0x3B):
        return DCS_PARAM, _NOTHING
    if state in (ESCAPE, ESCAPE_INTERMEDIATE, *csi) and executable:
        return state, _executed(code)
    if state == ESCAPE and code in (0x58, 0x5E, 0x5F):
        return SOS_PM_APC_STRING, _NOTHING
    introduced = {0x98: SOS_PM_APC_STRING, 0x9E: SOS_PM_APC_STRING, 0x9F: SOS_PM_APC_STRING, 0x9C: GROUND}
    introduced |= {0x9D: OSC_STRING, 0x90: DCS_ENTRY, 0x9B: CSI_ENTRY}
    if code in introduced:
        return introduced[code], _NOTHING
    # Everything left is ignored where it is: DEL, what a CSI being ignored collects, controls
    # inside DCS, SOS, PM, APC and OSC strings, and the text of DCS-ignore and SOS, PM, APC strings.
    return state, _NOTHING


def _avt_table() -> _Table:
    return [[_avt_step(state, code) for code in range(_NON_ASCII + 1)] for state in range(_STATES)]


_XTERM_JS = _xterm_js_table()
_AVT = _avt_table()


def _character_class(codes: list[int]) -> re.Pattern[str]:
    parts = ["\xa0-\U0010ffff" if code == _NON_ASCII else re.escape(chr(code)) for code in codes]
    return re.compile("[" + "".join(parts) + "]+")


@dataclass(frozen=True)
class _Joint:
    """Both parsers in one pair of states: for each character (up to _NON_ASCII) the next pair and
    what it adds (itself if either shows it), and where it leaves both as they are, a pattern for the
    run of such characters from it (read a run at a time, not a character)."""

    moves: list[tuple[int, int]]
    runs: list[re.Pattern[str] | None]


@functools.cache
def _joint(state: int) -> _Joint:
    xterm_state, avt_state = divmod(state, _STATES)
    moves: list[tuple[int, int]] = []
    for code in range(_NON_ASCII + 1):
        (xterm_next, xterm_adds), (avt_next, avt_adds) = _XTERM_JS[xterm_state][code], _AVT[avt_state][code]
        adds = _ITSELF if _ITSELF in (xterm_adds, avt_adds) else max(xterm_adds, avt_adds)
        moves.append((xterm_next * _STATES + avt_next, adds))
    # A run: characters that keep the pair and are shown as they are, or characters that keep it and add nothing.
    alike = {adds: [code for code, move in enumerate(moves) if move == (state, adds)] for adds in (_ITSELF, _NOTHING)}
    patterns = {adds: _character_class(codes) for adds, codes in alike.items() if codes}
    runs = [patterns.get(adds) if next_state == state else None for next_state, adds in moves]
    return _Joint(moves, runs)


_BOTH_GROUND = GROUND * _STATES + GROUND
# The commonest sequence whole, from ground back to ground in both parsers, showing nothing: ESC [,
# an optional private marker, digits and semicolons, a final byte (colours, cursor moves, erasing).
_PLAIN_CSI = re.compile(r"\x1b\[[<=>?]?[0-9;]*[@-~]")


class ScreenText:
    """The text of a stream printed to a terminal, a piece at a time (``feed``): what xterm.js or
    avt shows of it, with the controls that place it (backspace, tab, line feed, carriage return).
    Nothing is held but the two parsers' states."""

    def __init__(self) -> None:
        self._state = GROUND * _STATES + GROUND

    def feed(self, data: str) -> str:
        shown: list[str] = []
        state, position, end = self._state, 0, len(data)
        joint = _joint(state)
        while position < end:
            character = data[position]
            code = ord(character)
            if code > _NON_ASCII:
                code = _NON_ASCII
            if code == 0x1B and state == _BOTH_GROUND and (sequence := _PLAIN_CSI.match(data, position)):
                position = sequence.end()
                continue
            run = joint.runs[code]
            if run is not None and (match := run.match(data, position)):
                if joint.moves[code][1] == _ITSELF:
                    shown.append(match.group())
                position = match.end()
                continue
            next_state, adds = joint.moves[code]
            position += 1
            if adds == _ITSELF:
                shown.append(character)
            elif adds == _LINE_END:
                shown.append("\n")
            if next_state != state:
                state, joint = next_state, _joint(next_state)
        self._state = state
        return "".join(shown)
