"""A failed call's kind, as the gateway names it for the Logbook (``FleetError.code``): AWS's error
code when it is one, never whatever else an answer holds in its place."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from fleet import FleetError
from fleet.aws import AwsFleet, clients
from fleet.aws.clients import aws_error_code
from tests.stack import Cloud, portal_role_denied


def _client_error(response: Any) -> ClientError:
    return ClientError(response, "DescribeSessions")


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDeniedException", "InvalidInstanceId", "Throttling"])
def test_aws_s_error_code_is_the_kind(code: str) -> None:
    assert aws_error_code(_client_error({"Error": {"Code": code, "Message": "arn:aws:sts::1:assumed-role/x"}})) == code


@pytest.mark.parametrize(
    "error",
    [
        {"Code": "Throttling\nException"},
        {"Code": "<script>alert(1)</script>"},
        {"Code": "AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCY"},
        {"Code": "A" * 65},
        {"Code": ""},
        {"Code": "Throttling\u202eException"},
        {"Code": 429},
        {"Code": None},
        {},
        None,
    ],
)
def test_anything_else_in_its_place_is_not_repeated(error: Any) -> None:
    response = {"Error": error} if error is not None else {}
    assert aws_error_code(_client_error(response)) == "ClientError"


def test_without_an_answer_botocore_s_class_is_the_kind() -> None:
    assert aws_error_code(EndpointConnectionError(endpoint_url="https://ssm.invalid")) == "EndpointConnectionError"
    assert aws_error_code(ReadTimeoutError(endpoint_url="https://ssm.invalid")) == "ReadTimeoutError"


def test_the_session_calls_carry_the_code(aws: Cloud) -> None:
    item = next(item for item in aws.manifest["accounts"] if item["name"] == "Acme Production")

    class Account:
        account_id, role_arn = item["id"], item["role_arn"]

    fleet = AwsFleet(Account())
    try:
        with portal_role_denied(aws, item["id"], "ssm:DescribeSessions"), pytest.raises(FleetError) as refused:
            fleet.active_sessions(aws.instance_id("web-1"), "us-east-1")
        with portal_role_denied(aws, item["id"], "ssm:TerminateSession"), pytest.raises(FleetError) as not_ended:
            fleet.terminate_session("passport-r1-u1-0123456789abcdef0", "us-east-1")
    finally:
        clients._credentials.pop(item["role_arn"], None)
    assert refused.value.code == "AccessDeniedException" and "DescribeSessions" in str(refused.value)
    assert not_ended.value.code == "AccessDeniedException"
    assert FleetError("any").code == ""
