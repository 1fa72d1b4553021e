"""bot4ctl: the operator's command-line client for bot4d's control socket.

    bot4ctl [--socket PATH] [--timeout S] status [--json] | halt [--reason TEXT] | reset | start
    bot4ctl orders [--symbol S] [--limit N] [--json]      (newest first, from the journal)
    bot4ctl fills [--symbol S] [--limit N] [--json]
    bot4ctl breaker trip NAME [--reason TEXT] | breaker reset NAME
    bot4ctl features [--symbol S] [--json]            (latest value of every feature)
    bot4ctl quality [--json]                 (data-quality verdict per symbol and layer)
    bot4ctl flatten [SYMBOL] [--algo twap|ac] [--duration S] | flatten [SYMBOL] --cancel
                                             (close positions on a schedule, reduce-only)
    bot4ctl sim estop press|release          (daemon running with mock GPIO only)
    bot4ctl sim stall market|strategy|loop [--seconds N]

Exit 0 on success, 1 when the daemon refused the command, 2 on usage errors, 69 when the
daemon cannot be reached (no socket, no permission, no answer within the timeout, or
still busy at its connection limit when the timeout ends). Every failure is one line on
stderr, never a traceback. A "busy" reply means the daemon never read the request, so it
is sent again until the timeout. It only talks to the socket; it never touches the journal.
Human output fits an 80-column terminal (daemon/control/render.py); `--json` prints the
daemon's reply as it is, for scripts.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time

import orjson

from daemon.control import render
from daemon.control.protocol import BUSY, MAX_LINE, encode

DEFAULT_SOCKET = "/run/bot4/control.sock"
DEFAULT_TIMEOUT_S = 10.0
MAX_LIMIT = 10_000   # rows of `orders` / `fills` (the daemon refuses more)


class NoAnswer(ConnectionError):
    """bot4d closed the connection without a reply, or replied with something unreadable."""


def request(path: str, req: dict, timeout: float = DEFAULT_TIMEOUT_S) -> dict:
    """Send one request and return the daemon's reply. A "busy" reply (the request was
    never read) is retried until `timeout` ends and then returned as it is.

    Raises FileNotFoundError / ConnectionRefusedError / PermissionError from connect,
    TimeoutError when no reply came within `timeout`, NoAnswer for an empty or garbled one.
    """
    deadline = time.monotonic() + timeout
    pause = 0.02
    while True:
        reply = _once(path, req, deadline)
        if reply.get("code") != BUSY or time.monotonic() + pause >= deadline:
            return reply
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _once(path: str, req: dict, deadline: float) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        # A full listen backlog makes an AF_UNIX connect fail at once with EAGAIN instead
        # of waiting; the daemon drains the backlog, so wait for room until the deadline.
        s.setblocking(False)
        while True:
            try:
                s.connect(path)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError("its connection queue stayed full") from None
                time.sleep(0.01)
        s.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            s.sendall(encode(req))
        except (BrokenPipeError, ConnectionResetError):
            pass   # the daemon closed before reading (busy): its reply, if any, says why
        buf = b""
        while not buf.endswith(b"\n"):
            s.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = s.recv(MAX_LINE)
            except ConnectionResetError:
                break   # closed with our request unread; anything it said came first
            if not chunk:
                break
            buf += chunk
    if not buf:
        raise NoAnswer("bot4d closed the connection without answering")
    try:
        reply = orjson.loads(buf.splitlines()[0])
    except orjson.JSONDecodeError:
        raise NoAnswer(f"bot4d sent a reply that is not JSON: {buf[:80]!r}") from None
    if not isinstance(reply, dict):
        raise NoAnswer(f"bot4d sent a reply that is not a JSON object: {buf[:80]!r}")
    return reply


def _positive_seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0: {text!r}")
    return v


def _print_status(st: dict) -> None:
    sys.stdout.write(render.dump(render.status_lines(st)))


def _limit(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= n <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_LIMIT}, got {n}")
    return n


def _symbol(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a symbol cannot be empty")
    return text.strip().upper()


def _name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a breaker name cannot be empty")
    return text.strip()


FEATURE_COLUMNS: list[render.Column] = [
    ("symbol", "symbol", False), ("feature", "feature", False), ("value", "value", False),
    ("ready", "ready", False), ("time", "time (UTC)", False)]


def _features_lines(result: dict, symbol: str | None) -> list[str]:
    """{"features": {symbol: {name: {value, ts_ns, ready}}}} as one row per feature."""
    feats = result.get("features")
    if not isinstance(feats, dict) or not feats:
        return ["no features (the feature engine is off or has no symbols)"]
    rows = []
    for sym, by_name in feats.items():
        if symbol and sym != symbol or not isinstance(by_name, dict):
            continue
        for name, v in by_name.items():
            v = v if isinstance(v, dict) else {}
            x = v.get("value")
            shown = f"{x:.6g}" if isinstance(x, (int, float)) and not isinstance(x, bool) \
                else "-"
            ts = v.get("ts_ns")
            rows.append({"symbol": sym, "feature": name, "value": shown,
                         "ready": "yes" if v.get("ready") else "no",
                         "time": render.when(ts)[11:-1] if isinstance(ts, int) and ts > 0
                         else "-"})
    if not rows:
        return [f"no features for {symbol}"]
    return render.table(rows, FEATURE_COLUMNS)


QUALITY_COLUMNS: list[render.Column] = [
    ("symbol", "symbol", False), ("layer", "layer", False), ("verdict", "verdict", False),
    ("detail", "figures", True)]
_QUALITY_DETAIL = {   # layer -> the figures shown, in order (key, label)
    "benford": (("trades", "trades"), ("mad", "mad"), ("reference_mad", "ref"),
                ("conformity", "")),
    "kalman": (("prices", "prices"), ("outliers", "outliers"), ("gaps", "gaps")),
    "sources": (("samples", "samples"), ("stale", "stale"), ("disagree", "disagree"),
                ("no_majority", "no-majority"), ("cross_venue", "cross"),
                ("basis_bps", "basis bps")),
    "changepoint": (("changes", "changes"),),
    "score": (("score", "score"),),
    "alerting": (("alerts", "alerts"),),
    "monitoring": (("events", "events"), ("missing_trades", "missing"),
                   ("invalid", "invalid"), ("late", "late")),
}


def _figure(x: object) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _quality_lines(result: dict) -> list[str]:
    """{"quality": {"symbols": {key: {"score", "parts", "layers": {layer: {...}}}}}} as one
    row per symbol and layer, then each symbol's score parts."""
    q = result.get("quality")
    syms = q.get("symbols") if isinstance(q, dict) else None
    if not isinstance(syms, dict) or not syms:
        return ["no data-quality figures (the quality layers are off or have no symbols)"]
    rows = []
    reasons: list[tuple[str, str]] = []
    for key, st in syms.items():
        layers = st.get("layers") if isinstance(st, dict) else None
        if not isinstance(layers, dict):
            continue
        for layer, v in layers.items():
            v = v if isinstance(v, dict) else {}
            if layer == "drift":
                parts = [f"{name} psi {_figure(d.get('psi'))}" for name, d in v.items()
                         if isinstance(d, dict) and d.get("ready")]
                detail = ", ".join(parts) or "warming"
            else:
                # The first figure always, the others when there is something to say.
                detail = ", ".join(
                    (f"{label} {_figure(v[k])}" if label else _figure(v[k])).strip()
                    for i, (k, label) in enumerate(_QUALITY_DETAIL.get(layer, ()))
                    if v.get(k) is not None and (i == 0 or v[k] != 0))
            if v.get("reason"):
                reasons.append((f"{key} {layer}", str(v["reason"])))
            rows.append({"symbol": key, "layer": layer, "verdict": v.get("verdict", "-"),
                         "detail": detail})
    if not rows:
        return ["no data-quality figures"]
    lines = render.table(rows, QUALITY_COLUMNS)
    for where, why in reasons:      # in full: the table has no room for them
        lines += [render.fit(f"{where}:")] + render.pack("", why.split(), sep=" ")
    for key, st in syms.items():
        parts = st.get("parts") if isinstance(st, dict) else None
        if isinstance(parts, dict):
            lines.append(render.fit(f"{key} score {_figure(st.get('score'))} "
                                    f"(outcome {st.get('outcome', '-')}):"))
            lines += render.pack("", [f"{p} {_figure(x)}" for p, x in parts.items()])
    if isinstance(q, dict) and q.get("outcome"):
        lines.append(render.fit(f"outcome: {q['outcome']}"))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bot4ctl", description="Control a running bot4d.")
    ap.add_argument("--socket", default=os.environ.get("BOT4_SOCKET", DEFAULT_SOCKET))
    ap.add_argument("--timeout", type=_positive_seconds, default=DEFAULT_TIMEOUT_S,
                    help=f"seconds to wait for bot4d's answer (default {DEFAULT_TIMEOUT_S:g})")
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("status", help="show state, latch, e-stop, LED, orders")
    st.add_argument("--json", action="store_true")
    h = sub.add_parser("halt", help="software stop: cancel all orders, latch halted")
    h.add_argument("--reason", default="operator")
    sub.add_parser("reset", help="re-arm after estop/halt (e-stop must be released) -> ready")
    sub.add_parser("start", help="ready -> trading")
    for name, what in (("orders", "recent orders, newest first"),
                       ("fills", "recent fills, newest first")):
        hp = sub.add_parser(name, help=what)
        hp.add_argument("--symbol", type=_symbol, help="only this symbol")
        hp.add_argument("--limit", type=_limit, default=50,
                        help=f"how many (1-{MAX_LIMIT}, default 50)")
        hp.add_argument("--json", action="store_true")
    fe = sub.add_parser("features", help="latest value, readiness and time of every feature")
    fe.add_argument("--symbol", type=_symbol, help="only this symbol")
    fe.add_argument("--json", action="store_true")
    qu = sub.add_parser("quality", help="data-quality verdict per symbol and layer, score")
    qu.add_argument("--json", action="store_true")
    fl = sub.add_parser("flatten", help="close open positions on a schedule (reduce-only "
                                        "TWAP or Almgren-Chriss); --cancel stops it")
    fl.add_argument("symbol", nargs="?", type=_symbol, help="only this symbol")
    fl.add_argument("--algo", choices=["twap", "ac"], help="default: [execution] algo")
    fl.add_argument("--duration", type=_positive_seconds,
                    help="seconds (default: [execution] duration_s)")
    fl.add_argument("--cancel", action="store_true", help="stop running flattens")
    fl.add_argument("--json", action="store_true")
    br = sub.add_parser("breaker", help="trip or reset a circuit breaker by name")
    brsub = br.add_subparsers(dest="action", required=True)
    trip = brsub.add_parser("trip", help="open it (manual: stays open until reset)")
    trip.add_argument("name", type=_name)
    trip.add_argument("--reason", default="operator")
    rst = brsub.add_parser("reset", help="close it again")
    rst.add_argument("name", type=_name)
    for p in (trip, rst):
        p.add_argument("--json", action="store_true")
    sim = sub.add_parser("sim", help="simulation hooks (mock GPIO only)")
    simsub = sim.add_subparsers(dest="what", required=True)
    es = simsub.add_parser("estop")
    es.add_argument("action", choices=["press", "release"])
    stl = simsub.add_parser("stall", help="block a component to exercise the watchdog")
    stl.add_argument("action", choices=["market", "strategy", "loop"])
    stl.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args(argv)

    req: dict = {"cmd": args.cmd}
    if args.cmd == "halt":
        req["reason"] = args.reason
    elif args.cmd in ("orders", "fills"):
        req["limit"] = args.limit
        if args.symbol:
            req["symbol"] = args.symbol
    elif args.cmd == "flatten":
        if args.symbol:
            req["symbol"] = args.symbol
        if args.cancel:
            if args.algo or args.duration:
                ap.error("flatten --cancel takes no --algo or --duration")
            req["cancel"] = True
        else:
            if args.algo:
                req["algo"] = args.algo
            if args.duration:
                req["duration"] = args.duration
    elif args.cmd == "breaker":
        req.update(action=args.action, name=args.name)
        if args.action == "trip":
            req["reason"] = args.reason
    elif args.cmd == "sim":
        req.update(what=args.what, action=args.action)
        if args.what == "stall":
            req["seconds"] = args.seconds
    try:
        resp = request(args.socket, req, args.timeout)
    except (FileNotFoundError, ConnectionRefusedError) as e:
        print(f"bot4ctl: bot4d is not running (no socket at {args.socket}: {e.strerror})",
              file=sys.stderr)
        return 69
    except PermissionError:
        print(f"bot4ctl: permission denied on {args.socket} (join the socket's group)",
              file=sys.stderr)
        return 69
    except TimeoutError as e:
        detail = f" ({e})" if str(e) and str(e) != "timed out" else ""
        print(f"bot4ctl: bot4d did not answer {args.cmd} within {args.timeout:g} s{detail}; "
              "it may be overloaded or hung (see its log); the command may or may not "
              "have run, check with `bot4ctl status`", file=sys.stderr)
        return 69
    except NoAnswer as e:
        print(f"bot4ctl: {e}", file=sys.stderr)
        return 69
    except OSError as e:
        print(f"bot4ctl: talking to bot4d failed: {e}", file=sys.stderr)
        return 69
    if resp.get("code") == BUSY:
        print(f"bot4ctl: bot4d is busy and did not take {args.cmd} within {args.timeout:g} s: "
              f"{resp.get('error')}", file=sys.stderr)
        return 69
    if not resp.get("ok"):
        print(f"bot4ctl: {args.cmd} refused: {resp.get('error')}", file=sys.stderr)
        return 1
    result = resp.get("result")
    if not isinstance(result, dict):
        print(f"bot4ctl: bot4d answered {args.cmd} without a result: {str(resp)[:200]}",
              file=sys.stderr)
        return 69
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.cmd == "status":
        _print_status(result)
    elif args.cmd == "features":
        sys.stdout.write(render.dump(_features_lines(result, args.symbol)))
    elif args.cmd == "quality":
        sys.stdout.write(render.dump(_quality_lines(result)))
    elif args.cmd in ("orders", "fills"):
        rows = [r for r in result.get(args.cmd) or [] if isinstance(r, dict)]
        show = render.orders_lines if args.cmd == "orders" else render.fills_lines
        sys.stdout.write(render.dump(show(rows)))
    else:
        sys.stdout.write(render.dump(render.result_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
