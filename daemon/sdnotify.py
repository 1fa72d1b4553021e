"""sd_notify for bot4d: READY, STATUS, WATCHDOG, STOPPING, EXTEND_TIMEOUT_USEC.

Two backends, chosen once per `Notifier`: a plain AF_UNIX datagram socket written here
("socket", the default) and, on request, systemd-python's `systemd.daemon.notify`
(libsystemd's sd_notify). The daemon uses the socket backend because it sends without
blocking: libsystemd's sd_notify blocks while the receiver's queue is full (Linux's
net.unix.max_dgram_qlen is 10 by default), which froze bot4d's event loop, and with it the
e-stop handling, behind a slow reader. A full queue is a failed notification here, counted
like any other. The socket backend keeps ONE unconnected datagram socket from its first
use and addresses every datagram anew with sendto(): a NOTIFY_SOCKET that systemd recreated
is picked up, and no descriptor is needed per ping (a daemon out of descriptors still
pings). systemd-python opens a socket on every call. The PyPI `sdnotify` package is deliberately not used: it keeps its
first socket for good. Without NOTIFY_SOCKET every call is a no-op.

What it must never do: decide when to ping (the supervisor does); raise because the socket
is missing or refuses (a failed notification is counted in `failures` and logged once per
outage, then once when it works again: the stop path and the watchdog pinger must not die
of it); let a STATUS text carry a second assignment (control characters such as a newline
in an operator's halt reason become spaces).
"""
from __future__ import annotations

import logging
import os
import re
import socket

log = logging.getLogger(__name__)

try:
    from systemd import daemon as _sd_daemon
except ImportError:  # not installed (extra "systemd"); the socket backend is complete
    _sd_daemon = None

# sd_notify messages are newline-separated VAR=value lines; a NUL ends the C string.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(text: str) -> str:
    return _CONTROL_CHARS.sub(" ", text)


def _socket_notify(sock: socket.socket, state: str, addr: str) -> None:
    """Send one datagram; raises OSError when the socket is missing or refuses."""
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract namespace
    # Never wait for the receiver: a full queue raises BlockingIOError (an OSError).
    sock.sendto(state.encode(), socket.MSG_DONTWAIT, addr)


class Notifier:
    def __init__(self, use_systemd_python: bool = False) -> None:
        self.backend = "systemd-python" if (_sd_daemon and use_systemd_python) else "socket"
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        self.watchdog_usec = int(usec) if usec and usec.isdigit() and (
            not pid or pid == str(os.getpid())) else 0
        self.failures = 0          # notifications that could not be delivered, ever
        self._failing = False      # the last notification failed
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(os.environ.get("NOTIFY_SOCKET"))

    def notify(self, state: str) -> bool:
        """Send `state` (one or more VAR=value lines); True when it was delivered. The
        helpers below return the same, so a caller can count delivered pings."""
        addr = os.environ.get("NOTIFY_SOCKET")
        if not addr:
            return False
        try:
            if self.backend == "systemd-python":
                # libsystemd returns an error code, which systemd-python raises as OSError.
                _sd_daemon.notify(state)
            else:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX,
                                               socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                _socket_notify(self._sock, state, addr)
        except OSError as e:
            self.failures += 1
            if not self._failing:
                self._failing = True
                # Once per outage: the watchdog pings every few hundred ms.
                log.warning("sd_notify failed (%s backend, NOTIFY_SOCKET=%s): %s; systemd "
                            "gets no status or watchdog pings until it works again",
                            self.backend, addr, e)
            return False
        if self._failing:
            self._failing = False
            log.warning("sd_notify works again (%d notifications lost so far)", self.failures)
        return True

    def ready(self, status: str) -> bool:
        return self.notify(f"READY=1\nSTATUS={_one_line(status)}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={_one_line(status)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str) -> bool:
        return self.notify(f"STOPPING=1\nSTATUS={_one_line(status)}")

    def extend_timeout(self, seconds: float) -> bool:
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")
