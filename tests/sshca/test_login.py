"""Logins with issued certificates against a real OpenSSH 9.2 sshd, with OpenSSH's ssh and asyncssh.

The host trusts the CA the way provisioning sets it up: each user's authorized_keys has
``cert-authority,principals="<user>" <key>`` for every active and trusted CA key, and no
sshd_config change. Every refusal is checked in sshd's log too, so a test cannot pass
because the login failed for some other reason.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from sshca.certformat import UserCertificateFields, certificate_line, sign_user_certificate
from sshca.models import CaKey
from sshca.services import (
    ca_authorized_keys_lines,
    ca_key_ensure,
    ca_retire,
    ca_rotate,
    certificate_issue,
    certificates_for_key,
)
from sshca.services.keys import _ca_private_key
from tests.sshca.conftest import ALICE, ALICE_PRINCIPAL, BOB, BOB_PRINCIPAL, SshHost, UserKey, UserKeys
from tests.sshd import LoginResult, LoopbackSshd, asyncssh_run, greeter, openssh_run

pytestmark = pytest.mark.django_db

CLIENTS = ["openssh", "asyncssh"]
WriteCertificate = Callable[[str, str], Path]


def _issue(key: UserKey, principal: str = ALICE_PRINCIPAL, **overrides: object) -> str:
    arguments: dict[str, object] = {
        "public_key": key.public_line,
        "principal": principal,
        "valid_before": timezone.now() + timedelta(hours=1),
        "key_id": f"request 1 {principal}",
    }
    arguments.update(overrides)
    return certificate_issue(**arguments)  # type: ignore[arg-type]


def _login(
    client: str,
    host: SshHost,
    daemon: LoopbackSshd,
    key: UserKey,
    certificates: list[str],
    write_certificate: WriteCertificate,
    username: str = ALICE,
) -> LoginResult:
    port = host.port(daemon)
    if client == "openssh":
        files = [write_certificate(f"cert-{index}", line) for index, line in enumerate(certificates)]
        return openssh_run(port=port, username=username, identity_file=key.identity_file, certificate_file=files)
    return asyncssh_run(port=port, username=username, private_key=key.private_openssh, certificate=certificates)


def _assert_logged_in(result: LoginResult, username: str = ALICE) -> None:
    assert result.ok, result.stderr
    assert result.stdout.strip() == username


def _assert_refused(result: LoginResult) -> None:
    assert not result.ok
    assert result.stdout == ""
    assert "Permission denied" in result.stderr or "PermissionDenied" in result.stderr, result.stderr


# --- what works ---------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_an_ed25519_certificate_logs_in(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate, client: str
) -> None:
    line = _issue(user_keys.ed25519)
    mark = trusting_host.modern.log_mark()

    result = _login(client, trusting_host, trusting_host.modern, user_keys.ed25519, [line], write_certificate)

    _assert_logged_in(result)
    fingerprint = CaKey.objects.get(key_type="ed25519").fingerprint
    trusting_host.modern.wait_for_log(
        rf"Accepted publickey for rs-alicexyz .*ED25519-CERT .*serial {_serial(line)}\) "
        rf"CA ED25519 {re.escape(fingerprint)}",
        since=mark,
    )


@pytest.mark.parametrize("client", CLIENTS)
def test_an_rsa_certificate_signed_with_sha2_logs_in(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate, client: str
) -> None:
    line = _issue(user_keys.rsa, signature_algorithm="rsa-sha2-512")

    result = _login(client, trusting_host, trusting_host.modern, user_keys.rsa, [line], write_certificate)

    _assert_logged_in(result)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_sha1_certificate_works_only_where_sshd_allows_ssh_rsa(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate, client: str
) -> None:
    line = _issue(user_keys.rsa, signature_algorithm="ssh-rsa")
    mark = trusting_host.modern.log_mark()

    on_modern = _login(client, trusting_host, trusting_host.modern, user_keys.rsa, [line], write_certificate)
    on_legacy = _login(client, trusting_host, trusting_host.legacy, user_keys.rsa, [line], write_certificate)
    on_old = _login(client, trusting_host, trusting_host.sha1_only, user_keys.rsa, [line], write_certificate)

    _assert_refused(on_modern)
    trusting_host.modern.wait_for_log(
        "certificate signature algorithm ssh-rsa: signature algorithm not supported", since=mark
    )
    _assert_logged_in(on_legacy)
    _assert_logged_in(on_old)


@pytest.mark.parametrize("client", CLIENTS)
def test_the_certificates_for_an_rsa_key_log_in_on_new_and_old_servers(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate, client: str
) -> None:
    """Offered in the order certificates_for_key gives: SHA-2 first, SHA-1 for old servers."""
    lines = certificates_for_key(
        public_key=user_keys.rsa.public_line,
        principal=ALICE_PRINCIPAL,
        valid_before=timezone.now() + timedelta(hours=1),
        key_id="request 1 alice",
    )
    serials = [str(_serial(line)) for line in lines]
    old_server = trusting_host.sha1_only
    mark = old_server.log_mark()

    for daemon in trusting_host.daemons:
        _assert_logged_in(_login(client, trusting_host, daemon, user_keys.rsa, lines, write_certificate))

    # The old server refused the SHA-2 certificate and took the SHA-1 one.
    log = old_server.wait_for_log(rf"Accepted publickey for rs-alicexyz .*serial {serials[1]}\)", since=mark)
    assert "certificate signature algorithm rsa-sha2-512: signature algorithm not supported" in log


def test_a_sha2_certificate_alone_is_refused_by_an_old_server(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate
) -> None:
    line = _issue(user_keys.rsa, signature_algorithm="rsa-sha2-512")

    result = _login("openssh", trusting_host, trusting_host.sha1_only, user_keys.rsa, [line], write_certificate)

    _assert_refused(result)


def _forwards(
    host: SshHost,
    key: UserKey,
    *,
    forward_ports: list[int],
    forward_destinations: tuple[str, ...] = (),
    targets: tuple[tuple[str, int], ...] = (),
) -> dict[str, object]:
    """Log in as ALICE with a certificate and try forwards: what each target gave (a line read, or
    the refusal's code) and what a remote forward got. ``targets`` are tried besides the usual ones."""
    import asyncssh

    port = host.port(host.modern)
    lines = ca_authorized_keys_lines(
        principal=ALICE_PRINCIPAL, forward_ports=forward_ports, forward_destinations=forward_destinations
    )
    host.modern.set_authorized_keys(ALICE, lines)
    line = _issue(key)
    other = host.port(host.legacy)  # listening on this machine's loopback too, but not an allowed port

    async def attempt() -> dict[str, object]:
        private = asyncssh.import_private_key(key.private_openssh)
        seen: dict[str, object] = {}
        async with asyncssh.connect(
            "127.0.0.1",
            port,
            username=ALICE,
            client_keys=[(private, asyncssh.import_certificate(line))],
            known_hosts=None,
            agent_path=None,
            config=None,
        ) as connection:
            for target, target_port in [
                ("127.0.0.1", port),
                ("localhost", port),
                ("127.0.0.1", other),
                ("127.0.0.2", port),  # another address: stands in for a host in the VPC
                ("LOCALHOST", port),
                *targets,
            ]:
                try:
                    reader, writer = await connection.open_connection(target, target_port)
                    seen[f"{target}:{target_port}"] = await reader.readline()
                    writer.close()
                except asyncssh.ChannelOpenError as error:
                    seen[f"{target}:{target_port}"] = error.code
            for listen_host, listen_port in [("127.0.0.1", 0), ("", 0), ("localhost", 1)]:
                try:
                    listener = await connection.forward_remote_port(listen_host, listen_port, "127.0.0.1", port)
                    seen[f"-R {listen_host}:{listen_port}"] = listener.get_port()
                    listener.close()
                except asyncssh.ChannelListenError:
                    seen[f"-R {listen_host}:{listen_port}"] = "refused"
        return seen

    return asyncio.run(asyncio.wait_for(attempt(), 30))


def test_port_forwarding_reaches_the_instance_itself_on_the_accounts_ports(
    trusting_host: SshHost, user_keys: UserKeys
) -> None:
    """permit-port-forwarding is in every certificate (the CLI's tunnels and the proxy's ssh -L
    depend on it); the line provisioning writes lets sshd open only the instance's own loopback
    on the account's ports, whether or not the connection came through the portal's proxy."""
    port = trusting_host.port(trusting_host.modern)
    other = trusting_host.port(trusting_host.legacy)

    mark = trusting_host.modern.log_mark()
    seen = _forwards(trusting_host, user_keys.ed25519, forward_ports=[22, port])

    banner = seen.pop(f"127.0.0.1:{port}")
    assert isinstance(banner, bytes) and banner.startswith(b"SSH-2.0-OpenSSH")
    assert seen.pop(f"localhost:{port}") == banner
    assert seen == {  # refused by sshd itself (administratively prohibited), not a connection that failed
        f"127.0.0.1:{other}": asyncssh_open_prohibited(),
        f"127.0.0.2:{port}": asyncssh_open_prohibited(),
        f"LOCALHOST:{port}": asyncssh_open_prohibited(),
        "-R 127.0.0.1:0": "refused",
        "-R :0": "refused",
        "-R localhost:1": "refused",
    }
    log = trusting_host.modern.log_since(mark)
    assert "remote forward to host 127.0.0.1 port 0, but the request was denied" in log
    assert "cannot listen to port: 1" in log  # the one listen permission, which no user may bind


def test_port_forwarding_reaches_a_requests_destination_beyond_the_instance_and_no_other(
    trusting_host: SshHost, user_keys: UserKeys
) -> None:
    """With a destination in the line (permitopen="127.0.0.2:<port>", standing in for an RDS
    endpoint), sshd dials exactly it: not another port of that host, nor another host."""
    port = trusting_host.port(trusting_host.modern)
    with (
        greeter("127.0.0.2", b"RDS-STAND-IN\n") as approved,
        greeter("127.0.0.2", b"NOT-APPROVED\n") as beside,
        greeter("127.0.0.3", b"ANOTHER-HOST\n") as elsewhere,
    ):
        seen = _forwards(
            trusting_host,
            user_keys.ed25519,
            forward_ports=[22],
            forward_destinations=(f"127.0.0.2:{approved}",),
            targets=(("127.0.0.2", approved), ("127.0.0.2", beside), ("127.0.0.3", elsewhere)),
        )

    assert seen[f"127.0.0.2:{approved}"] == b"RDS-STAND-IN\n"
    assert seen[f"127.0.0.2:{beside}"] == asyncssh_open_prohibited()
    assert seen[f"127.0.0.3:{elsewhere}"] == asyncssh_open_prohibited()
    assert seen[f"127.0.0.1:{port}"] == asyncssh_open_prohibited()  # port is not one of the account's here
    assert seen["-R 127.0.0.1:0"] == "refused"


def asyncssh_open_prohibited() -> int:
    import asyncssh

    return asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED


# --- what is refused ----------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_a_certificate_for_another_principal_is_refused(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate, client: str
) -> None:
    line = _issue(
        user_keys.ed25519, principal="grant-00000000-0000-4000-8000-0000000000ff"
    )  # well-formed, not this user
    mark = trusting_host.modern.log_mark()

    result = _login(client, trusting_host, trusting_host.modern, user_keys.ed25519, [line], write_certificate)

    _assert_refused(result)
    trusting_host.modern.wait_for_log(r"Certificate does not contain an authorized principal", since=mark)
    assert "Accepted publickey" not in trusting_host.modern.log_since(mark)


