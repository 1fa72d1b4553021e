"""Both sd_notify backends against a real datagram socket, and the logging target choice."""
from __future__ import annotations

import logging
import socket

import pytest

from daemon import logsetup
from daemon.sdnotify import Notifier


def _recv(sock: socket.socket) -> str:
    sock.settimeout(2)
    return sock.recv(4096).decode()


@pytest.mark.parametrize("use_systemd_python", [True, False])
def test_notifier_backends_send_the_protocol(tmp_path, monkeypatch, use_systemd_python):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    n = Notifier(use_systemd_python=use_systemd_python)
    if use_systemd_python and n.backend != "systemd-python":
        pytest.skip("systemd-python not installed")
    assert n.watchdog_usec == 2_000_000
    n.ready("ready: booted")
    assert _recv(sock) == "READY=1\nSTATUS=ready: booted"
    n.watchdog()
    assert _recv(sock) == "WATCHDOG=1"
    n.stopping("bye")
    assert _recv(sock) == "STOPPING=1\nSTATUS=bye"
    n.extend_timeout(2.5)
    assert _recv(sock) == "EXTEND_TIMEOUT_USEC=2500000"
    # systemd recreated its socket: the next ping must reach the new one
    sock.close()
    path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    n.watchdog()
    assert _recv(sock) == "WATCHDOG=1"
    sock.close()


@pytest.mark.parametrize("use_systemd_python", [True, False])
def test_a_missing_socket_is_counted_and_logged_once_never_raised(tmp_path, monkeypatch, caplog,
                                                                  use_systemd_python):
    path = tmp_path / "notify.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))   # nothing bound there yet
    n = Notifier(use_systemd_python=use_systemd_python)
    if use_systemd_python and n.backend != "systemd-python":
        pytest.skip("systemd-python not installed")
    caplog.set_level(logging.WARNING, logger="daemon.sdnotify")
    for _ in range(5):
        n.watchdog()
    n.stopping("bye")
    n.extend_timeout(1)
    assert n.notify("WATCHDOG=1") is False
    assert n.failures == 8
    failed = [r for r in caplog.records if "sd_notify failed" in r.getMessage()]
    assert len(failed) == 1 and str(path) in failed[0].getMessage()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    assert n.notify("WATCHDOG=1") is True
    assert _recv(sock) == "WATCHDOG=1"
    assert any("works again (8 notifications lost" in r.getMessage() for r in caplog.records)
    sock.close()
    path.unlink()
    n.watchdog()   # a second outage is logged again
    assert [r.getMessage() for r in caplog.records].count(failed[0].getMessage()) == 2


@pytest.mark.parametrize("use_systemd_python", [True, False])
def test_status_text_is_one_assignment(tmp_path, monkeypatch, use_systemd_python):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    n = Notifier(use_systemd_python=use_systemd_python)
    if use_systemd_python and n.backend != "systemd-python":
        pytest.skip("systemd-python not installed")
    n.status("halted: operator: x\nWATCHDOG=1\r\x00\x7fy")
    assert _recv(sock) == "STATUS=halted: operator: x WATCHDOG=1   y"
    n.ready("a\nREADY=1")
    assert _recv(sock) == "READY=1\nSTATUS=a READY=1"
    n.stopping("b\nMAINPID=1")
    assert _recv(sock) == "STOPPING=1\nSTATUS=b MAINPID=1"
    sock.close()


def test_fallback_abstract_socket(monkeypatch):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0bot4-test-notify")
    monkeypatch.setenv("NOTIFY_SOCKET", "@bot4-test-notify")
    Notifier(use_systemd_python=False).status("x")
    assert _recv(sock) == "STATUS=x"
    sock.close()


def test_watchdog_usec_for_another_pid_is_ignored(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier().watchdog_usec == 0


def test_no_notify_socket_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert Notifier().notify("READY=1") is False


def test_logging_goes_to_stderr_outside_systemd(monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    saved = root.handlers[:]
    try:
        assert logsetup.setup("info") == "stderr"
        monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
        monkeypatch.setattr(logsetup, "_JOURNAL_SOCKET", "/nonexistent/journal/socket")
        assert logsetup.setup("info") == "stderr", "journal used although its socket is missing"
    finally:
        root.handlers[:] = saved
