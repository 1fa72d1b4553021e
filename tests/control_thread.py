"""A real ControlServer on its own event-loop thread, for tests that drive `bot4ctl`
(`daemon.control.ctl.main`) in the test's thread against it. Subclasses answer in
`handle`; every request that reached the server is kept in `requests`."""
from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from pathlib import Path

from daemon.control.server import ControlServer


class ControlThread(ABC):
    def __init__(self, sock: Path) -> None:
        self.requests: list[dict] = []
        self.path = str(sock)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ControlServer(self.path, self._dispatch)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)

    async def _dispatch(self, req: dict) -> dict:
        self.requests.append(req)
        return await self.handle(req)

    @abstractmethod
    async def handle(self, req: dict) -> dict:
        """The answer to one request (what the daemon's handler would return)."""

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
