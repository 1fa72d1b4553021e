"""LossLimits.snapshot_token / same_token: the promise Protection relies on when it keeps
the small risk snapshot between ticks instead of rebuilding it. Driven through real loss
limit changes (new peak, new UTC day, round trips, a streak trip, a VaR trip added by the
engine, reset, restore): whenever the snapshot changes the token must change, and equal
tokens must mean an equal snapshot."""
from __future__ import annotations

from decimal import Decimal as D

from daemon.execution.orders import Side
from daemon.risk.losses import _Open, same_token
from tests.risk.common import BTC, DAY_NS, T0, engine, fill, position, trade


class Watch:
    """Takes the token and the snapshot after each step and checks the promise."""

    def __init__(self, e) -> None:
        self.e = e
        self.token = e.losses.snapshot_token()
        self.snap = e.losses.snapshot()
        self.changes = 0

    def step(self) -> bool:
        """True when the snapshot changed at this step."""
        token, snap = self.e.losses.snapshot_token(), self.e.losses.snapshot()
        same = same_token(self.token, token)
        if same:
            assert snap == self.snap, "equal tokens but another snapshot"
        changed = snap != self.snap
        if changed:
            assert not same, "the snapshot changed but the token did not"
            self.changes += 1
        self.token, self.snap = token, snap
        return changed


def test_every_snapshot_change_moves_the_token_and_only_equal_snapshots_share_one():
    e = engine(capital=D("1000"), daily_loss_limit=D("50"), max_losing_streak=2,
               max_drawdown=D("1000"))
    w = Watch(e)
    pos = position()
    e.evaluate({BTC: pos}, {BTC: D("60000")}, T0)
    assert w.step()                                   # first day start and peak
    e.evaluate({BTC: pos}, {BTC: D("60000")}, T0 + 1)
    assert not w.step()                               # nothing moved
    for n, (buy, sell) in enumerate((("60000", "59990"), ("60000", "59980"))):
        trade(e, pos, fill(Side.BUY, "0.01", buy))
        assert w.step()                               # a round trip opens
        trade(e, pos, fill(Side.SELL, "0.01", sell))
        assert w.step()                               # it closes at a loss
        e.evaluate({BTC: pos}, {BTC: D("60000")}, T0 + 2 + n)
        w.step()
    assert "losing_streak" in e.losses.trips          # the streak tripped on the 2nd
    e.evaluate({BTC: pos}, {BTC: D("60000")}, T0 + DAY_NS)
    assert w.step()                                   # a new UTC day: a new day start
    before = w.changes
    e.losses.reset()
    assert w.step()
    e.evaluate({BTC: pos}, {BTC: D("60000")}, T0 + DAY_NS + 1)
    assert w.step()                                   # rebased
    e.losses.restore(w.snap)                          # the same state, new objects
    w.step()                                          # (equal or not: checked either way)
    assert w.changes > before


def test_an_equal_decimal_with_other_trailing_zeros_is_another_snapshot():
    # The snapshot writes Decimals with str(), trailing zeros and all: a token compared by
    # value would call these the same and keep a stale snapshot.
    e = engine(capital=D("1000"))
    e.evaluate({}, {}, T0)
    w = Watch(e)
    e.losses.peak = D("1000.00")
    assert e.losses.peak == D("1000")
    assert w.step()
    e.losses.day_start = D("1000.0")
    assert w.step()
    # A round trip replaced by another for the same symbol (the count stays the same).
    trade(e, position(), fill(Side.BUY, "0.01", "60000"))
    assert w.step()
    e.losses._open[BTC] = _Open(D("1"), D("0.5"))
    assert w.step()


def test_a_var_trip_the_engine_adds_moves_the_token():
    e = engine(max_var=D("0.0001"), var_action="halted", var_sample_interval_s=1,
               max_position=D("10"))
    w = Watch(e)
    pos = {BTC: position(qty="1", avg="60000")}
    px = 60000
    for i in range(40):
        px += 300 if i % 2 else -250
        m = {BTC: D(px)}
        e.sample(pos, m, T0 + i * 1_000_000_000)
        e.evaluate(pos, m, T0 + i * 1_000_000_000)
        w.step()
    assert "var" in e.losses.trips
    assert w.changes >= 2   # the day start, then at least the trip


def test_an_unchanged_state_keeps_its_token_so_the_snapshot_is_reused():
    """The other half of the promise (the reason for the token): nothing changed, so the
    token is the same, and Protection keeps the snapshot it built."""
    e = engine(capital=D("1000"), daily_loss_limit=D("50"))
    a = e.losses.snapshot_token()
    assert same_token(a, e.losses.snapshot_token())
    assert same_token(a, a)


def test_same_token_by_part():
    d1, d2 = D("1.0"), D("1.0")      # equal values, distinct objects
    base = (("2026-12-01", 0, False, ("BTCUSDT",), ()), (d1, d2))
    assert same_token(base, (base[0], (d1, d2)))                        # the same objects
    assert not same_token(None, base)                                   # nothing kept yet
    assert not same_token(base, (("2026-12-02",) + base[0][1:], (d1, d2)))   # a value moved
    assert not same_token(base, (base[0], (d1, D("1.0"))))             # another object
    assert not same_token(base, (base[0], (d1,)))                      # fewer objects
    assert not same_token((base[0], (d1,)), base)                      # more objects
