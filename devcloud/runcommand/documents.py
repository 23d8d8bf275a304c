"""The Run Command documents devcloud runs, and their parameters checked as AWS checks them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devcloud import errors

DEFAULT_EXECUTION_TIMEOUT = 3600
MAX_EXECUTION_TIMEOUT = 172_800


@dataclass(frozen=True)
class RunDocument:
    """An AWS-owned Run Command document; moto does not load these, so they live here."""

    name: str
    plugin_name: str
    platform_type: str


DOCUMENTS = {
    document.name: document
    for document in (
        RunDocument("AWS-RunShellScript", "aws:runShellScript", "Linux"),
        RunDocument("AWS-RunPowerShellScript", "aws:runPowerShellScript", "Windows"),
    )
}
_DOCUMENT_PARAMETERS = frozenset({"commands", "workingDirectory", "executionTimeout"})


@dataclass(frozen=True)
class Script:
    """The validated parameters of a run-script document."""

    commands: list[str]
    working_directory: str | None
    execution_timeout: int

    @property
    def text(self) -> str:
        return "\n".join(self.commands) + "\n"


def parse_script(document: RunDocument, parameters: Mapping[str, Any]) -> Script:
    """Validate Parameters the way the document's schema would (InvalidParameters)."""
    unknown = sorted(set(parameters) - _DOCUMENT_PARAMETERS)
    if unknown:
        raise errors.InvalidParameters(f"Parameters {unknown} are not defined in document {document.name}.")
    commands = parameters.get("commands")
    if not commands or not isinstance(commands, list) or not all(isinstance(line, str) for line in commands):
        raise errors.InvalidParameters(f"Document {document.name} requires parameter commands (a list of strings).")
    timeout_text = _single(parameters, "executionTimeout") or str(DEFAULT_EXECUTION_TIMEOUT)
    if not timeout_text.isdigit() or not 1 <= int(timeout_text) <= MAX_EXECUTION_TIMEOUT:
        raise errors.InvalidParameters(
            f"executionTimeout must be a whole number of seconds from 1 to {MAX_EXECUTION_TIMEOUT}."
        )
    return Script(
        commands=commands,
        working_directory=_single(parameters, "workingDirectory") or None,
        execution_timeout=int(timeout_text),
    )


def _single(parameters: Mapping[str, Any], name: str) -> str:
    values = parameters.get(name) or [""]
    if not isinstance(values, list) or len(values) != 1 or not isinstance(values[0], str):
        raise errors.InvalidParameters(f"Parameter {name} takes exactly one string value.")
    return values[0].strip()
