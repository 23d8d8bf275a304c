"""Finding the programs the CLI runs (ssh, ssh-keygen): in PATH's absolute entries, nowhere else.

``shutil.which``, and ``subprocess`` given a bare name, look in the current directory first on
Windows (CreateProcess's search; Python's which prepends it too, and from 3.12 asks
NeedCurrentDirectoryForExePathW, true unless NoDefaultCurrentDirectoryInExePath is set), and on
every OS follow PATH's relative entries ("." or "bin", and on POSIX an empty one: a leading,
trailing or doubled ":") from the current directory. `passport connect` run in a downloaded folder
would run the ssh.exe planted there. Here a program is looked for only in absolute PATH entries,
and on Windows only as a .com or .exe (in PATHEXT's order): a .bat or .cmd runs under cmd.exe,
which parses its arguments (a host name, the remote command) a second time.
"""

from __future__ import annotations

import ntpath
import os
import posixpath

# What Windows runs as a program itself; anything else in PATHEXT goes through an interpreter.
_WINDOWS_PROGRAMS = (".COM", ".EXE")


def _absolute_entry(entry: str, *, windows: bool) -> str | None:
    """``entry`` when it names a directory whatever the current one is, else None."""
    if not windows:
        return entry if entry.startswith("/") else None
    entry = entry.strip().strip('"')  # Windows allows a quoted entry ("C:\Program Files\...")
    drive, rest = ntpath.splitdrive(entry)
    # A drive and a root (C:\tools) or a UNC share (\\server\share\tools); not \tools (the
    # current drive's) nor C:tools (relative to drive C's current directory).
    return entry if drive and (drive.startswith(("\\\\", "//")) or rest.startswith(("\\", "/"))) else None


def executable_candidates(name: str, *, path: str | None, windows: bool, pathext: str | None) -> list[str]:
    """The files that may be ``name``, in the order to try them: each absolute PATH entry (split by
    the flavour's separator) joined with ``name`` (on Windows, with each of PATHEXT's .COM and .EXE
    unless ``name`` ends in one). A ``name`` with a directory in it is not looked up at all."""
    flavour = ntpath if windows else posixpath
    if not name or "/" in name or "\\" in name:  # ours are bare names; a path is nobody's to search for
        return []
    names = [name]
    if windows:
        offered = (pathext or ";".join(_WINDOWS_PROGRAMS)).split(";")
        extensions = [ext for ext in offered if ext.upper() in _WINDOWS_PROGRAMS]
        if not name.upper().endswith(tuple(ext.upper() for ext in extensions)):
            names = [name + ext for ext in extensions]
    candidates: list[str] = []
    for entry in (path or "").split(";" if windows else ":"):
        directory = _absolute_entry(entry, windows=windows)
        if directory is None:
            continue
        for each in names:
            candidate = flavour.join(directory, each)
            if candidate not in candidates:
                candidates.append(candidate)
    return candidates


def find_executable(name: str, *, path: str | None, windows: bool, pathext: str | None) -> str | None:
    """The first of ``executable_candidates`` that is an executable file, or None."""
    for candidate in executable_candidates(name, path=path, windows=windows, pathext=pathext):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def which(name: str) -> str | None:
    """``name`` as this machine's PATH has it (absolute entries only), or None: what the CLI runs."""
    return find_executable(
        name, path=os.environ.get("PATH", os.defpath), windows=os.name == "nt", pathext=os.environ.get("PATHEXT")
    )
