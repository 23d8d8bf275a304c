"""Which of the client's LANG / LC_* values the proxy passes on to the instance's shell."""

from __future__ import annotations

from terminal.proxy.environment import locale_environment


def test_locale_names_with_locale_values_pass_and_other_lc_values_are_refused_with_their_value() -> None:
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
        "LC_PAYLOAD": "en_US",
        "LC_PAPER": "a4\\xff",
        "LC_\\xffX": "$(id)\x1b[2J",  # kept as data; the Logbook's pages escape what they show
    }


def test_a_long_refused_value_is_cut_and_marked() -> None:
    refused = locale_environment({"LC_X": "a" * 10_000}).refused["LC_X"]
    assert refused.startswith("a" * 256) and refused.endswith("...[truncated]") and len(refused) < 300
