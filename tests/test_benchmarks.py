"""benchmarks/README.md says `--help` lists each benchmark's options: it must print a usage and
exit, never start the measurement (some need root, devcloud, or minutes of a shared machine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_"))


def test_the_readme_lists_every_benchmark() -> None:
    readme = (BENCHMARKS / "README.md").read_text()
    assert SCRIPTS and all(f"| `{name}` |" in readme for name in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_the_options_and_runs_nothing(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: "), result.stdout[:200]
    assert "--help" in result.stdout
