"""The fleet gateway: the only code that talks to instances (through AWS Systems Manager)."""

from fleet.interface import (
    WAIT_SLACK_SECONDS,
    AccessDecision,
    CommandResult,
    Fleet,
    FleetAccount,
    FleetError,
    InstanceRecord,
    ScopedCredentials,
)
from fleet.selection import fleet_for

__all__ = [
    "WAIT_SLACK_SECONDS",
    "AccessDecision",
    "CommandResult",
    "Fleet",
    "FleetAccount",
    "FleetError",
    "InstanceRecord",
    "ScopedCredentials",
    "fleet_for",
]
