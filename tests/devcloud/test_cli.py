"""``python -m devcloud serve`` in its own process, as the demo runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.devcloud.helpers import Aws

ROOT = Path(__file__).resolve().parents[2]
FAULTS = ["--stream-port", "0", "--faults-loss", "0.01", "--faults-dup", "0.01", "--faults-reorder", "3"]


def test_serve_answers_resets_and_stops_on_sigterm(tmp_path: Path) -> None:
    # Seeding is left out here: seed_demo is tested in-process, and a second demo world
    # would double this test's time.
    server = subprocess.Popen(
        [sys.executable, "-m", "devcloud", "serve", "--port", "0", "--state-dir", str(tmp_path), *FAULTS],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        endpoint_url = server.stdout.readline().strip()
        aws = Aws(endpoint_url, {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
        ssm = aws.client("ssm")
        host = aws.launch_local("cli-host")
        ssm.send_command(InstanceIds=[host], DocumentName="AWS-RunShellScript", Parameters={"commands": ["sleep 30"]})
        ssm.start_session(Target=host)
        inventory = ssm.describe_instance_information()["InstanceInformationList"]

        urllib.request.urlopen(urllib.request.Request(f"{endpoint_url}/moto-api/reset", method="POST"))  # noqa: S310

        assert endpoint_url.startswith("http://127.0.0.1:")
        assert [info["ComputerName"] for info in inventory] == ["cli-host"]
        assert ssm.describe_instance_information()["InstanceInformationList"] == []
        assert ssm.list_commands()["Commands"] == []
        assert ssm.describe_sessions(State="Active")["Sessions"] == []
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=15)
    assert server.returncode == 0, stderr
    assert "devcloud: data channel on ws://127.0.0.1:" in stderr
    assert not (tmp_path / "manifest.json").exists()
