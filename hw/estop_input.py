"""The e-stop input: a normally-closed contact to GND on a GPIO pin with the pull-up on.

Circuit closed (healthy) = pin low = "pressed" in gpiozero terms. A pressed button and a
broken wire both open the circuit: the pin goes high and `on_open` fires. Handlers are tiny
and wrapped: an exception escaping them would kill lgpio's single callback thread and every
later edge would be lost. This module never touches trading state; it only reports edges
and answers "is the circuit closed?".

In simulation the pin is a gpiozero MockPin; `SimEdgeThread` drives it from its own thread
so callbacks run off the event loop, as lgpio's callback thread does on a Pi.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

from hw import pins

log = logging.getLogger(__name__)


class SimEdgeThread:
    """Stands in for lgpio's callback thread: applies queued level changes to mock pins,
    so gpiozero runs the callbacks on this thread, not on the caller's."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sim-gpio-callbacks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._q.get()) is not None:
            job()  # deliberately unguarded: an escaping exception kills us, like lgpio

    def submit(self, job: Callable[[], None]) -> None:
        self._q.put(job)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=2)


class EstopInput:
    def __init__(self, factory: Any, pin: int, bounce_ms: float,
                 on_open: Callable[[], None], on_close: Callable[[], None],
                 sim_circuit_closed: bool = True) -> None:
        from gpiozero import Button
        self._factory = factory
        self._pin_no = pin
        self._on_open = on_open
        self._on_close = on_close
        self.handler_errors = 0
        self.sim: SimEdgeThread | None = None
        # bounce_time adds its full length to the trip path with lgpio: keep it 0..5 ms.
        self._button = Button(pin, pull_up=True, bounce_time=(bounce_ms / 1000) or None,
                              pin_factory=factory)
        if pins.is_mock(factory):
            self.sim = SimEdgeThread()
            # The pull-up leaves the mock pin high (nothing wired = open circuit); a healthy
            # simulated NC contact pulls it low. Done before the callbacks are attached.
            if sim_circuit_closed:
                factory.pin(pin).drive_low()
        # gpiozero holds callbacks weakly; these bound methods live as long as self does.
        self._button.when_released = self._opened
        self._button.when_pressed = self._closed

    def _opened(self) -> None:
        try:
            self._on_open()
        except BaseException:  # never let anything escape into the callback thread
            self.handler_errors += 1
            try:
                log.exception("e-stop open handler failed (latch state is re-checked by poll)")
            except BaseException:
                pass

    def _closed(self) -> None:
        try:
            self._on_close()
        except BaseException:
            self.handler_errors += 1
            try:
                log.exception("e-stop close handler failed")
            except BaseException:
                pass

    @property
    def pin(self) -> int:
        return self._pin_no

    def circuit_closed(self) -> bool:
        """Direct read of the pin level (the loop's backup to the edge callback)."""
        return bool(self._button.is_pressed)

    def callback_thread_alive(self) -> bool:
        if self.sim is not None:
            return self.sim.alive()
        return pins.callback_thread_alive(self._factory)

    def sim_set(self, circuit_closed: bool, wait: bool = True) -> None:
        """Simulation only: open (press) or close (release) the circuit on the sim thread."""
        if self.sim is None:
            raise RuntimeError("e-stop simulation needs mock GPIO (run with --sim)")
        pin = self._factory.pin(self._pin_no)
        done = threading.Event()

        def job() -> None:
            try:
                pin.drive_low() if circuit_closed else pin.drive_high()
            finally:
                done.set()
        self.sim.submit(job)
        if wait and not done.wait(2.0):
            raise TimeoutError("simulated GPIO callback thread did not respond")

    def close(self) -> None:
        self._button.close()
        if self.sim is not None:
            self.sim.stop()
