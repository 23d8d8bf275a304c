"""Which instance `connect`, `forward` and `requests create -i` take for what the person typed.

A Name tag is written by anyone with ec2:CreateTags: it may spell another instance's id, or copy
the Name of the instance meant. An id is matched by id only, and a Name only when it stands for
one instance (without regard to case, as ssh matches Host aliases; `ssh-config` leaves such Names out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from passport_cli import forward_commands, ready_instances, tunnel
from passport_cli.client import Portal
from passport_cli.errors import CliError, Exit
from passport_cli.main import main
from passport_cli.request_commands import resolve_instances

MEANT, COPY, OTHER = "i-0000000a", "i-0000000e", "i-0000000b"


class FakePortal:
    """The person's active requests (``get_all``), and for `requests create` an account's instances."""

    def __init__(self, requests: list[dict[str, Any]], instances: list[dict[str, Any]] | None = None) -> None:
        self.requests = requests
        self.instances = instances or []

    def get_all(self, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        return self.instances if "/instances/" in path else self.requests

    def post_object(self, path: str, json: Any = None) -> dict[str, Any]:
        """A certificate for any grant (a direct account: no host CA to pin)."""
        certificate = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t passport"
        return {"username": "rs-abcdefgh", "certificates": [certificate], "sessions": "direct"}


def _grant(instance_id: str, name: str, status: str = "ready", platform: str = "linux") -> dict[str, Any]:
    return {"instance_id": instance_id, "name": name, "status": status, "platform": platform}


def _pick(portal: FakePortal, wanted: str | None, request_id: int | None = None) -> str:
    _, grant = ready_instances.pick(portal, wanted, request_id)  # type: ignore[arg-type]
    return str(grant["instance_id"])


def _refused(portal: FakePortal, wanted: str, request_id: int | None = None) -> CliError:
    with pytest.raises(CliError) as raised:
        _pick(portal, wanted, request_id)
    return raised.value


def test_an_instance_id_is_matched_by_id_and_never_by_a_name_that_spells_it() -> None:
    # The grant on OTHER is not ready yet; a ready instance is tagged with OTHER's id as its Name.
    portal = FakePortal(
        [
            {"id": 7, "grants": [_grant(MEANT, OTHER), _grant(OTHER, "db-1", status="provisioning")]},
            {"id": 8, "grants": [_grant(COPY, "I-0000000F")]},
        ]
    )
    not_ready = _refused(portal, OTHER)
    assert not_ready.code == Exit.NOT_FOUND
    assert not_ready.message == (
        f"Your access to {OTHER} (request 7) is not ready: provisioning. See `passport requests list`."
    )
    # An id none of the requests holds: not found, whatever a Name says.
    for wanted in ("i-0000000f", "i-00000000000000000"):
        missing = _refused(portal, wanted)
        assert missing.code == Exit.NOT_FOUND
        assert missing.message == f"{wanted} is not a ready instance of your active requests."
    # A Name shaped like an id in another case stands for no instance either.
    assert _refused(portal, "I-0000000F").code == Exit.NOT_FOUND
    assert _pick(portal, MEANT) == MEANT


def test_a_name_that_two_instances_carry_is_refused_with_their_ids() -> None:
    portal = FakePortal(
        [
            {"id": 9, "grants": [_grant(COPY, "web-1")]},  # a copy tagged web-1 by someone else
            {"id": 7, "grants": [_grant(MEANT, "Web-1"), _grant(OTHER, "db-1")]},  # the web-1 meant
        ]
    )
    for typed in ("web-1", "Web-1", "WEB-1"):
        refused = _refused(portal, typed)
        assert refused.code == Exit.USAGE
        assert refused.message == (
            f"'{typed}' names 2 instances of your active requests ({COPY}, {MEANT}): pass the instance id."
        )
    # Narrowed to one request, the Name names one instance.
    assert _pick(portal, "web-1", 7) == MEANT
    assert _pick(portal, "DB-1") == OTHER


def test_a_copy_whose_grant_is_not_ready_still_makes_a_name_unclear() -> None:
    # Taking the one ready instance would connect to the copy while the meant one provisions.
    portal = FakePortal(
        [
            {"id": 7, "grants": [_grant(MEANT, "web-1", status="provisioning")]},
            {"id": 9, "grants": [_grant(COPY, "web-1")]},
        ]
    )
    assert _refused(portal, "web-1").code == Exit.USAGE
    only_meant = FakePortal([{"id": 7, "grants": [_grant(MEANT, "web-1", status="failed")]}])
    refused = _refused(only_meant, "web-1")
    assert refused.code == Exit.NOT_FOUND
    assert refused.message == f"Your access to {MEANT} (request 7) is not ready: failed. See `passport requests list`."


@pytest.mark.parametrize(
    "meant",
    [_grant(MEANT, "web-1", status="provisioning"), _grant(MEANT, "WEB-1", platform="windows")],
    ids=["not-ready", "windows"],
)
def test_ssh_config_makes_no_alias_of_a_name_connect_refuses(
    meant: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ssh-config writes Host blocks for ready Linux instances only, but counts a Name's instances as
    `connect` does: over every grant of the active requests. A copy of web-1's Name on a ready instance,
    while the web-1 meant provisions (or is a Windows one), is no alias of the copy."""
    monkeypatch.setenv("PASSPORT_CONFIG_DIR", str(tmp_path / "config"))
    portal = FakePortal([{"id": 7, "grants": [meant]}, {"id": 9, "grants": [_grant(COPY, "web-1")]}])
    monkeypatch.setattr(Portal, "signed_in", classmethod(lambda cls, url: portal))

    assert main(["connect", "web-1"]) == Exit.USAGE
    assert f"names 2 instances of your active requests ({MEANT}, {COPY})" in capsys.readouterr().err

    written = tmp_path / "ssh_config"
    assert main(["ssh-config", "--key-type", "ed25519", "-o", str(written)]) == Exit.OK
    hosts = [line for line in written.read_text().splitlines() if line.startswith("Host ")]
    assert hosts == [f"Host {COPY}"]
    assert f"the Name 'web-1' of {COPY} could name another instance: use {COPY}" in capsys.readouterr().err


