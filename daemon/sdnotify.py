"""sd_notify for bot4d: READY, STATUS, WATCHDOG, STOPPING, EXTEND_TIMEOUT_USEC.

Uses systemd-python's `systemd.daemon.notify` when importable: it opens the socket on every
call, so a recreated NOTIFY_SOCKET is picked up (the `sdnotify` package keeps its first
socket for good). The fallback does the same by hand. Without NOTIFY_SOCKET every call is a
no-op. This module never decides when to ping: the supervisor does.
"""
from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

try:
    from systemd import daemon as _sd_daemon
except ImportError:  # not installed (extra "systemd"); the fallback below is complete
    _sd_daemon = None


def _fallback_notify(state: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError as e:
        log.debug("sd_notify failed: %s", e)
        return False


class Notifier:
    def __init__(self, use_systemd_python: bool = True) -> None:
        self.backend = "systemd-python" if (_sd_daemon and use_systemd_python) else "socket"
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        self.watchdog_usec = int(usec) if usec and usec.isdigit() and (
            not pid or pid == str(os.getpid())) else 0

    @property
    def enabled(self) -> bool:
        return bool(os.environ.get("NOTIFY_SOCKET"))

    def notify(self, state: str) -> bool:
        if not os.environ.get("NOTIFY_SOCKET"):
            return False
        if self.backend == "systemd-python":
            return bool(_sd_daemon.notify(state))
        return _fallback_notify(state)

    def ready(self, status: str) -> None:
        self.notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        self.notify(f"STOPPING=1\nSTATUS={status}")

    def extend_timeout(self, seconds: float) -> None:
        self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")
