"""The CLI's log lines (the data channel's warnings, a traceback) reach the engineer's terminal on
stderr: one line each, with what the far end put in them escaped."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.cli.conftest import ROOT

# OSC 52 writes the clipboard, CSI clears the screen and hides text, a newline fakes a line of the CLI's own.
HOSTILE = "bye\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2J\\npassport: you are signed out; run passport auth login\\x1b[8m"


def _stderr_of(body: str) -> str:
    """Runs ``body`` in a fresh Python after a `passport` command has run (which sets up its logging)."""
    script = "from passport_cli.main import main\nassert main(['version']) == 0\n" + textwrap.dedent(body)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_a_warning_quoting_the_far_end_is_one_escaped_line() -> None:
    stderr = _stderr_of(
        f"""
        import logging
        logging.getLogger("ssmchannel.channel.incoming").warning("unreadable flag: %s", "{HOSTILE}")
        logging.getLogger("ssmchannel.link").info("not shown: below WARNING")
        """
    )

    assert stderr == (
        "passport: unreadable flag: bye\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2J\\npassport: you are signed out; "
        "run passport auth login\\x1b[8m\n"
    )


def test_the_data_channels_own_warnings_are_escaped() -> None:
    # A text frame, and a frame whose message type is an escape sequence and whose digest does not match.
    stderr = _stderr_of(
        f"""
        import asyncio
        from ssmchannel.messages import ClientMessage
        from tests.ssmchannel.aio import open_scripted

        async def hostile() -> None:
            channel, agent, _ = await open_scripted()
            await agent.transport.send("{HOSTILE}")
            frame = bytearray(ClientMessage(message_type="\\x1b]0;owned\\x07\\x1b[31m", payload=b"p").encode())
            frame[80] ^= 1
            await agent.send(bytes(frame))
            await agent.nothing()
            await channel.close(terminate=False)

        asyncio.run(hostile())
        """
    )

    assert "\x1b" not in stderr and "\x07" not in stderr
    assert stderr.splitlines() == [
        "passport: ignoring a text frame on the data channel: "
        "'bye\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2J\\npassport: you are signed out; run passport auth logi'",
        "passport: dropping an invalid frame: payload digest mismatch in '\\x1b]0;owned\\x07\\x1b[31m' #0",
    ]


def test_a_traceback_keeps_the_agents_close_reason_on_the_exceptions_line() -> None:
    # ChannelClosedError carries the agent's channel_closed output as it came.
    stderr = _stderr_of(
        f"""
        import asyncio, logging
        from ssmchannel.channel import DataChannel
        from ssmchannel.transport import memory_pair
        from tests.ssmchannel.aio import ScriptedAgent

        async def hostile() -> None:
            client_end, agent_end = memory_pair()
            channel = DataChannel(client_end, token="tok", ping_interval=None)
            agent = ScriptedAgent(agent_end)
            start = asyncio.create_task(channel.start(handshake_timeout=5))
            await agent.frame()
            await agent.close_channel("{HOSTILE}")
            try:
                await start
            except Exception:
                logging.getLogger("ssmchannel.tunnel").exception("the session failed")
            await channel.close(terminate=False)

        asyncio.run(hostile())
        """
    )

    assert "\x1b" not in stderr and "\x07" not in stderr
    lines = stderr.splitlines()
    assert lines[0] == "passport: the session failed"
    assert lines[1] == "Traceback (most recent call last):"
    assert [line for line in lines if line.startswith("passport:")] == [lines[0]]
    assert lines[-1] == (
        "ssmchannel.errors.ChannelClosedError: bye\\x1b]52;c;cm0gLXJmIH4K\\x07\\x1b[2J\\npassport: you are signed out; "
        "run passport auth login\\x1b[8m"
    )


def test_a_syntax_errors_file_name_and_text_stay_on_their_lines() -> None:
    stderr = _stderr_of(
        """
        import logging
        try:
            raise SyntaxError("invalid syntax", ("x\\npassport: forged", 1, 3, "ok = 1\\rpassport: forged\\x1b[2K\\n"))
        except SyntaxError:
            logging.getLogger("ssmchannel.tunnel").exception("the session failed")
        """
    )

    assert "\x1b" not in stderr and "\r" not in stderr
    lines = stderr.splitlines()
    assert [line for line in lines if line.startswith("passport:")] == ["passport: the session failed"]
    assert '  File "x\\npassport: forged", line 1' in lines
    assert lines[-1] == "SyntaxError: invalid syntax"
