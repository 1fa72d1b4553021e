"""Shared pieces for the operator's-view tests: HTTP to the daemon's page, a real HTTP
receiver on 127.0.0.1 standing in for an alert endpoint (apprise `json://`), /metrics
parsed with prometheus_client's own parser."""
from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_harness import Daemon, wait_for

WEB_ON = {"BOT4__WEB__ENABLED": "true", "BOT4__WEB__PORT": "0"}


def page_url(d: Daemon) -> str:
    """The page's URL as the daemon reports it (port 0: the kernel chose)."""
    return str(wait_for(lambda: ((d.status().get("operator") or {}).get("web") or {})
                        .get("url"), 10, what="status page URL"))


def http(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None, token: str | None = None,
         basic: str | None = None) -> tuple[int, dict[str, str], bytes]:
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    if basic is not None:
        h["Authorization"] = "Basic " + base64.b64encode(f"op:{basic}".encode()).decode()
    req = urllib.request.Request(url, data=body, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def halt_via_page(base: str, reason: str, **kw: Any) -> tuple[int, dict]:
    code, headers, body = http(base + "api/halt", "POST",
                               json.dumps({"reason": reason}).encode(),
                               {"Content-Type": "application/json"}, **kw)
    is_json = headers.get("Content-Type", "").startswith("application/json")
    return code, json.loads(body) if is_json else {"text": body.decode()}


def metrics(base: str, **kw: Any) -> dict[str, dict[tuple, float]]:
    """name -> {labels as sorted tuple: value}, every sample of every family."""
    code, _, body = http(base + "metrics", **kw)
    assert code == 200, body
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


class Receiver:
    """A real HTTP server on 127.0.0.1 that records what apprise's json:// posts."""

    def __init__(self, port: int = 0) -> None:
        self.posts: list[dict] = []
        self.lock = threading.Lock()
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:   # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(n)
                with recv.lock:
                    try:
                        recv.posts.append({"path": self.path, **json.loads(data)})
                    except ValueError:
                        recv.posts.append({"path": self.path, "raw": data.decode("replace")})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "bot4") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def messages(self) -> list[dict]:
        with self.lock:
            return list(self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
