"""Alerts through apprise (Telegram, ntfy, e-mail, Slack, webhooks...), sent from a worker
thread so that nothing on the event loop ever waits for a network.

`AlertSender.submit()` is what the loop calls: it only decides (filtered, de-duplicated,
rate-limited, queue full) and puts the alert on a queue, O(1), never blocking. The worker
thread sends it to every configured URL separately, retries the URLs that failed with a
doubling backoff, and keeps counts and the last error for the status page and /metrics.
An alert is de-duplicated on (kind, body) for `dedupe_s`, so a flapping condition or a
repeated halt reason alerts once; each URL gets each alert at most once (a URL that took it
is not sent it again when another URL's send is retried).

What it must never do: block or raise into the caller (the supervisor's trip paths call it),
import apprise on the loop (its plugin scan takes a fifth of a second: the worker imports it),
or log the URLs (they hold tokens).
"""
from __future__ import annotations

import heapq
import itertools
import logging
import queue
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from daemon.config import AlertsCfg

log = logging.getLogger("bot4d.alerts")

_MAX_BACKOFF_S = 300.0
# A send function: (url, title, body) -> None on success, or the error text.
SendFn = Callable[[str, str, str], "str | None"]


@dataclass(order=True)
class _Pending:
    due: float
    seq: int
    kind: str = field(compare=False)
    title: str = field(compare=False)
    body: str = field(compare=False)
    urls: list[str] = field(compare=False)
    attempts: int = field(default=0, compare=False)


class AppriseSend:
    """Sends through apprise, one URL at a time. Built on the worker thread (imports apprise
    there); the per-URL objects are reused."""

    def __init__(self, timeout_s: float) -> None:
        import apprise
        self._apprise = apprise
        self._timeout = timeout_s
        self._objs: dict[str, object] = {}
        # apprise logs every failure as a warning on its own logger; the worker logs one
        # line of its own per failure instead (rate of retries, not of apprise internals).
        logging.getLogger("apprise").propagate = False

    def __call__(self, url: str, title: str, body: str) -> str | None:
        ap = self._objs.get(url)
        if ap is None:
            ap = self._apprise.Apprise()
            if not ap.add(url):
                return "apprise does not understand this URL"
            for server in ap:
                server.socket_connect_timeout = self._timeout
                server.socket_read_timeout = self._timeout
            self._objs[url] = ap
        with self._apprise.LogCapture(level=logging.WARNING) as captured:
            ok = ap.notify(title=title, body=body)
        if ok:
            return None
        text = captured.getvalue().strip().splitlines()
        return text[-1].split(" - ", 2)[-1] if text else "apprise reported a failure"


