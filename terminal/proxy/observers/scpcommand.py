"""Recognising a legacy scp exec request: exactly the command line OpenSSH's scp sends the remote side.

scp (scp.c) runs ``scp [-v] [-r] [-p] [-d] -t [--] TARGET`` for an upload and ``scp [-v] [-r] [-p] [-d]
-f [--] SOURCE`` for each source of a download: the program named ``scp`` (found on the remote PATH),
its flags one to a word in that order, ``--`` when the path starts with ``-``, and one path as the user
typed it. Nothing else is taken for scp, because what is taken is not recorded byte for byte (its files
are on record by digest): not a path to a program (``~/bin/scp``, ``/usr/bin/scp``: anything can be
called that), not combined or other flags, not several paths, and no shell metacharacter (an operator,
a substitution, a variable, a glob, a quote other than one whole single-quoted path, a comment or a
control character). Such a command is any other exec to the proxy, recorded as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from terminal.proxy.observers.transfer import Direction

COMMAND = re.compile(r"scp(?P<v> -v)?(?P<r> -r)?(?P<p> -p)?(?P<d> -d)? -(?P<mode>[tf])(?P<dashes> --)? (?P<path>.+)")
# A path the remote shell passes on as it is: a tilde prefix at most, a space only escaped by a backslash
# (``host:a\\ b``), no other character it would act on.
PLAIN_PATH = re.compile(r"~?(?:[^\s|&;<>()$`\\\"'*?\[\]{}#!~]|\\ )*")
QUOTED_PATH = re.compile(r"'([^']*)'")


@dataclass(frozen=True)
class ScpCommand:
    direction: Direction  # "upload" for -t (the remote scp receives), "download" for -f
    paths: tuple[str, ...]  # the one target (-t) or source (-f)
    recursive: bool
    to_directory: bool  # -d: the target must be a directory


def parse_scp_command(command: str) -> ScpCommand | None:
    """The scp command OpenSSH's scp sends, parsed; None for anything else."""
    match = COMMAND.fullmatch(command)
    if match is None:
        return None
    path = _path(match["path"])
    if not path or (path.startswith("-") and not match["dashes"]):
        return None
    return ScpCommand(
        direction="upload" if match["mode"] == "t" else "download",
        paths=(path,),
        recursive=bool(match["r"]),
        to_directory=bool(match["d"]),
    )


def _path(word: str) -> str | None:
    if not word.isprintable():
        return None
    quoted = QUOTED_PATH.fullmatch(word)
    if quoted is not None:
        return quoted[1]
    if PLAIN_PATH.fullmatch(word) is not None:
        return word.replace("\\ ", " ")
    return None