@pytest.mark.parametrize("client", CLIENTS)
def test_another_persons_certificate_does_not_open_this_account(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate, client: str
) -> None:
    bobs = _issue(user_keys.ed25519, principal=BOB_PRINCIPAL)
    mark = trusting_host.modern.log_mark()

    as_alice = _login(client, trusting_host, trusting_host.modern, user_keys.ed25519, [bobs], write_certificate)
    as_bob = _login(client, trusting_host, trusting_host.modern, user_keys.ed25519, [bobs], write_certificate, BOB)

    _assert_refused(as_alice)
    _assert_logged_in(as_bob, BOB)  # the same certificate is good for its own principal
    log = trusting_host.modern.wait_for_log(r"Accepted publickey for rs-bobbyxyz", since=mark)
    assert "Certificate does not contain an authorized principal" in log
    assert "Accepted publickey for rs-alicexyz" not in log


@pytest.mark.parametrize("client", CLIENTS)
def test_an_expired_certificate_is_refused(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate, client: str
) -> None:
    # Made by the CA's own key with our encoder, valid for an hour that ended a minute ago.
    now = int(time.time())
    fields = UserCertificateFields(
        public_key=user_keys.ed25519.private_key.public_key(),
        serial=999_999,
        key_id="request 1 alice (expired)",
        principals=[ALICE_PRINCIPAL],
        valid_after=now - 3660,
        valid_before=now - 60,
        extensions=["permit-pty", "permit-port-forwarding"],
    )
    ca_private_key = _ca_private_key(ca_key_ensure(key_type="ed25519"))
    line = certificate_line(
        sign_user_certificate(fields, ca_private_key=ca_private_key, signature_algorithm="ssh-ed25519")
    )
    mark = trusting_host.modern.log_mark()

    result = _login(client, trusting_host, trusting_host.modern, user_keys.ed25519, [line], write_certificate)

    _assert_refused(result)
    trusting_host.modern.wait_for_log(r"Certificate invalid: expired", since=mark)


