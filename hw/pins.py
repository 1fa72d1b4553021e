"""Choose the gpiozero pin factory explicitly: lgpio on a Pi, MockFactory in simulation.

gpiozero would silently fall back to another pin library if lgpio failed; choosing the
factory here makes that failure loud. This module never reads pins or drives LEDs.
"""
from __future__ import annotations

import os
from typing import Any


class GpioUnavailable(RuntimeError):
    """No usable GPIO on this machine (not a Pi, no /dev/gpiochip*, lgpio failed)."""


def make_factory(mock: bool) -> Any:
    """Return a fresh pin factory. `mock=True`: gpiozero MockFactory with PWM-capable pins
    (the RGB LED needs PWM). Otherwise lgpio, or GpioUnavailable with the reason."""
    if mock:
        from gpiozero.pins.mock import MockFactory, MockPWMPin
        return MockFactory(pin_class=MockPWMPin)
    os.environ.setdefault("LG_WD", os.environ.get("RUNTIME_DIRECTORY", "/tmp"))
    try:
        from gpiozero.pins.lgpio import LGPIOFactory
        return LGPIOFactory()
    except Exception as e:  # lgpio raises several types off a Pi; all mean "no GPIO here"
        raise GpioUnavailable(f"lgpio pin factory failed: {e}") from e


def is_mock(factory: Any) -> bool:
    from gpiozero.pins.mock import MockFactory
    return isinstance(factory, MockFactory)


def callback_thread_alive(factory: Any) -> bool:
    """Is the thread that delivers pin callbacks alive? lgpio runs ONE thread for all pins;
    an exception escaping any callback ends it silently (FIELD-NOTES)."""
    if is_mock(factory):
        return True  # mock callbacks run in the driving thread; hw.estop_input checks it
    import lgpio
    return bool(lgpio._notify_thread.is_alive())
