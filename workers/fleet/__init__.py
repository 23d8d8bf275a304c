"""The fleet gateway: the only code that talks to instances (through AWS Systems Manager)."""

from workers.fleet.aws import CommandResult, FleetError, InstanceRecord, fleet_for

__all__ = ["CommandResult", "FleetError", "InstanceRecord", "fleet_for"]
