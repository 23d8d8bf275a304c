"""A person's own certificate on a direct account, once the account is made recorded (or moderated).

While an account's CLI sessions are direct, a person's key is signed for the grant's direct
principal (``direct-grant-<uid>``), which the grant's lines on the host trust beside the grant's
own principal (the portal's upstream login, whose key never leaves the web process). The switch to
recorded rewrites the live grants' lines without the direct principal, so a certificate issued
before it logs in to no sshd by any route (not even relayed through a recorded channel of the
proxy), though it stays valid until the request ends. A host that cannot be rewritten says so on
the grant and is tried again by the periodic ``bind_grant_keys``.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from accounts.models import AwsAccount
from audit.models import LogbookEntry
from core import dispatch
from core.usernames import direct_principal, grant_principal, proxy_principal
from requests_app import services
from requests_app.models import Grant, GrantStatus
from requests_app.services.provisioning.upkeep import DIRECT_LOGIN_LEFT
from tests.conftest import World
from tests.fakes.fleet import FakeFleet, failed, ok

pytestmark = pytest.mark.usefixtures("service_settings")


def _lines_sent(fleet: FakeFleet, call: int = -1) -> str:
    encoded = re.search(r"printf '%s' '([A-Za-z0-9+/=]*)' \| base64 -d", fleet.calls[call]["script"])
    assert encoded is not None
    return base64.b64decode(encoded.group(1)).decode()


def _ready_grant(world: World, *, cli_sessions: str) -> Grant:
    AwsAccount.objects.filter(pk=world.prod.pk).update(cli_sessions=cli_sessions)
    access_request = services.access_request_create(
        requester=world.requester, account=world.prod, instances=[world.web], reason="Patch the kernel"
    )
    services.access_request_approve(access_request=access_request, approver=world.approver)
    (grant_id,) = services.access_request_begin_provisioning(request_id=access_request.pk)
    services.grant_provision(grant_id=grant_id)
    grant = Grant.objects.select_related("request__account", "instance").get(pk=grant_id)
    assert grant.status == GrantStatus.READY
    return grant


def _principals(certificate: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "cert.pub"
    path.write_text(certificate + "\n")
    shown = subprocess.run(["ssh-keygen", "-L", "-f", str(path)], capture_output=True, text=True, check=True).stdout
    return shown.split("Principals:", 1)[1].split("Critical Options:", 1)[0].split()


def _public_key(tmp_path: Path, name: str = "person") -> str:
    key = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return Path(f"{key}.pub").read_text()


@pytest.fixture
def binds_sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    sent: list[tuple[Any, ...]] = []

    class Recorded:
        def delay(self, *args: Any) -> None:
            sent.append(args)

    monkeypatch.setitem(dispatch._tasks, "bind_grant_keys", Recorded())
    return sent


def test_a_direct_era_certificate_names_a_principal_the_host_stops_trusting_once_recorded(
    world: World,
    fleet: FakeFleet,
    binds_sent: list[tuple[Any, ...]],
    django_capture_on_commit_callbacks: Any,
    tmp_path: Path,
) -> None:
    grant = _ready_grant(world, cli_sessions=AwsAccount.CliSessions.DIRECT)
    lines = _lines_sent(fleet)
    assert f'principals="{grant_principal(grant.uid)},{direct_principal(grant.uid)}"' in lines
    assert Grant.objects.get(pk=grant.pk).key_direct_login is True
    # The person's own key gets the direct principal, never the one the portal's upstream login uses.
    (person,) = services.grant_issue_certificate(grant=grant, user=world.requester, public_key=_public_key(tmp_path))
    assert _principals(person, tmp_path) == [direct_principal(grant.uid)]
    (upstream,) = services.grant_issue_certificate(
        grant=grant, user=world.requester, public_key=_public_key(tmp_path, "portal"), upstream=True
    )
    assert _principals(upstream, tmp_path) == [grant_principal(grant.uid)]
    assert grant.pk not in services.grants_needing_key_refresh(unbound_only=True)

    account = AwsAccount.objects.get(pk=world.prod.pk)
    account.cli_sessions = AwsAccount.CliSessions.RECORD
    with django_capture_on_commit_callbacks(execute=True):
        account.save()

    # The switch queues the rewrite at once, and the periodic task lists the grant until it is done.
    assert binds_sent == [()]
    assert grant.pk in services.grants_needing_key_refresh(unbound_only=True)
    assert services.grant_refresh_authorized_keys(grant_id=grant.pk) == services.Outcome()
    lines = _lines_sent(fleet)
    assert direct_principal(grant.uid) not in lines
    assert f'principals="{grant_principal(grant.uid)}",' in lines
    assert Grant.objects.get(pk=grant.pk).key_direct_login is False
    assert grant.pk not in services.grants_needing_key_refresh(unbound_only=True)
    entry = LogbookEntry.objects.filter(action="grant.keys_refreshed", request_id=grant.request_id).get()
    assert entry.detail["direct_login"] is False
    # A certificate issued now names the proxy's principal.
    fresh = Grant.objects.select_related("request__account", "instance").get(pk=grant.pk)
    (later,) = services.grant_issue_certificate(
        grant=fresh, user=world.requester, public_key=_public_key(tmp_path, "later")
    )
    assert _principals(later, tmp_path) == [proxy_principal(grant.uid)]


def test_a_moderated_account_stops_trusting_direct_logins_too(
    world: World, fleet: FakeFleet, binds_sent: list[tuple[Any, ...]], django_capture_on_commit_callbacks: Any
) -> None:
    grant = _ready_grant(world, cli_sessions=AwsAccount.CliSessions.DIRECT)
    account = AwsAccount.objects.get(pk=world.prod.pk)
    account.cli_sessions = AwsAccount.CliSessions.RECORD
    account.require_session_join = True
    with django_capture_on_commit_callbacks(execute=True):
        account.save()
    assert binds_sent
    assert grant.pk in services.grants_needing_key_refresh(unbound_only=True)
    services.grant_refresh_authorized_keys(grant_id=grant.pk)
    assert direct_principal(grant.uid) not in _lines_sent(fleet)


def test_a_host_that_cannot_be_rewritten_says_so_on_the_grant_until_it_is(
    world: World, fleet: FakeFleet, binds_sent: list[tuple[Any, ...]]
) -> None:
    grant = _ready_grant(world, cli_sessions=AwsAccount.CliSessions.DIRECT)
    AwsAccount.objects.filter(pk=world.prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)
    fleet.will(failed(exit_code=1, command_id="cmd-down"))
    assert services.grant_refresh_authorized_keys(grant_id=grant.pk).retry_in is not None

    stuck = Grant.objects.get(pk=grant.pk)
    assert stuck.last_error.startswith(DIRECT_LOGIN_LEFT)
    assert stuck.key_direct_login is True  # what the host still holds
    failure = LogbookEntry.objects.filter(action="grant.keys_refresh_failed", request_id=grant.request_id).get()
    assert failure.detail["direct_login"] is False
    assert grant.pk in services.grants_needing_key_refresh(unbound_only=True)

    assert services.grant_refresh_authorized_keys(grant_id=grant.pk) == services.Outcome()
    done = Grant.objects.get(pk=grant.pk)
    assert done.last_error == "" and done.key_direct_login is False
    assert grant.pk not in services.grants_needing_key_refresh(unbound_only=True)


def test_grants_whose_lines_are_not_known_are_rewritten_once(world: World, fleet: FakeFleet) -> None:
    """Lines written before the direct principal existed trust only the grant's principal: the
    periodic task rewrites them once, so a direct account's people can log in with theirs."""
    grant = _ready_grant(world, cli_sessions=AwsAccount.CliSessions.DIRECT)
    Grant.objects.filter(pk=grant.pk).update(key_direct_login=None)
    assert grant.pk in services.grants_needing_key_refresh(unbound_only=True)
    services.grant_refresh_authorized_keys(grant_id=grant.pk)
    assert direct_principal(grant.uid) in _lines_sent(fleet)
    assert grant.pk not in services.grants_needing_key_refresh(unbound_only=True)


