"""Errors of the data-channel client, in one place so every module can raise them without cycles."""

from __future__ import annotations


class ChannelError(Exception):
    """Base class: something went wrong with a Session Manager data channel."""


class MessageError(ChannelError):
    """A frame or payload that does not follow the ClientMessage layout (or its JSON schema).

    The channel drops such a frame without acknowledging it, so a sender that merely
    corrupted one copy sends it again.
    """


class HandshakeError(ChannelError):
    """The agent's handshake did not complete (timeout, or a request this client cannot meet)."""


class ChannelClosedError(ChannelError):
    """The channel is closed; ``reason`` says why (the agent's channel_closed output, a flag...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransportClosed(ChannelError):
    """The WebSocket (or in-memory stand-in) under the channel is gone."""

    def __init__(self, reason: str = "connection closed") -> None:
        super().__init__(reason)
        self.reason = reason
