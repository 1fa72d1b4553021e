"""Backtest: run the trading engine over captures and report what it did.

`run.py` drives the engine (the same engine, gateway, risk and paper venue as the daemon);
`report.py` turns its journal and equity samples into `report.json`, `plot.py` into
`report.png` (optional `report` extra), `progress.py` draws a progress bar on a terminal,
`sweep.py` runs a grid of configs in a process pool and tabulates their reports.
Nothing here touches hardware or sockets, or the daemon's journal.
"""
