"""The Session Manager documents Passport starts sessions with (one spelling for the portal, the CLI and devcloud)."""

from __future__ import annotations

# A raw byte stream to the instance's sshd (port 22 unless ``portNumber`` says otherwise).
SSH_DOCUMENT = "AWS-StartSSHSession"
# A raw byte stream to one port of the instance (``portNumber``).
PORT_FORWARDING_DOCUMENT = "AWS-StartPortForwardingSession"
# The same to a host the instance reaches (``host``); devcloud serves it, Passport never starts it.
PORT_FORWARDING_TO_REMOTE_HOST_DOCUMENT = "AWS-StartPortForwardingSessionToRemoteHost"
# What Passport's sessions may use: its portal role and the scoped credentials allow these two only.
SESSION_DOCUMENTS = (SSH_DOCUMENT, PORT_FORWARDING_DOCUMENT)
# Where the agent's port plugin never forwards (amazon-ssm-agent appconfig/constants.go
# DefaultDeniedPortForwardingRemoteIPs): the instance metadata service (the instance role's
# credentials), the Amazon DNS server, Amazon Time Sync and Windows license activation. devcloud's
# agent side refuses them; the portal refuses them as forward destinations (core.destinations).
AGENT_DENIED_REMOTE_IPS = (
    "169.254.169.254",
    "fd00:ec2::254",
    "169.254.169.253",
    "fd00:ec2::253",
    "169.254.169.123",
    "fd00:ec2::123",
    "169.254.169.250",
    "169.254.169.251",
    "fd00:ec2::240",
)