class AlertSender:
    """Queue + worker thread. `send` replaces apprise (the command-line test of a URL
    uses the real one; tests use real apprise against a local HTTP receiver)."""

    def __init__(self, cfg: AlertsCfg, urls: list[str], *, send: SendFn | None = None,
                 host: str | None = None) -> None:
        self.cfg = cfg
        self.urls = list(urls)
        self.host = host or socket.gethostname()
        self._send = send
        self._q: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._recent: dict[tuple[str, str], float] = {}   # (kind, body) -> last accepted
        self._minute: deque[float] = deque()
        self._seq = itertools.count()
        self._lock = threading.Lock()   # counters are read by the loop, written by both
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.counts = {"submitted": 0, "queued": 0, "sent": 0, "failed_attempts": 0,
                       "given_up": 0, "deduped": 0, "rate_limited": 0, "queue_full": 0,
                       "filtered": 0}
        self.pending = 0            # alerts accepted and not yet delivered or given up
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_sent_at: float | None = None
        self.recent: deque[dict] = deque(maxlen=20)

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    # -- the loop's side -----------------------------------------------------------------
    def submit(self, kind: str, title: str, body: str) -> str:
        """Decide and enqueue; returns what happened ("queued", "deduped", ...). Never
        blocks, never raises."""
        try:
            return self._submit(kind, title, body)
        except Exception:   # noqa: BLE001 - an alert must never break the caller's trip
            log.exception("alert %s could not be queued", kind)
            return "error"

    def _submit(self, kind: str, title: str, body: str) -> str:
        now = time.monotonic()
        with self._lock:
            self.counts["submitted"] += 1
            if not self.urls:
                return "disabled"
            if kind not in self.cfg.events:
                self.counts["filtered"] += 1
                return "filtered"
            key = (kind, body)
            last = self._recent.get(key)
            if last is not None and now - last < self.cfg.dedupe_s:
                self.counts["deduped"] += 1
                return "deduped"
            while self._minute and now - self._minute[0] > 60:
                self._minute.popleft()
            if len(self._minute) >= self.cfg.max_per_minute:
                self.counts["rate_limited"] += 1
                return "rate_limited"
            if self.pending >= self.cfg.queue_max:
                self.counts["queue_full"] += 1
                return "queue_full"
            self._recent[key] = now
            if len(self._recent) > 1000:   # forget the oldest keys (bounded memory)
                for k in sorted(self._recent, key=self._recent.get)[:500]:
                    del self._recent[k]
            self._minute.append(now)
            self.counts["queued"] += 1
            self.pending += 1
        self._q.put(_Pending(now, next(self._seq), kind, f"bot4 {self.host}: {title}", body,
                             list(self.urls)))
        return "queued"

    def status(self) -> dict:
        with self._lock:
            return {"enabled": self.enabled, "urls": len(self.urls), "pending": self.pending,
                    **self.counts, "last_error": self.last_error,
                    "last_error_age_s": None if self.last_error_at is None
                    else round(time.monotonic() - self.last_error_at, 1),
                    "last_sent_age_s": None if self.last_sent_at is None
                    else round(time.monotonic() - self.last_sent_at, 1),
                    "worker_alive": bool(self._thread and self._thread.is_alive()),
                    "recent": list(self.recent)}

    # -- the worker ----------------------------------------------------------------------
    def start(self) -> None:
        if not self.urls or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="bot4-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Deliver what is due within `timeout` (blocking the calling thread: call it from
        a thread, not the loop), then end the worker."""
        if self._thread is None:
            return
        self._stopping.set()
        self._q.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        send = self._send
        if send is None:
            try:
                send = AppriseSend(self.cfg.timeout_s)
            except Exception as e:   # noqa: BLE001 - no apprise: alerts off, and say so
                self._error(f"apprise unavailable: {e!r}")
                log.error("alerts disabled: apprise unavailable: %r", e)
                return
        retry: list[_Pending] = []
        while True:
            timeout = None
            if retry:
                timeout = max(0.0, retry[0].due - time.monotonic())
            if self._stopping.is_set():
                timeout = 0.0 if not retry else min(timeout, 0.05)
            try:
                item = self._q.get(timeout=timeout) if timeout != 0.0 else self._q.get_nowait()
            except queue.Empty:
                item = None
                if self._stopping.is_set() and (not retry or retry[0].due > time.monotonic()):
                    return
            if item is not None:
                self._deliver(send, item, retry)
            while retry and retry[0].due <= time.monotonic():
                self._deliver(send, heapq.heappop(retry), retry)

    def _deliver(self, send: SendFn, p: _Pending, retry: list[_Pending]) -> None:
        p.attempts += 1
        failed: list[str] = []
        for url in p.urls:
            try:
                err = send(url, p.title, p.body)
            except Exception as e:   # noqa: BLE001 - a plugin bug is one failed send
                err = repr(e)
            if err is not None:
                failed.append(url)
                self._error(err)
        with self._lock:
            self.counts["sent"] += len(p.urls) - len(failed)
            if len(failed) < len(p.urls):
                self.last_sent_at = time.monotonic()
            self.counts["failed_attempts"] += len(failed)
        if not failed:
            self._done(p, "sent")
            return
        if p.attempts > self.cfg.retries:
            log.error("alert %s given up after %d attempts (%d of %d URLs): %s", p.kind,
                      p.attempts, len(failed), len(p.urls), self.last_error)
            with self._lock:
                self.counts["given_up"] += 1
            self._done(p, "given up")
            return
        delay = min(_MAX_BACKOFF_S, self.cfg.retry_backoff_s * 2 ** (p.attempts - 1))
        log.warning("alert %s: send failed (%d of %d URLs, attempt %d), retry in %.0f s: %s",
                    p.kind, len(failed), len(p.urls), p.attempts, delay, self.last_error)
        p.urls, p.due = failed, time.monotonic() + delay
        heapq.heappush(retry, p)

    def _done(self, p: _Pending, outcome: str) -> None:
        with self._lock:
            self.pending -= 1
            self.recent.appendleft({"kind": p.kind, "body": p.body[:200], "outcome": outcome,
                                    "attempts": p.attempts, "at": time.time()})

    def _error(self, text: str) -> None:
        with self._lock:
            self.last_error, self.last_error_at = text[:300], time.monotonic()


def send_now(cfg: AlertsCfg, urls: list[str], kind: str, title: str, body: str,
             attempts: int = 2) -> bool:
    """Send one alert synchronously (for `bot4d stop-post`, a short-lived process with no
    loop to protect): every URL, `attempts` tries each, `timeout_s` per try. True when
    every URL took it."""
    if not urls or kind not in cfg.events:
        return True
    send = AppriseSend(cfg.timeout_s)
    title = f"bot4 {socket.gethostname()}: {title}"
    ok = True
    for url in urls:
        for attempt in range(attempts):
            err = send(url, title, body)
            if err is None:
                break
            log.warning("alert %s: send failed (attempt %d): %s", kind, attempt + 1, err)
        else:
            ok = False
    return ok


def notify_stop(cfg: AlertsCfg, result: str, exit_code: str, exit_status: str) -> bool:
    """From `bot4d stop-post` (ExecStopPost): bot4d ended abnormally and systemd restarts
    it. Never raises (the journal work of stop-post is already done); True when sent or
    nothing to send."""
    try:
        from daemon.operator.credentials import alert_urls
        urls = alert_urls(cfg)
        if result == "watchdog":
            title = "restarted by the watchdog"
            body = (f"bot4d stopped answering the systemd watchdog and was killed "
                    f"({exit_code} {exit_status}); systemd restarts it and it comes back "
                    f"halted: check `journalctl -u bot4d`, then `bot4ctl reset`").strip()
        else:
            title = "ended abnormally"
            body = (f"bot4d ended abnormally: {result} ({exit_code} {exit_status}); systemd "
                    f"restarts it and it comes back halted").strip()
        return send_now(cfg, urls, "restart", title, body)
    except Exception as e:   # noqa: BLE001 - an alert must not fail the stop
        log.error("stop-post: alert not sent: %r", e)
        return False
