"""Runs the real `bot4d` (daemon.cli.main) with two test-only additions for scripts/torture:

1. A read-only view of the paper venue in `status`: the key "torture" lists the client ids
   the venue still has working, those of them whose cancel the gateway did send to the
   venue (PaperVenue.cancel / cancel_all are wrapped to note it), and how many requests
   the venue has queued. Without it the harness could not see an order that rests at the
   venue while the gateway has forgotten it or never sent its cancel (issue 6 defect 3).
   It changes nothing else in the reply.
2. Optional fault injection, chosen by the environment variable BOT4_TORTURE_INJECT
   (one TARGET:N, or several separated by commas):
       journal_record_orders:N   Journal.record_orders raises on its N-th call made inside
                                 a batch (a group commit), i.e. in the middle of one
       gateway_submit:N          OrderGateway.submit raises on its N-th call made inside a
                                 gateway batch (the quoter's requote)
       venue_reject:N            the paper venue rejects the N-th order that reaches it and
                                 the REJECT_RUN - 1 after it (venue errors for the breakers)
   and SIGKILL points (the process kills itself, as `kill -9` would, at an exact place):
       kill_limit_journalled:N   right after the N-th risk-limit trip is journalled (its
                                 audit row and the global breaker), before the risk
                                 snapshot is saved and before anything acts on it
       kill_limit_trip:N         when the protection poll hands over its N-th risk-limit
                                 action (journalled and saved), before the supervisor acts
       kill_breaker_open:N       right after the N-th breaker change to open is journalled
       kill_half_open:N          right after the N-th change to half-open is journalled
       kill_probe:N              when a half-open breaker has let its N-th probe order
                                 through (counted, not yet journalled or sent)
   A raising target raises RuntimeError("torture: injected fault ..."); every target logs
   "TORTURE-INJECTED <target> call N" (a kill: "TORTURE-KILL <target> call N") at CRITICAL
   first, so the harness can see it fired.

    python -m tests.torture_inject run --config ... --sim --replay ...   (same as bot4d)

It only wraps functions from outside; it never edits product code, and it must never be
used by anything but the torture harness and its tests.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any, Callable

log = logging.getLogger("torture.inject")

ENV = "BOT4_TORTURE_INJECT"
TARGETS = ("journal_record_orders", "gateway_submit", "venue_reject", "kill_limit_journalled",
           "kill_limit_trip", "kill_breaker_open", "kill_half_open", "kill_probe")
REJECT_RUN = 4   # venue_reject: consecutive rejects (one more than the cases' error limit)


class InjectionSpecError(ValueError):
    """BOT4_TORTURE_INJECT is malformed."""


def parse_spec(spec: str) -> tuple[str, int]:
    """'target:N' -> (target, N); a clear error naming the problem otherwise."""
    target, sep, n = spec.partition(":")
    if not sep or target not in TARGETS:
        raise InjectionSpecError(f"{ENV}={spec!r}: expected TARGET:N with TARGET one of "
                                 f"{', '.join(TARGETS)}")
    try:
        count = int(n)
    except ValueError:
        raise InjectionSpecError(f"{ENV}={spec!r}: N must be an integer, got {n!r}") from None
    if count < 1:
        raise InjectionSpecError(f"{ENV}={spec!r}: N must be >= 1, got {count}")
    return target, count


def parse_specs(spec: str) -> list[tuple[str, int]]:
    """'a:1,b:2' -> [(a, 1), (b, 2)]; each target at most once."""
    out = [parse_spec(part.strip()) for part in spec.split(",")]
    targets = [t for t, _ in out]
    if len(set(targets)) != len(targets):
        raise InjectionSpecError(f"{ENV}={spec!r}: a target is named twice")
    return out


def _die(target: str, n: int) -> None:
    """SIGKILL ourselves: nothing after this line runs, nothing is flushed or closed."""
    log.critical("TORTURE-KILL %s call %d", target, n)
    for h in logging.getLogger().handlers:
        h.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_after(fn: Callable[..., Any], target: str, nth: int,
                counts: Callable[[Any, tuple, Any], bool]) -> Callable[..., Any]:
    """Run fn; if counts(self, args, result) says this call counts, die at the N-th."""
    calls = 0

    def wrapper(self: Any, *a: Any, **kw: Any) -> Any:
        nonlocal calls
        result = fn(self, *a, **kw)
        if counts(self, a, result):
            calls += 1
            if calls == nth:
                _die(target, nth)
        return result

    return wrapper


def _install_protection(target: str, nth: int) -> None:
    from daemon.execution.paper import PaperVenue
    from daemon.protection import Protection
    from daemon.safety.breakers.board import BreakerBoard
    if target == "venue_reject":
        activate = PaperVenue._activate
        seen = 0

        def rejecting(self: Any, w: Any, ts: int) -> None:
            nonlocal seen
            seen += 1
            if not nth <= seen < nth + REJECT_RUN:
                return activate(self, w, ts)
            if seen == nth:
                log.critical("TORTURE-INJECTED %s call %d", target, nth)
            from daemon.execution.orders import OrderStatus
            self.stats["rejected"] += 1
            self._listener.on_order_status(w.client_id, OrderStatus.REJECTED,
                                           "torture: injected venue reject", ts)
        PaperVenue._activate = rejecting
    elif target == "kill_limit_journalled":
        Protection._risk_tripped = _kill_after(Protection._risk_tripped, target, nth,
                                               lambda s, a, r: True)
    elif target == "kill_limit_trip":
        Protection.poll = _kill_after(Protection.poll, target, nth, lambda s, a, r: any(
            x.reason.startswith("risk limit") for x in r))
    elif target in ("kill_breaker_open", "kill_half_open"):
        new = "open" if target == "kill_breaker_open" else "half_open"
        Protection._changed = _kill_after(Protection._changed, target, nth,
                                          lambda s, a, r: a[0].new == new)
    else:   # kill_probe
        allow = BreakerBoard.allow

        def probing(self: Any, *a: Any, **kw: Any) -> Any:
            half_open = [b.name for b in self.breakers.values() if b.state.value == "half_open"]
            result = allow(self, *a, **kw)
            if half_open and result is None:
                probing.calls += 1
                if probing.calls == nth:
                    _die(target, nth)
            return result
        probing.calls = 0
        BreakerBoard.allow = probing


def _raise_on_nth(fn: Callable[..., Any], target: str, nth: int,
                  in_batch: Callable[[Any], bool]) -> Callable[..., Any]:
    calls = 0

    def wrapper(self: Any, *a: Any, **kw: Any) -> Any:
        nonlocal calls
        if in_batch(self):
            calls += 1
            if calls == nth:
                log.critical("TORTURE-INJECTED %s call %d", target, nth)
                raise RuntimeError(f"torture: injected fault in {target} (call {nth})")
        return fn(self, *a, **kw)

    return wrapper


def install(spec: str | None) -> None:
    """Patch the status reply, and the injection targets `spec` names."""
    specs = parse_specs(spec) if spec else []   # a bad spec fails before any import
    from daemon import supervisor
    from daemon.execution.paper import PaperVenue
    original_status = supervisor.Supervisor.status
    cancels_sent: set[str] = set()   # client ids whose cancel reached the venue
    venue_cancel, venue_cancel_all = PaperVenue.cancel, PaperVenue.cancel_all

    def cancel(self: Any, client_id: str) -> None:
        cancels_sent.add(client_id)
        venue_cancel(self, client_id)

    def cancel_all(self: Any, symbol: str | None = None) -> None:
        cancels_sent.update(self.open_orders(symbol))   # what it will cancel at the latest
        venue_cancel_all(self, symbol)

    def status(self: Any) -> dict:
        out = original_status(self)
        venue = getattr(self.market, "venue", None) if self.market is not None else None
        if venue is None:
            out["torture"] = None
            return out
        working = sorted(venue.open_orders())
        out["torture"] = {
            "venue_open": working,
            "venue_cancel_sent": [c for c in working if c in cancels_sent],
            "venue_pending": venue.pending_requests}
        return out

    PaperVenue.cancel, PaperVenue.cancel_all = cancel, cancel_all
    supervisor.Supervisor.status = status
    for target, nth in specs:
        if target == "journal_record_orders":
            from daemon.store.journal import Journal
            Journal.record_orders = _raise_on_nth(Journal.record_orders, target, nth,
                                                  lambda j: getattr(j, "_depth", 0) > 0)
        elif target == "gateway_submit":
            from daemon.execution.gateway import OrderGateway
            OrderGateway.submit = _raise_on_nth(OrderGateway.submit, target, nth,
                                                lambda g: getattr(g, "_after", None) is not None)
        else:
            _install_protection(target, nth)


def main(argv: list[str] | None = None) -> int:
    try:
        install(os.environ.get(ENV))
    except InjectionSpecError as e:
        print(f"torture_inject: {e}", file=sys.stderr)
        return 2
    import daemon
    from daemon import cli
    # Which tree is running: the harness can run an older export of the code.
    print(f"torture_inject: daemon package {os.path.dirname(daemon.__file__)}, "
          f"inject {os.environ.get(ENV) or 'none'}", file=sys.stderr, flush=True)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
