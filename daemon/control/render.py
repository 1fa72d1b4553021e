"""bot4ctl's human output: `status`, `orders` and `fills` as text for an 80-column terminal.

Every line this module returns is at most WIDTH characters. Figures (prices, quantities,
PnL, limits) are printed exactly as the daemon sent them (strings) and are never cut: a
line that would be too long is wrapped at a figure boundary onto an indented continuation
line. Only free text (reasons, errors, ids in a table cell) is shortened, with "…" at the
end. Any key may be missing (an older daemon, a component that is off): it is skipped or
shown as "-", never a crash. This module only formats; it never talks to the daemon.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Iterable, Sequence

WIDTH = 80
LABEL = 11          # "position:  " - the width of the label column
MORE = "…"
MAX_ROWS = 10       # open orders, mismatches: the first ones, then "… N more"


def fit(text: object, width: int = WIDTH) -> str:
    """One line of at most `width` characters: line breaks and tabs become spaces, the
    end is replaced by "…" when it is longer."""
    s = str(text).translate(_FLAT)
    return s if len(s) <= width else s[:max(width - 1, 0)] + MORE


_FLAT = str.maketrans({"\n": " ", "\r": " ", "\t": " ", "\v": " ", "\f": " "})


def when(ns: object) -> str:
    """A wall-clock time in ns as UTC 'YYYY-MM-DD HH:MM:SSZ' ("-" when unknown)."""
    if isinstance(ns, bool) or not isinstance(ns, int) or ns <= 0:
        return "-"
    try:
        t = dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(ns)
    return t.strftime("%Y-%m-%d %H:%M:%SZ")


def _v(x: object) -> str:
    return "-" if x is None or x == "" else str(x)


def _head(label: str) -> str:
    return (label + ":").ljust(LABEL) if label else " " * LABEL


def text(label: str, body: object) -> list[str]:
    """One line of free text after the label, shortened to fit."""
    return [_head(label) + fit(body, WIDTH - LABEL)]


def pack(label: str, parts: Iterable[object], sep: str = ", ") -> list[str]:
    """Parts (figures, "name value" pairs) after the label, joined by `sep`, wrapped at
    part boundaries onto indented lines. A single part wider than a line is shortened
    (only free text is ever that long)."""
    return [_head(label if i == 0 else "") + ln
            for i, ln in enumerate(_wrap(parts, sep, WIDTH - LABEL))]


def _wrap(parts: Iterable[object], sep: str, room: int) -> list[str]:
    tail = sep.rstrip()              # the separator left at the end of a wrapped line
    items = list(parts)
    lines: list[str] = []
    cur: str | None = None
    for i, part in enumerate(items):
        # Room for the separator at the end is needed only if another part follows.
        reserve = len(tail) if i < len(items) - 1 else 0
        p = fit(part, room - reserve)
        if cur is not None and len(cur) + len(sep) + len(p) + reserve <= room:
            cur += sep + p
            continue
        if cur is not None:
            lines.append(cur + tail)
        cur = p
    if cur is not None:
        lines.append(cur)
    return lines


def _num(x: object) -> Decimal | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        d = Decimal(str(x))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


_PLACES = Decimal("1e-8")


def amount(x: object) -> str:
    """A money figure or an average price for a person: to 8 places at most, the exchanges'
    finest unit (the status JSON keeps the exact decimal: an average entry is a 28-digit
    quotient, so a realised PnL can read 0.0000957557760443138208148172). Anything that is
    not a finite number is shown as it came."""
    d = _num(x)
    if d is None:
        return _v(x)
    try:
        q = d.quantize(_PLACES)
    except InvalidOperation:   # more digits than the context holds: nothing to round
        return str(x)
    return format(q.normalize() if q else Decimal(0), "f")


def used_of(name: str, entry: dict) -> str:
    """'name used/limit', with "!" when the limit is reached (a number, not 0 = off)."""
    used, limit = entry.get("used"), entry.get("limit")
    if "used" not in entry:
        return f"{name} max {_v(limit)}"
    u, lim = _num(used), _num(limit)
    hit = u is not None and lim is not None and lim != 0 and abs(u) >= lim
    return f"{name} {_v(used)}/{_v(limit)}" + ("!" if hit else "")


def _limit_entries(limits: object) -> list[tuple[str, dict]]:
    """Flatten the risk engine's limits: {name: {used, limit}}, {name: {symbol: {used,
    limit}}} or a list of {name, used, limit}."""
    out: list[tuple[str, dict]] = []
    if isinstance(limits, list):
        for e in limits:
            if isinstance(e, dict):
                out.append((str(e.get("name", "?")), e))
    elif isinstance(limits, dict):
        for name, e in limits.items():
            if not isinstance(e, dict):
                out.append((str(name), {"limit": e}))
            elif "limit" in e or "used" in e:
                out.append((str(name), e))
            else:
                for sub, se in e.items():
                    if isinstance(se, dict):
                        out.append((f"{name}[{sub}]", se))
    return out


# -- status ---------------------------------------------------------------------------------
def status_lines(st: dict) -> list[str]:
    out: list[str] = []
    out += text("state", f"{_v(st.get('state'))}  ({_v(st.get('reason'))})")
    if st.get("degraded"):
        out += pack("degraded", st["degraded"], "; ")
    latch = st.get("latch") or {}
    out += text("latch", f"TRIPPED {_v(latch.get('kind'))}: {_v(latch.get('reason'))}"
                if latch.get("tripped") else "clear")
    e = st.get("estop")
    if e:
        out += pack("e-stop", [f"GPIO{_v(e.get('pin'))} circuit "
                               f"{'closed' if e.get('circuit_closed') else 'OPEN'}",
                               "callback thread "
                               f"{'alive' if e.get('callback_thread_alive') else 'DEAD'}"])
    led = st.get("led")
    if led:
        out += text("LED", f"{_v(led.get('pattern'))} {_v(led.get('value'))}")
    wd = st.get("watchdog")
    if wd:
        usec = wd.get("systemd_usec")
        parts = [f"systemd {usec / 1e6 if isinstance(usec, (int, float)) and usec else 'off'} s",
                 f"{_v(wd.get('pings'))} pings"]
        if wd.get("pings_blocked"):
            parts.append(f"BLOCKED: {wd['pings_blocked']}")
        out += pack("watchdog", parts)
    out += _strategy(st.get("engine"))
    out += _orders(st.get("orders"))
    out += _positions(st.get("positions"))
    out += _executions(st.get("execution"))
    out += _risk(st.get("risk"))
    out += _breakers(st.get("breakers"))
    out += _reconciliation(st.get("reconciliation"))
    out += _market(st.get("market"))
    j = st.get("journal")
    if j and not j.get("ok", True):
        out += text("journal", f"FAILED: {_v(j.get('error'))}")
    for failure in st.get("failures") or []:
        out += text("failed", failure)
    c = st.get("control")
    if c:
        out += pack("control", [f"{_v(c.get('open'))}/{_v(c.get('max'))} connections"] + [
            f"{_v(c.get(k))} {words}" for k, words in (
                ("refused", "refused"), ("evicted", "dropped"), ("timed_out", "timed out"),
                ("errors", "errors"), ("internal_errors", "internal errors"),
                ("accept_errors", "accept errors"))])
    b = st.get("board")
    if b:
        out += text("board", b.get("summary", b.get("model")))
    mode = "simulation (mock GPIO, paper venue)" if st.get("sim") else "hardware"
    out += pack("mode", [mode, f"pid {_v(st.get('pid'))}", f"up {_v(st.get('uptime_s'))} s"])
    return out


def _orders(o: object) -> list[str]:
    if not isinstance(o, dict):
        return []
    out = pack("orders", [f"{_v(o.get('open', 0))} open", f"{o.get('submitted', 0)} sent",
                          f"{o.get('fills', 0)} fills", f"{o.get('rejected', 0)} rejected"])
    rows = [r for r in o.get("list") or [] if isinstance(r, dict)]
    for r in rows[:MAX_ROWS]:
        price = r.get("price")
        at = "market" if price in (None, "None") else f"@ {price}"
        out += pack("open", [_v(r.get("id")), f"{_v(r.get('symbol'))} {_v(r.get('side'))}",
                             f"{_v(r.get('qty'))} {at}", _v(r.get("status"))], " ")
    if len(rows) > MAX_ROWS:
        out += text("", f"{MORE} {len(rows) - MAX_ROWS} more (bot4ctl orders)")
    return out


def _positions(positions: object) -> list[str]:
    if not isinstance(positions, dict):
        return []
    out: list[str] = []
    for sym, p in positions.items():
        if not isinstance(p, dict):
            continue
        out += pack("position", [f"{sym} {_v(p.get('qty'))} @ {amount(p.get('avg_price'))}",
                                 f"mark {_v(p.get('mark'))}",
                                 f"realised {amount(p.get('realized_pnl'))}",
                                 f"unrealised {amount(p.get('unrealized_pnl'))}",
                                 f"fees {amount(p.get('fees'))}"])
    return out


def _executions(rows: object) -> list[str]:
    """Parent orders (daemon/engine/executor.py): every running one, the last finished."""
    if not isinstance(rows, list):
        return []
    rows = [r for r in rows if isinstance(r, dict)]
    shown = [r for r in rows if r.get("state") == "running"] + \
        [r for r in rows if r.get("state") != "running"][:1]
    out: list[str] = []
    for r in shown[:MAX_ROWS]:
        parts = [f"{_v(r.get('id'))} {_v(r.get('symbol'))} {_v(r.get('side'))} "
                 f"{_v(r.get('qty'))} {_v(r.get('algo'))}"
                 + (" reduce-only" if r.get("reduce_only") else ""),
                 f"filled {_v(r.get('filled'))}", _v(r.get("state"))]
        if r.get("state") == "running":
            parts.append(f"{_v(r.get('slices_left'))} slices left")
        elif r.get("end_reason"):
            parts.append(str(r["end_reason"]))
        if r.get("unfinished") not in (None, "0") and r.get("state") != "running":
            parts.append(f"unfinished {r['unfinished']}")
        out += pack("execution", parts)
    return out


def _risk(r: object) -> list[str]:
    if not isinstance(r, dict):
        return []
    out: list[str] = []
    head = [f"action {_v(r.get('action'))}"] if "action" in r else []
    for key, words in (("equity", "equity"), ("peak", "peak"),
                       ("day_start_equity", "day start"), ("day", "day")):
        if r.get(key) is not None:
            head.append(f"{words} {amount(r[key]) if key != 'day' else r[key]}")
    out += pack("risk", head)
    out += pack("limits", [used_of(n, e) for n, e in _limit_entries(r.get("limits"))])
    for t in r.get("trips") or []:
        if isinstance(t, dict):
            out += pack("trip", [f"{_v(t.get('limit', t.get('name')))} -> {_v(t.get('action'))}",
                                 f"since {when(t.get('since_ns'))}"])
            out += text("", t.get("reason"))
    out += _var(r.get("var"))
    out += _stress(r.get("stress"))
    return out


def _var(v: object) -> list[str]:
    if not isinstance(v, dict):
        return []
    table = v.get("table") if isinstance(v.get("table"), dict) else {}
    about = [f"limit on {v['method']} at {v.get('level', '-')}"] if v.get("method") else []
    if "returns" in v:
        about.append(f"{_v(v.get('returns'))}/{_v(v.get('window'))} returns")
    if not table:
        about.append(f"warming up (needs {_v(v.get('min_returns'))} returns)")
    out = pack("VaR/CVaR", about)
    pad = max((len(str(m)) for m in table), default=0)
    for method, levels in table.items():
        if not isinstance(levels, dict):
            continue
        for lvl, x in levels.items():
            x = x if isinstance(x, dict) else {}
            out += pack("", [f"{method:<{pad}} {lvl}", f"VaR {_v(x.get('var'))}",
                             f"CVaR {_v(x.get('cvar'))}"], "  ")
    return out


def _stress(s: object) -> list[str]:
    if not isinstance(s, dict):
        return []
    worst = s.get("worst") or {}
    parts = [f"worst {_v(worst.get('scenario'))} loss {_v(worst.get('loss'))} "
             f"(limit {_v(s.get('limit'))})"] if worst else []
    scen = s.get("scenarios")
    if isinstance(scen, dict):
        parts += [f"{n} {_v(x)}" for n, x in scen.items()]
    return pack("stress", parts)


def _breakers(bs: object) -> list[str]:
    if isinstance(bs, dict):   # {name: {...}}
        bs = [{"name": n, **b} for n, b in bs.items() if isinstance(b, dict)]
    if not isinstance(bs, list):
        return []
    bs = [b for b in bs if isinstance(b, dict)]
    closed = [b for b in bs if b.get("state") == "closed"]
    out = pack("breakers", [f"{_v(b.get('name'))} closed" for b in closed]) if closed else []
    for b in bs:
        if b.get("state") == "closed":
            continue
        parts = [f"{_v(b.get('name'))} {str(_v(b.get('state'))).upper()}"]
        if b.get("kind"):
            parts.append(str(b["kind"]))
        if b.get("state") == "half_open" and "probes_used" in b:
            parts.append(f"probes {_v(b.get('probes_used'))}/{_v(b.get('probe_budget'))}")
        parts.append(f"since {when(b.get('since_ns'))}")
        out += pack("breaker", parts)
        out += text("", b.get("reason"))
    return out


def _reconciliation(rc: object) -> list[str]:
    if not isinstance(rc, dict):
        return []
    ok = rc.get("ok")
    head = [f"run {_v(rc.get('run'))}", f"mode {_v(rc.get('mode'))}"]
    if ok is not None:
        head.append("ok" if ok else "NOT OK")
    head.append(f"at {when(rc.get('ts_ns'))}")
    out = pack("reconcile", head)
    counts: list[str] = []
    outcomes = rc.get("outcomes")
    if isinstance(outcomes, dict):
        counts += [f"{k} {len(v) if isinstance(v, list) else _v(v)}"
                   for k, v in outcomes.items() if v]
    for k in ("restored", "cancelled", "rejected", "adopted", "lost"):
        if k in rc and not isinstance(outcomes, dict):
            n = rc[k]
            counts.append(f"{k} {len(n) if isinstance(n, list) else _v(n)}")
    if "positions_ok" in rc:
        counts.append("positions ok" if rc["positions_ok"] else "positions MISMATCH")
    out += pack("", counts)
    mism = [m for m in rc.get("mismatches") or []]
    for m in mism[:MAX_ROWS]:
        out += text("mismatch", m)
    if len(mism) > MAX_ROWS:
        out += text("", f"{MORE} {len(mism) - MAX_ROWS} more (bot4ctl status --json)")
    return out


def _strategy(e: object) -> list[str]:
    """Which strategy runs, its parameters, what it wants now and why it stands aside."""
    if not isinstance(e, dict) or not isinstance(e.get("strategy"), dict):
        return []
    s = e["strategy"]
    out = text("strategy", f"{_v(s.get('name'))} on {', '.join(map(str, s.get('symbols') or []))}"
                           f": {s.get('intents', 0)} intents, {s.get('refused', 0)} refused")
    params = s.get("params") or {}
    if params:
        out += pack("params", [f"{k} {_v(v)}" for k, v in params.items()])
    out += text("intent", _v(s.get("intent")) if s.get("intent") else "none yet")
    if s.get("standing_aside"):
        out += text("aside", s["standing_aside"])
    return out


def _market(m: object) -> list[str]:
    if not isinstance(m, dict):
        return []
    out: list[str] = []
    rp = m.get("replay")
    if isinstance(rp, dict):
        out += pack("replay", [f"{'finished' if rp.get('finished') else 'at'} "
                               f"{_v(rp.get('event_time'))} UTC",
                               f"{_v(rp.get('percent'))} % of the files",
                               f"{_v(rp.get('lines'))} lines",
                               f"{_v(rp.get('lines_per_s'))} lines/s"])
    for sym, b in (m.get("books") or {}).items():
        if not isinstance(b, dict):
            continue
        out += text("book", f"{sym} {'valid' if b.get('valid') else 'INVALID'} "
                            f"bid {_v(b.get('bid'))} ask {_v(b.get('ask'))} "
                            f"mark {_v(b.get('mark'))}"
                    + (f" ({b['reason']})" if b.get("reason") else ""))
    sanity = m.get("sanity") or {}
    rejects = sanity.get("rejects") or {}
    unconfigured = sanity.get("unconfigured") or {}
    if rejects or unconfigured:
        parts = ["rejected " + (", ".join(f"{k} {v}" for k, v in rejects.items()) or "none")]
        if unconfigured:
            parts.append("unconfigured symbols " +
                         ", ".join(f"{k} {v}" for k, v in unconfigured.items()))
        out += pack("sanity", parts, "; ")
    for problem in (m.get("reader") or {}).get("problems") or []:
        out += text("capture", problem)
    return out


# -- orders and fills tables --------------------------------------------------------------------
Column = tuple[str, str, bool]   # key, header, may be shortened ("…")


def table(rows: Sequence[dict], columns: Sequence[Column], optional: Sequence[str] = ()
          ) -> list[str]:
    """Rows as an aligned table of at most WIDTH columns. Columns named in `optional` are
    dropped (the last named first) until it fits; shortenable columns are then cut with
    "…"; if the figures alone are still too wide, each row becomes a packed record."""
    def cell(r: dict, key: str) -> str:
        return " ".join(_v(r.get(key)).split())

    cols = list(columns)
    drop = list(optional)
    while True:
        widths = [max([len(h)] + [len(cell(r, k)) for r in rows]) for k, h, _ in cols]
        total = sum(widths) + 2 * (len(cols) - 1)
        if total <= WIDTH or not drop:
            break
        name = drop.pop()
        cols = [c for c in cols if c[0] != name]
    excess = total - WIDTH
    for i, (_, h, cut) in enumerate(cols):
        if excess > 0 and cut:
            take = min(excess, widths[i] - max(len(h), 4))
            if take > 0:
                widths[i] -= take
                excess -= take
    if excess > 0:   # one record per row, every column: the first cell, then "header value"
        out: list[str] = []
        for r in rows:
            out.append(fit(cell(r, columns[0][0])))
            out += ["  " + ln for ln in _wrap([f"{h} {cell(r, k)}" for k, h, _ in columns[1:]],
                                              ", ", WIDTH - 2)]
        return out
    lines = ["  ".join(h.ljust(w) for (_, h, _), w in zip(cols, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(fit(cell(r, k), w).ljust(w)
                               for (k, _, _), w in zip(cols, widths)).rstrip())
    return lines


ORDER_COLUMNS: list[Column] = [
    ("time", "created (UTC)", False), ("client_id", "id", True), ("symbol", "symbol", False),
    ("side", "side", False), ("type", "type", False), ("qty", "qty", False),
    ("price", "price", False), ("filled_qty", "filled", False), ("avg_price", "avg", False),
    ("status", "status", False), ("reason", "reason", True)]
ORDER_OPTIONAL = ["time", "reason", "type", "avg_price"]   # dropped last-first

FILL_COLUMNS: list[Column] = [
    ("time", "time (UTC)", False), ("fill_id", "fill", True), ("client_id", "order", True),
    ("symbol", "symbol", False), ("side", "side", False), ("qty", "qty", False),
    ("price", "price", False), ("fee", "fee", False), ("liquidity", "liq", False)]
FILL_OPTIONAL = ["fill_id", "liquidity", "time"]


def _short_time(ns: object) -> str:
    w = when(ns)
    return w[5:-1] if len(w) == 20 else w   # "MM-DD HH:MM:SS"


def orders_lines(rows: Sequence[dict]) -> list[str]:
    if not rows:
        return ["no orders"]
    return table([{**r, "time": _short_time(r.get("created_ns")),
                   "price": "market" if r.get("price") is None else r["price"]} for r in rows],
                 ORDER_COLUMNS, ORDER_OPTIONAL)


def fills_lines(rows: Sequence[dict]) -> list[str]:
    if not rows:
        return ["no fills"]
    return table([{**r, "time": _short_time(r.get("ts_ns"))} for r in rows],
                 FILL_COLUMNS, FILL_OPTIONAL)


def result_lines(result: dict) -> list[str]:
    """Any other command's reply: "key: value" pairs, wrapped to the width."""
    return _wrap([f"{k}: {v}" for k, v in result.items()], ", ", WIDTH)


def dump(lines: Iterable[str]) -> str:
    return "".join(ln + "\n" for ln in lines)
