"""Protection keeps its small risk snapshot between ticks (rebuilt only when the loss
limits' token moves): a trip or a streak after many steady ticks is still journalled at
the tick it happens, exactly as when the snapshot was rebuilt on every tick."""
from __future__ import annotations

from decimal import Decimal

from daemon.execution.orders import Fill, Liquidity, Position, Side
from daemon.protection import RISK_KEY
from tests.test_protection import SYM, S, flat, long_at, make

D = Decimal


def test_a_daily_loss_after_steady_ticks_is_saved_and_acted_on_at_its_tick(tmp_path):
    p, j, c = make(tmp_path, risk={"daily_loss_limit": D("50"), "max_drawdown": D("100000")})
    pos = long_at("60000", "0.1")
    for _ in range(20):                      # the same inputs: the cached snapshot is used
        assert p.poll(pos, {SYM: D("60000")}, {SYM: True}, []) == []
        c.now += S // 10
    assert j.load_state(RISK_KEY)["losses"]["trips"] == []
    acts = p.poll(pos, {SYM: D("59000")}, {SYM: True}, [])   # -100: beyond 50
    assert [a.kind for a in acts] == ["cancel_increasing", "halt"]   # (halted by default)
    saved = j.load_state(RISK_KEY)["losses"]
    assert [t["limit"] for t in saved["trips"]] == ["daily_loss"]
    # And a reset after more steady ticks is saved at once too.
    for _ in range(5):
        p.poll(pos, {SYM: D("59000")}, {SYM: True}, [])
        c.now += S // 10
    p.reset()
    p.poll(pos, {SYM: D("59000")}, {SYM: True}, [])
    assert j.load_state(RISK_KEY)["losses"]["trips"] == []


def test_a_losing_round_trip_between_steady_ticks_is_saved_at_the_next_tick(tmp_path):
    p, j, c = make(tmp_path, risk={"daily_loss_limit": D("100000"),
                                   "max_drawdown": D("100000")})
    for _ in range(10):
        p.poll(flat(), {SYM: D("60000")}, {SYM: True}, [])
        c.now += S // 10
    pos = Position(SYM)
    for n, (side, px) in enumerate(((Side.BUY, "60000"), (Side.SELL, "59990")), 1):
        f = Fill(f"f{n}", f"c{n}", SYM, side, D(px), D("0.001"), D("0"), Liquidity.TAKER,
                 c.now)
        pos.apply(f)
        p.risk.on_fill(f, pos, c.now)
        p.poll({SYM: pos}, {SYM: D(px)}, {SYM: True}, [])
        c.now += S // 10
    saved = j.load_state(RISK_KEY)["losses"]
    assert saved["streak"] == 1 and D(saved["last_round_trip"]) == D("-0.01")
    assert saved == p.risk.snapshot(window=False)["losses"]
