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
