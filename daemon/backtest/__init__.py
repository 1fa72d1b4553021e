"""Backtest: run the trading engine over captures and report what it did.

`run.py` drives the engine (the same engine, gateway, risk and paper venue as the daemon);
`report.py` turns its journal and equity samples into `report.json`, `plot.py` into
`report.png` (optional `report` extra), `progress.py` draws a progress bar on a terminal.
Nothing here touches hardware or sockets.
"""
