"""A terminal's closing reason can quote the far end (an agent's channel_closed text, an sshd's
disconnect message): the browser and a watcher get it with every hidden or reordering character
written as an escape (``core.text.visible``), never raw."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from terminal import watch
from terminal.session import ShellSession

HOSTILE = "The connection to the instance failed: bye\r\n\x1b]52;c;cm0gLXJmIH4K\x07\u202eexe.sumoN\u202c \x00"


class Browser:
    def __init__(self) -> None:
        self.texts: list[dict[str, Any]] = []
        self.codes: list[int] = []

    async def send_text(self, text: str) -> None:
        self.texts.append(json.loads(text))

    async def send_bytes(self, data: bytes) -> None:
        raise AssertionError("no output was expected")

    async def close(self, code: int) -> None:
        self.codes.append(code)


def _assert_shown_escaped(reason: str) -> None:
    assert not any(char in reason for char in "\r\n\x1b\x07\x00\u202e\u202c"), repr(reason)
    assert "\\x1b]52;c;cm0gLXJmIH4K\\x07" in reason and "\\u202eexe.sumoN\\u202c" in reason


def test_the_browser_gets_a_far_end_closing_reason_escaped() -> None:
    browser = Browser()
    session = ShellSession(user=None, grant_id=1, session_key=None, browser=browser)  # type: ignore[arg-type]

    asyncio.run(session.end(HOSTILE))

    (closed,) = [frame for frame in browser.texts if frame["type"] == "closed"]
    _assert_shown_escaped(closed["reason"])
    assert browser.codes


def test_a_watcher_gets_a_far_end_closing_reason_escaped() -> None:
    sent: list[dict[str, Any]] = []
    consumer = watch.WatchConsumer.__new__(watch.WatchConsumer)

    async def send(text_data: str) -> None:
        sent.append(json.loads(text_data))

    async def close(code: int) -> None:
        pass

    consumer.send = send
    consumer.close = close

    asyncio.run(consumer.live_ended({"reason": HOSTILE}))

    (closed,) = [frame for frame in sent if frame["type"] == "closed"]
    _assert_shown_escaped(closed["reason"])
