"""Execution algorithms: schedules that say what to trade when, never send anything.

- `twap`: TWAP plans and the `Schedule` object the engine drives by time (any plan).
- `almgren_chriss`: the Almgren–Chriss optimal liquidation trajectory, its expected cost,
  variance and efficient frontier; its trade list drives a `twap.Schedule`.
- `impact`: estimates of the impact parameters (epsilon, eta, gamma, sigma) from the book,
  trades and mids.

Pure modules: no I/O, no clock, no orders. Flatten on e-stop is an immediate sweep done
elsewhere and must never be built from these schedules.
"""
