"""Path converters for the cloud's ids, so a malformed id is the resolver's 404 and never reaches a query.

A string converter lets anything through to the view, where a NUL byte or a megabyte of text
ends up in a SQL parameter (PostgreSQL refuses NUL: a 500). With these, only an id of the
right shape matches the route at all. Importing this module registers them (once).
"""

from __future__ import annotations

from django.urls import register_converter


class AwsAccountIdConverter:
    """An AWS account id: exactly 12 digits, kept as a string (leading zeros are significant)."""

    regex = r"[0-9]{12}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class InstanceIdConverter:
    """An EC2 instance id (``i-`` and hex) or a hybrid managed instance id (``mi-`` and hex)."""

    regex = r"[a-z]{1,3}-[0-9a-f]{1,32}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AwsAccountIdConverter, "aws_account_id")
register_converter(InstanceIdConverter, "instance_id")
