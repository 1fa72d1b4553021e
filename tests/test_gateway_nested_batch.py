"""A gateway batch opened inside an open batch joins it (OrderGateway.batch returns one
shared do-nothing context for that case): it commits nothing and sends nothing on its own
exit, an exception inside it reaches the outer batch unchanged (which then withdraws the
orders it had not sent), and once the outer batch is over the next batch is a real one."""
from __future__ import annotations

from decimal import Decimal

import pytest

from daemon.execution.orders import OrderStatus, Side
from tests.test_gateway import Env


def test_an_inner_batch_commits_and_sends_nothing_on_its_own_exit(tmp_path, mocker):
    e = Env(tmp_path)
    old = e.buy(price="59980")
    sent = mocker.spy(e.venue, "submit")
    cancelled = mocker.spy(e.venue, "cancel")
    before = e.journal.commits
    with e.gw.batch():
        with e.gw.batch():
            a = e.buy(price="59990")
            e.gw.cancel(old.client_id, "requote")   # cancel() opens a batch of its own too
        assert e.journal.commits == before, "the inner batch committed"
        assert sent.call_count == 0 and cancelled.call_count == 0, "sent before the commit"
        b = e.gw.submit("BTCUSDT", Side.SELL, Decimal("0.001"), Decimal("60010"))
    assert e.journal.commits == before + 1
    assert [c.args[0].client_id for c in sent.call_args_list] == [a.client_id, b.client_id]
    assert [c.args for c in cancelled.call_args_list] == [(old.client_id,)]


def test_an_error_in_an_inner_batch_fails_the_outer_one(tmp_path, mocker):
    e = Env(tmp_path)
    sent = mocker.spy(e.venue, "submit")
    with pytest.raises(RuntimeError, match="inner"):
        with e.gw.batch():
            o = e.buy()
            with e.gw.batch():
                p = e.buy(price="59980")
                raise RuntimeError("inner")
            e.buy(price="59970")   # never reached
    assert sent.call_count == 0 and not e.gw.open
    for x in (o, p):
        assert x.status is OrderStatus.REJECTED and "batch failed" in x.reason
        assert e.journal.order_history(x.client_id) == ["pending_new", "rejected"]
    assert e.journal.count("orders") == 2


def test_after_a_batch_the_next_one_is_a_real_batch_again(tmp_path, mocker):
    e = Env(tmp_path)
    sent = mocker.spy(e.venue, "submit")
    for n in (1, 2):
        before = e.journal.commits
        with e.gw.batch():
            e.buy(price=str(59990 - n))
            with e.gw.batch():
                e.buy(price=str(59980 - n))
            assert sent.call_count == 2 * (n - 1), "sent before its batch committed"
        assert e.journal.commits == before + 1 and sent.call_count == 2 * n
