"""What the request page says about reaching a ready Windows instance: what `passport connect` does.

The CLI (``passport_cli.connect_commands``) forwards a free local port to the instance's Remote
Desktop port over a Session Manager session and prints ``Host: 127.0.0.1:PORT``, the username
and the password; the page shows the same, so the requester knows what to type before running it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from requests_app.models import AccessRequest, Grant, GrantStatus, Instance

# What `passport connect` forwards to on Windows unless told `--remote-port`.
RDP_PORT = 3389


@dataclass(frozen=True)
class RemoteDesktop:
    grant: Grant
    # The INSTANCE argument of `passport connect`: the Name when the CLI would pick this instance by
    # it (a plain host name, unique in the request, no other instance's id), otherwise the instance id.
    # Either is safe to paste into a shell: ids and host names hold no quotes, spaces or `$`.
    target: str
    request_id: int
    remote_port: int = RDP_PORT

    @property
    def command(self) -> str:
        return f"passport connect {self.target} --request {self.request_id}"

    @property
    def domain_account(self) -> bool:
        """On a domain controller the user is a domain account; elsewhere a local one (as the grant recorded)."""
        return self.grant.domain_account


def connect_target(grant: Grant, grants: Sequence[Grant]) -> str:
    """The name `passport connect --request N` finds this grant's instance by, as `pick` does there."""
    instance = grant.instance
    others = [other.instance for other in grants if other.pk != grant.pk]
    if (
        instance.name_is_host_alias
        and all(other.name != instance.name for other in others)
        and all(other.instance_id != instance.name for other in others)
    ):
        return instance.name
    return instance.instance_id


def remote_desktops(access_request: AccessRequest, grants: Sequence[Grant], user: object) -> list[RemoteDesktop]:
    """The requester's ready Windows grants of an active request, with how to reach each one."""
    if not access_request.in_force() or access_request.requester_id != getattr(user, "pk", None):
        return []
    return [
        RemoteDesktop(grant=grant, target=connect_target(grant, grants), request_id=access_request.pk)
        for grant in grants
        if grant.status == GrantStatus.READY and grant.platform == Instance.Platform.WINDOWS
    ]
