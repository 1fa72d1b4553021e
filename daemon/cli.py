"""bot4d command line: `run`, `check-config`, `stop-post`.

    bot4d run --config FILE [--sim] [--replay FILE ...] [--exit-at-end] [--state-dir DIR]
              [--socket PATH]
    bot4d backtest --replay FILE... --report DIR [--strategy NAME] [--config FILE]
              [--seed N] [--no-png] [--cache]   the daemon's core on captures: report.json/png
              [--sweep KEY=V1,V2,... ...] [--jobs N] [--sweep-metric NAME] [--point-png]
                                            a grid of backtests: sweep.json/csv, heatmap.png
    bot4d check-config --config FILE        exit 0, or 78 naming the bad key
    bot4d stop-post --config FILE           systemd ExecStopPost= helper (see below)
    bot4d journal-check --config FILE       integrity check and summary of the journal
    bot4d journal-reset --config FILE --yes keep a damaged journal aside, start a new one halted
    bot4d import-config [--boot DIR]        first boot: import bot4.toml etc. from the FAT
                                            partition (daemon/firstboot.py); 0, or 78

Exit codes: 0 orderly stop, 65 (EX_DATAERR) the journal is damaged or missing where one
existed, 69 (EX_UNAVAILABLE) no GPIO without --sim / state dir or journal unusable,
70 (EX_SOFTWARE) an unexpected error, 75 (EX_TEMPFAIL) another bot4d runs on the state dir,
78 (EX_CONFIG) bad configuration. This module parses arguments and wires things up; it
holds no trading logic.
"""
from __future__ import annotations

import argparse
import json
import asyncio
import logging
import os
import sys
from pathlib import Path

# Before pydantic (the config) or numpy (risk, data quality, the capture cache) is imported.
# The daemon's numerics are small arrays worked on the event loop: OpenBLAS's worker threads
# would only spin on the board's other cores (here they cost ~0.06 s of CPU per start), and
# pydantic's plugin discovery reads every installed package's metadata (~0.03 s) for plugins
# an appliance never installs. setdefault: an operator's own setting wins.
for _name, _value in (("OPENBLAS_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1"),
                      ("PYDANTIC_DISABLE_PLUGINS", "__all__")):
    os.environ.setdefault(_name, _value)

from daemon import config as configmod  # noqa: E402
from daemon import logsetup  # noqa: E402

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
    run.add_argument("--exit-at-end", action="store_true",
                     help="replay: stop when the data is over and print a JSON summary")
    run.add_argument("--state-dir")
    run.add_argument("--socket")
    run.add_argument("--sim-estop-open", action="store_true",
                     help="simulation: the e-stop circuit is open at boot (broken wire)")
    bt = sub.add_parser("backtest", help="run a strategy on captures through the daemon's own "
                                         "core and write report.json and report.png")
    bt.add_argument("--replay", nargs="+", required=True, metavar="FILE",
                    help="capture files (gzip, '<ns> <json>' lines) in this order")
    bt.add_argument("--strategy", help="strategy name (default: [strategy] name)")
    bt.add_argument("--config", help="config file (default: the built-in defaults)")
    bt.add_argument("--report", required=True, metavar="DIR", help="where the report goes")
    bt.add_argument("--seed", type=int, help="paper venue seed (default: [paper] seed)")
    bt.add_argument("--no-png", action="store_true", help="skip report.png")
    bt.add_argument("--cache", action="store_true",
                    help="decode through the decoded-capture cache (built on first use)")
    bt.add_argument("--cache-dir", help="where the decoded-capture cache lives")
    bt.add_argument("--sweep", action="append", metavar="KEY=V1,V2,...",
                    help="run the grid of these config values (repeatable; implies --cache): "
                         "DIR/points/*, DIR/sweep.json, sweep.csv, heatmap.png (2 keys)")
    bt.add_argument("--sweep-metric", metavar="NAME", help="heat map metric (pnl.total_net)")
    bt.add_argument("--jobs", type=int, help="sweep worker processes (default: CPU count)")
    bt.add_argument("--point-png", action="store_true", help="sweep: report.png per point")
    chk = sub.add_parser("check-config", help="validate a config file")
    chk.add_argument("--config", required=True)
    sp = sub.add_parser("stop-post", help="systemd ExecStopPost helper")
    sp.add_argument("--config", required=True)
    sp.add_argument("--state-dir")
    jc = sub.add_parser("journal-check", help="check the journal's integrity and summarise it")
    jc.add_argument("--config", required=True)
    jc.add_argument("--state-dir")
    jr = sub.add_parser("journal-reset",
                        help="keep a damaged journal aside and start a new one, latched halt")
    jr.add_argument("--config", required=True)
    jr.add_argument("--state-dir")
    jr.add_argument("--yes", action="store_true", help="really do it")
    ic = sub.add_parser("import-config",
                        help="first boot: import bot4.toml, bot4-credentials.toml and "
                             "authorized_keys from the boot partition (run as root)")
    ic.add_argument("--boot", default="/boot/firmware", help="the FAT boot partition")
    # Where the files go; the defaults are the real system, tests use a scratch tree.
    ic.add_argument("--etc", default="/etc/bot4", help=argparse.SUPPRESS)
    ic.add_argument("--credstore", default="/etc/credstore", help=argparse.SUPPRESS)
    ic.add_argument("--dropin-dir", default="/etc/systemd/system/bot4d.service.d",
                    help=argparse.SUPPRESS)
    ic.add_argument("--ssh-dir", default="/root/.ssh", help=argparse.SUPPRESS)
    ic.add_argument("--group", default="bot4", help=argparse.SUPPRESS)
    ic.add_argument("--no-reload", action="store_true", help=argparse.SUPPRESS)
    return ap


