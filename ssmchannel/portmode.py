"""Which port-forwarding mode a session runs in, decided from its handshake (no I/O here).

The client side of the rule is session-manager-plugin's; the agent's side is the client version
the HandshakeResponse reports (1.1.70 or newer: smux). See ``ssmchannel.forwarding``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ssmchannel.messages import SessionType, version_tuple

# Reported in the HandshakeResponse of a multiplexed session. At least 1.1.70 (the agent's smux
# threshold) and above 1.2.331.0, so agents that know that rule turn smux keepalive off.
MUX_CLIENT_VERSION = "1.2.707.0"
LOCAL_PORT_FORWARDING = "LocalPortForwarding"
# The plugin multiplexes only with agents above this version (its config.go).
MUX_AGENT_VERSION_ABOVE = (3, 0, 196, 0)
# Up to this agent version smux keepalive stays on at the agent: the client must send NOPs.
KEEPALIVE_AGENT_VERSION_UP_TO = (3, 1, 1511, 0)
KEEPALIVE_INTERVAL = 10.0  # smux's default


def _property(properties: object, name: str) -> object:
    """A session property by name, any case (the plugin decodes them with Go's JSON rules)."""
    if not isinstance(properties, Mapping):
        return None
    for key, value in properties.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return value
    return None


def multiplexing_applies(session_type: str | None, properties: object, agent_version: str | None) -> bool:
    """The plugin's rule: LocalPortForwarding with an agent above 3.0.196.0."""
    return (
        session_type == SessionType.PORT
        and _property(properties, "type") == LOCAL_PORT_FORWARDING
        and version_tuple(agent_version or "") > MUX_AGENT_VERSION_ABOVE
    )


def keepalive_interval(agent_version: str | None) -> float | None:
    """NOPs every 10 s for agents that keep smux keepalive on (up to 3.1.1511.0), else none."""
    if version_tuple(agent_version or "") <= KEEPALIVE_AGENT_VERSION_UP_TO:
        return KEEPALIVE_INTERVAL
    return None
