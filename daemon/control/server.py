"""The control socket: a Unix stream socket (mode 0660, group configurable) on which
bot4ctl sends one JSON request per line and reads one JSON response per line.

Malformed, oversized or unknown requests get an error reply; nothing a client sends can
crash the daemon or block the loop. Commands are executed on the event loop by the handler
the supervisor passes in; this module only carries them.
"""
from __future__ import annotations

import asyncio
import grp
import logging
import os
from pathlib import Path
from typing import Awaitable, Callable

from daemon.control.protocol import MAX_LINE, ProtocolError, decode_request, encode

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A command that was understood but refused; the message goes to the operator."""


Handler = Callable[[dict], Awaitable[dict]]


class ControlServer:
    def __init__(self, path: str, handler: Handler, group: str = "") -> None:
        self.path = Path(path)
        self._handler = handler
        self._group = group
        self._server: asyncio.AbstractServer | None = None
        self.errors = 0

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_socket():
            self.path.unlink()  # left by a crashed run; we hold the only live instance
        old = os.umask(0o117)  # created 0660 atomically, never briefly world-writable
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path),
                                                           limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        if self._group:
            try:
                os.chown(self.path, -1, grp.getgrnam(self._group).gr_gid)
            except (KeyError, PermissionError) as e:
                log.error("control socket: cannot give group %r access: %s", self._group, e)
        log.info("control socket at %s", self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as e:
                    if e.partial.strip():
                        writer.write(encode({"ok": False, "error": "request not terminated "
                                             "by a newline"}))
                    break
                except asyncio.LimitOverrunError:
                    self.errors += 1
                    writer.write(encode({"ok": False,
                                         "error": f"request longer than {MAX_LINE} bytes"}))
                    await writer.drain()
                    break
                writer.write(encode(await self._dispatch(line)))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        except Exception:
            log.exception("control client failed")
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> dict:
        try:
            req = decode_request(line)
            return {"ok": True, "result": await self._handler(req)}
        except (ProtocolError, CommandError) as e:
            self.errors += 1
            return {"ok": False, "error": str(e)}
        except Exception as e:  # a bug in a command must not take the daemon down
            self.errors += 1
            log.exception("control command failed: %r", line[:200])
            return {"ok": False, "error": f"internal error: {e!r}"}

    async def close(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
