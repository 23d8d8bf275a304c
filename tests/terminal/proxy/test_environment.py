"""Which of the client's LANG / LC_* values, and which terminal types, the proxy passes on to the instance's shell."""

from __future__ import annotations

import pytest

from terminal.proxy.environment import locale_environment, terminal_type_refused


def test_locale_names_with_locale_values_pass_and_other_lc_values_are_refused() -> None:
    environment = locale_environment(
        {
            "LANG": "en_US.UTF-8",
            "LC_CTYPE": b"UTF-8",
            "LC_MESSAGES": "de_DE@euro",
            "LC_TERMINAL": "iTerm2",
            "LC_ALL": "C; reboot",
            "LC_TIME": "",
            "LC_NUMERIC": "x" * 65,
            "LC_PAYLOAD": "en_US",  # not a locale category: a carrier
            "LC_PAPER": b"a4\xff",
            b"LC_\xffX": b"$(id)\x1b[2J",
            "TERM": "evil",  # not accepted by sshd by default: dropped, as before
            "PATH": "/tmp",
        }
    )
    assert environment.passed == {
        "LANG": "en_US.UTF-8",
        "LC_CTYPE": "UTF-8",
        "LC_MESSAGES": "de_DE@euro",
        "LC_TERMINAL": "iTerm2",
    }
    assert environment.refused == {
        "LC_ALL": "C; reboot",
        "LC_TIME": "",
        "LC_NUMERIC": "x" * 65,
        "LC_PAYLOAD": _withheld(b"en_US"),  # not a locale category: only its length and digest
        "LC_PAPER": "a4\\xff",
        "LC_\\xffX": _withheld(b"$(id)\x1b[2J"),
    }


def _withheld(value: bytes) -> str:
    return f"(not written down: {len(value)} bytes)"


def test_a_token_in_an_lc_variable_is_not_written_down() -> None:
    """ssh sends every LC_* of the engineer's shell unasked (``SendEnv LANG LC_*``), and people keep
    tokens there: the refusal names the variable, never its value."""
    token = "ghp_R3vi3wT0kenValue0123456789abcdefXYZ"
    environment = locale_environment({"LANG": "en_US.UTF-8", "LC_GITHUB_TOKEN": token, "LC_ALL": "C; reboot"})
    assert environment.passed == {"LANG": "en_US.UTF-8"}
    assert environment.refused["LC_GITHUB_TOKEN"] == _withheld(token.encode())
    assert (
        token not in environment.refused["LC_GITHUB_TOKEN"] and token[:8] not in environment.refused["LC_GITHUB_TOKEN"]
    )
    assert environment.refused["LC_ALL"] == "C; reboot"  # a locale category's value: meant to be a locale name


def test_a_long_refused_value_is_cut_and_marked() -> None:
    refused = locale_environment({"LC_ALL": "a" * 10_000}).refused["LC_ALL"]
    assert refused.startswith("a" * 256) and refused.endswith("...[truncated]") and len(refused) < 300


def test_at_most_32_refused_variables_are_kept_and_the_rest_counted() -> None:
    environment = locale_environment({f"LC_X{number:04d}": "v" * 300 for number in range(1500)} | {"LANG": "C"})
    assert environment.passed == {"LANG": "C"}
    assert list(environment.refused) == [f"LC_X{number:04d}" for number in range(32)]
    assert environment.refused_not_shown == 1500 - 32
    assert locale_environment({"LC_X": "$(id)"}).refused_not_shown == 0


REAL_TERMINAL_TYPES = [
    "xterm-256color", "screen.xterm-256color", "rxvt-unicode-256color", "tmux-256color", "vt100", "linux", "dumb",
    "alacritty", "xterm-kitty", "wezterm", "xterm+256color", "putty-256color", "st-256color", "ms-terminal",
]  # fmt: skip


def test_terminal_types_named_as_terminfo_names_them_pass_and_an_empty_one_sets_none() -> None:
    assert all(terminal_type_refused(term) is None for term in REAL_TERMINAL_TYPES)
    assert terminal_type_refused("") is None  # sshd sets no TERM for it


@pytest.mark.parametrize(
    ("term", "shown"),
    [
        ("xterm;id", "xterm;id"),
        ("$(id)", "$(id)"),
        ("xterm id", "xterm id"),
        ("xterm\nid", "xterm\\x0aid"),
        ("xterm\x1b[2J\x1b]0;owned\x07", "xterm\\x1b[2J\\x1b]0;owned\\x07"),
        ("xterm\u202e", "xterm\\u202e"),
        ("xterm/../../tmp/t", "xterm/../../tmp/t"),
        ("x" * 65, "x" * 65),
        ("x" * 10_000, "x" * 256 + "...[truncated]"),
    ],
)
def test_other_terminal_types_are_refused_and_shown_escaped_and_cut(term: str, shown: str) -> None:
    assert terminal_type_refused(term) == shown
