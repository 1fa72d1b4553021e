"""Trading states, the transitions allowed between them, and the LED pattern of each.

This module only knows the rules; it does not act. The supervisor asks `allowed()` before
changing state and journals the change before announcing it.
"""
from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    BOOTING = "booting"
    READY = "ready"        # armed, not trading
    TRADING = "trading"
    REDUCING = "reducing"  # only exposure-reducing orders (market data degraded)
    HALTED = "halted"      # software stop: operator, risk, watchdog, breaker
    ESTOP = "estop"        # hardware e-stop latched
    FAULT = "fault"        # cannot run safely
    FINISHED = "finished"  # a replay's data is over: nothing more to trade on


_ALLOWED: dict[State, frozenset[State]] = {
    State.BOOTING: frozenset({State.READY, State.TRADING, State.HALTED, State.ESTOP, State.FAULT}),
    State.READY: frozenset({State.TRADING, State.HALTED, State.ESTOP, State.FAULT,
                            State.FINISHED}),
    State.TRADING: frozenset({State.REDUCING, State.READY, State.HALTED, State.ESTOP,
                              State.FAULT, State.FINISHED}),
    State.REDUCING: frozenset({State.TRADING, State.READY, State.HALTED, State.ESTOP,
                               State.FAULT, State.FINISHED}),
    State.HALTED: frozenset({State.READY, State.ESTOP, State.FAULT}),
    State.ESTOP: frozenset({State.READY, State.FAULT}),
    State.FAULT: frozenset(),  # only a restart leaves fault
    # The safety chain still works after the data is over; nothing else leaves it.
    State.FINISHED: frozenset({State.HALTED, State.ESTOP, State.FAULT}),
}


def allowed(src: State, dst: State) -> bool:
    return dst in _ALLOWED[src]


# Pattern names understood by hw.status_led (DESIGN.md: LED).
LED_PATTERN: dict[State, str] = {
    State.BOOTING: "blue_pulse",
    State.READY: "green_slow_blink",
    State.TRADING: "green",
    State.REDUCING: "amber",
    State.HALTED: "red_slow_blink",
    State.ESTOP: "red_fast_blink",
    State.FAULT: "red",
    State.FINISHED: "blue",
}
DEGRADED_PATTERN = "amber"
