"""The one place that picks the fleet implementation.

Every caller goes through ``fleet_for``; unit tests swap the implementation here (the
``fake_fleet`` fixture in ``tests/fakes/fleet.py``), never in each importing module.
"""

from __future__ import annotations

from collections.abc import Callable

from fleet.aws import AwsFleet
from fleet.interface import Fleet, FleetAccount

FleetFactory = Callable[[FleetAccount], Fleet]

_factory: FleetFactory = AwsFleet


def fleet_for(account: FleetAccount) -> Fleet:
    """The gateway to ``account``'s instances."""
    return _factory(account)


def fleet_factory_set(factory: FleetFactory) -> FleetFactory:
    """Use ``factory`` from now on (tests); returns the one it replaces, to put back."""
    global _factory
    previous, _factory = _factory, factory
    return previous
