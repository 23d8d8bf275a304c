"""A token the CLI stops holding is revoked: signing in again (to the same portal or another) revokes
the stored one first, and `passport auth logout` asks the portal to revoke even when the local clock
says the token has expired (the portal decides)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest
import requests

from accounts.models import ApiToken
from tests.cli.conftest import Cli
from tests.factories import make_user

pytestmark = pytest.mark.usefixtures("live_db")


def _stored_token(cli: Cli) -> str:
    return str(json.loads((cli.config_dir / "credentials.json").read_text())["token"])


def _reads_requests(cli: Cli, token: str) -> bool:
    answer = requests.get(
        cli.env["PASSPORT_URL"] + "/api/requests/", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    return answer.status_code == 200


def test_signing_in_again_revokes_the_token_it_replaces(cli: Cli) -> None:
    alice = make_user("alice")
    assert cli.login(alice).returncode == 0
    first = _stored_token(cli)

    again = cli.login(alice)

    assert again.returncode == 0, again.stderr
    assert "passport: the token of the earlier sign-in is revoked" in again.stderr
    assert _stored_token(cli) != first
    assert not _reads_requests(cli, first)
    assert ApiToken.objects.filter(user=alice).count() == 1
    assert cli.run("auth", "logout").returncode == 0
    assert not ApiToken.objects.filter(user=alice).exists()  # nothing of alice's CLI opens the API any more


def test_signing_in_to_another_portal_revokes_the_token_of_the_first(cli: Cli) -> None:
    alice = make_user("alice")
    assert cli.login(alice).returncode == 0
    first = _stored_token(cli)
    # The same live portal under another name: the stored token belongs to the first.
    base = urlsplit(cli.env["PASSPORT_URL"])
    other = "127.0.0.1" if base.hostname == "localhost" else "localhost"
    cli.env["PASSPORT_URL"] = f"{base.scheme}://{other}:{base.port}"

    assert cli.login(alice).returncode == 0

    assert json.loads((cli.config_dir / "credentials.json").read_text())["portal"] == cli.env["PASSPORT_URL"]
    assert not _reads_requests(cli, first)
    assert ApiToken.objects.filter(user=alice).count() == 1


def test_logout_revokes_a_token_the_local_clock_takes_for_expired(cli: Cli) -> None:
    alice = make_user("alice")
    assert cli.login(alice).returncode == 0
    path = cli.config_dir / "credentials.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({**stored, "expires_at": "2000-01-01T00:00:00Z"}))  # a clock far ahead

    assert cli.run("auth", "logout").returncode == 0

    assert not path.exists()
    assert not _reads_requests(cli, stored["token"])
    assert not ApiToken.objects.filter(user=alice).exists()
