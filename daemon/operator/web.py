"""The status page, its live updates and /metrics: an aiohttp server on bot4d's event loop.

Routes (nothing else exists; another method on these paths is 405, any other path 404):

    GET  /                 the page (static/index.html, app.js, style.css, uPlot)
    GET  /static/NAME      the page's files, served from this package (no CDN)
    GET  /api/status       the page's data as JSON (Supervisor.status() plus the view's blocks)
    GET  /api/history      the chart samples (time, equity, prices)
    GET  /api/events       server-sent events: `status` on every change and sample
    POST /api/halt         the only action: halt, through Supervisor.handle_command, exactly
                           like `bot4ctl halt` (JSON body {"reason": "..."})
    GET  /metrics          Prometheus text format

With a token configured every route needs it: `Authorization: Bearer TOKEN`, or HTTP Basic
with the token as the password (what a phone's browser asks for); a wrong or missing one
is 401. POST needs `Content-Type: application/json` and, when the browser sends an Origin,
the same host: a page elsewhere cannot make the operator's browser press halt (a
cross-site form cannot send JSON without a CORS preflight, which is never granted).

What it must never do: offer reset, start or any other state change (those stay local,
`bot4ctl`); block the loop (handlers are plain coroutines over in-memory data, the
halt is the same call as the control socket's); serve files outside static/.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from daemon.config import ConfigError, WebCfg
from daemon.control.server import CommandError
from daemon.operator import metrics

log = logging.getLogger("bot4d.web")

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".txt": "text/plain; charset=utf-8",
          ".LICENSE": "text/plain; charset=utf-8"}
_KEEPALIVE_S = 15.0
_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _json(data: Any) -> str:
    return json.dumps(data, default=str, separators=(",", ":"))


class WebServer:
    def __init__(self, op: Any, cfg: WebCfg, token: str | None) -> None:
        self.op = op
        self.cfg = cfg
        self.token = token
        self.clients = 0
        self.requests = 0
        self.unauthorized = 0
        self.halts = 0
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._cache: tuple[int, bytes] = (-1, b"")
        self._ssl = self._tls() if cfg.tls_cert else None
        self._registry = metrics.registry(op)
        # Read once at boot: serving them never touches the disk from the loop.
        self._files = {p.name: (p.read_bytes(), _TYPES.get(p.suffix, "application/octet-stream"))
                       for p in STATIC.iterdir() if p.is_file()}

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"[web] tls_cert/tls_key: cannot load: {e}") from None
        return ctx

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(middlewares=[self._guard], client_max_size=16 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/api/history", self._history)
        app.router.add_get("/api/events", self._events)
        app.router.add_post("/api/halt", self._halt)
        app.router.add_get("/metrics", self._metrics)
        # access_log=None: one log line per request (and per SSE) would flood the journal.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        host = "127.0.0.1" if self.cfg.listen == "localhost" else self.cfg.listen
        site = web.TCPSite(self._runner, host, self.cfg.port, ssl_context=self._ssl,
                           reuse_address=True)
        await site.start()
        # The port the kernel chose when port = 0.
        port = self._runner.addresses[0][1] if self._runner.addresses else self.cfg.port
        scheme = "https" if self._ssl else "http"
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{shown}:{port}/"
        log.info("status page on %s%s", self.url,
                 " (token required)" if self.token else "")

    async def close(self) -> None:
        self._closing = True
        self.op.notify()   # wakes the live-update streams so they end
        if self._runner is not None:
            await self._runner.cleanup()

    def status(self) -> dict:
        return {"url": self.url, "clients": self.clients, "requests": self.requests,
                "unauthorized": self.unauthorized, "halts": self.halts,
                "auth": "token" if self.token else "none (loopback)",
                "tls": self._ssl is not None}

    # -- middleware -----------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        given = None
        if scheme.lower() == "bearer":
            given = value.strip()
        elif scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
            except (binascii.Error, UnicodeDecodeError):
                given = None
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests += 1
        if not self._authorized(request):
            self.unauthorized += 1
            return web.Response(status=401, text="401: token required\n",
                                headers={"WWW-Authenticate": 'Basic realm="bot4", '
                                                             'charset="UTF-8"'})
        resp = await handler(request)
        resp.headers.setdefault("Content-Security-Policy", _CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    # -- pages ----------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.StreamResponse:
        found = self._files.get(name)   # only files that were in static/ at start
        if found is None:
            raise web.HTTPNotFound()
        return web.Response(body=found[0], headers={"Content-Type": found[1]})

    async def _status(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=_json(self.op.page_payload()),
                            content_type="application/json")

    async def _history(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=_json(list(self.op.history)), content_type="application/json")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        self.clients += 1
        try:
            await resp.write(f"retry: 1000\nevent: history\ndata: "
                             f"{_json(list(self.op.history))}\n\n".encode())
            while not self._closing:
                await resp.write(self._update())
                while not await self.op.changed(_KEEPALIVE_S):
                    await resp.write(b": keepalive\n\n")
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass   # the browser went away, or we are stopping
        finally:
            self.clients -= 1
        return resp

    def _update(self) -> bytes:
        """The `status` event for the current generation, built once however many pages
        are connected (each costs the loop a few hundred microseconds to build)."""
        gen = self.op.generation
        if self._cache[0] != gen:
            self._cache = (gen, f"event: status\ndata: {_json(self.op.page_payload())}\n\n"
                           .encode())
        return self._cache[1]

    async def _halt(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="415: send JSON {\"reason\": \"...\"}\n")
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(text="403: cross-origin request\n")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="400: not JSON\n") from None
        reason = body.get("reason") if isinstance(body, dict) else None
        reason = " ".join(str(reason or "").split())[:150] or "halt button"
        who = request.remote or "?"
        log.warning("halt requested from the status page (%s): %s", who, reason,
                    extra={"BOT4_EVENT": "web_halt"})
        try:
            result = await self.op.sup.handle_command(
                {"cmd": "halt", "reason": f"web page ({who}): {reason}"})
        except CommandError as e:
            return web.json_response({"ok": False, "error": str(e)}, status=409)
        self.halts += 1
        return web.json_response({"ok": True, "result": result, "at": time.time()})

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=metrics.render(self._registry),
                            headers={"Content-Type": metrics.CONTENT_TYPE})
