"""Every Run Command of every account and region, and their delivery to the local hosts."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from moto.ssm.models import ssm_backends

from devcloud import errors, kmskeys
from devcloud.fleet import TAG_LOCAL, ManagedInstance, managed_instance
from devcloud.localhost import ROOT_ENV, STOPPED_EXIT_CODE, LocalHosts, ScriptResult
from devcloud.runcommand.documents import RunDocument, Script
from devcloud.runcommand.records import (
    CANCELLED,
    CANCELLING,
    DEFAULT_DELIVERY_TIMEOUT,
    FAILED,
    FINISHED,
    IN_PROGRESS,
    PENDING,
    SUCCESS,
    TIMED_OUT,
    Command,
    Invocation,
    _now,
)

_PARAMETER_READ_RE = re.compile(r"Get-SSMParameter -Name '([A-Za-z0-9_.\-/]+)'")
# A script that writes the SID of the account it made (Passport's Windows create): the line it writes,
# and the account's name.
_ACCOUNT_SID_WRITE = 'Write-Output "passport: account sid: $accountSid"'
_ACCOUNT_NAME_RE = re.compile(r"^\$user = '([A-Za-z0-9_.\-]+)'$", re.M)


class CommandStore:
    """Every Run Command of every account and region, behind one lock.

    Handlers run on the server's request threads and scripts finish on their own threads;
    every read and write of a command goes through this lock.
    """

    def __init__(self, hosts: LocalHosts, *, invisible_for: float | None = None) -> None:
        self._hosts = hosts
        self._lock = threading.RLock()
        self._commands: dict[tuple[str, str], dict[str, Command]] = {}
        # AWS is eventually consistent: for a moment after SendCommand, GetCommandInvocation
        # answers InvocationDoesNotExist and ListCommandInvocations leaves the command out.
        # Seconds; 0 (the default) shows a command at once. DEVCLOUD_INVISIBLE_INVOCATION_SECONDS.
        if invisible_for is None:
            invisible_for = float(os.environ.get("DEVCLOUD_INVISIBLE_INVOCATION_SECONDS") or 0)
        self.invisible_for = invisible_for
        # How often that was answered, so a test can tell its client met it.
        self.not_yet_visible_answers = 0

    def send(
        self,
        *,
        account_id: str,
        region: str,
        document: RunDocument,
        script: Script,
        parameters: dict[str, Any],
        comment: str,
        timeout_seconds: int | None,
        targets: list[dict[str, Any]],
        instance_ids: list[str],
        instances: list[ManagedInstance],
        options: dict[str, Any],
    ) -> dict[str, Any]:
        command = Command(
            command_id=str(uuid.uuid4()),
            account_id=account_id,
            region=region,
            document=document,
            comment=comment,
            parameters=parameters,
            script=script,
            targets=targets,
            instance_ids=instance_ids,
            timeout_seconds=timeout_seconds or DEFAULT_DELIVERY_TIMEOUT,
            requested=_now(),
            options=options,
            visible_at=time.monotonic() + self.invisible_for,
        )
        with self._lock:
            self._commands.setdefault((account_id, region), {})[command.command_id] = command
            for instance in instances:
                command.invocations[instance.instance_id] = Invocation(
                    command, instance.instance_id, instance.computer_name
                )
            # SendCommand answers before any agent has the command: Pending, as in AWS.
            response = command.response()
            for instance in instances:
                self._deliver(command.invocations[instance.instance_id], instance)
            return response

    def commands(
        self, account_id: str, region: str, *, command_id: str | None = None, instance_id: str | None = None
    ) -> list[dict[str, Any]]:
        """ListCommands: newest first."""
        with self._lock:
            found = self._find(account_id, region, command_id)
            self._advance(found)
            return [c.response() for c in found if instance_id is None or instance_id in c.invocations]

    def invocation(
        self, account_id: str, region: str, command_id: str, instance_id: str, plugin_name: str | None
    ) -> dict[str, Any]:
        with self._lock:
            command = self._find(account_id, region, command_id)[0]
            invocation = command.invocations.get(instance_id)
            if invocation is not None and not command.visible:
                self.not_yet_visible_answers += 1
                raise errors.InvocationDoesNotExist(f"Command {command_id} was not sent to {instance_id}.")
            if invocation is None:
                raise errors.InvocationDoesNotExist(f"Command {command_id} was not sent to {instance_id}.")
            if plugin_name and plugin_name != command.document.plugin_name:
                raise errors.InvalidPluginName(f"Plugin {plugin_name} is not part of {command.document.name}.")
            self._advance([command])
            return invocation.get_response()

    def parameters_read(self, account_id: str, region: str, command_id: str, instance_id: str) -> dict[str, str]:
        """What the script of one invocation read from Parameter Store when it ran (for the tests)."""
        with self._lock:
            return dict(self._find(account_id, region, command_id)[0].invocations[instance_id].parameters_read)

    def invocations(
        self,
        account_id: str,
        region: str,
        *,
        command_id: str | None,
        instance_id: str | None,
        details: bool,
    ) -> list[dict[str, Any]]:
        """ListCommandInvocations, newest command first."""
        with self._lock:
            found = self._find(account_id, region, command_id, invisible=False)
            self._advance(found)
            return [
                invocation.list_response(details=details)
                for command in found
                if command.visible
                for invocation in command.invocations.values()
                if instance_id is None or invocation.instance_id == instance_id
            ]

    def cancel(self, account_id: str, region: str, command_id: str, instance_ids: Iterable[str]) -> None:
        with self._lock:
            command = self._find(account_id, region, command_id)[0]
            wanted = list(instance_ids) or list(command.invocations)
            unknown = [i for i in wanted if i not in command.invocations]
            if unknown:
                raise errors.InvalidInstanceId(f"Command {command_id} was not sent to {', '.join(unknown)}.")
            # Expired ones stay so; one whose agent is back is cancelled, not delivered first.
            self._advance([command], deliver=False)
            for instance_id in wanted:
                invocation = command.invocations[instance_id]
                if invocation.status in FINISHED:
                    continue
                if invocation.run is None:
                    invocation.finish(CANCELLED, CANCELLED, -1)
                else:
                    invocation.status = invocation.status_details = CANCELLING
                    invocation.run.cancel()

    def clear(self) -> None:
        """Forget every command (moto's reset) and stop the scripts still running."""
        with self._lock:
            runs = [
                invocation.run
                for commands in self._commands.values()
                for command in commands.values()
                for invocation in command.invocations.values()
                if invocation.run is not None and invocation.status not in FINISHED
            ]
            self._commands.clear()
        for run in runs:
            run.cancel()

    def _find(self, account_id: str, region: str, command_id: str | None, *, invisible: bool = True) -> list[Command]:
        """The commands (newest first), or the one named; ``invisible=False``: one not yet visible is none."""
        commands = self._commands.get((account_id, region), {})
        if command_id is None:
            return sorted(commands.values(), key=lambda c: c.requested, reverse=True)
        if command_id not in commands:
            raise errors.InvalidCommandId(f"Command {command_id} does not exist.")
        if not invisible and not commands[command_id].visible:
            self.not_yet_visible_answers += 1
            return []
        return [commands[command_id]]

    def _advance(self, commands: Iterable[Command], *, deliver: bool = True) -> None:
        """What has happened to these commands since they were last looked at: past its
        ExpiresAfter an invocation times out (``Invocation.expire``); one still undelivered whose
        agent is back (Online again: its ``devcloud:ping-status`` tag, the instance running) is
        delivered now, as AWS delivers a Pending command to an agent that reconnects within the
        command's total timeout. devcloud does so when the command is next read, not at the
        reconnection itself: a command sent to the host since then may well run first, as nothing
        in AWS orders the two either."""
        now = _now()
        for command in commands:
            for invocation in command.invocations.values():
                if invocation.expire(now) or not deliver or not invocation.undelivered:
                    continue
                instance = managed_instance(command.account_id, command.region, invocation.instance_id)
                if instance is not None:
                    self._deliver(invocation, instance)

    def _deliver(self, invocation: Invocation, instance: ManagedInstance) -> None:
        document = invocation.command.document
        script = invocation.command.script
        if not instance.online:
            return
        if instance.platform_type != document.platform_type:
            # The agent cannot run the plugin on this platform (e.g. a shell script on Windows).
            invocation.finish(
                FAILED, FAILED, 1, stderr=f"{document.plugin_name} is not supported on {instance.platform_type}."
            )
            return
        if instance.platform_type == "Windows":
            # devcloud runs no Windows; what it does check is the hand-off such a script reads
            # from Parameter Store: there, readable, at the moment the agent runs it. The script
            # itself is not run: Success, with no output (so nothing should be read from it), but
            # for the line a script that reports its account's SID would write (``_windows_output``).
            problem = self._read_parameters(invocation, script.text)
            if problem:
                invocation.finish(FAILED, FAILED, 1, stderr=f"Get-SSMParameter : {problem}")
            else:
                invocation.finish(SUCCESS, SUCCESS, 0, stdout=_windows_output(instance.instance_id, script.text))
            return
        if not instance.local:
            # A Linux instance with no machine behind it: its script is not run. It fails saying
            # so, rather than succeed with an empty output no real run of it would have given.
            invocation.finish(
                FAILED,
                FAILED,
                1,
                stderr=f"devcloud: {instance.instance_id} is not a local host (tag it {TAG_LOCAL}=true to run "
                "scripts on this machine): the script was not run.",
            )
            return
        command = invocation.command

        def started() -> None:
            with self._lock:
                if invocation.status == PENDING:
                    invocation.status = invocation.status_details = IN_PROGRESS
                    invocation.started = _now()

        def finished(result: ScriptResult) -> None:
            with self._lock:
                if invocation.status not in FINISHED:  # not one timed out since (``Invocation.expire``)
                    self._record(invocation, result)

        invocation.run = self._hosts.run_script(
            instance_id=instance.instance_id,
            hostname=instance.computer_name,
            script=script.text,
            run_dir=self._hosts.host_dir(instance.instance_id) / "commands" / command.command_id,
            timeout=script.execution_timeout,
            # The agent runs as a root service: its scripts inherit a root environment (PATH with the
            # sbin directories), plus the two variables the agent itself sets.
            env={**ROOT_ENV, "AWS_SSM_INSTANCE_ID": instance.instance_id, "AWS_SSM_REGION_NAME": command.region},
            working_directory=script.working_directory,
            on_start=started,
            on_finish=finished,
        )

    @staticmethod
    def _read_parameters(invocation: Invocation, text: str) -> str:
        """Read each ``Get-SSMParameter -Name '...'`` a script names; the first problem, or ''."""
        backend = ssm_backends[invocation.command.account_id][invocation.command.region]
        for name in _PARAMETER_READ_RE.findall(text):
            parameter = backend.get_parameter(name)
            if parameter is None:
                return f"ParameterNotFound: {name}"
            if parameter.parameter_type == "SecureString" and parameter.keyid:
                # Read decrypted: KMS refuses a key that is not enabled (a key gone since cannot be
                # told apart here, as in Parameter Store's own calls).
                key = kmskeys.find(invocation.command.account_id, invocation.command.region, parameter.keyid)
                refusal = kmskeys.state_refusal(key) if key is not None else ""
                if refusal:
                    return f"InvalidKeyId: {refusal}"
            value = parameter.decrypt(parameter.value)
            if value is None:
                return f"the value of {name} could not be decrypted"
            invocation.parameters_read[name] = value
        return ""

    @staticmethod
    def _record(invocation: Invocation, result: ScriptResult) -> None:
        if result.timed_out:
            invocation.finish(TIMED_OUT, "ExecutionTimedOut", result.exit_code, result.stdout, result.stderr)
        elif result.cancelled:
            invocation.finish(CANCELLED, CANCELLED, result.exit_code, result.stdout, result.stderr)
        elif result.exit_code == 0:
            invocation.finish(SUCCESS, SUCCESS, 0, result.stdout, result.stderr)
        elif result.exit_code == STOPPED_EXIT_CODE:
            # The agent reads 137 (a script killed) as its own timeout unless it cancelled the
            # script itself (pluginutil GetStatus), and adds no line to standard error then.
            invocation.finish(TIMED_OUT, "ExecutionTimedOut", result.exit_code, result.stdout, result.stderr)
        else:
            # The agent appends this line to a failed script's standard error.
            separator = "\n" if result.stderr and not result.stderr.endswith("\n") else ""
            stderr = f"{result.stderr}{separator}failed to run commands: exit status {result.exit_code}"
            invocation.finish(FAILED, FAILED, result.exit_code, result.stdout, stderr)


def _windows_output(instance_id: str, text: str) -> str:
    """What devcloud says a Windows script wrote: nothing, except the SID line of a script that
    reports the account it made (Passport's create names it, and the portal requires it), with a SID
    made up from the instance and the account's name (the same each run, as Windows keeps it)."""
    name = _ACCOUNT_NAME_RE.search(text)
    if _ACCOUNT_SID_WRITE not in text or name is None:
        return ""
    digest = hashlib.sha256(f"{instance_id}/{name.group(1)}".encode()).digest()
    machine = "-".join(str(int.from_bytes(digest[at : at + 4], "big")) for at in (0, 4, 8))
    relative_id = 1000 + int.from_bytes(digest[12:15], "big")
    return f"passport: account sid: S-1-5-21-{machine}-{relative_id}\r\n"
