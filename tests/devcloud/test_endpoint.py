"""devcloud's API endpoint keeps HTTP/1.1 connections open between requests, as AWS's endpoints do.

moto's own server (werkzeug's) closed every connection after one response, so each boto3 call
cost a new TCP connection and a new server thread; botocore's pool is built to reuse them.
"""

from __future__ import annotations

import http.client
import logging
import socket
from typing import Any

import boto3
import pytest

from devcloud.endpoint import Endpoint
from devcloud.server import DevCloud

DESCRIBE_PARAMETERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "AmazonSSM.DescribeParameters",
    "Authorization": (
        "AWS4-HMAC-SHA256 Credential=testing/20261204/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=00"
    ),
}


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def test_two_requests_travel_on_one_connection(cloud: DevCloud) -> None:
    connection = http.client.HTTPConnection(*_host_port(cloud.endpoint_url), timeout=10)
    try:
        replies = []
        sockets = []
        for _ in range(2):
            connection.request("POST", "/", body="{}", headers=DESCRIBE_PARAMETERS)
            response = connection.getresponse()
            replies.append((response.status, response.getheader("Connection"), response.read()))
            sockets.append(connection.sock)
    finally:
        connection.close()
    assert [status for status, _, _ in replies] == [200, 200]
    assert all(header != "close" for _, header, _ in replies)
    # http.client opens a new socket only when the server closed the last one.
    assert sockets[0] is not None and sockets[0] is sockets[1]


def test_a_boto3_client_opens_one_connection_for_many_calls(cloud: DevCloud, caplog: pytest.LogCaptureFixture) -> None:
    client = boto3.client(
        "ssm",
        region_name="us-east-1",
        endpoint_url=cloud.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with caplog.at_level(logging.DEBUG, logger="urllib3.connectionpool"):
        for _ in range(5):
            client.describe_parameters()
    opened = [record for record in caplog.records if "Starting new HTTP connection" in record.getMessage()]
    dropped = [record for record in caplog.records if "Resetting dropped connection" in record.getMessage()]
    assert len(opened) == 1
    assert dropped == []


def _request(
    endpoint: Endpoint, headers: dict[str, str] | None = None, *, drop_target: bool = False
) -> tuple[int, bytes]:
    """POST DescribeParameters (``headers`` added; without its X-Amz-Target with ``drop_target``)."""
    sent = {**DESCRIBE_PARAMETERS, **(headers or {})}
    if drop_target:
        del sent["X-Amz-Target"]
    connection = http.client.HTTPConnection(*endpoint.get_host_and_port(), timeout=10)
    try:
        connection.request("POST", "/", body="{}", headers=sent)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def endpoint() -> Any:
    served = Endpoint("127.0.0.1", 0)
    served.start()
    yield served
    served.stop()


def test_stop_closes_kept_connections_and_the_listening_socket(endpoint: Endpoint) -> None:
    host, port = endpoint.get_host_and_port()
    kept = http.client.HTTPConnection(host, port, timeout=10)
    kept.request("POST", "/", body="{}", headers=DESCRIBE_PARAMETERS)
    assert kept.getresponse().read() is not None

    endpoint.stop()

    assert kept.sock is not None
    assert kept.sock.recv(1) == b""  # the server hung up the idle connection
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=2).close()
    kept.close()


def test_a_taken_port_is_an_error_at_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken, pytest.raises(OSError):
        Endpoint("127.0.0.1", taken.getsockname()[1])


def test_requests_are_logged_only_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    quiet, loud = Endpoint("127.0.0.1", 0), Endpoint("127.0.0.1", 0, log_requests=True)
    for served in (quiet, loud):
        served.start()
    try:
        with caplog.at_level(logging.INFO, logger="devcloud.requests"):
            assert _request(quiet)[0] == 200
            assert caplog.records == []
            assert _request(loud)[0] == 200
    finally:
        quiet.stop()
        loud.stop()
    assert [record.getMessage() for record in caplog.records] == ["POST / 200"]


def test_a_header_name_with_an_underscore_cannot_stand_in_for_a_dashed_one(endpoint: Endpoint) -> None:
    # X_Amz_Target would reach WSGI as HTTP_X_AMZ_TARGET, the same key as X-Amz-Target.
    assert _request(endpoint) == (200, b'{"Parameters": []}')
    smuggled = {"X_Amz_Target": "AmazonSSM.DescribeParameters"}
    assert _request(endpoint, smuggled, drop_target=True) == (404, b"")
