"""The CLI's anonymous endpoints hold up under a flood: the token poll and the release index are
limited per client address (counted in the database, so across web processes), a device code
polled faster than its interval gets RFC 8628's ``slow_down``, and the release index is read
from storage at most once per cache period.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts import cli_releases, cli_services
from accounts.models import DeviceAuthorization
from tests.conftest import World

T0 = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # just after a minute's window starts


@pytest.fixture(autouse=True)
def limits(settings: Any, time_machine: Any) -> None:
    settings.PASSPORT_CLI_TOKEN_POLLS_PER_MINUTE = 60
    settings.PASSPORT_CLI_RELEASE_INDEX_READS_PER_MINUTE = 30
    settings.PASSPORT_CLI_STARTS_PER_MINUTE = 20
    settings.PASSPORT_TRUSTED_PROXY_COUNT = 0
    time_machine.move_to(T0, tick=False)


def poll(device_code: str, address: str = "192.0.2.10", **headers: str) -> Any:
    return Client().post(
        "/api/cli/token/", {"device_code": device_code}, content_type="application/json", REMOTE_ADDR=address, **headers
    )


def releases(address: str = "192.0.2.10", **headers: str) -> Any:
    return Client().get("/api/cli/releases/", REMOTE_ADDR=address, **headers)


def start() -> dict[str, Any]:
    response = Client().post("/api/cli/device/", {}, content_type="application/json", REMOTE_ADDR="192.0.2.99")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_token_polls_are_limited_per_client_address(db: None) -> None:
    for n in range(60):
        # Guessed codes, and a made-up X-Forwarded-For does not make a new client.
        guessed = poll(f"guess-{n}", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        assert guessed.status_code == 400 and guessed.json()["error"] == "invalid_grant"
    refused = poll("guess-60")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 60 - 5 + 1
    body = refused.json()
    # The CLI backs off on slow_down, and says the description.
    assert body["error"] == "slow_down"
    assert body["error_description"] == "Too many sign-in polls from this address: wait 56 seconds."
    # Another client is not held back.
    assert poll("guess-61", "192.0.2.11").status_code == 400


def test_the_release_index_is_limited_per_client_address(db: None) -> None:
    for n in range(30):
        assert releases(HTTP_X_FORWARDED_FOR=f"10.0.0.{n}").status_code == 200
    refused = releases()
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 56
    assert refused.json() == {"detail": "Too many reads of the CLI's release index from this address: wait 56 seconds."}
    assert releases("192.0.2.11").status_code == 200


def test_a_device_code_polled_faster_than_its_interval_is_told_to_slow_down(world: World, time_machine: Any) -> None:
    started = start()
    code, interval = started["device_code"], started["interval"]
    assert interval == cli_services.POLL_INTERVAL_SECONDS == 2
    assert poll(code).json()["error"] == "authorization_pending"
    assert DeviceAuthorization.objects.get().last_polled_at == T0

    time_machine.move_to(T0 + timedelta(seconds=1), tick=False)
    hurried = poll(code)
    assert hurried.status_code == 400
    assert hurried.json() == {
        "error": "slow_down",
        "error_description": "Polled faster than every 2 seconds: wait 5 seconds longer between polls.",
    }
    # Each poll counts, a hurried one too: the next must wait the interval from it.
    assert DeviceAuthorization.objects.get().last_polled_at == T0 + timedelta(seconds=1)
    time_machine.move_to(T0 + timedelta(seconds=2), tick=False)
    assert poll(code).json()["error"] == "slow_down"
    time_machine.move_to(T0 + timedelta(seconds=9), tick=False)
    assert poll(code).json()["error"] == "authorization_pending"

    # slow_down is a kind of "still pending": once confirmed, even a quick poll gets the token.
    DeviceAuthorization.objects.update(user=world.requester, confirmed_at=T0 + timedelta(seconds=9))
    time_machine.move_to(T0 + timedelta(seconds=10), tick=False)
    issued = poll(code)
    assert issued.status_code == 200 and issued.json()["username"] == world.requester.username


def test_the_release_index_is_cached_briefly(
    db: None, tmp_path: Path, settings: Any, time_machine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PASSPORT_CLI_WHEEL_DIR = tmp_path / "published"
    settings.PASSPORT_CLI_RELEASE_INDEX_CACHE_SECONDS = 30
    staging = tmp_path / "staging"
    staging.mkdir()
    wheel = staging / "passport_portal-1.0.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel 1.0.0")
    cli_releases.cli_release_publish(wheel=wheel)

    reads: list[str] = []
    original = cli_releases._manifest_read

    def counted(files: Any) -> dict[str, str]:
        reads.append(files.where())
        return original(files)

    monkeypatch.setattr(cli_releases, "_manifest_read", counted)
    for _ in range(5):
        assert releases().json()["latest"] == "1.0.0"
    assert len(reads) == 1

    # Another host publishes (straight into the shared files): seen once the cached copy is old.
    published = settings.PASSPORT_CLI_WHEEL_DIR
    newer = published / "passport_portal-2.0.0-py3-none-any.whl"
    newer.write_bytes(b"wheel 2.0.0")
    manifest = published / cli_releases.CLI_MANIFEST_NAME
    manifest.write_text(manifest.read_text() + f"{'a' * 64}  {newer.name}\n")
    time_machine.move_to(T0 + timedelta(seconds=29), tick=False)
    assert releases().json()["latest"] == "1.0.0"
    time_machine.move_to(T0 + timedelta(seconds=31), tick=False)
    assert releases().json()["latest"] == "2.0.0"
    assert len(reads) == 2

    # A publish on this host is listed at once.
    third = staging / "passport_portal-3.0.0-py3-none-any.whl"
    third.write_bytes(b"wheel 3.0.0")
    cli_releases.cli_release_publish(wheel=third)
    assert releases().json()["latest"] == "3.0.0"


def test_wheel_downloads_are_limited_per_client_address(db: None, tmp_path: Path, settings: Any) -> None:
    # Each download is megabytes read from storage, for anyone who asks.
    settings.PASSPORT_CLI_WHEEL_DIR = tmp_path / "published"
    settings.PASSPORT_CLI_RELEASE_DOWNLOADS_PER_MINUTE = 3
    wheel = tmp_path / "passport_portal-1.0.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel 1.0.0")
    cli_releases.cli_release_publish(wheel=wheel)

    def download(address: str = "192.0.2.10") -> Any:
        return Client().get(f"/cli/releases/{wheel.name}", REMOTE_ADDR=address, HTTP_X_FORWARDED_FOR="10.9.9.9")

    for _ in range(3):
        allowed = download()
        assert allowed.status_code == 200 and b"".join(allowed.streaming_content) == b"wheel 1.0.0"
    refused = download()

    assert refused.status_code == 429 and int(refused["Retry-After"]) == 56
    assert refused.content == b"Too many CLI downloads from this address: wait 56 seconds.\n"
    assert download("192.0.2.11").status_code == 200
