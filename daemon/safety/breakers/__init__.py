"""Circuit breakers: closed -> open -> half-open (probe budget) -> closed, one per venue
and one global (board.py), tripped by the detectors in detectors.py from order outcomes and
market figures (market_watch.py). Pure state machines: no clock, no I/O, nothing sent.

`Breakers` (compat.py) is the interface the gateway and supervisor still use; it goes when
they move to `BreakerBoard`.
"""
from daemon.safety.breakers.board import GLOBAL, BreakerBoard
from daemon.safety.breakers.breaker import BreakerChange, BState, CircuitBreaker, Kind, Policy
from daemon.safety.breakers.compat import Breakers
from daemon.safety.breakers.detectors import Trip

__all__ = ["GLOBAL", "BState", "BreakerBoard", "BreakerChange", "Breakers", "CircuitBreaker",
           "Kind", "Policy", "Trip"]
