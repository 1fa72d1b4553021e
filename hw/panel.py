"""The appliance's front panel as the daemon sees it: e-stop input + status LED on one pin
factory. The daemon builds this and never imports gpiozero or lgpio itself.
"""
from __future__ import annotations

from typing import Callable

from hw import pins
from hw.estop_input import EstopInput
from hw.status_led import NullLed, StatusLed


class Panel:
    def __init__(self, *, mock: bool, estop_pin: int, bounce_ms: float, led: bool,
                 led_pins: tuple[int, int, int], on_open: Callable[[], None],
                 on_close: Callable[[], None], sim_circuit_closed: bool = True) -> None:
        self.mock = mock
        self.factory = pins.make_factory(mock)
        self.estop = EstopInput(self.factory, estop_pin, bounce_ms, on_open, on_close,
                                sim_circuit_closed=sim_circuit_closed)
        self.led: StatusLed | NullLed = (StatusLed(self.factory, *led_pins) if led
                                         else NullLed())

    def close(self) -> None:
        try:
            self.led.close()
        finally:
            self.estop.close()
            if self.mock:
                self.factory.reset()   # mock pins live at class level
            self.factory.close()
