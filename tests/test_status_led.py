"""The status LED on mock pins: patterns reach the pins from the LED's own thread, so a
trip never pays gpiozero's blink start-up on the event loop."""
from __future__ import annotations

import threading

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from hw.status_led import NullLed, StatusLed
from tests.daemon_harness import wait_for


@pytest.fixture
def led():
    factory = MockFactory(pin_class=MockPWMPin)
    led = StatusLed(factory, 27, 22, 23)
    yield led, factory
    led.close()
    factory.reset()


def _states(factory) -> tuple:
    return tuple(round(factory.pin(p).state, 2) for p in (27, 22, 23))


def test_show_returns_at_once_and_the_thread_applies_it(led, monkeypatch):
    led, factory = led
    gate = threading.Event()
    real_apply = led._apply
    monkeypatch.setattr(led, "_apply", lambda p: (gate.wait(10), real_apply(p)))
    led.show("green")            # the LED thread is held: show() must not wait for it
    assert led.pattern == "green" and led.applied == "off"
    gate.set()
    assert led.wait_applied("green")
    assert _states(factory) == (0, 1, 0)


def test_newest_pattern_wins_and_reaches_the_pins(led):
    led, factory = led
    for p in ("blue_pulse", "red_fast_blink", "amber", "red"):
        led.show(p)
    assert led.wait_applied("red") and led.pattern == "red"
    assert _states(factory) == (1, 0, 0)


def test_a_failing_pattern_is_counted_and_the_thread_goes_on(led, monkeypatch):
    led, factory = led
    real_apply = led._apply
    calls = []

    def flaky(p):
        calls.append(p)
        if len(calls) == 1:
            raise RuntimeError("pin driver hiccup")
        real_apply(p)
    monkeypatch.setattr(led, "_apply", flaky)
    led.show("amber")
    wait_for(lambda: led.errors == 1, 30, what="the failed attempt")
    assert led.applied == "off" and led._thread.is_alive()
    led.show("green")
    assert led.wait_applied("green")
    assert _states(factory) == (0, 1, 0)


def test_close_stops_the_thread_and_turns_the_led_off():
    factory = MockFactory(pin_class=MockPWMPin)
    led = StatusLed(factory, 27, 22, 23)
    led.show("red_fast_blink")
    led.close()
    assert not led._thread.is_alive()
    assert led.applied == "off" and _states(factory) == (0, 0, 0)
    factory.reset()


def test_unknown_pattern_is_refused_by_both_leds():
    for led in (NullLed(),):
        with pytest.raises(KeyError):
            led.show("purple")
    factory = MockFactory(pin_class=MockPWMPin)
    real = StatusLed(factory, 27, 22, 23)
    with pytest.raises(KeyError):
        real.show("purple")
    real.close()
    factory.reset()
