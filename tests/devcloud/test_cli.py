"""``python -m devcloud serve`` in its own process, as the demo runs it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]


def test_serve_seeds_answers_resets_and_stops_on_sigterm(tmp_path: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "devcloud", "serve", "--port", "0", "--state-dir", str(tmp_path), "--seed", "demo"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        endpoint_url = server.stdout.readline().strip()
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        sts = boto3.client(
            "sts", endpoint_url=endpoint_url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        creds = sts.assume_role(RoleArn=manifest["accounts"][0]["role_arn"], RoleSessionName="cli")["Credentials"]
        ssm = boto3.client(
            "ssm", endpoint_url=endpoint_url, region_name="us-east-1",
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )  # fmt: skip
        inventory = ssm.describe_instance_information()["InstanceInformationList"]
        web = next(i["id"] for i in manifest["instances"] if i["name"] == "web-1")
        ssm.send_command(InstanceIds=[web], DocumentName="AWS-RunShellScript", Parameters={"commands": ["sleep 30"]})
        ssm.start_session(Target=web)

        urllib.request.urlopen(urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST"))  # noqa: S310

        assert endpoint_url.startswith("http://127.0.0.1:")
        assert len(inventory) == 5
        assert ssm.describe_instance_information()["InstanceInformationList"] == []
        assert ssm.list_commands()["Commands"] == []
        assert ssm.describe_sessions(State="Active")["Sessions"] == []
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=15)
    assert server.returncode == 0, stderr
