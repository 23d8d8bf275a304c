"""The portal's log lines: one record per line, whatever outside text a message quotes."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from logging.config import dictConfig
from typing import Any

import pytest

from core.logs import OneLine


@pytest.fixture
def written(settings: Any) -> Iterator[io.StringIO]:
    """What the portal's console handler (settings.LOGGING) writes, into a buffer."""
    stream = io.StringIO()
    config = {
        **settings.LOGGING,
        "handlers": {"console": {**settings.LOGGING["handlers"]["console"], "stream": stream}},
    }
    dictConfig(config)
    yield stream
    dictConfig(settings.LOGGING)


def test_text_quoted_in_a_message_cannot_start_a_line_of_its_own(written: io.StringIO) -> None:
    # An SSH peer's DISCONNECT reason, a client's field names: text from outside, logged with %s.
    peer = "bye\r\n2031-01-01 00:00:00,000 WARNING accounts.saml.views SAML accepted: admin\u2028\u202e\x1b[2J"

    logging.getLogger("terminal.proxy.session").warning("the client ended the connection: %s", peer)

    lines = written.getvalue().splitlines()
    assert len(lines) == 1 and "\u202e" not in lines[0] and "\x1b" not in lines[0]
    assert lines[0].endswith(
        "WARNING terminal.proxy.session the client ended the connection: bye\\x0d\\x0a2031-01-01 00:00:00,000 "
        "WARNING accounts.saml.views SAML accepted: admin\\u2028\\u202e\\x1b[2J"
    )