def _load(path: str) -> configmod.Config:
    try:
        return configmod.load(path)
    except configmod.ConfigError as e:
        print(f"bot4d: config error: {e}", file=sys.stderr)
        sys.exit(configmod.EX_CONFIG)
    except Exception as e:  # noqa: BLE001
        # config.load promises ConfigError only; should anything else escape, it is still a
        # configuration we cannot use, and a restart (exit 1/70) would not change that.
        msg = configmod.ConfigError(f"{path}: unexpected {type(e).__name__} while reading "
                                    f"the configuration: {e}")
        print(f"bot4d: config error: {msg}", file=sys.stderr)
        sys.exit(configmod.EX_CONFIG)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "check-config":
        cfg = _load(args.config)
        print(f"{args.config}: OK ({len(cfg.market.symbols)} symbol(s), source "
              f"{cfg.market.source})")
        return 0
    if args.cmd == "import-config":
        return _import_config(args)
    if args.cmd == "backtest":
        return _backtest(args)
    cfg = _load(args.config)
    target = logsetup.setup(cfg.daemon.log_level)
    if args.cmd == "stop-post":
        return _stop_post(cfg, args.state_dir)
    if args.cmd in ("journal-check", "journal-reset"):
        from daemon.store import recovery
        state_dir = Path(args.state_dir or cfg.daemon.state_dir)
        if args.cmd == "journal-check":
            return recovery.check(state_dir)
        return recovery.reset(state_dir, confirmed=args.yes)
    return _run(cfg, args, target)


def _backtest(args: argparse.Namespace) -> int:
    from daemon.backtest import run as backtest
    cfg = _load(args.config) if args.config else _load_defaults()
    logsetup.setup("warning")
    for f in args.replay:
        if not Path(f).is_file():
            print(f"bot4d backtest: --replay {f}: no such file", file=sys.stderr)
            return configmod.EX_CONFIG
    if args.sweep or args.sweep_metric or args.jobs is not None or args.point_png:
        from daemon.backtest import sweep
        return sweep.main(cfg, args.replay, args.report, specs=args.sweep,
                          strategy=args.strategy, seed=args.seed, png=not args.no_png,
                          cache_dir=args.cache_dir, jobs=args.jobs, metric=args.sweep_metric,
                          point_png=args.point_png)
    return backtest.main(cfg, args.replay, args.report, strategy=args.strategy, seed=args.seed,
                         png=not args.no_png, use_cache=args.cache, cache_dir=args.cache_dir)


def _load_defaults() -> configmod.Config:
    try:
        return configmod.load(None)
    except configmod.ConfigError as e:   # a BOT4__ override in the environment
        print(f"bot4d: config error: {e}", file=sys.stderr)
        sys.exit(configmod.EX_CONFIG)


