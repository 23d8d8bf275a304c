"""The `passport` CLI against a live portal: sign-in, requests, errors and exit codes."""

from __future__ import annotations

import json
import socket
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts.authentication import hash_token
from accounts.models import ApiToken, AwsAccount, DeviceAuthorization
from audit.models import LogbookEntry
from requests_app import services
from requests_app.models import AccessRequest, Grant, GrantStatus, Instance, RequestStatus
from tests.cli.conftest import Cli
from tests.cli.helpers import active_grant
from tests.factories import make_account, make_instance, make_membership, make_user

pytestmark = pytest.mark.usefixtures("live_db")


def test_help_and_usage_errors(cli: Cli) -> None:
    result = cli.run("--help", check=True)
    assert "exit codes:" in result.stdout and "ssh-config" in result.stdout
    assert cli.run("requests", "bogus").returncode == 2
    assert cli.run("version", check=True).stdout.strip() == "passport 0.1.0"
    assert "--to-version" in cli.run("version", "--help", check=True).stdout  # tests/cli/test_self_update.py
    assert "do not need" in cli.run("install-ssm-plugin", check=True).stdout


def test_not_signed_in_exits_3(cli: Cli) -> None:
    result = cli.run("requests", "list")
    assert result.returncode == 3
    assert "passport auth login" in result.stderr
    assert cli.run("auth", "status").returncode == 3


def test_device_login_stores_a_private_token_and_lists_requests(cli: Cli) -> None:
    alice = make_user("alice")
    prod = make_account()
    make_membership(alice, prod, "admin")
    web, db = make_instance(prod, "web-1"), make_instance(prod, "db-1")
    services.access_request_create(requester=alice, account=prod, instances=[web], reason="deploy hotfix")

    login = cli.login(alice)
    assert login.returncode == 0, login.stderr
    assert "Signed in" in login.stdout and "alice" in login.stdout

    credentials = cli.config_dir / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    stored = json.loads(credentials.read_text())
    assert stored["username"] == "alice"
    # Only the hash is in the database, and it is the token the CLI holds.
    token = ApiToken.objects.get(user=alice)
    assert token.token_hash == hash_token(stored["token"]) and stored["token"] not in token.token_hash
    assert token.expires_at > timezone.now()
    assert DeviceAuthorization.objects.get().used_at is not None

    status = cli.json("auth", "status")
    assert status["signed_in"] and status["username"] == "alice"

    items = cli.json("requests", "list")
    assert [item["reason"] for item in items] == ["deploy hotfix"]
    assert items[0]["grants"][0]["instance_id"] == web.instance_id
    assert "deploy hotfix" in cli.run("requests", "list", check=True).stdout

    # Bad input: the portal's message, and exit 5 (refused).
    bad = cli.run("requests", "create", "--account", prod.account_id, "-i", web.instance_id, "--reason", "x" * 300)
    assert bad.returncode == 5, bad.stderr
    assert "reason" in bad.stderr.lower()
    missing = cli.run("requests", "extend", "999999", "--minutes", "30")
    assert missing.returncode == 4, missing.stderr

    created = cli.json(
        "requests", "create", "--account", prod.account_id, "-i", db.instance_id, "--reason", "rotate logs"
    )
    assert created["status"] == "pending" and created["reason"] == "rotate logs"
    assert created["admin_rights"] is False
    # --admin-rights asks for sudo / Administrators; --sudo, its old name, still works but is not offered.
    win = make_instance(prod, "win-1", platform="windows")
    admin = cli.json(
        "requests", "create", "--account", prod.account_id, "-i", win.instance_id, "--reason", "patch", "--admin-rights"
    )
    assert admin["admin_rights"] is True
    app = make_instance(prod, "app-1")
    old_name = cli.json(
        "requests", "create", "--account", prod.account_id, "-i", app.instance_id, "--reason", "x", "--sudo"
    )
    assert old_name["admin_rights"] is True
    usage = cli.run("requests", "create", "--help", check=True).stdout
    assert "--admin-rights" in usage and "--sudo" not in usage

    # Nothing active: connect says so (exit 4).
    nothing = cli.run("connect")
    assert nothing.returncode == 4 and "no active request" in nothing.stderr

    # Diagnostics: written to a file, the token redacted.
    report = cli.run("diagnostics", check=True).stdout.strip()
    text = Path(report).read_text()
    assert stored["token"] not in text and "redacted" in text and '"portal_reachable": "ok"' in text

    assert cli.run("auth", "logout", check=True).returncode == 0
    assert not credentials.exists()
    assert not ApiToken.objects.filter(user=alice).exists()  # revoked in the portal too


def test_a_local_port_that_cannot_be_bound_is_one_line_and_exit_1_and_shows_no_password(cli: Cli) -> None:
    alice = make_user("alice")
    prod = make_account()
    make_membership(alice, prod, "admin")
    win = make_instance(prod, "win-1", platform=Instance.Platform.WINDOWS)
    access_request = services.access_request_create(requester=alice, account=prod, instances=[win], reason="patch")
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(hours=1)
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    assert cli.login(alice).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        forwarded = cli.run("forward", "win-1", f"{port}:3389")
        connected = cli.run("connect", "win-1", "--local-port", str(port))
    for result in (forwarded, connected):
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert f"could not listen on 127.0.0.1:{port}" in result.stderr
    # Windows: the listener is bound before the password is asked for, so it was never fetched.
    assert "Password" not in connected.stdout
    assert not LogbookEntry.objects.filter(action="grant.password_viewed").exists()


