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

# ssh's ProxyCommand pipe into this process (the upload), widened from Linux's 64 KiB: a bulk
# upload then moves in fewer, larger reads and writes, with fewer wake-ups of ssh and of this
# process. Only that pipe, and only to 256 KiB: the kernel charges pipe buffers to the user
# (fs.pipe-user-pages-soft, 64 MiB by default), and past that every new pipe of the user, in any
# program, shrinks to 8 KiB. 1 MiB on both pipes would have reached it at 32 proxies at once (an
# ssh fan-out, Ansible's forks); 256 KiB on one leaves room for some 250.
PIPE_SIZE = 256 * 1024


def widen_pipe(fd: int, size: int = PIPE_SIZE) -> int | None:
    """Ask for a ``size``-byte buffer (at least) on the pipe at ``fd``; its size now, or None when it is not
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
        now = int(fcntl.fcntl(fd, get_size))
        if now >= size:
            return now  # never shrunk: ssh, or a user's setting, may have made it larger
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, set_size, size)
        return int(fcntl.fcntl(fd, get_size))
    except OSError:
        return None


async def stdio_streams() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """This process's stdin and stdout as asyncio streams (unbuffered), stdin's pipe widened."""
    loop = asyncio.get_running_loop()
    widen_pipe(0)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", buffering=0))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(1, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return reader, writer
