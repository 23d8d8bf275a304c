"""Session Manager sessions: what StartSession hands out and the stream server looks up.

The registry is keyed by SessionId across accounts because the agent side of the data
channel (the stream server) only sees the SessionId in the URL and the token in the first
frame; every API call is still answered per account.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from devcloud import errors

CONNECTED = "Connected"
DISCONNECTED = "Disconnected"
TERMINATED = "Terminated"
ACTIVE_STATUSES = frozenset({"Connected", "Connecting", "Disconnected", "Terminating"})

# The AWS-owned Session documents Passport may start (moto loads none of them).
SESSION_DOCUMENTS = frozenset(
    {
        "SSM-SessionManagerRunShell",
        "AWS-StartSSHSession",
        "AWS-StartPortForwardingSession",
        "AWS-StartPortForwardingSessionToRemoteHost",
        "AWS-StartInteractiveCommand",
        "AWS-StartNonInteractiveCommand",
    }
)


@dataclass
class Session:
    session_id: str
    account_id: str
    region: str
    target: str
    document_name: str
    parameters: dict[str, list[str]]
    owner: str  # ARN of the caller of StartSession
    reason: str
    token_value: str
    stream_url: str
    started: dt.datetime
    status: str = CONNECTED
    ended: dt.datetime | None = None
    # Set when the session ends, so a stream server can close its WebSocket at once.
    terminated: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def response(self) -> dict[str, Any]:
        """One entry of DescribeSessions."""
        response: dict[str, Any] = {
            "SessionId": self.session_id,
            "Target": self.target,
            "Status": self.status,
            "StartDate": self.started,
            "DocumentName": self.document_name,
            "Owner": self.owner,
            "OutputUrl": {"S3OutputUrl": "", "CloudWatchOutputUrl": ""},
            "AccessType": "Standard",
        }
        if self.reason:
            response["Reason"] = self.reason
        if self.ended is not None:
            response["EndDate"] = self.ended
        return response


class SessionRegistry:
    """All sessions of a devcloud, thread-safe; ``stream_base_url`` may be set at any time."""

    def __init__(self, stream_base_url: str) -> None:
        self.stream_base_url = stream_base_url
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def start(
        self,
        *,
        account_id: str,
        region: str,
        target: str,
        document_name: str,
        parameters: dict[str, list[str]],
        owner: str,
        reason: str,
    ) -> Session:
        # AWS: the caller's user or role-session name, a dash, 17 hex digits.
        principal = owner.rsplit("/", 1)[-1] or "devcloud"
        session_id = f"{principal}-{secrets.token_hex(9)[:17]}"
        session = Session(
            session_id=session_id,
            account_id=account_id,
            region=region,
            target=target,
            document_name=document_name,
            parameters=parameters,
            owner=owner,
            reason=reason,
            token_value=secrets.token_urlsafe(48),
            stream_url=self._stream_url(session_id),
            started=_now(),
        )
        with self._lock:
            self._sessions[session_id] = session
        return session

    def resume(self, account_id: str, session_id: str) -> Session:
        """A new token for an active session (ResumeSession)."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.account_id != account_id or not session.active:
                raise errors.DoesNotExist(f"Session {session_id} does not exist or is not active.")
            session.token_value = secrets.token_urlsafe(48)
            session.stream_url = self._stream_url(session_id)
            return session

    def terminate(self, account_id: str, session_id: str) -> None:
        """End a session; ending an unknown or ended one is a no-op, as in AWS."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.account_id != account_id or not session.active:
                return
            session.status = TERMINATED
            session.ended = _now()
        session.terminated.set()

    def connection_changed(self, session_id: str, status: str) -> None:
        """The client's data channel dropped ("Disconnected") or a resumed one took over ("Connected").

        As in AWS, a dropped data channel does not end the session: ResumeSession may reconnect it
        until it is terminated or times out idle.
        """
        if status not in (CONNECTED, DISCONNECTED):
            raise ValueError(f"not a connection status: {status!r}")
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.status in (CONNECTED, DISCONNECTED):
                session.status = status

    def end(self, session_id: str) -> None:
        """The agent side ended the session (channel_closed, idle timeout, devcloud stopping): it is over."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or not session.active:
                return
            session.status = TERMINATED
            session.ended = _now()
        session.terminated.set()

    def sessions(self, account_id: str, region: str, *, active: bool) -> list[dict[str, Any]]:
        """DescribeSessions for one account and region, newest first."""
        with self._lock:
            found = [
                s
                for s in self._sessions.values()
                if s.account_id == account_id and s.region == region and s.active == active
            ]
            return [s.response() for s in sorted(found, key=lambda s: s.started, reverse=True)]

    def get(self, session_id: str) -> Session | None:
        """For the stream server: the session behind a data-channel URL."""
        with self._lock:
            return self._sessions.get(session_id)

    def clear(self) -> None:
        """Terminate and forget every session (moto's reset)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.terminated.set()

    def _stream_url(self, session_id: str) -> str:
        return f"{self.stream_base_url.rstrip('/')}/v1/data-channel/{session_id}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
