"""What the commands print: progress on stderr, data (text or JSON) on stdout.

Every value shown comes from the portal, and through it from people and the cloud, so text goes
through ``printable`` (passport_cli/display.py) before it reaches a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from passport_cli.display import printable


def progress(message: str) -> None:
    """Progress goes to stderr so that stdout stays data (and `--json` stays parseable)."""
    print(f"passport: {printable(message, keep_newlines=True)}", file=sys.stderr, flush=True)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)) for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()
