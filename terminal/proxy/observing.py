"""What a session channel of the CLI proxy does with its transfer observer (terminal.proxy.observers):
feeds it, writes down what it reports (``file.transferred``, ``file.changed``), and when it gives up,
records what it left unaccounted (bytes it held back, already relayed, either way) and everything after
it, and says so (``transfer.unobserved``). ``relay.SessionRelay`` is the one user."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from terminal.proxy import logbook
from terminal.proxy.observers import Change, Transfer

if TYPE_CHECKING:
    from terminal.proxy.recording import ChannelRecording
    from terminal.proxy.server import ProxyConnection

logger = logging.getLogger(__name__)


class Observer(Protocol):
    protocol: str
    failure: str | None
    # Once it failed: bytes relayed before the chunk it failed on that it never accounted for, the
    # client's and the instance's.
    unaccounted: bytes
    unaccounted_out: bytes

    def client_data(self, data: bytes) -> None: ...

    def server_data(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class ObservedChannel:
    """The observer's side of a relayed session channel."""

    proxy: ProxyConnection
    recording: ChannelRecording | None
    observer: Observer | None

    def _observe(self, feed: Any, data: bytes) -> None:
        try:
            feed(data)
        except Exception:
            logger.warning("a transfer observer failed on grant %s; it is dropped", self.proxy.grant.pk, exc_info=True)
            self._observer_gave_up("internal error")
            return
        if self.observer is not None and self.observer.failure is not None:
            self._observer_gave_up(self.observer.failure)

    def _observer_gave_up(self, reason: str) -> None:
        """Drop the observer (what it had open is reported incomplete); record what it left unaccounted
        (bytes it held back, already relayed) and the payload from now on."""
        observer, self.observer = self.observer, None
        if observer is None:
            return
        _close(observer)
        self._record_unobserved(observer, reason)

    def _record_unobserved(self, observer: Observer, reason: str) -> None:
        """The recording takes over from an observer that gave up (``_observer_gave_up``), and says so."""
        if self.recording is None:
            return
        note = self.recording.payload_resumed(
            observer.protocol, reason, late_input=observer.unaccounted, late_output=observer.unaccounted_out
        )
        self.proxy.log(
            logbook.proxy_unobserved,
            terminal_session=self.recording.record.pk if self.recording.record else None,
            protocol=observer.protocol,
            reason=reason,
            note=note,
            unrecorded_bytes_in=self.recording.unrecorded_in,
            unrecorded_bytes_out=self.recording.unrecorded_out,
        )

    def changed(self, change: Change) -> None:
        """The sftp observer saw a file removed, renamed, linked or its attributes set (``file.changed``)."""
        if self.recording is not None:
            self.recording.files_changed += 1
        self.proxy.log(
            logbook.proxy_file_changed,
            terminal_session=self.recording.record.pk if self.recording and self.recording.record else None,
            change=change,
        )

    def transferred(self, transfer: Transfer) -> None:
        """An observer saw a file go up or down: a Logbook entry (from the event loop)."""
        self.proxy.log(
            logbook.proxy_transfer,
            terminal_session=self.recording.record.pk if self.recording and self.recording.record else None,
            protocol=transfer.protocol,
            path=str(transfer.path),
            direction=str(transfer.direction),
            size=int(transfer.size),
            sha256=str(transfer.sha256),
            complete=bool(transfer.complete),
        )

    def _observer_ended(self) -> None:
        """The channel ended: the observer reports what was under way (closed once); one that could not
        account for what it held back gives up, so that it is recorded."""
        observer, self.observer = self.observer, None
        if observer is None:
            return
        _close(observer)
        if observer.failure is not None:
            self._record_unobserved(observer, observer.failure)


def _close(observer: Observer) -> None:
    """The observer reports what it had open (as incomplete, if it was)."""
    try:
        observer.close()
    except Exception:
        logger.warning("a transfer observer failed to close", exc_info=True)
