"""bot4d command line: `run`, `check-config`, `stop-post`.

    bot4d run --config FILE [--sim] [--replay FILE ...] [--state-dir DIR] [--socket PATH]
    bot4d check-config --config FILE        exit 0, or 78 naming the bad key
    bot4d stop-post --config FILE           systemd ExecStopPost= helper (see below)

Exit codes: 0 orderly stop, 78 (EX_CONFIG) bad configuration, 69 (EX_UNAVAILABLE) no GPIO
without --sim / journal unusable, 70 (EX_SOFTWARE) an unexpected error. This module parses arguments and wires things up; it
holds no trading logic.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from daemon import config as configmod
from daemon import logsetup

log = logging.getLogger("bot4d")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bot4d", description="bot4 trading appliance daemon")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", required=True)
    run.add_argument("--sim", action="store_true",
                     help="mock GPIO and the paper venue; market data from --replay or synthetic")
    run.add_argument("--replay", nargs="+", default=[], metavar="FILE",
                     help="replay capture files (gzip, '<ns> <json>' lines) in this order")
    run.add_argument("--replay-speed", type=float, default=None,
                     help="0 = as fast as possible, 1 = real time, N = xN")
    run.add_argument("--state-dir")
    run.add_argument("--socket")
    run.add_argument("--sim-estop-open", action="store_true",
                     help="simulation: the e-stop circuit is open at boot (broken wire)")
    chk = sub.add_parser("check-config", help="validate a config file")
    chk.add_argument("--config", required=True)
    sp = sub.add_parser("stop-post", help="systemd ExecStopPost helper")
    sp.add_argument("--config", required=True)
    sp.add_argument("--state-dir")
    return ap


def _load(path: str) -> configmod.Config:
    try:
        return configmod.load(path)
    except configmod.ConfigError as e:
        print(f"bot4d: config error: {e}", file=sys.stderr)
        sys.exit(configmod.EX_CONFIG)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "check-config":
        cfg = _load(args.config)
        print(f"{args.config}: OK ({len(cfg.market.symbols)} symbol(s), source "
              f"{cfg.market.source})")
        return 0
    cfg = _load(args.config)
    target = logsetup.setup(cfg.daemon.log_level)
    if args.cmd == "stop-post":
        return _stop_post(cfg, args.state_dir)
    return _run(cfg, args, target)


def _run(cfg: configmod.Config, args: argparse.Namespace, log_target: str) -> int:
    from daemon.supervisor import RunOptions, StartupError, Supervisor
    market: dict = {}
    if args.replay:
        market["source"] = "replay"
    if args.replay_speed is not None:
        market["replay_speed"] = args.replay_speed
    if market:
        try:
            cfg = configmod.with_overrides(cfg, market=market)
        except configmod.ConfigError as e:
            print(f"bot4d: {e}", file=sys.stderr)
            return configmod.EX_CONFIG
    if cfg.market.source == "replay" and not args.replay:
        print("bot4d: config error: [market] source = \"replay\" needs --replay FILE ...",
              file=sys.stderr)
        return configmod.EX_CONFIG
    for f in args.replay:
        if not Path(f).is_file():
            print(f"bot4d: --replay {f}: no such file", file=sys.stderr)
            return configmod.EX_CONFIG
    if not args.sim and cfg.market.source != "binance":
        log.warning("market source %s without --sim: paper trading on hardware",
                    cfg.market.source)
    log.info("logging to %s", log_target)
    sup = Supervisor(cfg, RunOptions(sim=args.sim, replay=args.replay, state_dir=args.state_dir,
                                     socket=args.socket, sim_estop_open=args.sim_estop_open))
    try:
        return asyncio.run(sup.run())
    except StartupError as e:
        log.critical("cannot start: %s", e)
        print(f"bot4d: cannot start: {e}", file=sys.stderr)
        return e.exit_code
    except Exception:
        log.critical("bot4d failed", exc_info=True)
        return 70   # EX_SOFTWARE: a bug; systemd restarts us (Restart=on-failure)


def _stop_post(cfg: configmod.Config, state_dir: str | None) -> int:
    """Runs after bot4d's main process has gone, however it went. On an abnormal end
    (watchdog kill, crash; not a refusal to start: exit 78/69) it journals the event and
    latches `halt`, so the restarted
    daemon comes back halted with the reason instead of resuming; it closes the orders the
    dead process left open (the paper venue died with it)."""
    from daemon.store.journal import Journal
    from daemon.execution.orders import OrderStatus
    result = os.environ.get("SERVICE_RESULT", "unknown")
    exit_code = os.environ.get("EXIT_CODE", "")
    exit_status = os.environ.get("EXIT_STATUS", "")
    journal = Journal(Path(state_dir or cfg.daemon.state_dir) / "journal.sqlite3")
    # Exits by which bot4d refused to start: it never traded, so nothing to latch (the
    # operator fixes the config or the machine and starts it again).
    never_ran = result == "exit-code" and exit_status in ("78", "69")
    try:
        journal.audit("service_stopped", result=result, exit_code=exit_code,
                      exit_status=exit_status)
        if result != "success" and not never_ran:
            latch = journal.latch()
            if not (latch and latch.tripped):
                journal.set_latch(True, "halt", f"service ended abnormally: {result} "
                                  f"({exit_code} {exit_status})".strip())
            stale = journal.open_orders()
            for o in stale:
                o.status, o.reason = OrderStatus.CANCELLED, f"daemon died ({result})"
            if stale:
                journal.record_orders(stale)
            log.warning("bot4d ended abnormally (%s); latched halt, closed %d open orders",
                        result, len(stale))
    finally:
        journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
