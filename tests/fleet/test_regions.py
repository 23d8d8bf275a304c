"""One spelling of a region name for the account's regions, the credentials' policy and the scripts:
every partition's (``fleet.arns``), whole, nothing else."""

from __future__ import annotations

import pytest

from accounts.regions import validate_regions
from fleet.arns import partition_of
from fleet.regions import is_region


@pytest.mark.parametrize(
    "name", ["eu-west-1", "ap-southeast-4", "us-gov-west-1", "cn-north-1", "us-isob-east-1", "eusc-de-east-1"]
)
def test_every_partitions_region_names_are_regions(name: str) -> None:
    assert is_region(name)
    partition_of(name)  # and have a partition to be named in
    validate_regions([name])


@pytest.mark.parametrize(
    "name", ["eu-west-1\n", "EU-WEST-1", "eu-west-1;id", "eu-west-1 ", "eu-west-", "", "eu-west-1\x00", None, 1, ["x"]]
)
def test_anything_else_is_not(name: object) -> None:
    assert not is_region(name)
