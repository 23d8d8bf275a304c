"""DevCloud: moto's server with devcloud's extensions, in this process."""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from moto.moto_api._internal import moto_api_backend

from devcloud import extensions, fleet
from devcloud.endpoint import Endpoint
from devcloud.runtime import Runtime, activate, deactivate
from devcloud.streams import Faults, StreamServer, registry_resolver
from devcloud.streams.relay import IDLE_TIMEOUT

logger = logging.getLogger(__name__)

_running_lock = threading.Lock()
_running: DevCloud | None = None


class DevCloud:
    """An AWS endpoint for the demo and the tests, shared over HTTP by every process.

    moto's state is process-wide, so one DevCloud may run per process at a time
    (``DevCloud.running()`` finds it). The state directory holds the local hosts (their
    /etc, /home, /var/lib/passport and command output); moto's own state lives in memory, so the hosts of a
    previous run are removed at start.

    Beside the endpoint it serves the agent's side of the Session Manager data channel
    (``devcloud.streams.StreamServer``, on ``stream_port``, 0 for a free one): StartSession's
    StreamUrl leads there unless ``stream_base_url`` names another place (a proxy in front
    of it, say). What a session reaches, on this machine:

    - AWS-StartSSHSession (port 22, the default) on a local host: that host's sshd, started
      if needed (``LocalHosts.sshd_port``); other instances have no sshd to reach;
    - AWS-StartPortForwardingSession with ``portNumber`` N: 127.0.0.1:N of this machine,
      whatever the target (local hosts share this machine's network; N = 22 on a local
      host is its sshd). ...ToRemoteHost: ``host``:``portNumber`` as given.

    A session ends (Terminated) when the agent side ends it (the target closed an SSH session,
    the client sent the TerminateSession flag), by TerminateSession, or after ``idle_timeout``
    seconds without input from the client (Session Manager's default: 20 minutes). A data
    channel that merely drops leaves it Disconnected, resumable with ResumeSession, as in AWS.
    ``faults`` makes the data channel lose, duplicate, reorder and delay messages.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: Path,
        stream_base_url: str | None = None,
        stream_port: int = 0,
        faults: Faults | None = None,
        log_requests: bool = False,
        idle_timeout: float | None = IDLE_TIMEOUT,
    ) -> None:
        self._host = host
        self._port = port
        self.state_dir = Path(state_dir)
        self._stream_base_url = stream_base_url
        self._stream_port = stream_port
        self._faults = faults
        self._log_requests = log_requests
        self._idle_timeout = idle_timeout
        self._server: Endpoint | None = None
        self._streams: StreamServer | None = None
        self._runtime: Runtime | None = None
        self._uninstall: Callable[[], None] | None = None

    @staticmethod
    def running() -> DevCloud | None:
        """The DevCloud started in this process, if any, so test suites can share one."""
        with _running_lock:
            return _running

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("DevCloud is not started")
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    @property
    def stream_base_url(self) -> str:
        """Where StartSession's StreamUrl points: ``ws://host:port`` of the stream server."""
        return self._active_runtime().sessions.stream_base_url

    @stream_base_url.setter
    def stream_base_url(self, url: str) -> None:
        # The stream server usually starts after the endpoint, on a port picked then.
        self._active_runtime().sessions.stream_base_url = url

    @property
    def streams(self) -> StreamServer:
        """The data-channel server (its ``base_url``, its fault ``stats``)."""
        if self._streams is None:
            raise RuntimeError("DevCloud is not started")
        return self._streams

    @property
    def runtime(self) -> Runtime:
        """Local hosts, Run Command state and the session registry (for a stream server)."""
        return self._active_runtime()

    def start(self) -> DevCloud:
        if self._server is not None:
            raise RuntimeError("DevCloud is already started")
        # The stream server starts after the endpoint, on a port picked then.
        state = Runtime(state_dir=self.state_dir, stream_base_url=self._stream_base_url or f"ws://{self._host}:0")
        activate(state)  # refuses a second devcloud in this process before touching anything
        self._runtime = state
        try:
            # moto keeps its state in memory, so the previous run's hosts belong to no instance.
            shutil.rmtree(self.state_dir / "hosts", ignore_errors=True)
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._uninstall = extensions.install()
            # A fresh cloud, whose IAM backends are created with the AWS managed policies.
            moto_api_backend.reset()
            server = Endpoint(self._host, self._port, log_requests=self._log_requests)
            server.start()
        except BaseException:
            self._teardown()
            raise
        self._server = server
        try:
            self._streams = StreamServer(
                self._host,
                self._stream_port,
                resolve_session=registry_resolver(
                    state.sessions, ssh_port=self._sshd_port, agent_version=self._agent_version
                ),
                faults=self._faults,
                on_session_end=self._session_ended,
                on_session_status=state.sessions.connection_changed,
                idle_timeout=self._idle_timeout,
            )
            base_url = self._streams.start()
        except BaseException:
            self.stop()
            raise
        if self._stream_base_url is None:
            state.sessions.stream_base_url = base_url
        self._set_running(self)
        return self

    def stop(self) -> None:
        """Stop serving, then every local-host process (scripts, namespaces, their sshd)."""
        if self._streams is not None:
            self._streams.stop()
            self._streams = None
        if self._server is not None:
            self._set_running(None)
            self._server.stop()
            self._server = None
        self._teardown()

    def run_in_host(self, instance_id: str, command: Sequence[str] | str, **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside a local host; see ``devcloud.localhost.LocalHosts.run``."""
        return self._active_runtime().hosts.run(instance_id, command, **popen_kwargs)

    def __enter__(self) -> DevCloud:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @staticmethod
    def _set_running(devcloud: DevCloud | None) -> None:
        global _running
        with _running_lock:
            _running = devcloud

    def _active_runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("DevCloud is not started")
        return self._runtime

    def _sshd_port(self, instance_id: str) -> int | None:
        """For the stream server: the port of a local host's sshd; None for other instances."""
        instance = fleet.find_instance(instance_id)
        if instance is None or not instance.local:
            return None
        try:
            return self._active_runtime().hosts.sshd_port(instance_id)
        except (RuntimeError, OSError, subprocess.SubprocessError):  # LocalHostError, SshdError...
            logger.exception("the sshd of local host %s could not start", instance_id)
            return None

    @staticmethod
    def _agent_version(instance_id: str) -> str:
        """For the stream server: the version the instance's agent reports (its agent-version tag)."""
        instance = fleet.find_instance(instance_id)
        return instance.agent_version if instance is not None else fleet.LATEST_AGENT_VERSION

    def _session_ended(self, session_id: str, output: str) -> None:
        runtime = self._runtime
        if runtime is not None:
            runtime.sessions.end(session_id)

    def _teardown(self) -> None:
        if self._uninstall is not None:
            self._uninstall()
            self._uninstall = None
        if self._runtime is not None:
            self._runtime.reset()
            deactivate(self._runtime)
            self._runtime = None