def _import_config(args: argparse.Namespace) -> int:
    """bot4-firstboot.service: import the operator's files or leave a .error beside them.
    78 (EX_CONFIG) when a file is invalid: the unit fails and bot4d, which requires it,
    is not started on settings the operator did not mean."""
    import subprocess
    from daemon import firstboot
    logsetup.setup("info")
    paths = firstboot.Paths(boot=Path(args.boot), etc=Path(args.etc),
                            credstore=Path(args.credstore), dropin_dir=Path(args.dropin_dir),
                            ssh_dir=Path(args.ssh_dir), group=args.group)
    result = firstboot.import_boot_files(paths)
    if not result.ok:
        for name, problem in result.errors.items():
            print(f"bot4d: import-config: {name}: {problem}", file=sys.stderr)
        return configmod.EX_CONFIG
    for line in result.imported:
        print(f"bot4d: import-config: imported {line}")
    if any(firstboot.CREDENTIALS_NAME in line for line in result.imported) and not args.no_reload:
        # The LoadCredential= drop-in was just written; PID 1 must read it before it
        # starts bot4d (queued after this unit, so it starts with the new definition).
        subprocess.run(["systemctl", "daemon-reload"], check=True)
    return 0


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
                                     socket=args.socket, sim_estop_open=args.sim_estop_open,
                                     config_path=args.config, exit_at_end=args.exit_at_end))
    try:
        rc = asyncio.run(sup.run())
        if args.exit_at_end and sup.replay_summary is not None:
            print(json.dumps(sup.replay_summary, sort_keys=True))
        return rc
    except StartupError as e:
        log.critical("cannot start: %s", e)
        print(f"bot4d: cannot start: {e}", file=sys.stderr)
        return e.exit_code
    except Exception:
        log.critical("bot4d failed", exc_info=True)
        return 70   # EX_SOFTWARE: a bug; systemd restarts us (Restart=on-failure)


def _stop_post(cfg: configmod.Config, state_dir: str | None) -> int:
    """Runs after bot4d's main process has gone, however it went. On an abnormal end
    (watchdog kill, crash; not a refusal to start: exit 65/69/75/78) it journals the event and
    latches `halt`, so the restarted
    daemon comes back halted with the reason instead of resuming. It leaves the orders the
    dead process had open as the journal has them: the next boot's reconciliation settles
    each with the venue (a live venue may still be working them; daemon/execution/
    reconcile.py)."""
    from daemon.store.journal import Journal, JournalError
    from daemon.store.statedir import StateDir, StateDirError
    result = os.environ.get("SERVICE_RESULT", "unknown")
    exit_code = os.environ.get("EXIT_CODE", "")
    exit_status = os.environ.get("EXIT_STATUS", "")
    # Exits by which bot4d refused to start: it never traded, so nothing to latch (the
    # operator fixes the config, the journal or the machine and starts it again).
    never_ran = result == "exit-code" and exit_status in ("78", "69", "65", "75")
    if never_ran:
        log.info("bot4d refused to start (exit %s): nothing to record", exit_status)
        return 0
    sd = StateDir(state_dir or cfg.daemon.state_dir)
    try:
        sd.lock()   # never touch the journal of a bot4d that is (still or again) running
    except StateDirError as e:
        log.error("stop-post: %s; leaving the journal alone", e)
        return 0
    try:
        journal = Journal(sd.path / "journal.sqlite3",
                          must_exist=sd.journal_expected() is not None)
    except JournalError as e:
        # The run marker stays behind, so the next boot still comes back latched.
        log.error("stop-post: cannot record the end of bot4d (%s): %s", result, e)
        sd.unlock()
        return 0
    try:
        journal.audit("service_stopped", result=result, exit_code=exit_code,
                      exit_status=exit_status)
        if result != "success" and not never_ran:
            latch = journal.latch()
            if not (latch and latch.tripped):
                journal.set_latch(True, "halt", f"service ended abnormally: {result} "
                                  f"({exit_code} {exit_status})".strip())
            log.warning("bot4d ended abnormally (%s); latched halt; %d orders left open "
                        "for the next boot's reconciliation", result,
                        len(journal.open_orders()))
    except JournalError as e:
        log.error("stop-post: recording the end of bot4d (%s) failed: %s", result, e)
    finally:
        journal.close()
        sd.unlock()
    if result != "success":   # operator's view: alert (apprise), after the journal work
        from daemon.operator.alerts import notify_stop
        notify_stop(cfg.alerts, result, exit_code, exit_status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