def test_a_switch_while_a_refresh_is_on_its_way_has_the_lines_rewritten_again(
    world: World, fleet: FakeFleet, queued: list[tuple[str, int]], django_capture_on_commit_callbacks: Any
) -> None:
    grant = _ready_grant(world, cli_sessions=AwsAccount.CliSessions.DIRECT)
    Grant.objects.filter(pk=grant.pk).update(key_direct_login=None)  # a refresh is due

    def run_command(**kw: Any) -> Any:
        # While Run Command carries lines that trust the direct principal, the account is made recorded.
        AwsAccount.objects.filter(pk=world.prod.pk).update(cli_sessions=AwsAccount.CliSessions.RECORD)
        return ok("cmd-refresh")

    fleet.will(run_command)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.grant_refresh_authorized_keys(grant_id=grant.pk) == services.Outcome()
    assert direct_principal(grant.uid) in _lines_sent(fleet)
    assert ("refresh_grant_keys", grant.pk) in queued
    assert Grant.objects.get(pk=grant.pk).key_direct_login is True  # what the host holds
    assert grant.pk in services.grants_needing_key_refresh(unbound_only=True)
    services.grant_refresh_authorized_keys(grant_id=grant.pk)
    assert direct_principal(grant.uid) not in _lines_sent(fleet)
    assert grant.pk not in services.grants_needing_key_refresh(unbound_only=True)
