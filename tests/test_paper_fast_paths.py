"""PaperVenue's per-event shortcuts: a print against a side holding one level of ours
(no sort), and the depth update reading each side's displayed size directly. Same fills
and queue positions as the general path: one level on each side at once, prints at,
through and short of our prices, and cancellations ahead."""
from __future__ import annotations

from decimal import Decimal

from daemon.execution.orders import Side
from tests.test_paper_venue import sim

D = Decimal


def test_one_level_each_side_prints_at_through_and_short_of_it() -> None:
    s = sim()
    bid = s.order(Side.BUY, "1", "100")      # behind 5.0
    ask = s.order(Side.SELL, "1", "101")     # behind 0.5
    s.at(1000)
    assert (s.venue.queue_ahead(bid), s.venue.queue_ahead(ask)) == (5.0, 0.5)
    s.trade(2000, 100.5, 9.0, sell=True)     # a sell above our bid: not ours
    s.trade(2100, 100.5, 9.0, sell=False)    # a buy below our ask: not ours
    assert s.rec.fills() == []
    s.trade(3000, 100.0, 4.0, sell=True)     # at our bid: eats the queue ahead
    assert s.venue.queue_ahead(bid) == 1.0 and s.rec.fills() == []
    s.trade(3100, 101.0, 0.7, sell=False)    # at our ask: 0.5 ahead, 0.2 for us
    assert [(f.client_id, f.qty) for f in s.rec.fills()] == [(ask, D("0.2"))]
    s.trade(4000, 99.0, 0.3, sell=True)      # through our bid: swept, 0.3 for us
    assert [(f.client_id, f.price, f.qty) for f in s.rec.fills()][-1] == \
        (bid, D("100"), D("0.3"))
    assert s.venue.queue_ahead(bid) == 0.0


def test_a_depth_update_scales_the_queue_by_cancellations_on_both_sides() -> None:
    s = sim()
    bid = s.order(Side.BUY, "1", "100")      # behind 5.0
    ask = s.order(Side.SELL, "1", "101.5")   # behind 1.0
    s.at(1000)
    s.trade(1500, 100.0, 1.0, sell=True)     # 4.0 ahead of the bid now
    # bid level 5.0 -> 2.0 with 1.0 traded: 2 of the 4 left cancelled (x 0.5)
    # ask level 1.0 -> 0.25: x 0.25
    s.depth(2000, bids=[(100.0, 2.0)], asks=[(101.5, 0.25)])
    assert s.venue.queue_ahead(bid) == 2.0 and s.venue.queue_ahead(ask) == 0.25
    s.depth(3000, bids=[(100.0, 7.0)], asks=[(101.5, 3.0)])   # joins behind us
    assert s.venue.queue_ahead(bid) == 2.0 and s.venue.queue_ahead(ask) == 0.25
    s.depth(4000, bids=[(100.0, 0.0)])       # the level is gone: nobody ahead
    assert s.venue.queue_ahead(bid) == 0.0
