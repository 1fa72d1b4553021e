"""The online feature store: the latest value of every (symbol, feature), its event time and
whether it is ready, plus a registry of every feature with its parameters, and an optional
bounded history that can be exported to Parquet for offline study.

Readers (strategies, risk, the toxic-flow breaker, `bot4ctl features`) call `get`; the
feature engine writes through `slot`/`put`. A value that is not a finite float never gets in:
`put` turns None, NaN and +-inf into "not ready, value None", so nothing downstream ever sees
NaN or inf. Time is the event time of what produced the value (never a clock read).

This module never computes features, never reads the market and never does I/O except in
`export_parquet` (which imports pyarrow lazily: the Pi does not need to carry it).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_isfinite = math.isfinite


@dataclass(slots=True, frozen=True)
class FeatureValue:
    """What a reader gets. `value` is None exactly when `ready` is False (never computed, still
    warming up, or the last input was degenerate); otherwise it is a finite float. `ts_ns`
    is the event time of the last update (0 = never updated)."""

    value: float | None
    ts_ns: int
    ready: bool


@dataclass(slots=True, frozen=True)
class FeatureSpec:
    """One registry entry: what a feature is, in what unit, with which parameters."""

    name: str
    unit: str
    source: str                      # the event that updates it: "trade", "book", "bar", "fill"
    params: dict[str, Any] = field(default_factory=dict)
    doc: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "unit": self.unit, "source": self.source,
                "params": dict(self.params), "doc": self.doc}


class PyarrowMissing(RuntimeError):
    """Parquet export asked for on a machine without pyarrow (the `features` extra)."""


class FeatureStore:
    """Latest value + event time + readiness per (symbol, feature).

    Slots are small lists ``[value, ts_ns, ready]`` so the writer on the hot path only
    assigns three items (no allocation per update). With ``history_rows > 0`` every `put` is
    also appended to a ring buffer of at most that many rows (oldest dropped), the source of
    `export_parquet`.
    """

    def __init__(self, symbols: list[str], history_rows: int = 0) -> None:
        self.symbols = list(symbols)
        self._specs: dict[str, FeatureSpec] = {}
        self._slots: dict[str, dict[str, list]] = {s: {} for s in self.symbols}
        self.history: deque[tuple[str, str, int, float | None, bool]] | None = (
            deque(maxlen=history_rows) if history_rows > 0 else None)
        self.rejected = 0   # values refused as NaN/inf (a feature bug or garbage input)

    # -- registry ----------------------------------------------------------------------
    def register(self, spec: FeatureSpec) -> None:
        """Declare a feature for every symbol; registering the same name twice is an error
        (two features would overwrite each other's values)."""
        if spec.name in self._specs:
            raise ValueError(f"feature {spec.name!r} registered twice")
        self._specs[spec.name] = spec
        for slots in self._slots.values():
            slots[spec.name] = [None, 0, False]

    def registry(self) -> list[dict[str, Any]]:
        """Every registered feature with its unit, source event and parameters."""
        return [s.as_dict() for s in self._specs.values()]

    def names(self) -> list[str]:
        return list(self._specs)

    # -- writing -----------------------------------------------------------------------
    def slot(self, symbol: str, name: str) -> list:
        """The mutable slot of one (symbol, feature), for a writer that keeps it."""
        return self._slots[symbol][name]

    def put(self, slot: list, value: float | None, ts_ns: int, symbol: str = "",
            name: str = "") -> None:
        """Write one value; anything but a finite float means "not ready"."""
        if value is not None and not _isfinite(value):
            self.rejected += 1
            value = None
        slot[0] = value
        slot[1] = ts_ns
        slot[2] = value is not None
        if self.history is not None:
            self.history.append((symbol, name, ts_ns, value, value is not None))

    # -- reading -----------------------------------------------------------------------
    def get(self, symbol: str, name: str) -> FeatureValue:
        """The latest value; KeyError for a symbol or feature the store does not have."""
        try:
            s = self._slots[symbol][name]
        except KeyError:
            raise KeyError(f"no feature {name!r} for symbol {symbol!r}") from None
        return FeatureValue(s[0], s[1], s[2])

    def value(self, symbol: str, name: str) -> float | None:
        """`get(symbol, name).value` without building a FeatureValue: the value, None when
        not ready (a slot's value is None exactly when it is not ready); KeyError alike."""
        try:
            return self._slots[symbol][name][0]
        except KeyError:
            raise KeyError(f"no feature {name!r} for symbol {symbol!r}") from None

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """JSON-able: symbol -> feature -> {value, ts_ns, ready}."""
        return {sym: {n: {"value": s[0], "ts_ns": s[1], "ready": s[2]}
                      for n, s in slots.items()}
                for sym, slots in self._slots.items()}

    # -- offline export ----------------------------------------------------------------
    def export_parquet(self, path: str | Path) -> int:
        """Write the recorded history (columns symbol, feature, ts_ns, value, ready) to a
        Parquet file; returns the number of rows. Needs pyarrow (the optional `features`
        extra) and a store built with ``history_rows > 0``."""
        if self.history is None:
            raise RuntimeError("feature history is off (set [features] history_rows > 0)")
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as e:
            raise PyarrowMissing(
                "Parquet export needs pyarrow, which is not installed: install the "
                "optional extra with `pip install 'bot4[features]'` (the Pi does not need "
                f"it; export on the companion host) ({e})") from None
        rows = list(self.history)
        table = pa.table({
            "symbol": pa.array([r[0] for r in rows], pa.string()),
            "feature": pa.array([r[1] for r in rows], pa.string()),
            "ts_ns": pa.array([r[2] for r in rows], pa.int64()),
            "value": pa.array([r[3] for r in rows], pa.float64()),
            "ready": pa.array([r[4] for r in rows], pa.bool_()),
        })
        pq.write_table(table, str(path))
        return len(rows)
