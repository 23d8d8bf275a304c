"""Services queue tasks by name through core.dispatch: every name they use must be registered."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core import dispatch

ROOT = Path(__file__).resolve().parents[2]


def _names_the_services_send() -> set[str]:
    names: set[str] = set()
    for path in ROOT.glob("*/**/*.py"):
        if path.parts[len(ROOT.parts)] in {".venv", "tests", "node_modules", "var"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"task_send", "task_send_on_commit", "task_send_deferrable", "_enqueue"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(node.args[0].value)
    return names


def test_every_task_a_service_sends_is_registered_by_the_workers() -> None:
    sent = _names_the_services_send()
    assert {"deprovision_grant", "refresh_authorized_keys", "send_notification"} <= sent
    assert sent <= set(dispatch._tasks)


def test_an_unknown_task_name_fails_at_once() -> None:
    with pytest.raises(LookupError, match="no task 'nosuch'"):
        dispatch.task_send("nosuch", 1)
