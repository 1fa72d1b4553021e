"""Data quality: seven validation layers (Benford, Kalman, sources, change points, score,
alerting, monitoring) and drift over the market events the daemon already has.

Everything here reads events and returns verdicts; nothing here sends orders, trips a
breaker or writes the journal itself (the daemon acts on `DataQuality.poll`'s alerts).
"""
