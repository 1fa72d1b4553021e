"""The trading engine: one event flow shared by the daemon and a backtest."""
