"""Issue 10: the spot-perpetual basis strategy (daemon/strategy/basis.py).

Hand-made two-book sequences through a real core (tests/engine_rig.py: engine, feed,
paper venue, gateway, risk, breakers, SQLite journal) make it enter when the basis leaves
its band, exit when it comes back, stand aside with its reason, and keep both legs or
none: a refused leg withdraws the other in the same commit, a leg that does not fill is
unwound, legs not resolved within max_legging_ms are cancelled and what filled alone is
unwound. A `bot4d backtest` of the overlapping spot and USD-M captures checks the result
from the journal: equal legs, the net base position flat within one lot except while
legging, each leg within max_position. Config rules are checked through config.load.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from daemon import config
from daemon.execution.orders import OrderType, Side, TimeInForce
from tests.daemon_harness import REPO
from tests.engine_rig import MS, EngineRig

SPOT, PERP = "BTCUSDT", "usdm:BTCUSDT"
LOT = Decimal("0.001")   # the coarser lot (USD-M); spot trades 0.00001
PERP_INST = {"tick_size": "0.1", "lot_size": "0.001", "min_notional": "5"}
PARAMS = {"window_s": 2.0, "sample_ms": 100.0, "min_samples": 10, "k": 2.0, "exit_k": 0.5,
          "min_edge_bps": 1.0, "max_legging_ms": 500.0, "cooldown_ms": 1000.0}
SPOT_MID = 60000.0
SPOT_BOOK = ([(59999.99, 1.0), (59999.0, 2.0)], [(60000.01, 1.0), (60001.0, 2.0)])


class TwoBooks:
    """A real core trading BTCUSDT spot and usdm:BTCUSDT, the perp book moved by hand to
    put the basis where a test wants it."""

    def __init__(self, tmp_path: Path, params: dict | None = None,
                 overrides: dict | None = None) -> None:
        over = {k: dict(v) for k, v in (overrides or {}).items()}
        over["instruments"] = {PERP: PERP_INST, **over.get("instruments", {})}
        self.rig = EngineRig(tmp_path, symbols=(SPOT, PERP), overrides=over,
                             strategy={"name": "basis", "basis": {**PARAMS, **(params or {})},
                                       **over.pop("strategy", {})})
        self.s = self.rig.engine.strategy
        self.levels: tuple[list, list] | None = None

    @staticmethod
    def perp_book(basis_bps: float) -> tuple[list, list]:
        mid = round(SPOT_MID * (1 + basis_bps / 1e4), 1)
        return ([(round(mid - 0.1, 1), 1.0), (round(mid - 1.0, 1), 2.0)],
                [(round(mid + 0.1, 1), 1.0), (round(mid + 1.0, 1), 2.0)])

    def start(self, basis_bps: float = -3.0) -> None:
        r = self.rig
        r.snapshot(*SPOT_BOOK, symbol=SPOT)
        self.levels = self.perp_book(basis_bps)
        r.snapshot(*self.levels, symbol=PERP)
        r.idle(r.engine.check_ns / MS + 1)   # the periodic check sees both books valid
        assert r.control.state.value == "trading", r.control.state_reason

    def basis(self, bps: float, dt_ms: float = 100) -> None:
        """Move the perp book (one diff) so the basis is `bps`."""
        new = self.perp_book(bps)
        old = self.levels
        bids = [(p, 0.0) for p, _ in old[0] if p not in dict(new[0])] + new[0]
        asks = [(p, 0.0) for p, _ in old[1] if p not in dict(new[1])] + new[1]
        self.levels = new
        self.rig.diff(bids, asks, symbol=PERP, dt_ms=dt_ms)

    def warm(self, seconds: float = 2.5) -> None:
        """The basis alternates -3.0 / -3.2 bps every 100 ms: mean -3.1, std 0.1."""
        for i in range(int(seconds * 10)):
            self.basis(-3.0 if i % 2 else -3.2)

    def tick(self, dt_ms: float = 1) -> None:
        self.rig.idle(dt_ms, symbol=SPOT)

    def orders(self) -> list:
        return sorted(self.rig.gw.open.values(), key=lambda o: o.client_id)

    def pos(self) -> tuple[Decimal, Decimal]:
        g = self.rig.gw
        return g.position(SPOT).qty, g.position(PERP).qty


def _journal_rows(t: TwoBooks, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{t.rig.journal.path}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


ORDERS = ("SELECT client_id, symbol, side, type, tif, qty, status, filled_qty, reason "
          "FROM orders ORDER BY created_ns, client_id")


# -- entering and leaving ---------------------------------------------------------------------
def test_basis_above_the_band_buys_spot_sells_perp_and_its_return_closes_both(tmp_path):
    t = TwoBooks(tmp_path)
    t.start()
    t.warm()
    assert not _journal_rows(t, ORDERS)
    assert t.s.standing_aside == "basis -3.200 bps inside the band [-3.300, -2.900]", \
        t.s.standing_aside
    lower, mean, upper = t.s.band
    assert abs(mean + 3.1) < 0.02 and abs(upper - mean - 0.2) < 0.02

    t.basis(-1.0)   # 2.1 bps above the mean, well above the band
    placed = t.orders()
    assert [(o.symbol, o.side, o.qty, o.tif, o.type) for o in placed] == [
        (SPOT, Side.BUY, LOT, TimeInForce.IOC, OrderType.LIMIT),
        (PERP, Side.SELL, LOT, TimeInForce.IOC, OrderType.LIMIT)]
    # Marketable: through the touch by at most leg_slippage_bps (2 bps).
    assert Decimal("60000.01") < placed[0].price <= Decimal("60012.02")
    assert Decimal("59981.9") <= placed[1].price < Decimal("59993.9")
    t.tick()   # the venue takes both legs
    assert t.pos() == (LOT, -LOT)
    assert t.s.stats["pairs_entered"] == 1 and not t.rig.gw.open
    t.basis(-1.0)
    assert "new excursion" in t.s.standing_aside   # no second pair on the same excursion

    t.basis(-3.1)   # back inside the exit band
    exits = t.orders()
    assert [(o.symbol, o.side, o.qty) for o in exits] == [(SPOT, Side.SELL, LOT),
                                                         (PERP, Side.BUY, LOT)]
    t.tick()
    assert t.pos() == (0, 0)
    assert t.s.stats["pairs_exited"] == 1 and t.s.stats["pairs_broken"] == 0
    rows = _journal_rows(t, "SELECT symbol, side, qty FROM fills ORDER BY ts_ns, fill_id")
    assert [(s, side, Decimal(q)) for s, side, q in rows] == [
        (SPOT, "buy", LOT), (PERP, "sell", LOT), (SPOT, "sell", LOT), (PERP, "buy", LOT)]


def test_below_the_band_stands_aside_without_spot_shorting_and_trades_with_it(tmp_path):
    t = TwoBooks(tmp_path)
    t.start()
    t.warm()
    t.basis(-5.5)
    assert not t.orders()
    assert "allow_spot_short = false" in t.s.standing_aside and "below the band" in \
        t.s.standing_aside
    t2 = TwoBooks(tmp_path / "short", params={"allow_spot_short": True})
    t2.start()
    t2.warm()
    t2.basis(-5.5)
    assert [(o.symbol, o.side, o.qty) for o in t2.orders()] == [(SPOT, Side.SELL, LOT),
                                                               (PERP, Side.BUY, LOT)]
    t2.tick()
    assert t2.pos() == (-LOT, LOT)


def test_stands_aside_while_warming_up_on_an_invalid_book_and_at_the_position_limit(tmp_path):
    t = TwoBooks(tmp_path, params={"max_position": "0.001"})
    t.start()
    t.basis(-1.0)   # far above anything, but the window is not warm
    assert not t.orders() and t.s.standing_aside.startswith("window warming up"), \
        t.s.standing_aside
    t.warm()
    # A gap makes the spot book invalid: the engine pulls nothing (nothing is working),
    # and a perp book event finds the strategy standing aside for the spot book.
    t.rig.diff([], [], symbol=SPOT, gap=True)
    t.basis(-1.0)
    assert not t.orders()
    assert t.s.standing_aside.startswith(f"{SPOT} book not valid"), t.s.standing_aside
    t.basis(-3.1)
    t.rig.snapshot(*SPOT_BOOK, symbol=SPOT)   # valid again; the check resumes trading
    t.rig.idle(t.rig.engine.check_ns / MS + 1, symbol=SPOT)
    assert t.rig.control.state.value == "trading", t.rig.control.state_reason
    t.basis(-1.0)
    t.tick()
    assert t.pos() == (LOT, -LOT)
    lower, mean, upper = t.s.band
    exit_at = mean + 0.5 * (upper - mean) / 2
    t.basis((exit_at + upper) / 2)   # inside the band, above the exit band: held, re-armed
    assert t.s.standing_aside is None and t.s.intent.startswith("holding 0.001")
    t.basis(-0.5)   # a new excursion, but one pair is max_position
    assert not t.orders()
    assert "position limit" in t.s.standing_aside, t.s.standing_aside


# -- both legs or none --------------------------------------------------------------------------
@pytest.mark.parametrize("refused, overrides, stage", [
    ("perp", {"instruments": {PERP: {**PERP_INST, "max_position": "0.0005"}}}, "risk"),
    ("spot", {"instruments": {SPOT: {"tick_size": "0.01", "lot_size": "0.00001",
                                     "min_notional": "5", "max_position": "0.0005"}}}, "risk"),
    ("perp", {"instruments": {PERP: {**PERP_INST, "min_notional": "100"}},
              "strategy": {"order_notional_per_symbol": {PERP: "100"}},
              "breakers": {"probe_max_notional": "100"}}, "instrument"),
])
def test_a_refused_leg_withdraws_the_other_in_the_same_commit(tmp_path, refused, overrides,
                                                               stage):
    t = TwoBooks(tmp_path, overrides=overrides)
    t.start()
    t.warm()
    venue, journal = t.rig.core.venue, t.rig.journal
    sent, commits = venue.stats["submitted"], journal.commits
    t.basis(-1.0)   # the entry: one leg refused by a check
    # The leg that passed and its cancel were journalled in the handler's one commit; the
    # gateway then closed it as never sent (its own second write): nothing reached the venue.
    assert journal.commits == commits + 2
    rows = _journal_rows(t, ORDERS)
    assert len(rows) == 1, rows
    cid, symbol, side, _, _, qty, status, filled, reason = rows[0]
    assert symbol == (PERP if refused == "spot" else SPOT) and Decimal(qty) == LOT
    assert status == "cancelled" and Decimal(filled) == 0
    assert "both legs or none" in reason and "before it was sent" in reason, reason
    assert venue.stats["submitted"] == sent and venue.query_orders([cid])[cid] is None
    events = _journal_rows(t, f"SELECT status FROM order_events WHERE client_id = '{cid}' "
                              f"ORDER BY id")
    assert [e for (e,) in events] == ["pending_new", "pending_cancel", "cancelled"], events
    assert not t.rig.gw.open and t.pos() == (0, 0)
    assert t.s.stats["legs_refused"] == 1 and t.s.stats["pairs_broken"] == 1
    assert f"{refused} leg refused ({stage}" in t.s.last_break, t.s.last_break
    assert t.rig.engine.refused_by_stage == {stage: 1}
    t.basis(-1.0, dt_ms=10)
    assert "cooling down" in t.s.standing_aside and not t.orders()


def test_both_legs_refused_when_not_trading_is_one_broken_pair(tmp_path):
    t = TwoBooks(tmp_path)
    t.start()
    t.warm()
    t.rig.control.halt("operator")
    t.basis(-1.0)
    assert not _journal_rows(t, ORDERS) and t.pos() == (0, 0)
    assert t.s.stats["legs_refused"] == 2 and t.s.stats["pairs_broken"] == 1
    assert t.rig.engine.refused_by_stage == {"state": 2}


def test_a_refused_withdrawal_leaves_the_lone_leg_to_be_unwound(tmp_path):
    """The cancel-rate limit refuses the withdrawal of the spot leg (one strategy cancel
    a minute, spent on the first refused pair): the spot leg goes out and fills, and the
    imbalance is unwound at market on that fill."""
    t = TwoBooks(tmp_path, overrides={
        "instruments": {PERP: {**PERP_INST, "max_position": "0.0005"}},
        "risk": {"max_cancels_per_min": 1}})
    t.start()
    t.warm()
    t.basis(-1.0)   # first pair: perp refused, spot withdrawn (the one cancel)
    assert t.s.stats["pairs_broken"] == 1 and t.pos() == (0, 0)
    t.basis(-1.0, dt_ms=1001)   # after the cooldown: perp refused, the withdrawal too
    assert t.rig.engine.refused_by_stage == {"risk": 3}, t.rig.engine.refused_by_stage
    t.tick()   # the spot leg reaches the venue and fills; its fill sends the unwind
    rows = _journal_rows(t, ORDERS)
    assert [(r[1], r[2], r[3], Decimal(r[5]), r[6]) for r in rows[1:]] == [
        (SPOT, "buy", "limit", LOT, "filled"), (SPOT, "sell", "market", LOT, "filled")], rows
    assert t.pos() == (0, 0) and t.s.stats["unwinds"] == 1 and not t.orders()


def test_a_leg_that_finds_no_liquidity_is_unwound_at_once(tmp_path):
    """The perp leg's IOC expires unfilled (the perp bids fell below its limit while it
    travelled): the spot leg that filled is sold back at market."""
    t = TwoBooks(tmp_path, overrides={"paper": {"entry_latency_ms": 50.0}})
    t.start()
    t.warm()
    t.basis(-1.0)
    assert len(t.orders()) == 2
    t.basis(-8.0, dt_ms=10)    # before the legs arrive (50 ms)
    t.tick(45)                 # the legs arrive: spot fills, perp expires
    assert t.pos() == (LOT, 0)
    legs = {o.symbol: o for o in t.rig.gw._recent.values()}
    assert legs[PERP].status.value == "expired" and legs[SPOT].status.value == "filled"
    t.tick(1)                  # the next event: the pair is resolved, the imbalance unwound
    unwind = t.orders()
    assert [(o.symbol, o.side, o.qty, o.type) for o in unwind] == [
        (SPOT, Side.SELL, LOT, OrderType.MARKET)]
    assert t.s.standing_aside.startswith("unwinding"), t.s.standing_aside
    t.tick(60)
    assert t.pos() == (0, 0) and not t.orders()
    assert t.s.stats["unwinds"] == 1 and t.s.stats["pairs_broken"] == 1
    assert "filled spot 0.00100 / perp 0" in t.s.last_break, t.s.last_break


def test_legs_not_resolved_within_max_legging_are_cancelled_and_a_lone_fill_unwound(tmp_path):
    """The venue answers after 800 ms, max_legging_ms is 500: the strategy stands aside
    legging, cancels both legs at the deadline (the cancels reach the venue too late), and
    the spot leg that then fills alone is unwound on its fill."""
    t = TwoBooks(tmp_path, overrides={"paper": {"entry_latency_ms": 800.0}})
    t.start()
    t.warm()
    t.basis(-1.0)
    t0 = t.rig.t
    legs = t.orders()
    assert len(legs) == 2
    t.tick(300)
    assert t.s.standing_aside.startswith("legging in progress"), t.s.standing_aside
    assert t.s.status()["basis"]["legs"]["spot"]["status"] == "pending_new"
    t.tick(201)   # 501 ms: past max_legging_ms
    assert t.s.stats["legging_timeouts"] == 1
    assert all(o.status.value == "pending_cancel" for o in legs)
    assert t.s.standing_aside.startswith("legging: cancelling"), t.s.standing_aside
    t.basis(-8.0, dt_ms=100)   # the perp leg will find no bid at its limit
    t.tick(800 - (t.rig.t - t0) / MS)   # the legs reach the venue: spot fills, perp expires
    assert t.pos() == (LOT, 0)
    # The unwind went out on the spot fill itself, not an event later.
    unwind = [o for o in t.orders() if o.type is OrderType.MARKET]
    assert [(o.symbol, o.side, o.qty) for o in unwind] == [(SPOT, Side.SELL, LOT)]
    assert unwind[0].created_ns == t.rig.t
    t.tick(801)
    assert t.pos() == (0, 0) and not t.orders()
    assert "not filled within max_legging_ms" in t.s.last_break


def test_status_shows_params_basis_band_legs_and_why(tmp_path):
    t = TwoBooks(tmp_path)
    t.start()
    t.warm()
    st = t.rig.engine.status()["strategy"]
    assert st["name"] == "basis" and st["params"]["k"] == 2.0
    assert st["params"]["max_position"] == "0.002" and st["params"]["perp_symbol"] == PERP
    b = st["basis"]
    assert b["spot"] == SPOT and b["perp"] == PERP and b["samples"] >= 10
    assert b["basis_bps"] in (-3.0, -3.2) and len(b["band_bps"]) == 3
    assert st["standing_aside"].startswith("basis") and "inside the band" in \
        st["standing_aside"]
    t.basis(-1.0)
    st = t.rig.engine.status()["strategy"]
    assert st["basis"]["pair"]["kind"] == "enter" and st["intent"].startswith("enter")
    assert set(st["tags"]) == {"basis:spot", "basis:perp"}


# -- config --------------------------------------------------------------------------------------
TWO = f"""
[market]
symbols = ["BTCUSDT", "usdm:BTCUSDT"]
[strategy]
name = "basis"
[strategy.basis]
{{basis}}
[instruments.BTCUSDT]
tick_size = "0.01"
lot_size = "{{spot_lot}}"
min_notional = "5"
[instruments."usdm:BTCUSDT"]
tick_size = "0.1"
lot_size = "0.001"
min_notional = "5"
"""


def _load(tmp_path: Path, basis: str = "", spot_lot: str = "0.00001",
          extra: str = "") -> config.Config:
    p = tmp_path / "basis.toml"
    p.write_text(TWO.format(basis=basis, spot_lot=spot_lot) + extra)
    return config.load(p, environ={})


def test_config_defaults_load_and_build_the_strategy(tmp_path):
    cfg = _load(tmp_path)
    b = cfg.strategy.basis
    assert (b.spot_symbol, b.perp_symbol, b.window_s, b.k, b.exit_k) == \
        (SPOT, PERP, 60.0, 2.0, 0.5)
    assert (b.max_position, b.allow_spot_short, b.max_legging_ms) == \
        (Decimal("0.002"), False, 1000.0)
    from daemon.strategy.registry import build
    s = build(cfg.strategy, list(cfg.market.symbols))
    assert s.name == "basis" and s.symbols == [SPOT, PERP]


@pytest.mark.parametrize("basis, spot_lot, extra, expect", [
    ('perp_symbol = "usdm:ETHUSDT"', "0.00001", "",
     ("[strategy.basis] perp_symbol", "usdm:ETHUSDT is not in [market] symbols")),
    ('spot_symbol = "ETHUSDT"', "0.00001", "",
     ("[strategy.basis] spot_symbol", "ETHUSDT is not in [market] symbols")),
    ('perp_symbol = "BTCUSDT"\nspot_symbol = "usdm:BTCUSDT"', "0.00001", "",
     ("[strategy.basis] spot_symbol", "usdm instrument", "must be a spot one")),
    ('perp_symbol = "BTCUSDT"', "0.00001", "",
     ("[strategy] basis:", "both BTCUSDT")),
    ("exit_k = 2.0", "0.00001", "", ("[strategy] basis:", "exit_k = 2 must be below k = 2")),
    ("min_samples = 1000", "0.00001", "", ("[strategy] basis:", "min_samples = 1000",
                                            "never warm up")),
    ('max_position = "0.0005"', "0.00001", "",
     ("[strategy.basis] max_position", "below one lot (0.001)")),
    ("", "0.0003", "", ("lot_size", "multiple of the finer", "equal quantities")),
    ("k = 0", "0.00001", "", ("[strategy.basis] k", "greater than 0")),
    ("max_legging_ms = -1", "0.00001", "", ("[strategy.basis] max_legging_ms",)),
    ("leg_slippage_bps = nan", "0.00001", "", ("[strategy.basis] leg_slippage_bps",)),
    ('perp_symbol = "usdm:btcusdt"', "0.00001", "",
     ("[strategy.basis] perp_symbol", "upper case")),
    ("window = 60", "0.00001", "", ("[strategy.basis] window", "unknown key")),
])
def test_config_rules_name_the_bad_value(tmp_path, basis, spot_lot, extra, expect):
    with pytest.raises(config.ConfigError) as e:
        _load(tmp_path, basis, spot_lot, extra)
    msg = str(e.value)
    assert "basis.toml" in msg, msg
    for part in expect:
        assert part in msg, msg


def test_config_both_symbols_must_be_traded_by_the_strategy(tmp_path):
    p = tmp_path / "b.toml"
    p.write_text(TWO.format(basis="", spot_lot="0.00001").replace(
        'name = "basis"', 'name = "basis"\nsymbols = ["BTCUSDT"]'))
    with pytest.raises(config.ConfigError) as e:
        config.load(p, environ={})
    assert "usdm:BTCUSDT (perp_symbol) is not in [strategy] symbols" in str(e.value)


# -- a backtest of the two overlapping captures -------------------------------------------------
DATA = Path(os.environ.get("BOT4_DATA_DIR", REPO.parent / "shared" / "data")) / "binance"
SPOT_CAP = DATA / "spot_btcusdt_20240808.gz"
USDM_CAP = DATA / "usdm_btcusdt_20240808.gz"
MAX_LEGGING_MS = 1000.0
MAX_POSITION = Decimal("0.002")
JITTER_MS = 20.0


def test_backtest_of_spot_and_perp_captures_keeps_the_legs_equal(tmp_path):
    if not (SPOT_CAP.is_file() and USDM_CAP.is_file()):
        pytest.skip(f"captures not found under {DATA}")
    cfg = tmp_path / "basis.toml"
    # Entry-latency jitter makes the two legs of a pair fill at different moments (FIFO:
    # the spot leg never after the perp leg), so there is legging to measure.
    cfg.write_text(TWO.format(basis=f"max_legging_ms = {MAX_LEGGING_MS}\n"
                                    f'max_position = "{MAX_POSITION}"', spot_lot="0.00001")
                   + f"\n[paper]\nlatency_jitter_ms = {JITTER_MS}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT4__")}
    env.pop("NOTIFY_SOCKET", None)
    r = subprocess.run([sys.executable, "-m", "daemon.cli", "backtest", "--config", str(cfg),
                        "--replay", str(SPOT_CAP), str(USDM_CAP), "--report",
                        str(tmp_path / "r"), "--no-png"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rep["counts"]["orders"] >= 4 and rep["counts"]["fills"] >= 4
    db = tmp_path / "r" / "backtest.sqlite3"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        orders = con.execute("SELECT symbol, side, type, tif, qty, created_ns FROM orders "
                             "ORDER BY created_ns, client_id").fetchall()
        fills = con.execute("SELECT symbol, side, qty, ts_ns FROM fills "
                            "ORDER BY ts_ns, fill_id").fetchall()
    finally:
        con.close()
    assert {o[0] for o in orders} == {SPOT, PERP}
    # Every pair: a spot and a perp IOC limit of equal base quantity in one decision,
    # opposite sides, the quantity a whole number of the coarser lot.
    legs = [o for o in orders if o[2] == "limit"]
    assert all(o[3] == "ioc" for o in legs)
    by_time: dict[int, list] = {}
    for o in legs:
        by_time.setdefault(o[5], []).append(o)
    for ts, pair in by_time.items():
        assert sorted(o[0] for o in pair) == [SPOT, PERP], pair
        (s_sym, s_side, _, _, s_qty, _), (p_sym, p_side, _, _, p_qty, _) = sorted(pair)
        assert Decimal(s_qty) == Decimal(p_qty) and s_side != p_side, pair
        assert Decimal(s_qty) % LOT == 0
    # From the fills: the net base position (spot + perp) is flat within one lot except
    # while legging, and no leg holds more than max_position.
    spot = perp = Decimal(0)
    unhedged_since = None
    longest = 0
    for i, (sym, side, qty, ts) in enumerate(fills):
        q = Decimal(qty) if side == "buy" else -Decimal(qty)
        if sym == SPOT:
            spot += q
        else:
            perp += q
        if i + 1 < len(fills) and fills[i + 1][3] == ts:
            continue   # fills of one venue moment: judge the position after all of them
        assert abs(spot) <= MAX_POSITION and abs(perp) <= MAX_POSITION, (ts, spot, perp)
        if abs(spot + perp) >= LOT:
            if unhedged_since is None:
                unhedged_since = ts
        elif unhedged_since is not None:   # hedged again: that legging lasted this long
            longest = max(longest, ts - unhedged_since)
            unhedged_since = None
    assert unhedged_since is None, "the backtest ended unhedged"
    assert 0 < longest, "no legging at all: the jitter did not separate the legs"
    # Legging lasts at most max_legging_ms plus an unwind's round trip (entry latency 5 ms
    # + jitter, market-data latency 2 ms + jitter).
    assert longest <= (MAX_LEGGING_MS + 2 * (5 + 2 + 2 * JITTER_MS)) * MS, longest / MS
    assert any(side == "sell" for sym, side, _, _ in fills if sym == SPOT), "never exited"
