"""The demo world: two accounts reached through their PassportPortal role."""

from __future__ import annotations

import json
import socket
from typing import Any

from devcloud.server import DevCloud
from tests.devcloud.helpers import Aws, run

PROD, STAGING = "111111111111", "222222222222"


def by_name(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {instance["name"]: instance for instance in manifest["instances"]}


def test_the_manifest_names_accounts_instances_and_people(cloud: DevCloud, manifest: dict[str, Any]) -> None:
    instances = by_name(manifest)

    assert manifest["accounts"] == [
        {
            "id": PROD,
            "name": "Acme Production",
            "role_arn": f"arn:aws:iam::{PROD}:role/PassportPortal",
            "admin_role_arn": f"arn:aws:iam::{PROD}:role/OrganizationAccountAccessRole",
            "regions": ["us-east-1"],
        },
        {
            "id": STAGING,
            "name": "Acme Staging",
            "role_arn": f"arn:aws:iam::{STAGING}:role/PassportPortal",
            "admin_role_arn": f"arn:aws:iam::{STAGING}:role/OrganizationAccountAccessRole",
            "regions": ["us-east-1"],
        },
    ]
    assert {name: i["account"] for name, i in instances.items()} == {
        "web-1": PROD, "db-1": PROD, "win-ad-1": PROD, "legacy-1": PROD, "offline-1": PROD, "unmanaged-1": PROD,
        "stage-web-1": STAGING,
    }  # fmt: skip
    assert [name for name, i in instances.items() if i["local"]] == ["web-1", "db-1", "stage-web-1"]
    assert [name for name, i in instances.items() if i["platform"] == "windows"] == ["win-ad-1"]
    assert instances["win-ad-1"]["domain_controller"] is True
    assert manifest["principals"]["alice"] == {
        PROD: f"arn:aws:iam::{PROD}:user/alice",
        STAGING: f"arn:aws:iam::{STAGING}:user/alice",
    }
    assert set(manifest["principals"]) == {"alice", "bob", "oscar"}
    assert json.loads((cloud.state_dir / "manifest.json").read_text()) == manifest


def test_assumed_role_credentials_see_their_accounts_instances_only(aws: Aws, manifest: dict[str, Any]) -> None:
    def visible(client: Any) -> set[str]:
        reservations = client.describe_instances()["Reservations"]
        return {i["InstanceId"] for r in reservations for i in r["Instances"]}

    for account in manifest["accounts"]:
        own = {i["id"] for i in manifest["instances"] if i["account"] == account["id"]}
        assert own <= visible(aws.assume(account["role_arn"]).client("ec2"))
        assert not visible(aws.client("ec2")) & own


def test_instances_look_like_the_demo_needs(aws: Aws, manifest: dict[str, Any]) -> None:
    prod = aws.assume(manifest["accounts"][0]["role_arn"])
    instances = by_name(manifest)
    ec2 = {i["InstanceId"]: i for r in prod.client("ec2").describe_instances()["Reservations"] for i in r["Instances"]}
    ssm = {i["InstanceId"]: i for i in prod.client("ssm").describe_instance_information()["InstanceInformationList"]}

    assert len(ec2[instances["web-1"]["id"]]["NetworkInterfaces"]) == 2
    assert len(ec2[instances["win-ad-1"]["id"]]["NetworkInterfaces"]) == 2
    assert ec2[instances["win-ad-1"]["id"]]["Platform"] == "windows"
    assert ssm[instances["win-ad-1"]["id"]]["PlatformType"] == "Windows"
    assert ssm[instances["legacy-1"]["id"]]["AgentVersion"] == "2.3.100.0"
    assert ssm[instances["offline-1"]["id"]]["PingStatus"] == "ConnectionLost"
    assert instances["unmanaged-1"]["id"] not in ssm
    assert ssm[instances["db-1"]["id"]]["ComputerName"] == "db-1"


def test_a_staging_local_host_runs_scripts(aws: Aws, manifest: dict[str, Any]) -> None:
    staging = aws.assume(manifest["accounts"][1]["role_arn"])

    invocation = run(staging.client("ssm"), by_name(manifest)["stage-web-1"]["id"], "hostname")

    assert invocation["StandardOutputContent"] == "stage-web-1\n"


def test_each_local_host_says_where_its_sshd_listens(cloud: DevCloud, manifest: dict[str, Any]) -> None:
    ssh = {i["name"]: i["ssh"] for i in manifest["instances"] if "ssh" in i}

    assert sorted(ssh) == ["db-1", "stage-web-1", "web-1"]
    for name, endpoint in ssh.items():
        instance_id = by_name(manifest)[name]["id"]
        assert endpoint == {"host": "127.0.0.1", "port": cloud.runtime.hosts.sshd_port(instance_id)}
        with socket.create_connection((endpoint["host"], endpoint["port"]), timeout=5) as connection:
            assert connection.recv(64).startswith(b"SSH-2.0-OpenSSH")
