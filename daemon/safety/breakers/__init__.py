"""Circuit breakers: closed -> open -> half-open (probe budget) -> closed, one per venue
and one global (board.py), tripped by the detectors in detectors.py from order outcomes and
market figures (market_watch.py). Pure state machines: no clock, no I/O, nothing sent.
"""
from daemon.safety.breakers.board import GLOBAL, BreakerBoard
from daemon.safety.breakers.breaker import BreakerChange, BState, CircuitBreaker, Kind, Policy
from daemon.safety.breakers.detectors import Trip

__all__ = ["GLOBAL", "BState", "BreakerBoard", "BreakerChange", "CircuitBreaker",
           "Kind", "Policy", "Trip"]
