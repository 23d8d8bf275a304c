"""The instance search (the create form's picker, the API's ``search``) finds an instance by any of its
addresses: the inventory lists every network interface's, and a multi-ENI host is normal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from requests_app import selectors
from tests.conftest import World
from tests.factories import make_instance

ROOT = Path(__file__).resolve().parents[2]

TWO_ENIS = [
    {"id": "eni-0aaa", "private_ip": "10.0.1.10", "subnet_id": "subnet-app", "device_index": 0},
    {"id": "eni-0bbb", "private_ip": "10.0.9.77", "subnet_id": "subnet-data", "device_index": 1},
]


def _found(world: World, search: str) -> list[str]:
    return [i.name for i in selectors.requestable_instances(user=world.requester, account=world.prod, search=search)]


@pytest.mark.django_db
def test_a_multi_eni_instance_is_found_by_its_second_interfaces_address(world: World) -> None:
    make_instance(world.prod, "data-1", private_ip="10.0.1.10", network_interfaces=TWO_ENIS)
    make_instance(world.prod, "no-enis", private_ip="10.0.5.5", network_interfaces=[])
    assert _found(world, "10.0.1.10") == ["data-1"]
    assert _found(world, "10.0.9.77") == ["data-1"]
    assert _found(world, "0.9.7") == ["data-1"]  # part of an address, as for the primary one
    assert _found(world, "10.0.5.5") == ["no-enis"]


@pytest.mark.django_db
def test_the_search_reads_the_interfaces_addresses_only(world: World) -> None:
    """An interface's id or subnet is not an address: searching for one does not find the instance."""
    make_instance(world.prod, "data-1", private_ip="10.0.1.10", network_interfaces=TWO_ENIS)
    assert _found(world, "subnet-data") == []
    assert _found(world, "eni-0bbb") == []
    assert _found(world, "private_ip") == []


@pytest.mark.django_db
def test_the_api_search_finds_the_second_interfaces_address(client, world: World) -> None:
    make_instance(world.prod, "data-1", private_ip="10.0.1.10", network_interfaces=TWO_ENIS)
    client.force_login(world.requester)
    response = client.get(f"/api/accounts/{world.prod.account_id}/instances/", {"search": "10.0.9.77"})
    assert response.status_code == 200, response.content
    assert [row["name"] for row in response.json()["results"]] == ["data-1"]


SEARCH_ON_SQLITE = """
import django
django.setup()
from requests_app import selectors
from tests.factories import make_account, make_instance, make_membership, make_user

account = make_account()
alice = make_user("alice")
make_membership(alice, account, "admin")
make_instance(account, "data-1", private_ip="10.0.1.10", network_interfaces=[
    {"id": "eni-0aaa", "private_ip": "10.0.1.10", "subnet_id": "subnet-app", "device_index": 0},
    {"id": "eni-0bbb", "private_ip": "10.0.9.77", "subnet_id": "subnet-data", "device_index": 1},
])
make_instance(account, "no-enis", private_ip="10.0.5.5", network_interfaces=[])
for search in ("10.0.9.77", "subnet-data", "10.0.5.5"):
    print(search, ",".join(i.name for i in selectors.requestable_instances(user=alice, account=account, search=search)))
"""


def test_the_search_finds_the_second_interfaces_address_on_sqlite(tmp_path: Path) -> None:
    """The demo runs on SQLite (the embedded default): the same search works there."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'passport.sqlite3'}", "PASSPORT_ENV": "test"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, env=env, check=True)
    run = subprocess.run(
        [sys.executable, "-c", SEARCH_ON_SQLITE],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "passport_portal.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == ["10.0.9.77 data-1", "subnet-data ", "10.0.5.5 no-enis"]