def test_a_certificate_that_just_ran_out_is_refused(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate
) -> None:
    """The service's own end time, not only a hand-made one: valid for a few more seconds."""
    valid_before = timezone.now() + timedelta(seconds=4)
    line = _issue(user_keys.ed25519, valid_before=valid_before)
    _assert_logged_in(
        _login("openssh", trusting_host, trusting_host.modern, user_keys.ed25519, [line], write_certificate)
    )

    # sshd reads the real clock, so time cannot be frozen for it: wait until the end has passed.
    time.sleep(max(0.0, (valid_before - timezone.now()).total_seconds()) + 1)
    mark = trusting_host.modern.log_mark()
    result = _login("openssh", trusting_host, trusting_host.modern, user_keys.ed25519, [line], write_certificate)

    _assert_refused(result)
    trusting_host.modern.wait_for_log(r"Certificate invalid: expired", since=mark)


@pytest.mark.parametrize("client", CLIENTS)
def test_rotation_keeps_old_and_new_certificates_working(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate, client: str
) -> None:
    before = _issue(user_keys.ed25519)
    ca_rotate(key_type="ed25519")
    after = _issue(user_keys.ed25519)
    # Provisioning after the rotation writes both keys.
    trusting_host.modern.set_authorized_keys(ALICE, ca_authorized_keys_lines(principal=ALICE_PRINCIPAL))

    for line in (before, after):
        _assert_logged_in(
            _login(client, trusting_host, trusting_host.modern, user_keys.ed25519, [line], write_certificate)
        )


