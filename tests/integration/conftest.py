"""Fixtures of this package's own scenarios."""

from tests.integration.many_hosts import many_hosts, many_hosts_people  # noqa: F401
