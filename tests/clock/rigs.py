"""Builders shared by the clock tests: a Protection (risk limits + breaker board) on a real
SQLite journal that reads the time line's engine clock, and the poll the engine makes."""
from __future__ import annotations

from decimal import Decimal

from daemon.config import BreakersCfg, Config, RiskCfg
from daemon.execution.orders import Position
from daemon.protection import Protection
from daemon.store.journal import Journal
from tests.clock.conftest import Timeline

SYM = "BTCUSDT"
VENUE = "paper"
D = Decimal


def protection(tmp_path, tl: Timeline, *, breakers: dict | None = None,
               risk: dict | None = None, name: str = "j.sqlite3") -> Protection:
    cfg = Config(risk=RiskCfg(**(risk or {})),
                 breakers=BreakersCfg(**{"cooldown_s": 10, "cascade": False,
                                         **(breakers or {})}))
    return Protection(cfg, Journal(tmp_path / name), [VENUE], clock=tl.clock)


def poll(p: Protection, *, valid: bool = True, positions: dict | None = None,
         mark: str = "60000") -> list:
    return p.poll(positions or {SYM: Position(SYM)}, {SYM: D(mark)}, {SYM: valid}, [])


def state(p: Protection, name: str = VENUE) -> str:
    return p.board.breakers[name].state.value