@pytest.mark.parametrize("client", CLIENTS)
def test_a_certificate_from_a_retired_ca_is_refused(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate, client: str
) -> None:
    old = ca_key_ensure(key_type="ed25519")
    from_old = _issue(user_keys.ed25519)
    ca_rotate(key_type="ed25519")
    from_new = _issue(user_keys.ed25519)
    ca_retire(fingerprint=old.fingerprint, force=True)
    # Provisioning after the retirement writes only the keys still trusted.
    trusting_host.modern.set_authorized_keys(ALICE, ca_authorized_keys_lines(principal=ALICE_PRINCIPAL))
    mark = trusting_host.modern.log_mark()

    refused = _login(client, trusting_host, trusting_host.modern, user_keys.ed25519, [from_old], write_certificate)
    accepted = _login(client, trusting_host, trusting_host.modern, user_keys.ed25519, [from_new], write_certificate)

    _assert_refused(refused)
    _assert_logged_in(accepted)
    assert CaKey.objects.get(pk=old.pk).state == CaKey.State.RETIRED
    log = trusting_host.modern.wait_for_log(r"Accepted publickey for rs-alicexyz", since=mark)
    # sshd found no trusted CA for the old certificate: nothing it accepted was signed by the retired key.
    assert "Failed publickey for rs-alicexyz" in log
    assert f"signed by CA ED25519 {old.fingerprint}" not in log


@pytest.mark.parametrize("client", CLIENTS)
def test_the_bare_key_without_a_certificate_is_refused(
    trusting_host: SshHost, user_keys: UserKeys, write_certificate: WriteCertificate, client: str
) -> None:
    result = _login(client, trusting_host, trusting_host.modern, user_keys.ed25519, [], write_certificate)

    _assert_refused(result)


def _serial(line: str) -> int:
    from cryptography.hazmat.primitives import serialization

    certificate = serialization.load_ssh_public_identity(line.encode())
    assert isinstance(certificate, serialization.SSHCertificate)
    return certificate.serial
