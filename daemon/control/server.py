"""The control socket: a Unix stream socket (mode 0660, group configurable) on which
bot4ctl sends one JSON request per line and reads one JSON response per line.

Malformed, oversized or unknown requests get an error reply; nothing a client sends can
crash the daemon, block the loop, or use up its file descriptors. Commands are executed on
the event loop by the handler the supervisor passes in; this module only carries them.

Resource rules (issue 6, defect 10: 1,100 idle connections used up the daemon's 1,024
descriptors, `status` and `halt` timed out and asyncio logged 48,886 accept errors in 19 s):

* At most ``max_clients`` connections are open at once. A connection is *busy* from the
  moment a complete request line is read until its reply is written, *idle* otherwise
  (before its first request and between requests).
* One slot is kept for operator commands. An idle newcomer gets a slot only while at least
  two are free; when they are not, it is accepted, answered ``{"ok": false, "code":
  "busy", ...}`` and closed at once, so a flood costs one accept and one close per
  connection, never a held descriptor. A newcomer whose complete request is already
  waiting in the socket (bot4ctl connects and sends in one go) is a ready request: it takes
  the last slot, and if that is taken too it drops the oldest *idle* connection and takes
  its place. Idle connections are worth nothing to the daemon; a ready request may be a
  `halt`. So an attacker who holds every other slot with idle connections and keeps
  reconnecting cannot lock the operator out: his newcomers are refused, his held ones are
  the ones dropped. Only requests that are actually running can fill the daemon, and those
  end by themselves. Why not simply "drop the oldest idle" for every newcomer: then a
  reconnecting attacker would drop the operator's connection in the instant between its
  accept and its first read; and why not a plain "refuse when full": then held idle
  connections lock the operator out. A request that is refused or dropped was never read,
  so bot4ctl may send it again (it retries on "busy"); the only window left, a daemon
  that accepts between bot4ctl's connect and its send, is closed by that retry.
* An idle connection that has not delivered a complete request within ``idle_timeout_s``
  is closed with an error reply, also when it keeps sending bytes without a newline (slow
  loris). A line longer than MAX_LINE gets an error reply and the connection is closed. A
  client that does not read its replies is cut after ``write_timeout_s``.
* The server does its own accept(2), in bounded batches (asyncio's accept loop logs a
  record per failure and re-arms itself once per failure, which is what flooded the log).
  When accept fails for lack of descriptors (EMFILE/ENFILE: something else holds them),
  it drops the oldest idle connection to free one; with none to drop, it gives up one
  spare descriptor kept for this to take the next waiting connection (a ready request is
  served on it, anything else is told "out of file descriptors" and closed, and the spare
  taken back); with no spare either, it stops watching the socket for ``accept_retry_s``.
  Each failed accept thus either shrinks the backlog or pauses: it never spins. Failures
  are logged through daemon.ratelog and counted in ``stats()``.

A handler exception that is not a CommandError becomes the reply ``internal error:
<repr>`` and is logged at error level with its traceback (rate-limited per exception
type); whether it faults the daemon is the supervisor's decision, not this module's.
"""
from __future__ import annotations

import asyncio
import errno
import grp
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from daemon.control.protocol import BUSY, MAX_LINE, ProtocolError, decode_request, encode, \
    error_reply
from daemon.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

DEFAULT_MAX_CLIENTS = 32
"""Enough for the operator, a status poller and a few scripts at once; small against the
unit's LimitNOFILE (see units/bot4d.service)."""
DEFAULT_IDLE_TIMEOUT_S = 10.0
DEFAULT_WRITE_TIMEOUT_S = 5.0
DEFAULT_ACCEPT_RETRY_S = 0.5
# Connections taken per wake-up of the listening socket: a flood of reconnects is drained
# in bounded slices, so the loop's other work (the e-stop, the market) runs in between.
_ACCEPT_BATCH = 64
# Kernel queue of connections not yet accepted; they cost the daemon no descriptor.
_BACKLOG = 128
_FD_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class CommandError(Exception):
    """A command that was understood but refused; the message goes to the operator."""


