"""stdin and stdout as asyncio streams, for ``passport proxy`` under ssh's ProxyCommand (both of
its paths: the data channel itself, ``passport_cli.tunnel``, and the portal's recording proxy,
``passport_cli.proxy_socket``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no pipes to widen
    fcntl = None  # type: ignore[assignment]

# ssh's ProxyCommand pipes, widened from Linux's 64 KiB: a bulk upload then moves in fewer,
# larger reads and writes, with fewer wake-ups of ssh and of this process. 1 MiB is the most an
# unprivileged process may ask for by default (/proc/sys/fs/pipe-max-size).
PIPE_SIZE = 1024 * 1024


def widen_pipe(fd: int, size: int = PIPE_SIZE) -> int | None:
    """Ask for a ``size``-byte buffer on the pipe at ``fd``; its size now, or None when it is not
    a pipe (a terminal, a socket, a file) or the system has no such setting. A refusal (a
    lower pipe-max-size, the user's pipe quota spent) leaves the pipe as it was."""
    if fcntl is None:
        return None
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    get_size = getattr(fcntl, "F_GETPIPE_SZ", None)
    if set_size is None or get_size is None:
        return None
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, set_size, size)
        return int(fcntl.fcntl(fd, get_size))
    except OSError:
        return None


async def stdio_streams() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """This process's stdin and stdout as asyncio streams (unbuffered), their pipes widened."""
    loop = asyncio.get_running_loop()
    for fd in (0, 1):
        widen_pipe(fd)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(1, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer
