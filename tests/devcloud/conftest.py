"""One devcloud for the whole package, reached only over HTTP with boto3, like the product.

moto's state is process-wide, so when another suite in this pytest run already started a
devcloud (the integration tests hold one for the whole session), these tests use it, and
its demo world if it seeded one; they only assume what they create or what the demo
seed defines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devcloud.seed import seed_demo
from devcloud.server import DevCloud
from devcloud.streams import StreamServer, StreamTarget
from tests.devcloud.helpers import Aws


@pytest.fixture(scope="package")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCloud]:
    shared = DevCloud.running()
    if shared is not None:
        yield shared
        return
    devcloud = DevCloud(port=0, state_dir=tmp_path_factory.mktemp("devcloud"))
    devcloud.start()
    yield devcloud
    devcloud.stop()


@pytest.fixture(scope="package")
def aws(cloud: DevCloud) -> Aws:
    """moto's default account (123456789012), where tests launch their own instances."""
    return Aws(cloud.endpoint_url, {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"})


@pytest.fixture(scope="package")
def manifest(cloud: DevCloud) -> dict[str, Any]:
    """The demo world (accounts 111111111111 and 222222222222), seeded once per devcloud."""
    seeded = cloud.state_dir / "manifest.json"
    if seeded.exists():
        return json.loads(seeded.read_text())
    return seed_demo(cloud.endpoint_url, cloud.state_dir)


@pytest.fixture
def serve_target() -> Iterator[Callable[..., str]]:
    """A StreamServer serving one target as session s-1; returns that session's stream URL."""
    started: list[StreamServer] = []

    def start(target: StreamTarget, **options: Any) -> str:
        server = StreamServer(resolve_session={"s-1": target}.get, **options)
        started.append(server)
        return f"{server.start()}/v1/data-channel/s-1"

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def ssm(aws: Aws) -> Any:
    return aws.client("ssm")
