"""A CLI proxy connection reads the trusted user CA keys when its WebSocket opens
(ProxyConnection.start) and the client may take up to LOGIN_GRACE_SECONDS (60 s) before it
authenticates. A user CA key force-retired in between (a compromised key) must still be refused:
the retirement's broadcast finds no connection signed by it (not yet authenticated), so the
certificate's check (``certificate_of_grant``) reads the signing key's state at sign-in, and the
refusal is on record as the proxy's others are. A key only demoted by a rotation (trusted, no
longer signing) still logs in. Real asyncssh server (run_proxy_server) and client on a socket pair."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import asyncssh
import pytest
from asgiref.sync import async_to_sync

from core.usernames import proxy_principal
from requests_app.models import Grant
from sshca.models import CaKey
from sshca.services import ca_retire, ca_rotate, ca_trusted_public_keys, certificate_issue, certificate_key_id
from terminal.proxy.hostkey import host_certificate, process_host_key
from terminal.proxy.server import run_proxy_server
from tests.factories import make_account, make_active_request, make_instance, make_membership, make_user

# Committed for real: the proxy's database calls run on Django's shared thread, and the retirement's
# after-commit work (its broadcast to open connections) runs as it does in production.
pytestmark = pytest.mark.usefixtures("live_db")

RETIRED_REASON = "the CA key that signed the certificate is retired"


class RecordingProxy:
    """What run_proxy_server asks of the ProxyConnection: the grant, the signers it notes, the
    entries it writes (kept here, as written), and the sign-in's completion."""

    def __init__(self, grant: Grant) -> None:
        self.grant = grant
        self.client_signers: set[str] = set()
        self.logged: list[dict[str, Any]] = []
        self.done = False

    def log(self, _function: Any, **detail: Any) -> None:
        self.logged.append(detail)

    def authenticated(self) -> None:
        self.done = True


def _attempt(
    grant: Grant, instance_id: str, key: asyncssh.SSHKey, line: str, trusted: list[str], proxy: RecordingProxy
) -> bool:
    certificate = host_certificate(instance_id)

    async def attempt() -> bool:
        ours, theirs = socket.socketpair()
        server = asyncio.ensure_future(
            run_proxy_server(
                theirs, proxy=proxy, host_key=process_host_key(), host_certificate=certificate, trusted_ca_lines=trusted
            )
        )
        try:
            async with asyncssh.connect(
                host=instance_id,
                port=22,
                sock=ours,
                username=grant.username,
                known_hosts=None,
                config=None,
                agent_path=None,
                client_keys=[(key, asyncssh.import_certificate(line))],
            ):
                return True
        except asyncssh.PermissionDenied:
            return False
        except (asyncssh.Error, OSError):
            # Nothing behind this proxy past the sign-in: what counts is that its server took the
            # certificate (ProxyServer.auth_completed -> authenticated()).
            return proxy.done
        finally:
            server.cancel()

    return async_to_sync(attempt)()


@pytest.mark.parametrize("retired", [True, False], ids=["retired", "only-demoted"])
def test_a_certificate_of_a_ca_key_retired_after_the_connection_opened_is_refused(retired: bool) -> None:
    person = make_user("mallory")
    account = make_account()
    make_membership(person, account)
    instance = make_instance(account)
    access_request = make_active_request(person, account, instance)
    access_request.refresh_from_db()
    assert access_request.expires_at is not None
    grant = Grant.objects.select_related("instance", "request").get(request=access_request)
    key = asyncssh.generate_private_key("ssh-ed25519")
    line = certificate_issue(
        public_key=key.export_public_key().decode().strip(),
        principal=proxy_principal(grant.uid),
        valid_before=access_request.expires_at,
        key_id=certificate_key_id(
            grant_uid=grant.uid, request_id=access_request.pk, instance_id=instance.instance_id, person=person
        ),
        request_id=access_request.pk,
    )
    old = CaKey.objects.get(purpose="user", key_type="ed25519", state="active")
    # The WebSocket opened: ProxyConnection.start read these.
    trusted = ca_trusted_public_keys()
    # Meanwhile an admin rotates, and retires the (compromised) key by force.
    ca_rotate(key_type="ed25519")
    if retired:
        ca_retire(fingerprint=old.fingerprint, force=True)
    proxy = RecordingProxy(grant)

    accepted = _attempt(grant, instance.instance_id, key, line, trusted, proxy)

    if not retired:
        assert accepted and proxy.done, proxy.logged  # still trusted: it logs in
        assert proxy.client_signers == {old.fingerprint}
        return
    assert not accepted and not proxy.done, f"logged in with a certificate of the retired key {old.fingerprint}"
    assert proxy.client_signers == set()
    assert {"what": "certificate", "reason": RETIRED_REASON, "key": ""} in proxy.logged