def test_login_into_a_config_dir_that_cannot_be_written_stops_before_asking_for_a_code(cli: Cli) -> None:
    """Nowhere to keep a token: found out before the portal is asked for a code, so none is issued.
    (The tests run as root, whom no mode bits stop: /sys refuses even root's mkdir.)"""
    cli.env["PASSPORT_CONFIG_DIR"] = "/sys/passport-unwritable"
    result = cli.run("auth", "login", "--no-browser", "--timeout", "5")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot write /sys/passport-unwritable" in result.stderr
    assert "confirm the code" not in result.stderr
    assert not DeviceAuthorization.objects.exists()


def test_a_token_the_cli_cannot_store_is_revoked_in_the_portal(cli: Cli) -> None:
    """The config dir takes files, but credentials.json is a directory: the token the portal just issued
    is revoked (not left live on the portal), and the message names the file."""
    alice = make_user("alice")
    stored = cli.config_dir / "credentials.json"
    stored.mkdir(parents=True)
    result = cli.login(alice)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot write {stored}" in result.stderr
    assert "revoked" in result.stderr
    assert not ApiToken.objects.filter(user=alice).exists()


def test_expired_token_is_a_clear_error_with_exit_3(cli: Cli) -> None:
    alice = make_user("alice")
    assert cli.login(alice).returncode == 0

    # Expired in the portal (the local copy still thinks it is valid): 401 -> exit 3.
    ApiToken.objects.filter(user=alice).update(expires_at=timezone.now() - timedelta(minutes=1))
    result = cli.run("requests", "list")
    assert result.returncode == 3
    assert "expired" in result.stderr and "passport auth login" in result.stderr

    # Expired locally: no request needed to know.
    credentials = cli.config_dir / "credentials.json"
    stored = json.loads(credentials.read_text())
    stored["expires_at"] = (timezone.now() - timedelta(minutes=1)).isoformat()
    credentials.write_text(json.dumps(stored))
    result = cli.run("requests", "list", "--json")
    assert result.returncode == 3 and result.stdout == ""
    assert "expired" in result.stderr


def test_device_code_refused_when_unknown_or_expired(cli: Cli, client) -> None:  # type: ignore[no-untyped-def]
    make_user("alice")
    start = client.post("/api/cli/device/", {}, content_type="application/json").json()
    pending = client.post("/api/cli/token/", {"device_code": start["device_code"]}, content_type="application/json")
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
    DeviceAuthorization.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = client.post("/api/cli/token/", {"device_code": start["device_code"]}, content_type="application/json")
    assert expired.status_code == 400 and expired.json()["error"] == "expired_token"
    unknown = client.post("/api/cli/token/", {"device_code": "nope"}, content_type="application/json")
    assert unknown.json()["error"] == "invalid_grant"


def test_session_endpoint_refuses_other_people_and_inactive_requests(client) -> None:  # type: ignore[no-untyped-def]
    alice, mallory = make_user("alice"), make_user("mallory")
    prod = make_account()
    make_membership(alice, prod, "admin")
    web = make_instance(prod, "web-1")
    pending = services.access_request_create(requester=alice, account=prod, instances=[web], reason="later")
    url = f"/api/requests/{pending.pk}/grants/{web.instance_id}/session/"
    client.force_login(mallory)
    assert client.post(url, {}, content_type="application/json").status_code == 404
    client.force_login(alice)
    refused = client.post(url, {"document": "AWS-StartSSHSession"}, content_type="application/json")
    assert refused.status_code == 409 and "active" in refused.json()["detail"]
    bad = client.post(url, {"document": "AWS-RunShellScript"}, content_type="application/json")
    assert bad.status_code == 400


def test_forwarding_port_22_of_a_recorded_account_is_refused_before_listening(cli: Cli) -> None:
    active_grant(cli, AwsAccount.CliSessions.RECORD, account_name="Acme\x1b[2J Prod")

    forwarded = cli.run("forward", "web-1", "0:22")
    assert forwarded.returncode == 5, forwarded.stderr
    assert "are recorded: a forward to port 22 would bypass the recording" in forwarded.stderr
    assert "ssh -L" in forwarded.stderr and "\x1b" not in forwarded.stderr
    assert "127.0.0.1:" not in forwarded.stdout  # it never listened
    assert not LogbookEntry.objects.filter(action__in=["session.started", "session.refused"]).exists()


def test_a_port_the_account_does_not_open_is_refused_with_its_message_and_exit_5(cli: Cli) -> None:
    alice = make_user("alice")
    prod = make_account()
    make_membership(alice, prod, "admin")
    web, win = make_instance(prod, "web-1"), make_instance(prod, "win-1", platform=Instance.Platform.WINDOWS)
    access_request = services.access_request_create(
        requester=alice, account=prod, instances=[web, win], reason="read the database"
    )
    now = timezone.now()
    AccessRequest.objects.filter(pk=access_request.pk).update(
        status=RequestStatus.ACTIVE, activated_at=now, expires_at=now + timedelta(hours=1)
    )
    Grant.objects.filter(request=access_request).update(status=GrantStatus.READY, ready_at=now)
    assert cli.login(alice).returncode == 0
    message = "Port 5432 is not open for sessions on Acme Production"

    # ssh's ProxyCommand: the portal refuses the session (400), and logs it.
    proxied = cli.run("proxy", str(access_request.pk), web.instance_id, "--port", "5432")
    assert proxied.returncode == 5, proxied.stderr
    assert message in proxied.stderr and "22, 3389" in proxied.stderr
    refused = LogbookEntry.objects.get(action="session.port_refused")
    assert refused.detail["port"] == 5432 and refused.detail["via"] == "cli"

    # Forwarding to Windows: refused before listening, and before the password is shown.
    forwarded = cli.run("connect", "win-1", "--remote-port", "5432")
    assert forwarded.returncode == 5, forwarded.stderr
    assert message in forwarded.stderr and "Password" not in forwarded.stdout
    assert not LogbookEntry.objects.filter(action="grant.password_viewed").exists()
