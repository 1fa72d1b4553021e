"""Both sd_notify backends against a real datagram socket, and the logging target choice."""
from __future__ import annotations

import logging
import os
import socket
import sys
from types import SimpleNamespace

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
        assert n.watchdog() is False
    assert n.stopping("bye") is False
    assert n.extend_timeout(1) is False
    assert n.notify("WATCHDOG=1") is False
    assert n.failures == 8
    failed = [r for r in caplog.records if "sd_notify failed" in r.getMessage()]
    assert len(failed) == 1 and str(path) in failed[0].getMessage()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    assert n.watchdog() is True
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


@pytest.fixture
def fresh_root_logger():
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = saved
    root.setLevel(level)


@pytest.fixture
def stderr_file(tmp_path, monkeypatch):
    """A real file to use as sys.stderr (pytest's capture has no file descriptor), and the
    JOURNAL_STREAM value systemd would set if that file were the journal stream. Call
    `use()` in the test body: pytest re-installs its own capture after fixture setup."""
    f = open(tmp_path / "stderr.txt", "w")
    st = os.fstat(f.fileno())
    yield SimpleNamespace(file=f, stream=f"{st.st_dev}:{st.st_ino}",
                          use=lambda: monkeypatch.setattr(sys, "stderr", f))
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "stream", None) is f]:
        root.removeHandler(h)   # never leave a handler on a closed file
    f.close()


@pytest.fixture
def journal_socket(tmp_path, monkeypatch):
    path = tmp_path / "journal.socket"
    path.touch()
    monkeypatch.setattr(logsetup, "_JOURNAL_SOCKET", str(path))
    return path


def test_logging_goes_to_stderr_outside_systemd(monkeypatch, fresh_root_logger, stderr_file):
    stderr_file.use()
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.setattr(logsetup, "_JOURNAL_SOCKET", "/nonexistent/journal/socket")
    assert logsetup.setup("info") == "stderr"


def test_a_journal_socket_alone_does_not_take_the_log_from_the_terminal(
        monkeypatch, fresh_root_logger, stderr_file, journal_socket):
    stderr_file.use()
    f = stderr_file.file
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert logsetup.setup("info") == "stderr"
    logging.getLogger("bot4d").warning("hello")
    f.flush()
    assert " WARNING bot4d: hello" in (journal_socket.parent / "stderr.txt").read_text()


def test_journal_handler_when_stderr_is_the_journal_stream_and_the_socket_exists(
        monkeypatch, fresh_root_logger, stderr_file, journal_socket):
    journal = pytest.importorskip("systemd.journal")
    stderr_file.use()
    monkeypatch.setenv("JOURNAL_STREAM", stderr_file.stream)
    assert logsetup.setup("debug") == "journal"
    assert [type(h) for h in fresh_root_logger.handlers] == [journal.JournalHandler]
    assert fresh_root_logger.level == logging.DEBUG


def test_an_inherited_journal_stream_is_not_our_stderr(monkeypatch, fresh_root_logger,
                                                       stderr_file, journal_socket):
    # A child of some systemd service, its stderr redirected to a file: the variable names
    # the parent's stream, not ours.
    stderr_file.use()
    dev, ino = stderr_file.stream.split(":")
    monkeypatch.setenv("JOURNAL_STREAM", f"{dev}:{int(ino) + 1}")
    assert logsetup.setup("info") == "stderr"
    monkeypatch.setenv("JOURNAL_STREAM", "garbage")
    assert logsetup.setup("info") == "stderr"


def test_journal_stream_without_its_socket_prefixes_priorities(monkeypatch, fresh_root_logger,
                                                               stderr_file, tmp_path):
    stderr_file.use()
    f = stderr_file.file
    monkeypatch.setenv("JOURNAL_STREAM", stderr_file.stream)
    monkeypatch.setattr(logsetup, "_JOURNAL_SOCKET", str(tmp_path / "missing.socket"))
    assert logsetup.setup("info") == "stderr(journal)"
    logging.getLogger("bot4d").warning("careful")
    logging.getLogger("bot4d").error("broken")
    f.flush()
    assert (tmp_path / "stderr.txt").read_text() == "<4>bot4d: careful\n<3>bot4d: broken\n"


def test_journal_stream_without_systemd_python_prefixes_priorities(
        monkeypatch, fresh_root_logger, stderr_file, journal_socket):
    stderr_file.use()
    monkeypatch.setenv("JOURNAL_STREAM", stderr_file.stream)
    monkeypatch.setitem(sys.modules, "systemd.journal", None)   # import fails
    assert logsetup.setup("info") == "stderr(journal)"


def test_no_usable_stderr_is_plain_stderr_not_an_error(monkeypatch, fresh_root_logger):
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    monkeypatch.setattr(sys, "stderr", None)
    assert logsetup.setup("info") == "stderr"


def test_unknown_level_is_named(fresh_root_logger):
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logsetup.setup("loud")


def test_daemon_notifier_never_blocks_on_a_full_queue(tmp_path, monkeypatch):
    """A receiver that does not read (a busy PID 1, a test harness) fills the datagram
    queue. libsystemd's sd_notify then blocked bot4d's event loop for good (found with a
    live feed outage under WATCHDOG_USEC); the daemon's notifier must count and go on."""
    import threading
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    n = Notifier()
    assert n.backend == "socket"
    results: list[bool] = []
    t = threading.Thread(target=lambda: results.extend(n.watchdog() for _ in range(200)),
                         daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the notifier blocked on a full queue"
    assert results[0] is True and results[-1] is False
    assert n.failures == results.count(False) > 0
    sock.recv(64)          # the receiver reads again: notifications get through
    assert n.watchdog() is True
    sock.close()
