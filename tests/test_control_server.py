"""ControlServer on its own, over real AF_UNIX sockets, with a small handler: connection
cap and the slot kept for operator commands, idle and slow-loris timeouts, clients that do
not read, handler exceptions, and bot4ctl's behaviour against a busy or silent server.

The server runs on an event loop in a background thread; the tests are plain blocking
socket clients, as bot4ctl is.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from daemon.control.ctl import request
from daemon.control.protocol import BUSY, encode
from daemon.control.server import CommandError, ControlServer
from tests.daemon_harness import REPO, wait_for


class ServerThread:
    def __init__(self, path: Path, **kw) -> None:
        self.path = str(path)
        self.release = concurrent.futures.Future()   # unblocks "block" commands
        self.blocked = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ControlServer(self.path, self.handler, **kw)
        self.call(self.server.start())

    async def handler(self, req: dict) -> dict:
        cmd = req["cmd"]
        if cmd == "echo":
            return {"echo": req.get("data")}
        if cmd == "refuse":
            raise CommandError("refused on purpose")
        if cmd == "boom":
            float(req.get("seconds"))   # the supervisor's `sim stall` bug, in small
            return {}
        if cmd == "block":
            self.blocked.set()
            await asyncio.wrap_future(self.release)
            return {"released": True}
        raise CommandError(f"unknown command {cmd!r}")

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stats(self) -> dict:
        async def get() -> dict:
            return self.server.stats()
        return self.call(get())

    def close(self) -> None:
        if not self.release.done():
            self.release.set_result(None)
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def serve(tmp_path):
    servers: list[ServerThread] = []

    def start(**kw) -> ServerThread:
        s = ServerThread(tmp_path / f"ctl{len(servers)}.sock", **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    return s


def _read_to_eof(s: socket.socket) -> bytes:
    """Everything the server sends until it closes; a generous timeout, not a measurement."""
    s.settimeout(30)
    buf = b""
    while chunk := s.recv(65536):
        buf += chunk
    return buf


def _replies(data: bytes) -> list[dict]:
    return [orjson.loads(line) for line in data.splitlines()]


def test_constructor_rejects_bad_limits(tmp_path):
    async def h(req: dict) -> dict:
        return {}
    for kw, word in (({"max_clients": 1}, "max_clients"), ({"max_clients": 2.5}, "max_clients"),
                     ({"idle_timeout_s": 0}, "idle_timeout_s"),
                     ({"write_timeout_s": float("nan")}, "write_timeout_s"),
                     ({"accept_retry_s": -1}, "accept_retry_s")):
        with pytest.raises(ValueError, match=word):
            ControlServer(str(tmp_path / "x.sock"), h, **kw)


def test_requests_on_one_connection_and_stats(serve):
    srv = serve()
    with _connect(srv.path) as s:
        s.sendall(b'{"cmd": "echo", "data": 1}\n{"cmd": "refuse"}\n{"cmd": "echo", "data": 2}\n')
        s.shutdown(socket.SHUT_WR)
        r = _replies(_read_to_eof(s))
    assert r[0] == {"ok": True, "result": {"echo": 1}}
    assert r[1]["ok"] is False and r[1]["error"] == "refused on purpose" and "code" not in r[1]
    assert r[2] == {"ok": True, "result": {"echo": 2}}
    wait_for(lambda: srv.stats()["open"] == 0, 30, what="connection closed")
    st = srv.stats()
    assert st["accepted"] == 1 and st["errors"] == 1 and st["refused"] == 0


def test_idle_connection_is_closed_with_a_reason(serve):
    srv = serve(idle_timeout_s=0.3)
    with _connect(srv.path) as s:
        r = _replies(_read_to_eof(s))
    assert r[0]["ok"] is False and "no complete request within 0.3 s" in r[0]["error"]
    st = srv.stats()
    assert st["timed_out"] == 1 and st["open"] == 0
    # A connection that was served and then goes quiet is closed the same way.
    with _connect(srv.path) as s:
        s.sendall(b'{"cmd": "echo", "data": "x"}\n')
        r = _replies(_read_to_eof(s))
    assert r[0]["ok"] is True and "no complete request" in r[1]["error"]


def test_slow_loris_is_cut(serve):
    """Bytes keep coming, but never a newline: the request timer is not reset by them."""
    srv = serve(idle_timeout_s=0.5)
    with _connect(srv.path) as s:
        s.sendall(b'{"cmd": "echo", "data": "')
        give_up = time.monotonic() + 60   # generous bound; the old server never cut it
        while not select.select([s], [], [], 0.05)[0]:
            if time.monotonic() > give_up:
                pytest.fail("a client trickling bytes without a newline was never cut")
            try:
                s.send(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
        data = _read_to_eof(s)
    assert b"no complete request within" in data
    assert srv.stats()["timed_out"] == 1


def test_oversized_line_gets_an_error_and_is_closed(serve):
    srv = serve()
    with _connect(srv.path) as s:
        try:
            s.sendall(b'{"cmd": "echo", "data": "' + b"x" * 200_000)
        except (BrokenPipeError, ConnectionResetError):
            pass   # closed while we were still sending: the reply is already here
        data = _read_to_eof(s)
    assert b"longer than" in data
    assert srv.stats()["oversized"] == 1


def test_client_that_does_not_read_its_replies_is_cut(serve):
    srv = serve(write_timeout_s=0.3)
    req = encode({"cmd": "echo", "data": "y" * 60_000})
    with _connect(srv.path) as s:
        s.setblocking(False)
        give_up = time.monotonic() + 60   # generous bound, not a measurement
        while not srv.stats()["timed_out"]:
            if time.monotonic() > give_up:
                pytest.fail("a client that never reads was never cut")
            try:
                s.send(req)
            except BlockingIOError:
                select.select([], [s], [], 0.05)
            except (BrokenPipeError, ConnectionResetError):
                break
    wait_for(lambda: srv.stats()["timed_out"] == 1 and srv.stats()["open"] == 0, 30,
             what="the non-reading client to be closed")


def test_idle_flood_is_refused_and_requests_still_run(serve):
    srv = serve(max_clients=4, idle_timeout_s=300)
    held = [_connect(srv.path) for _ in range(3)]
    wait_for(lambda: srv.stats()["open"] == 3, 30, what="3 idle connections held")
    # The last slot is not for idle connections: every further one is refused at once.
    for _ in range(10):
        with _connect(srv.path) as s:
            r = _replies(_read_to_eof(s))
        assert r[0]["ok"] is False and r[0]["code"] == BUSY
        assert "3 connections open (limit 4)" in r[0]["error"]
    assert srv.stats()["refused"] == 10 and srv.stats()["open"] == 3
    # bot4ctl's request arrives with its line: it takes the kept slot.
    for i in range(5):
        assert request(srv.path, {"cmd": "echo", "data": i}) == {"ok": True,
                                                                  "result": {"echo": i}}
        # (until the server sees bot4ctl's close, that connection still counts)
        wait_for(lambda: srv.stats()["open"] == 3, 30, what="bot4ctl's connection closed")
    # ... without dropping anyone: the kept slot was free each time.
    assert srv.stats()["evicted"] == 0
    for s in held:
        s.close()


def test_ready_request_drops_the_oldest_idle_connection_when_all_slots_are_taken(serve):
    srv = serve(max_clients=4, idle_timeout_s=300)
    held = []
    for _ in range(3):
        held.append(_connect(srv.path))
        wait_for(lambda: srv.stats()["open"] == len(held), 30, what="idle connection held")
    # A long-running command holds the kept slot ...
    pool = concurrent.futures.ThreadPoolExecutor(1)
    blocked = pool.submit(request, srv.path, {"cmd": "block"}, 60)
    assert srv.blocked.wait(30)
    assert srv.stats()["open"] == 4
    # ... and the operator's command still gets through, in the oldest idle one's place.
    assert request(srv.path, {"cmd": "echo", "data": "op"})["result"] == {"echo": "op"}
    r = _replies(_read_to_eof(held[0]))
    assert r[0]["ok"] is False and r[0]["code"] == BUSY and "no request pending" in r[0]["error"]
    assert srv.stats()["evicted"] == 1
    # The other idle connections and the running command were not touched.
    for s in held[1:]:
        s.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.recv(1)
    srv.release.set_result(None)
    assert blocked.result(30) == {"ok": True, "result": {"released": True}}
    pool.shutdown()
    for s in held:
        s.close()


def test_handler_exception_is_an_internal_error_reply_logged_rate_limited(serve, caplog):
    srv = serve()
    caplog.set_level(logging.ERROR, logger="daemon.control.server")
    for _ in range(20):
        r = request(srv.path, {"cmd": "boom", "seconds": "abc"})
        assert r["ok"] is False
        assert r["error"].startswith("internal error: ValueError(") and "'abc'" in r["error"]
    assert srv.stats()["internal_errors"] == 20
    records = [rec for rec in caplog.records if rec.name == "daemon.control.server"]
    # Logged at error level with the traceback, not swallowed; not once per request.
    assert 1 <= len(records) <= 2
    assert records[0].levelno == logging.ERROR and records[0].exc_info is not None
    assert "ValueError" in records[0].getMessage()
    # A refused command is the operator's business, not an error in the daemon's log.
    caplog.clear()
    assert request(srv.path, {"cmd": "refuse"})["error"] == "refused on purpose"
    assert not [rec for rec in caplog.records if rec.name == "daemon.control.server"]


# ----------------------------------------------------------------------------- bot4ctl

def _ctl(path: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.control.ctl", "--socket", path, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def _fake_daemon(path: Path, answer: bytes | None) -> tuple[socket.socket, threading.Thread]:
    """A socket that accepts and sends `answer` (or nothing) and closes, forever."""
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(str(path))
    ls.listen(16)

    def run() -> None:
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            with c:
                if answer is not None:
                    c.sendall(answer)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return ls, t


def test_bot4ctl_silent_daemon_is_a_clear_timeout(tmp_path):
    path = tmp_path / "silent.sock"
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(str(path))
    ls.listen(16)   # never accepts: the connection waits in the backlog, unanswered
    with ls:
        r = _ctl(str(path), "--timeout", "0.5", "halt")
    assert r.returncode == 69
    assert "did not answer halt within 0.5 s" in r.stderr and "Traceback" not in r.stderr


def test_bot4ctl_busy_daemon_is_a_clear_error(tmp_path):
    path = tmp_path / "busy.sock"
    ls, t = _fake_daemon(path, encode({"ok": False, "error": "busy: 31 connections open "
                                       "(limit 32); try again", "code": BUSY}))
    with ls:
        r = _ctl(str(path), "--timeout", "0.5", "status")
    assert r.returncode == 69
    assert "bot4d is busy" in r.stderr and "limit 32" in r.stderr
    assert "Traceback" not in r.stderr


def test_bot4ctl_connection_closed_without_answer(tmp_path):
    path = tmp_path / "mute.sock"
    ls, t = _fake_daemon(path, None)
    with ls:
        r = _ctl(str(path), "status")
    assert r.returncode == 69
    assert "closed the connection without answering" in r.stderr
    assert "Traceback" not in r.stderr


def test_bot4ctl_refused_command_keeps_exit_code_1(serve):
    srv = serve()
    r = _ctl(srv.path, "reset")   # unknown to this small handler: a CommandError
    assert r.returncode == 1 and "reset refused: unknown command 'reset'" in r.stderr
    r = _ctl(srv.path, "--timeout", "0", "status")
    assert r.returncode == 2 and "--timeout" in r.stderr