Handler = Callable[[dict], Awaitable[dict]]


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    task: asyncio.Task | None = None
    writer: asyncio.StreamWriter | None = None
    ready: bool = False           # its request was already waiting when accepted
    busy: bool = False            # a request line was read and is being handled
    closed: bool = False
    opening: bool = False         # the task is setting up its transport
    last_reply: bytes = b""       # for a connection dropped while opening


class ControlServer:
    def __init__(self, path: str, handler: Handler, group: str = "", *,
                 max_clients: int = DEFAULT_MAX_CLIENTS,
                 idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
                 write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
                 accept_retry_s: float = DEFAULT_ACCEPT_RETRY_S,
                 log_interval_s: float = 10.0) -> None:
        if not isinstance(max_clients, int) or max_clients < 2:
            raise ValueError(f"max_clients must be an integer >= 2 (one slot is kept for "
                             f"operator commands), got {max_clients!r}")
        for name, v in (("idle_timeout_s", idle_timeout_s),
                        ("write_timeout_s", write_timeout_s),
                        ("accept_retry_s", accept_retry_s)):
            if not v > 0:   # also rejects NaN
                raise ValueError(f"{name} must be > 0 seconds, got {v!r}")
        self.path = Path(path)
        self._handler = handler
        self._group = group
        self.max_clients = max_clients
        self.idle_timeout_s = float(idle_timeout_s)
        self.write_timeout_s = float(write_timeout_s)
        self.accept_retry_s = float(accept_retry_s)
        self._warn = RateLimitedLog(log, log_interval_s)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lsock: socket.socket | None = None
        self._resume: asyncio.TimerHandle | None = None
        self._spare: int | None = None
        self._peek = bytearray(MAX_LINE)   # reused: a reconnect flood allocates nothing
        self._conns: dict[_Conn, None] = {}   # insertion order = age: oldest first
        self._c = dict.fromkeys(("accepted", "refused", "evicted", "timed_out", "oversized",
                                 "errors", "internal_errors", "accept_errors"), 0)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket():
            self.path.unlink()  # left by a crashed run; we hold the only live instance
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            old = os.umask(0o117)  # created 0660 atomically, never briefly world-writable
            try:
                sock.bind(str(self.path))
            finally:
                os.umask(old)
            sock.listen(_BACKLOG)
        except BaseException:
            sock.close()
            raise
        self._lsock = sock
        os.chmod(self.path, 0o660)
        if self._group:
            try:
                os.chown(self.path, -1, grp.getgrnam(self._group).gr_gid)
            except (KeyError, PermissionError) as e:
                log.error("control socket: cannot give group %r access: %s", self._group, e)
        self._take_spare()
        self._loop.add_reader(sock.fileno(), self._on_acceptable)
        log.info("control socket at %s (at most %d connections, idle timeout %g s)",
                 self.path, self.max_clients, self.idle_timeout_s)

    async def close(self) -> None:
        if self._lsock is not None:
            self._loop.remove_reader(self._lsock.fileno())
            self._lsock.close()
            self._lsock = None
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        tasks = []
        for conn in list(self._conns):
            if conn.task is not None and conn.task is not asyncio.current_task():
                tasks.append(conn.task)
            self._close(conn, error_reply("bot4d is stopping") if not conn.busy else None)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def stats(self) -> dict:
        """Counters for the supervisor's status: open connections, the cap, and totals of
        accepted, refused (busy), evicted (idle ones dropped for a ready request or a
        descriptor), timed_out (idle, slow-loris or not reading), oversized lines, errors
        (bad or refused requests), internal_errors (handler bugs), accept_errors."""
        return {"open": len(self._conns), "max": self.max_clients,
                "accept_paused": self._resume is not None, **self._c}

    # -- accepting ------------------------------------------------------------------------
    def _on_acceptable(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, _addr = self._lsock.accept()
            except (BlockingIOError, InterruptedError):
                return   # backlog empty
            except OSError as e:
                if self._accept_failed(e):
                    continue
                return
            self._admit(sock)

    def _accept_failed(self, e: OSError) -> bool:
        """Count and log (rate-limited) a failed accept and make room if it was for lack
        of descriptors. True if accepting again at once can make progress."""
        self._c["accept_errors"] += 1
        if e.errno not in _FD_ERRNOS:
            # ECONNABORTED and the like: that one connection is gone, the next may work.
            self._warn("control socket: accept failed", self._c["accept_errors"], str(e),
                       logging.ERROR)
            return True
        idle = self._oldest_idle()
        if idle is not None:
            self._c["evicted"] += 1
            freed = self._close(idle, error_reply(
                "closed: bot4d is out of file descriptors and this connection had no "
                "request pending", BUSY))
            again, action = freed, "dropped the oldest idle connection"
        elif self._spare is not None:
            again, action = self._use_spare(), "used the spare descriptor"
        else:
            # Nothing to free and no spare: stop watching the socket (which stays readable)
            # instead of waking up for it in a loop.
            self._loop.remove_reader(self._lsock.fileno())
            self._resume = self._loop.call_later(self.accept_retry_s, self._resume_accept)
            again, action = False, f"pausing accept for {self.accept_retry_s:g} s"
        self._warn("control socket: cannot accept a connection", self._c["accept_errors"],
                   f"{e.strerror} ({len(self._conns)} control connections open); {action}",
                   logging.ERROR)
        return again

    def _use_spare(self) -> bool:
        """Give up the spare descriptor to take the next waiting connection: a ready
        request is served on it (the spare is taken again after a later pause); anything
        else is told why and closed, and the spare taken back at once. True if a connection
        was taken, so the backlog shrank and accepting again makes progress."""
        os.close(self._spare)
        self._spare = None
        try:
            sock, _addr = self._lsock.accept()
        except OSError:
            self._take_spare()
            return False
        sock.setblocking(False)
        self._c["accepted"] += 1
        if self._request_waiting(sock) and len(self._conns) < self.max_clients:
            self._serve(sock, ready=True)
            return True
        self._refuse(sock, "bot4d is out of file descriptors; try again")
        self._take_spare()
        return True

    def _take_spare(self) -> None:
        if self._spare is None:
            try:
                self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                pass   # still out of descriptors; the next resume tries again

    def _resume_accept(self) -> None:
        self._resume = None
        if self._lsock is not None:
            self._take_spare()
            self._loop.add_reader(self._lsock.fileno(), self._on_acceptable)

    def _admit(self, sock: socket.socket) -> bool:
        """Serve or refuse a new connection; True if it got a slot."""
        sock.setblocking(False)
        self._c["accepted"] += 1
        n = len(self._conns)
        ready = self._request_waiting(sock)
        if n + 1 < self.max_clients:
            return self._serve(sock, ready)   # a general slot; the last one stays free
        if ready:
            if n < self.max_clients:
                return self._serve(sock, ready)   # the slot kept for operator commands
            idle = self._oldest_idle()
            if idle is not None:
                self._c["evicted"] += 1
                self._close(idle, error_reply(
                    f"closed: {self.max_clients} connections open and this one had no "
                    "request pending; another client's request took its place", BUSY))
                return self._serve(sock, ready)
        self._refuse(sock, f"busy: {n} connections open (limit {self.max_clients}); "
                           "try again")
        return False

    def _refuse(self, sock: socket.socket, why: str) -> None:
        self._c["refused"] += 1
        self._warn("control socket: connection refused", self._c["refused"],
                   f"{why} ({len(self._conns)} connections open)", logging.WARNING)
        try:
            sock.send(encode(error_reply(why, BUSY)))
        except OSError:
            pass
        sock.close()

    def _request_waiting(self, sock: socket.socket) -> bool:
        """Is a complete request line already waiting? A peek: the bytes stay queued."""
        try:
            n = sock.recv_into(self._peek, MAX_LINE, socket.MSG_PEEK)
        except OSError:
            return False
        return self._peek.find(b"\n", 0, n) >= 0

    def _oldest_idle(self) -> _Conn | None:
        """The connection to drop for a better use of its slot: the oldest one with no
        request pending (neither one being handled nor one waiting since its accept)."""
        return next((c for c in self._conns if not c.busy and not c.ready), None)

    def _serve(self, sock: socket.socket, ready: bool) -> bool:
        conn = _Conn(sock, ready=ready)
        self._conns[conn] = None
        conn.task = self._loop.create_task(self._client(conn), name="control-client")
        return True

    def _close(self, conn: _Conn, reply: dict | None) -> bool:
        """Close a connection now (idempotent), with a last reply if given; it leaves the
        count at once, so the slot is free for the next accept. True if its descriptor is
        free already (else its transport frees it on the loop's next turn)."""
        if conn.closed:
            return False
        conn.closed = True
        self._conns.pop(conn, None)
        data = encode(reply) if reply else b""
        if conn.writer is not None:
            transport = conn.writer.transport
            if data:
                conn.writer.write(data)
            self._close_transport(transport)
            if conn.task is not asyncio.current_task() and not conn.busy:
                conn.task.cancel()   # an idle reader; its request was never read
            return False
        if conn.opening:
            conn.last_reply = data   # _client sends it once its transport exists
            return False
        if data:
            try:
                conn.sock.send(data)
            except OSError:
                pass
        conn.sock.close()
        if conn.task is not None:
            conn.task.cancel()   # never started: the coroutine does not run at all
        return True

    def _close_transport(self, transport: asyncio.WriteTransport) -> None:
        transport.close()   # sends what is buffered first ...
        if transport.get_write_buffer_size():
            # ... but a peer that never reads must not keep the descriptor.
            self._loop.call_later(self.write_timeout_s, transport.abort)

    # -- one connection -------------------------------------------------------------------
    async def _client(self, conn: _Conn) -> None:
        reply: dict | None = None
        try:
            conn.opening = True
            reader, writer = await asyncio.open_unix_connection(sock=conn.sock,
                                                                limit=MAX_LINE)
            conn.opening = False
            if conn.closed:   # dropped while the transport was being set up
                writer.write(conn.last_reply)
                self._close_transport(writer.transport)
                return
            conn.writer = writer
            while True:
                conn.busy = False
                try:
                    async with asyncio.timeout(self.idle_timeout_s):
                        line = await reader.readuntil(b"\n")
                except TimeoutError:
                    self._c["timed_out"] += 1
                    reply = error_reply(f"no complete request within "
                                        f"{self.idle_timeout_s:g} s; closing")
                    return
                except asyncio.IncompleteReadError as e:
                    if e.partial.strip():
                        self._c["errors"] += 1
                        reply = error_reply("request not terminated by a newline")
                    return
                except asyncio.LimitOverrunError:
                    self._c["oversized"] += 1
                    reply = error_reply(f"request longer than {MAX_LINE} bytes")
                    return
                conn.busy, conn.ready = True, False
                conn.writer.write(encode(await self._dispatch(line)))
                try:
                    async with asyncio.timeout(self.write_timeout_s):
                        await conn.writer.drain()
                except TimeoutError:
                    self._c["timed_out"] += 1
                    conn.writer.transport.abort()   # it does not read: nothing to tell it
                    return
        except (ConnectionError, OSError):
            pass   # the client went away
        except Exception as e:   # a bug here must not end up as an unretrieved task error
            ok, suppressed = self._warn.should_log("client")
            if ok:
                log.error("control connection failed (%d more not logged)", suppressed,
                          exc_info=e)
        finally:
            self._close(conn, reply)

    async def _dispatch(self, line: bytes) -> dict:
        try:
            req = decode_request(line)
            return {"ok": True, "result": await self._handler(req)}
        except (ProtocolError, CommandError) as e:
            self._c["errors"] += 1
            return error_reply(str(e))
        except Exception as e:  # a bug in a command must not take the daemon down
            self._c["internal_errors"] += 1
            ok, suppressed = self._warn.should_log(f"internal:{type(e).__name__}")
            if ok:
                log.error("control command failed with an unexpected %s (%d so far%s): %r",
                          type(e).__name__, self._c["internal_errors"],
                          f", {suppressed} more not logged" if suppressed else "",
                          line[:200], exc_info=e)
            return error_reply(f"internal error: {e!r}")
