"""What moto's server would work out again on every request, devcloud works out once."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from moto import backends


def test_a_hosts_backend_and_its_actions_are_found_once_not_on_every_request(
    ssm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ssm.describe_instance_information()  # SSM's host and response class are known from here on
    listings: list[str] = []
    inspections: list[object] = []
    list_modules, getmembers = backends.list_of_moto_modules, inspect.getmembers
    monkeypatch.setattr(backends, "list_of_moto_modules", lambda: listings.append("listed") or list_modules())
    monkeypatch.setattr(inspect, "getmembers", lambda *a, **k: inspections.append(a[0]) or getmembers(*a, **k))

    for _ in range(3):
        assert "InstanceInformationList" in ssm.describe_instance_information()
        ssm.list_commands()

    assert listings == []
    assert inspections == []
