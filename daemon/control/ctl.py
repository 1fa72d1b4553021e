"""bot4ctl: the operator's command-line client for bot4d's control socket.

    bot4ctl [--socket PATH] [--timeout S] status [--json] | halt [--reason TEXT] | reset | start
    bot4ctl sim estop press|release          (daemon running with mock GPIO only)
    bot4ctl sim stall market|strategy|loop [--seconds N]

Exit 0 on success, 1 when the daemon refused the command, 2 on usage errors, 69 when the
daemon cannot be reached (no socket, no permission, no answer within the timeout, or
still busy at its connection limit when the timeout ends). Every failure is one line on
stderr, never a traceback. A "busy" reply means the daemon never read the request, so it
is sent again until the timeout. It only talks to the socket; it never touches the journal.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import time

import orjson

from daemon.control.protocol import BUSY, MAX_LINE, encode

DEFAULT_SOCKET = "/run/bot4/control.sock"
DEFAULT_TIMEOUT_S = 10.0


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
    print(f"state:     {st['state']}  ({st['reason']})")
    if st.get("degraded"):
        print(f"degraded:  {'; '.join(st['degraded'])}")
    latch = st["latch"]
    print(f"latch:     {'TRIPPED ' + str(latch['kind']) + ': ' + latch['reason'] if latch['tripped'] else 'clear'}")
    e = st.get("estop") or {}
    print(f"e-stop:    GPIO{e.get('pin')} circuit {'closed' if e.get('circuit_closed') else 'OPEN'}"
          f", callback thread {'alive' if e.get('callback_thread_alive') else 'DEAD'}")
    led = st.get("led") or {}
    print(f"LED:       {led.get('pattern')} {led.get('value')}")
    wd = st["watchdog"]
    print(f"watchdog:  systemd {wd['systemd_usec'] / 1e6 if wd['systemd_usec'] else 'off'} s, "
          f"{wd['pings']} pings" + (f", BLOCKED: {wd['pings_blocked']}" if wd['pings_blocked'] else ""))
    o = st["orders"]
    print(f"orders:    {o['open']} open, {o.get('submitted', 0)} sent, {o.get('fills', 0)} fills, "
          f"{o.get('rejected', 0)} rejected")
    for sym, p in st.get("positions", {}).items():
        print(f"position:  {sym} {p['qty']} @ {p['avg_price']} (realised {p['realized_pnl']}, fees {p['fees']})")
    m = st.get("market") or {}
    for sym, b in (m.get("books") or {}).items():
        print(f"book:      {sym} {'valid' if b.get('valid') else 'INVALID'} bid {b.get('bid')} "
              f"ask {b.get('ask')} mark {b.get('mark')}"
              + (f" ({b['reason']})" if b.get("reason") else ""))
    sanity = m.get("sanity") or {}
    rejects = sanity.get("rejects") or {}
    unconfigured = sanity.get("unconfigured") or {}
    if rejects or unconfigured:
        print("sanity:    rejected " + (", ".join(f"{k} {v}" for k, v in rejects.items()) or "none")
              + ("; unconfigured symbols " + ", ".join(f"{k} {v}" for k, v in unconfigured.items())
                 if unconfigured else ""))
    for problem in (m.get("reader") or {}).get("problems") or []:
        print(f"capture:   {problem}")
    j = st.get("journal")
    if j and not j.get("ok"):
        print(f"journal:   FAILED: {j.get('error')}")
    for failure in st.get("failures") or []:
        print(f"failed:    {failure}")
    c = st.get("control")
    if c:
        print(f"control:   {c['open']}/{c['max']} connections, {c['refused']} refused, "
              f"{c['evicted']} dropped, {c['timed_out']} timed out, {c['errors']} errors, "
              f"{c['internal_errors']} internal errors, {c['accept_errors']} accept errors")
    b = st.get("board") or {}
    print(f"board:     {b.get('summary', b.get('model'))}")
    print(f"mode:      {'simulation (mock GPIO, paper venue)' if st.get('sim') else 'hardware'}, "
          f"pid {st['pid']}, up {st['uptime_s']} s")


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
    result = resp["result"]
    if args.cmd == "status":
        if args.json:
            sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            _print_status(result)
    else:
        print(" ".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