def test_a_traceback_still_follows_on_lines_of_its_own(written: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("workers.tasks").exception("failed: %s", "a\nb")

    first, *rest = written.getvalue().splitlines()
    assert first.endswith("ERROR workers.tasks failed: a\\x0ab")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"


# An agent's channel_closed output: a line that reads as a record of its own, and escapes that hide it.
FORGED = "bye\n2031-01-01 00:00:00,000 INFO audit.services admin approved request 42\x1b[8m\u202e"
FORGED_SHOWN = "bye\\x0a2031-01-01 00:00:00,000 INFO audit.services admin approved request 42\\x1b[8m\\u202e"


def _closed_by_the_agent(output: str) -> BaseException:
    """The ChannelClosedError a DataChannel raises when the agent closes it while it starts (real code)."""
    from ssmchannel.channel import DataChannel
    from ssmchannel.transport import memory_pair
    from tests.ssmchannel.aio import ScriptedAgent

    async def run() -> BaseException:
        client_end, agent_end = memory_pair()
        channel = DataChannel(client_end, token="tok", ping_interval=None)
        agent = ScriptedAgent(agent_end)
        start = asyncio.create_task(channel.start(handshake_timeout=5))
        await agent.frame()
        await agent.close_channel(output)
        try:
            await start
        except Exception as exc:
            return exc
        finally:
            await channel.close(terminate=False)
        raise AssertionError("the channel started")

    return asyncio.run(run())


def test_what_an_exception_says_stays_on_its_line(written: io.StringIO) -> None:
    # terminal.session logs the terminal's failure with its traceback, which ends with the agent's text.
    closed = _closed_by_the_agent(FORGED)
    try:
        raise RuntimeError("the terminal failed") from closed
    except RuntimeError:
        logging.getLogger("terminal.session").exception("terminal on grant %s failed", 7)

    text = written.getvalue()
    assert "\x1b" not in text and "\u202e" not in text
    lines = text.splitlines()
    assert lines[0].endswith("ERROR terminal.session terminal on grant 7 failed")
    assert [line for line in lines if "audit.services" in line] == [
        f"ssmchannel.errors.ChannelClosedError: {FORGED_SHOWN}"
    ]
    assert lines[1] == "Traceback (most recent call last):"
    assert "The above exception was the direct cause of the following exception:" in lines
    assert lines[-1] == "RuntimeError: the terminal failed"


def test_the_workers_handlers_get_the_same_filter() -> None:
    # Celery sets up its own handlers and formats in the worker; the portal adds its filter to each.
    from celery.signals import after_setup_task_logger

    stream = io.StringIO()
    logger = logging.getLogger("celery.task.probe")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    logger.addHandler(handler)
    try:
        after_setup_task_logger.send(
            sender=None, logger=logger, loglevel=logging.INFO, logfile=None, format="", colorize=False
        )
        logger.warning("tag: %s", "web\nforged line")
    finally:
        logger.removeHandler(handler)

    assert stream.getvalue() == "[celery.task.probe] tag: web\\x0aforged line\n"


def test_the_workers_handlers_escape_what_an_exception_says() -> None:
    # Celery's own formatter in the worker, its traceback included.
    from celery.signals import after_setup_logger
    from celery.utils.log import ColorFormatter

    stream = io.StringIO()
    logger = logging.getLogger("celery.probe")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ColorFormatter("[%(levelname)s/%(name)s] %(message)s", use_color=False))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        after_setup_logger.send(
            sender=None, logger=logger, loglevel=logging.INFO, logfile=None, format="", colorize=False
        )
        try:
            raise _closed_by_the_agent(FORGED)
        except Exception:
            logger.exception("task failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    lines = stream.getvalue().splitlines()
    assert lines[0] == "[ERROR/celery.probe] task failed"
    assert lines[-1] == f"ssmchannel.errors.ChannelClosedError: {FORGED_SHOWN}"
    assert "\x1b" not in stream.getvalue()


def test_a_message_whose_arguments_do_not_fit_is_left_to_the_handler_to_report() -> None:
    # A bug in a log call: the handler reports it ("--- Logging error ---"), the filter must not raise.
    record = logging.LogRecord("workers.tasks", logging.WARNING, __file__, 1, "two values: %s %s", ("one",), None)

    assert OneLine().filter(record) is True
    assert record.msg == "two values: %s %s" and record.args == ("one",)


# A SyntaxError's file name and source text come from whatever was parsed (a template, a file a
# person named, an agent's output run through ast): each may hold a line that reads as a record.
FORGED_FILE = "x\n2026-01-01 CRITICAL forged"
FORGED_TEXT = "ok = 1\r2026-01-01 CRITICAL forged\x1b[2K\n"


def test_a_syntax_errors_file_name_and_text_stay_on_their_lines(written: io.StringIO) -> None:
    try:
        raise SyntaxError("invalid syntax", (FORGED_FILE, 1, 3, FORGED_TEXT))
    except SyntaxError:
        logging.getLogger("workers.tasks").exception("parsing failed")

    text = written.getvalue()
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    assert [line for line in lines if "CRITICAL" in line] == [
        '  File "x\\x0a2026-01-01 CRITICAL forged", line 1',
        "    ok = 1\\x0d2026-01-01 CRITICAL forged\\x1b[2K",
    ]
    assert lines[-1] == "SyntaxError: invalid syntax"


def test_a_frames_file_and_function_names_stay_on_their_lines(written: io.StringIO) -> None:
    # Code compiled under a name from outside: the frame's file name is that name.
    code = compile("def run():\n    raise ValueError('boom')\nrun()\n", "plugin\n2026-01-01 CRITICAL forged", "exec")
    try:
        exec(code, {})  # noqa: S102 - the test's own constant source
    except ValueError:
        logging.getLogger("workers.tasks").exception("plugin failed")

    lines = written.getvalue().splitlines()
    assert not [line for line in lines if line.startswith("2026-01-01")]
    assert '  File "plugin\\x0a2026-01-01 CRITICAL forged", line 3, in <module>' in lines
    assert '  File "plugin\\x0a2026-01-01 CRITICAL forged", line 2, in run' in lines
    assert lines[-1] == "ValueError: boom"


def test_a_note_stays_on_its_line(written: io.StringIO) -> None:
    try:
        error = ValueError("boom")
        error.add_note(f"while reading {FORGED_FILE}")
        raise error
    except ValueError:
        logging.getLogger("workers.tasks").exception("failed")

    lines = written.getvalue().splitlines()
    assert lines[-2:] == ["ValueError: boom", "while reading x\\x0a2026-01-01 CRITICAL forged"]
