"""Streaming features and the online feature store (issue 11, items 1 and 3).

`engine.FeatureEngine` is the one entry point the daemon wires: it is fed book updates,
trades, bars and our own fills, and publishes every feature to `store.FeatureStore`
(`get(symbol, name) -> FeatureValue(value, ts_ns, ready)`). The modules below it each do one
job: `indicators` (EMA, SMA, RSI, MACD, ATR, Bollinger, VWAP), `volatility` (EWMA, realised,
GARCH(1,1) forecast), `flow` (OFI, trade imbalance, microprice, microbursts), `vpin`,
`liquidity` (Kyle, Roll, Corwin-Schultz, Amihud), `adverse` (our fills), `rolling` and
`_num` (windows and numeric guards).

This package never sends orders, never reads a clock and never imports strategy, risk,
gateway, venue or journal code (it sits below them).
"""