def test_one_instance_in_two_requests_is_not_unclear() -> None:
    portal = FakePortal(
        [
            {"id": 7, "grants": [_grant(MEANT, "web-1", status="provisioning")]},
            {"id": 8, "grants": [_grant(MEANT, "web-1")]},
        ]
    )
    item, grant = ready_instances.pick(portal, "web-1", None)  # type: ignore[arg-type]
    assert (item["id"], grant["instance_id"]) == (8, MEANT)


def test_forward_refuses_an_unclear_name_with_exit_2_and_escaped_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "web\x1b]52;c;eA==\x07\n1"
    portal = FakePortal([{"id": 9, "grants": [_grant(COPY, name)]}, {"id": 7, "grants": [_grant(MEANT, name)]}])
    monkeypatch.setattr(forward_commands.Portal, "signed_in", lambda url: portal)
    # Were an instance taken, nothing is forwarded: the test ends either way.
    monkeypatch.setattr(tunnel, "check_forward_port", lambda item, port: None)
    monkeypatch.setattr(tunnel, "run_port_forward", lambda *args: None)

    assert main(["forward", name, "0:5432"]) == Exit.USAGE

    err = capsys.readouterr().err
    assert err == (
        "passport: 'web\\x1b]52;c;eA==\\x07\\n1' names 2 instances of your active requests "
        f"({COPY}, {MEANT}): pass the instance id.\n"
    )


def test_requests_create_compares_names_as_connect_does() -> None:
    account = "123456789012"
    portal = FakePortal(
        [],
        instances=[
            {"instance_id": MEANT, "name": "web-1"},
            {"instance_id": COPY, "name": "WEB-1"},
            {"instance_id": OTHER, "name": "Db-1"},
            {"instance_id": "i-0000000c", "name": "I-0000000D"},
        ],
    )
    with pytest.raises(CliError) as unclear:
        resolve_instances(portal, account, ["web-1"])  # type: ignore[arg-type]
    assert unclear.value.code == Exit.USAGE
    assert f"({MEANT}, {COPY})" in unclear.value.message
    assert resolve_instances(portal, account, ["db-1", MEANT]) == [OTHER, MEANT]  # type: ignore[arg-type]
    with pytest.raises(CliError) as id_shaped:
        resolve_instances(portal, account, ["I-0000000D"])  # type: ignore[arg-type]
    assert id_shaped.value.code == Exit.NOT_FOUND
