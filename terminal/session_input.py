"""A browser terminal's input, kept to its window (terminal.flow; terminal.session's ``ShellSession``
mixes it in).

Every input frame is taken at once (daphne would queue it anyway) and written to the shell, and
``taken`` tells the page how much, once what waits for the instance has drained (``_input_taken``);
the page keeps the rest of a paste until then. A shell that reads nothing thus costs the web process
at most ``INPUT_MAX_UNTAKEN`` of input, past which the client is not keeping to the window and the
terminal is closed (``INPUT_NOT_TAKEN``, close code 4507). Storage falling behind on the recording
holds the ``taken`` until it catches up (terminal.live_recording), as it holds the output.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from terminal import flow, frames

if TYPE_CHECKING:
    from terminal.bridge import SshBridge
    from terminal.live import LiveFeed
    from terminal.recording import AsciicastWriter

logger = logging.getLogger(__name__)

INPUT_NOT_TAKEN = (
    "The instance is not reading this terminal's input, and more kept coming "
    f"(over {flow.INPUT_MAX_UNTAKEN // (1024 * 1024)} MiB of it waited); the terminal was closed."
)


class InputWindow:
    """Mixed into ShellSession, which sets these attributes and the methods named below."""

    grant_id: int
    bridge: SshBridge | None
    recording: AsciicastWriter | None
    live: LiveFeed | None
    _closing: bool
    _last_input: float
    # Bytes the page sent (written to the shell or dropped), the count the last ``taken`` gave it,
    # and the task that sends the next one once input drained (each terminal's own once it changes).
    _input_received: int = 0
    _input_taken_told: int = 0
    _taking: asyncio.Task[None] | None = None

    if TYPE_CHECKING:  # ShellSession's own, and RecordingMixin's (terminal.live_recording)

        async def send_text(self, text: str) -> None: ...

        def end_soon(self, reason: str, *, code: int = ..., notify: bool = True) -> None: ...

        async def _recording_caught_up(self) -> None: ...

    async def _on_input(self, frame: frames.Input) -> None:
        self._last_input = time.monotonic()
        # Counted whatever becomes of it: the page counts what it sent (terminal.flow).
        self._input_received += len(frame.data)
        if self._input_received - self._input_taken_told > flow.INPUT_MAX_UNTAKEN:
            logger.warning("terminal on grant %s: input past the window while the instance reads none", self.grant_id)
            self.end_soon(INPUT_NOT_TAKEN, code=frames.CLOSE_INPUT_NOT_TAKEN)
            return
        # Dropped before the prompt (not logged in yet), and while moderated with no approver watching.
        if self.bridge is not None and self.recording is not None and (self.live is None or self.live.running):
            self.recording.input(frame.data)
            self.bridge.write(frame.data)
        if self._taking is None and self._input_received - self._input_taken_told >= flow.INPUT_TAKEN_EVERY:
            self._taking = asyncio.create_task(self._input_taken())

    async def _input_taken(self) -> None:
        """Tell the page how much of its input was taken, once the recording's storage is not behind
        and at most asyncssh's low-water mark of it waits for the instance; again while it has sent
        ``INPUT_TAKEN_EVERY`` more since (it may be waiting for this to send the rest)."""
        try:
            while not self._closing and self._input_received - self._input_taken_told >= flow.INPUT_TAKEN_EVERY:
                await self._recording_caught_up()
                if self.bridge is not None:
                    await self.bridge.input_sent()
                if self._closing:
                    return
                # Everything received so far was written before the wait ended: drained with it.
                self._input_taken_told = self._input_received
                await self.send_text(frames.encode("taken", bytes=self._input_taken_told))
        except Exception:
            logger.warning("terminal on grant %s: input taken, not told", self.grant_id, exc_info=True)
        finally:
            self._taking = None

    def _stop_taking(self) -> None:
        """The ending began: the ``taken`` under way, if any, is cancelled."""
        if self._taking is not None:
            self._taking.cancel()
