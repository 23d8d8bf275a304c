"""Recognising a legacy scp exec request ("scp -t [-r] [-p] [-d] TARGET" / "scp -f [-r] [-p] SOURCE...").

The remote shell reads that command, so it is split into words the way a POSIX shell would (quotes and
backslashes). A command that does more than run scp (another command after ``;`` / ``&&``, a pipe, a
redirection, a subshell or command substitution) is not an scp command: None, and the proxy treats it
as any other exec. Variables and globs stay as written: the remote shell expands them, the observer
reports the names the scp protocol then carries.
"""

from __future__ import annotations

from dataclasses import dataclass

from terminal.proxy.observers.transfer import Direction

# Unquoted, these start another command, a pipe, a redirection, a subshell or a command substitution.
SHELL_OPERATORS = frozenset(";&|<>()`\n")
# What OpenSSH's scp puts on the remote command line: -v -r -p -d, then -t or -f (and -q, seen in forks).
KNOWN_FLAGS = frozenset("dfprtvq")


@dataclass(frozen=True)
class ScpCommand:
    direction: Direction  # "upload" for -t (the remote scp receives), "download" for -f
    paths: tuple[str, ...]  # -t: the one target; -f: the sources
    recursive: bool
    to_directory: bool  # -d: the target must be a directory


def parse_scp_command(command: str) -> ScpCommand | None:
    words = shell_words(command)
    if not words or words[0].rsplit("/", 1)[-1] != "scp":
        return None
    flags: set[str] = set()
    index = 1
    while index < len(words):
        word = words[index]
        if word == "--":
            index += 1
            break
        if not word.startswith("-") or word == "-":
            break
        if not set(word[1:]) <= KNOWN_FLAGS:
            return None
        flags.update(word[1:])
        index += 1
    paths = tuple(words[index:])
    if ("t" in flags) == ("f" in flags):
        return None
    if "t" in flags and len(paths) != 1:  # the remote scp refuses it too ("ambiguous target")
        return None
    if not paths:
        return None
    return ScpCommand(
        direction="upload" if "t" in flags else "download",
        paths=paths,
        recursive="r" in flags,
        to_directory="d" in flags,
    )


def shell_words(command: str) -> list[str] | None:
    """POSIX shell word splitting with quote removal; None for an operator, a substitution or an
    unterminated quote."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    index, length = 0, len(command)
    while index < length:
        char = command[index]
        if char in " \t":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            index += 1
            continue
        if char in SHELL_OPERATORS:
            return None
        if char == "#" and not in_word:
            break  # a comment runs to the end
        in_word = True
        if char == "\\":
            if index + 1 >= length:
                return None
            if command[index + 1] != "\n":
                word.append(command[index + 1])
            index += 2
        elif char == "'":
            end = command.find("'", index + 1)
            if end < 0:
                return None
            word.append(command[index + 1 : end])
            index = end + 1
        elif char == '"':
            index = _double_quoted(command, index + 1, word)
            if index < 0:
                return None
        else:
            word.append(char)
            index += 1
    if in_word:
        words.append("".join(word))
    return words


def _double_quoted(command: str, index: int, word: list[str]) -> int:
    """Append the inside of a double-quoted string to ``word``; the index after its closing quote, or -1."""
    while index < len(command):
        char = command[index]
        if char == '"':
            return index + 1
        if char == "`" or command.startswith("$(", index):
            return -1
        if char == "\\" and index + 1 < len(command) and command[index + 1] in '$`"\\\n':
            if command[index + 1] != "\n":
                word.append(command[index + 1])
            index += 2
            continue
        word.append(char)
        index += 1
    return -1
