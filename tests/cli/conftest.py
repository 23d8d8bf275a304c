"""Run the real `passport` CLI as a subprocess against a live portal (pytest-django's live_server)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts.models import User

ROOT = Path(__file__).resolve().parents[2]
CODE_RE = re.compile(r"confirm the code ([A-Z0-9]{4}-[A-Z0-9]{4})")


@dataclass
class Cli:
    env: dict[str, str]
    config_dir: Path

    def run(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "passport_cli", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json", check=True).stdout)

    def login(self, user: User) -> subprocess.CompletedProcess[str]:
        """`passport auth login`, confirming its code in the portal as ``user`` (Django's test client)."""
        process = subprocess.Popen(
            [sys.executable, "-m", "passport_cli", "auth", "login", "--no-browser", "--timeout", "60"],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stderr is not None
        seen = ""
        deadline = time.monotonic() + 30
        while (match := CODE_RE.search(seen)) is None:
            line = process.stderr.readline()
            if not line and (process.poll() is not None or time.monotonic() > deadline):
                process.kill()
                pytest.fail(f"no user code shown: {seen}")
            seen += line
        code = match.group(1)
        browser = Client()
        browser.force_login(user)
        page = browser.get("/cli/device/", {"code": code})
        assert page.status_code == 200 and code in page.content.decode()
        confirmed = browser.post("/cli/device/", {"user_code": code})
        assert confirmed.status_code == 200, confirmed.content.decode()
        out, err = process.communicate(timeout=60)
        return subprocess.CompletedProcess(process.args, process.returncode, out, seen + err)


@pytest.fixture
def make_cli(live_server: Any, tmp_path: Path) -> Callable[[str], Cli]:
    def make(name: str = "workstation") -> Cli:
        config = tmp_path / name / "config"
        env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(config),
            "HOME": str(tmp_path / name),
            "PASSPORT_URL": live_server.url,
            "BROWSER": "true",
        }
        env.pop("PASSPORT_CONFIG_DIR", None)
        return Cli(env=env, config_dir=config / "passport")

    return make


@pytest.fixture
def cli(make_cli: Callable[[str], Cli]) -> Cli:
    return make_cli("workstation")
