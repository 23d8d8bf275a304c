"""Protocol observers: what files went up or down through the recording proxy, from the channel's bytes.

Pure Python, no Django and no I/O: the relay feeds each direction's bytes (client_data before relaying
them to the instance, server_data before relaying them to the client, stdout only) and ``close()`` when
the channel ends; each file transfer is reported as a ``Transfer`` to the callback, and each other
change sftp makes (remove, rename, chmod...) as a ``Change``.
"""

from __future__ import annotations

from collections.abc import Callable

from terminal.proxy.observers.scp import ScpObserver
from terminal.proxy.observers.sftp import SftpObserver
from terminal.proxy.observers.transfer import Change, Transfer, safe_path

__all__ = ["Change", "ScpObserver", "SftpObserver", "Transfer", "observer_for", "safe_path"]


def observer_for(
    *,
    command: str | None,
    subsystem: str | None,
    on_transfer: Callable[[Transfer], None],
    on_change: Callable[[Change], None] | None = None,
) -> SftpObserver | ScpObserver | None:
    """The observer of one session channel: the sftp subsystem, a legacy scp exec, or None (a shell,
    another command or subsystem: nothing to observe)."""
    if subsystem == "sftp":
        return SftpObserver(on_transfer, on_change=on_change)
    if subsystem is None and command:
        return ScpObserver.for_command(command, on_transfer)
    return None
