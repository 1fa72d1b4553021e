"""Runs a real `bot4d` subprocess for tests: temp state dir, control socket, and a real
AF_UNIX/SOCK_DGRAM socket standing in for systemd's NOTIFY_SOCKET."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from daemon.control.ctl import request

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "etc" / "bot4" / "bot4.toml"


def wait_for(pred: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
             what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Notifications:
    """The receiving end of sd_notify: every datagram with its arrival time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)   # a restarted daemon in the same dir gets a new socket
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []

    def drain(self) -> list[tuple[float, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [m for _, m in self.drain()]

    def has(self, prefix: str) -> bool:
        return any(line.startswith(prefix) or f"\n{prefix}" in line for line in self.lines())

    def close(self) -> None:
        self.sock.close()


class Daemon:
    def __init__(self, tmp: Path, *extra: str, env: dict[str, str] | None = None,
                 sim: bool = True, watchdog_usec: int | None = None,
                 config: Path = CONFIG) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.state_dir = tmp / "state"
        self.socket = str(tmp / "ctl.sock")
        self.notify = Notifications(tmp / "notify.sock")
        e = {k: v for k, v in os.environ.items() if not k.startswith(("BOT4__", "NOTIFY_",
                                                                        "WATCHDOG_"))}
        e["NOTIFY_SOCKET"] = str(self.notify.path)
        if watchdog_usec:
            e["WATCHDOG_USEC"] = str(watchdog_usec)
        e.update(env or {})
        args = [sys.executable, "-m", "daemon.cli", "run", "--config", str(config),
                "--state-dir", str(self.state_dir), "--socket", self.socket]
        if sim:
            args.append("--sim")
        self.log_path = tmp / "bot4d.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*args, *extra], cwd=REPO, env=e, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"bot4d exited {self.proc.returncode}:\n{self.log}")
            return self.notify.has("READY=1")
        wait_for(ready, timeout, what="READY=1")

    def cmd(self, **req: object) -> dict:
        return request(self.socket, req)

    def status(self) -> dict:
        resp = self.cmd(cmd="status")
        assert resp["ok"], resp
        return resp["result"]

    def wait_state(self, state: str, timeout: float = 10.0) -> dict:
        return wait_for(lambda: (s := self.status())["state"] == state and s, timeout,
                        what=f"state {state}")

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "daemon.control.ctl", "--socket",
                               self.socket, *args], cwd=REPO, capture_output=True, text=True,
                              timeout=30)

    def terminate(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"bot4d did not stop on SIGTERM:\n{self.log}")
        return self.proc.returncode

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        self.notify.close()
