"""Runs the real `bot4d` (daemon.cli.main) with two test-only additions for scripts/torture:

1. A read-only view of the paper venue in `status`: the key "torture" lists the client ids
   the venue still has working, those of them whose cancel the gateway did send to the
   venue (PaperVenue.cancel / cancel_all are wrapped to note it), and how many requests
   the venue has queued. Without it the harness could not see an order that rests at the
   venue while the gateway has forgotten it or never sent its cancel (issue 6 defect 3).
   It changes nothing else in the reply.
2. Optional fault injection, chosen by the environment variable BOT4_TORTURE_INJECT:
       journal_record_orders:N   Journal.record_orders raises on its N-th call made inside
                                 a batch (a group commit), i.e. in the middle of one
       gateway_submit:N          OrderGateway.submit raises on its N-th call made inside a
                                 gateway batch (the quoter's requote)
   The exception is RuntimeError("torture: injected fault ..."); when it fires a line
   "TORTURE-INJECTED <target> call N" is logged at CRITICAL so the harness can see it did.

    python -m tests.torture_inject run --config ... --sim --replay ...   (same as bot4d)

It only wraps functions from outside; it never edits product code, and it must never be
used by anything but the torture harness and its tests.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable

log = logging.getLogger("torture.inject")

ENV = "BOT4_TORTURE_INJECT"
TARGETS = ("journal_record_orders", "gateway_submit")


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
    """Patch the status reply, and the injection target if `spec` names one."""
    target, nth = parse_spec(spec) if spec else ("", 0)   # a bad spec fails before any import
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
    if not target:
        return
    if target == "journal_record_orders":
        from daemon.store.journal import Journal
        Journal.record_orders = _raise_on_nth(Journal.record_orders, target, nth,
                                              lambda j: getattr(j, "_depth", 0) > 0)
    else:
        from daemon.execution.gateway import OrderGateway
        OrderGateway.submit = _raise_on_nth(OrderGateway.submit, target, nth,
                                            lambda g: getattr(g, "_after", None) is not None)


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
