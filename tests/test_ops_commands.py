"""The daemon's side of `bot4ctl orders|fills|breaker` (in-process, real journal and paper
venue): answers come from the journal, arguments are checked, a manual breaker trip stays
until its reset and is journalled."""
from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from daemon.control.server import CommandError
from daemon.execution.gateway import Rejected
from daemon.execution.orders import OrderType, Side
from daemon.states import State
from tests.test_audit_trail import _boot
from tests.test_safety_inproc import _stop, _until


def test_orders_and_fills_come_from_the_journal_newest_first(tmp_path):
    async def main():
        sup, task = await _boot(tmp_path)
        await sup.handle_command({"cmd": "start"})
        await _until(lambda: len(sup.gateway.open) >= 2, what="quotes")
        o = sup.gateway.submit("BTCUSDT", Side.BUY, Decimal("0.0002"), None,
                               type=OrderType.MARKET)
        await _until(lambda: sup.journal.has_fill(f"paper-r{sup.run_number}-1"),
                     what="the market order's fill")
        orders = (await sup.handle_command({"cmd": "orders", "limit": 2}))["orders"]
        assert len(orders) == 2 and orders[0]["client_id"] == o.client_id
        fills = (await sup.handle_command({"cmd": "fills", "symbol": "BTCUSDT"}))["fills"]
        assert fills and fills[0]["client_id"] == o.client_id
        assert (await sup.handle_command({"cmd": "fills", "symbol": "ETHUSDT"})) == \
            {"fills": []}
        for bad in ({"limit": 0}, {"limit": "5"}, {"limit": True}, {"limit": 10_001},
                    {"symbol": ""}, {"symbol": 5}):
            with pytest.raises(CommandError):
                await sup.handle_command({"cmd": "orders", **bad})
        assert not [d for _, _, d in sup.journal.audit_rows("command")
                    if d["cmd"] in ("orders", "fills")], "reads are not journalled"
        await _stop(sup, task)
    asyncio.run(main())


def test_manual_breaker_trip_blocks_until_its_reset_and_is_journalled(tmp_path):
    async def main():
        sup, task = await _boot(tmp_path)
        await sup.handle_command({"cmd": "start"})
        await _until(lambda: len(sup.gateway.open) >= 2, what="quotes")
        # Limits used count the open orders (status once showed 0/10 with two quotes out).
        lim = sup.status()["risk"]["limits"]
        assert lim["open_orders"]["used"] == str(len(sup.gateway.open))
        assert lim["open_orders_per_symbol"]["BTCUSDT"]["used"] == str(len(sup.gateway.open))
        r = await sup.handle_command({"cmd": "breaker", "action": "trip", "name": "paper",
                                      "reason": "exchange maintenance"})
        assert r == {"breaker": "paper", "state": "open",
                     "reason": "manual: exchange maintenance"}
        # Open: the quotes (they would grow a position) are cancelled, no new one leaves.
        await _until(lambda: not sup.gateway.open, what="quotes cancelled")
        with pytest.raises(Rejected) as e:
            sup.gateway.submit("BTCUSDT", Side.BUY, Decimal("0.0002"), Decimal("50000"))
        assert e.value.stage == "breaker"
        assert sup.state is State.TRADING
        rows = [(d["name"], d["new"], d["reason"]) for _, _, d in
                sup.journal.audit_rows("breaker")]
        assert ("paper", "open", "manual: exchange maintenance") in rows
        cmds = [d for _, _, d in sup.journal.audit_rows("command") if d["cmd"] == "breaker"]
        assert cmds == [{"cmd": "breaker", "action": "trip", "name": "paper",
                         "reason": "exchange maintenance"}]
        for bad in ({"action": "trip", "name": "nope"}, {"action": "open", "name": "paper"}):
            with pytest.raises(CommandError):
                await sup.handle_command({"cmd": "breaker", **bad})
        r = await sup.handle_command({"cmd": "breaker", "action": "reset", "name": "paper"})
        assert r["state"] == "closed"
        await _until(lambda: len(sup.gateway.open) >= 2, what="quotes again")
        await _stop(sup, task)
    asyncio.run(main())
