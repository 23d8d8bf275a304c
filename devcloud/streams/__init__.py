"""The agent's side of the Session Manager data channel: where devcloud's StreamUrls lead.

``StreamServer`` is a WebSocket server (its own thread and event loop, so synchronous code
such as ``DevCloud`` or a test can start and stop it) serving ``/v1/data-channel/<SessionId>``.
Per connection it plays what AWS splits between the Message Gateway Service and the SSM
agent on the instance:

1. the first frame must be the client's TEXT JSON with the session's TokenValue
   (``resolve_session(session_id)`` says which token, target and document; None or a wrong
   token closes the WebSocket with code 1008 and the reason);
2. it sends HandshakeRequest (SessionType "Port" with the document's properties, and
   KMSEncryption with the key id and a random Challenge if configured), waits up to 15 s (the
   agent's) for the HandshakeResponse, sends HandshakeComplete;
3. it serves the port as the agent's port plugin does (``agent.port_mode``), after refusing as
   the plugin does a ``host`` that resolves to an address the agent never forwards to (instance
   metadata, Amazon DNS, Time Sync, license activation; ``target.check_remote_host``): the
   session then ends with "Forwarding to IP address <host> is forbidden.". Like the agent it
   resolves the host once and dials the addresses it checked, never the name again. In basic mode
   it connects to the target (127.0.0.1:port: a local host's sshd, or the forwarded port)
   at once and forwards bytes both ways; a LocalPortForwarding session whose client reports
   1.1.70 or newer (in the HandshakeResponse), to an agent newer than 3.0.196.0, gets an smux
   server instead (``smux``: one target connection per stream the client opens). Messages
   are numbered, acknowledged and resent like the agent's, which holds up to 100,000 messages
   ahead of the expected one whatever their size (``agent.AGENT_LINK_CONFIG``);
4. it ends the session with channel_closed when the client sends the TerminateSession flag,
   the session is terminated through the API, or (AWS-StartSSHSession only) the target
   closes the TCP connection; a basic port-forwarding session redials on the client's next
   data instead. An instance whose agent (its ``devcloud:agent-version`` tag) is older than
   2.3.672.0 gets channel_closed with the reason before any handshake;
5. a client's WebSocket that drops does not end the session (``resumable``): it stays, as in
   AWS, Disconnected with its target connection until a WebSocket with ResumeSession's new
   token takes over, it is terminated, or no input came for the idle timeout (20 minutes).

Fault injection (``Faults``, seeded, per session) drops, duplicates, reorders and delays
the agent's outgoing stream messages and acknowledgements, and drops some incoming ones, so
the client's recovery is exercised. The unsequenced channel_closed is never faulted: the
protocol has no way to recover it.

The reliable-delivery machinery is the client's own (``ssmchannel.link``); the client's
tests check it against hand-built frames, and these two ends check each other under faults.

The package, by concern: ``target`` (what a session leads to, and the resolver over
devcloud's session registry), ``agent`` (the agent's side of one channel: handshake, link,
session end), ``targetside`` (its port mode, dialling and bytes to and from the target), ``smux`` (the
agent's smux server, sharing no code with ssmchannel's client), ``faults`` (what
goes wrong on the wire), ``resumable`` (the client's connection across WebSockets) and
``relay`` (the WebSocket server that checks the token and hands the connection to an
``AgentSession``, or to the live session a resumed client reconnects to).
"""

from __future__ import annotations

from devcloud.streams.agent import AgentSession
from devcloud.streams.faults import Faults, FaultyTransport
from devcloud.streams.relay import StreamServer
from devcloud.streams.target import ResolveSession, StreamTarget, registry_resolver

__all__ = [
    "AgentSession",
    "Faults",
    "FaultyTransport",
    "ResolveSession",
    "StreamServer",
    "StreamTarget",
    "registry_resolver",
]
