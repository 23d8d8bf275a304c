"""passport_cli.display.printable: what reaches a terminal from the portal carries no control of its own."""

from __future__ import annotations

import pytest

from passport_cli import output
from passport_cli.display import printable
from passport_cli.request_commands import print_request

OSC52 = "\x1b]52;c;aGFja2Vk\x07"  # writes "hacked" to the clipboard


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, ünïcödé, 日本語", "plain text, ünïcödé, 日本語"),
        (OSC52, "\\x1b]52;c;aGFja2Vk\\x07"),
        ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),  # CSI: clear the screen, colour
        ("\x9b31m", "\\x9b31m"),  # C1 CSI, one byte in some terminals
        ("\x9d8;;http://evil\x9c", "\\x9d8;;http://evil\\x9c"),  # C1 OSC 8 link, ST
        ("a\x00b\x7fc", "a\\x00b\\x7fc"),  # NUL, DEL
        ("line\nfake: line\r\tx", "line\\nfake: line\\r\\tx"),
        ("\u202eevil\u202c \u2066x\u2069", "\\u202eevil\\u202c \\u2066x\\u2069"),  # bidi override, isolate
        ("\u200e\u200f\u061c", "\\u200e\\u200f\\u061c"),  # bidi marks
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("sep\u2028par\u2029", "sep\\u2028par\\u2029"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("tag \U000e0041", "tag \\U000e0041"),
        ("back\\slash \\x1b", "back\\slash \\x1b"),  # left as is: printable is idempotent
    ],
)
def test_printable_escapes_controls_bidi_and_separators(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(printable(raw)) == shown
    assert printable(raw).isprintable()
    printable(raw).encode()  # no lone surrogate is left to fail on output


def test_printable_takes_any_value_and_may_keep_the_clis_own_newlines() -> None:
    assert printable(None) == ""
    assert printable(12) == "12"
    assert printable(ValueError("bad\x1b[0m")) == "bad\\x1b[0m"
    assert printable("one\ntwo\x1b", keep_newlines=True) == "one\ntwo\\x1b"


def test_tables_and_requests_print_portal_values_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    table = output.table([["1", f"reason {OSC52}\n\u202e"]], ["ID", "REASON"])
    assert "\x1b" not in table and "\x07" not in table and "\u202e" not in table
    assert table.count("\n") == 1  # the header and one row: the newline in the value is shown, not obeyed
    assert "\\x1b]52;c;aGFja2Vk\\x07\\n\\u202e" in table

    print_request(
        {
            "id": 7,
            "status": "active",
            "status_label": "Active\x1b[8m",
            "reason": f"deploy {OSC52}\nfake line",
            "ticket": "OPS-1\x9b",
            "expires_at": "2030-01-01T00:00:00Z",
            "grants": [
                {
                    "instance_id": "i-0123456789abcdef0",
                    "name": "web\u202e1",
                    "platform": "linux",
                    "status": "ready",
                    "username": "rs-\x1b",
                }
            ],
        }
    )
    out = capsys.readouterr().out
    for raw in ("\x1b", "\x07", "\x9b", "\u202e", "\nfake line"):
        assert raw not in out
    assert "reason: deploy \\x1b]52;c;aGFja2Vk\\x07\\nfake line (ticket OPS-1\\x9b)" in out
    assert "web\\u202e1" in out and "as rs-\\x1b" in out
