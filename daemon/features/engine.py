"""FeatureEngine: owns one set of streaming features per symbol, is fed market events and
our own fills, and publishes every value to the online `FeatureStore`.

Feeding (the daemon's market loop calls these; all O(1) or amortised O(1) per event):
  on_book(symbol, book, ts_ns)  after the book changed (level-1/multi-level OFI, microprice,
                                |OFI| bursts, the mid for adverse selection; also closes a
                                due bar in a quiet market)
  on_trade(trade)               trade imbalance, Roll spread, trade-rate bursts, and the bars
  on_bar(symbol, bar)           every bar feature (indicators, volatility, VPIN, Kyle,
                                Corwin-Schultz, Amihud)
  on_own_fill(fill)             adverse selection of our fills
Bars: with ``bar_interval_s > 0`` the engine builds its own time bars from trades in the
receive clock (`daemon.market.bars.TimeBarBuilder`, `BarClock.RECEIVE`, the daemon's one
clock) and feeds them to `on_bar` itself; with 0 it builds none and the daemon must call
`on_bar` with its bars (never both: every bar would count twice).

Time is always the event time of what was fed (trade/book receive time, the bar's end, the
fill's time); the engine never reads a clock. Nothing here sends orders or touches the
book; a feature that raised would be a bug, but a bad value can never leave: the store turns
NaN/inf into "not ready".
"""
from __future__ import annotations

from collections import deque
from typing import Any

from daemon.config import FeaturesCfg
from daemon.features import adverse, flow, indicators, liquidity, volatility, vpin
from daemon.features.store import FeatureSpec, FeatureStore, FeatureValue  # noqa: F401
from daemon.market.bars import Bar, BarClock, TimeBarBuilder
from daemon.market.events import Trade

_NS = 1_000_000_000


def _adverse_name(h_s: float) -> str:
    return f"adverse_{h_s:g}s"


def feature_specs(cfg: FeaturesCfg) -> list[FeatureSpec]:
    """The registry: every feature the engine publishes, its unit, source and parameters."""
    c = cfg
    bar = {"bar_interval_s": c.bar_interval_s}
    specs = [
        FeatureSpec("ema", "price", "bar", {**bar, "period": c.ema_period},
                    "EMA of closes, SMA-seeded (TA-Lib)"),
        FeatureSpec("sma", "price", "bar", {**bar, "period": c.sma_period}, "SMA of closes"),
        FeatureSpec("rsi", "0..100", "bar", {**bar, "period": c.rsi_period}, "Wilder RSI"),
        FeatureSpec("macd", "price", "bar", {**bar, "fast": c.macd_fast, "slow": c.macd_slow,
                                             "signal": c.macd_signal}, "MACD line"),
        FeatureSpec("macd_signal", "price", "bar", {**bar, "signal": c.macd_signal},
                    "MACD signal line"),
        FeatureSpec("macd_hist", "price", "bar", {**bar, "signal": c.macd_signal},
                    "MACD - signal"),
        FeatureSpec("atr", "price", "bar", {**bar, "period": c.atr_period}, "Wilder ATR"),
        FeatureSpec("bb_mid", "price", "bar", {**bar, "period": c.bollinger_period},
                    "Bollinger middle band (SMA)"),
        FeatureSpec("bb_upper", "price", "bar", {**bar, "period": c.bollinger_period,
                                                 "k": c.bollinger_k}, "SMA + k sd"),
        FeatureSpec("bb_lower", "price", "bar", {**bar, "period": c.bollinger_period,
                                                 "k": c.bollinger_k}, "SMA - k sd"),
        FeatureSpec("vwap", "price", "bar", {**bar, "bars": c.vwap_bars}, "rolling VWAP"),
        FeatureSpec("ewma_vol", "log-return sd per bar", "bar",
                    {**bar, "lambda": c.ewma_lambda, "warmup": c.ewma_warmup},
                    "RiskMetrics EWMA volatility"),
        FeatureSpec("realised_vol", "log-return sd over the window", "bar",
                    {**bar, "bars": c.realised_vol_bars}, "sqrt of summed squared returns"),
        FeatureSpec("garch_vol", "log-return sd per bar", "bar",
                    {**bar, "window_bars": c.garch_window_bars},
                    "GARCH(1,1) forecast; parameters from the heavy-analytics fit"),
        FeatureSpec("vpin", "0..1", "bar", {**bar, "bucket_notional": c.vpin_bucket_notional,
                                            "buckets": c.vpin_buckets,
                                            "sigma_bars": c.vpin_sigma_bars},
                    "VPIN, bulk volume classification"),
        FeatureSpec("kyle_lambda", "bps per 1e6 quote", "bar", {**bar, "bars": c.kyle_bars},
                    "slope of returns on signed dollar volume"),
        FeatureSpec("cs_spread", "bps", "bar", {**bar, "pairs": c.cs_bars},
                    "Corwin-Schultz high-low spread"),
        FeatureSpec("amihud", "|return| per 1e6 quote", "bar", {**bar, "bars": c.amihud_bars},
                    "Amihud illiquidity"),
        FeatureSpec("trade_imbalance", "-1..1", "trade", {"trades": c.trade_imbalance_trades},
                    "(buy - sell) / total volume"),
        FeatureSpec("roll_spread", "bps", "trade", {"pairs": c.roll_trades},
                    "Roll effective spread"),
        FeatureSpec("ofi", "base qty", "book", {"window_s": c.ofi_window_s, "levels": 1},
                    "Cont-Kukanov-Stoikov order-flow imbalance"),
        FeatureSpec("ofi_ml", "base qty", "book", {"window_s": c.ofi_window_s,
                                                   "levels": c.ofi_levels},
                    "multi-level OFI (equal weights)"),
        FeatureSpec("microprice", "price", "book", {}, "size-weighted mid"),
    ]
    burst = {"bucket_s": c.burst_bucket_s, "halflife_s": c.burst_halflife_s,
             "warmup_buckets": c.burst_warmup_buckets, "max_gap_s": c.burst_max_gap_s}
    specs += [
        FeatureSpec("trade_rate_z", "z-score", "trade", burst,
                    "trade count z: last closed bucket, or the open one at a burst"),
        FeatureSpec("ofi_burst_z", "z-score", "book", burst,
                    "|OFI| z: last closed bucket, or the open one at a burst"),
        FeatureSpec("microburst", "0/1", "trade+book",
                    {**burst, "z": c.burst_z, "min_trades": c.burst_min_trades},
                    "trade-rate or |OFI| burst"),
    ]
    specs += [FeatureSpec(_adverse_name(h), "bps", "fill",
                          {"horizon_s": h, "fills": c.adverse_fills},
                          "mean mid move against our fills")
              for h in c.adverse_horizons_s]
    return specs


class _Symbol:
    """Every feature of one symbol and the store slots it writes."""

    def __init__(self, cfg: FeaturesCfg, store: FeatureStore, symbol: str,
                 on_bar: Any) -> None:
        c = cfg
        self.symbol = symbol
        self.store = store
        self.slot = {n: store.slot(symbol, n) for n in store.names()}
        self.ema = indicators.EMA(c.ema_period)
        self.sma = indicators.SMA(c.sma_period)
        self.rsi = indicators.RSI(c.rsi_period)
        self.macd = indicators.MACD(c.macd_fast, c.macd_slow, c.macd_signal)
        self.atr = indicators.ATR(c.atr_period)
        self.bb = indicators.Bollinger(c.bollinger_period, c.bollinger_k)
        self.vwap = indicators.RollingVWAP(c.vwap_bars)
        self.ret = volatility.LogReturns()
        self.ewma = volatility.EwmaVol(c.ewma_lambda, c.ewma_warmup)
        self.rv = volatility.RealisedVol(c.realised_vol_bars)
        self.garch = volatility.Garch11()
        self.rets: deque[float] = deque(maxlen=c.garch_window_bars)   # for the heavy fit
        self.nret = 0                                                 # returns ever seen
        self.vpin = vpin.VPIN(c.vpin_bucket_notional, c.vpin_buckets, c.vpin_sigma_bars)
        # An inverse contract's notional is qty x contract size in USD, not price x qty:
        # VPIN's buckets fill by it (0 = linear).
        self.contract_usd = 0.0
        self.kyle = liquidity.KyleLambda(c.kyle_bars)
        self.cs = liquidity.CorwinSchultz(c.cs_bars)
        self.amihud = liquidity.Amihud(c.amihud_bars)
        self.ti = flow.TradeImbalance(c.trade_imbalance_trades)
        self.roll = liquidity.RollSpread(c.roll_trades)
        self.ofi = flow.OFI(int(c.ofi_window_s * _NS), c.ofi_levels)
        self.levels = c.ofi_levels if c.ofi_levels > 1 else 0
        self.burst = flow.Microburst(int(c.burst_bucket_s * _NS), int(c.burst_halflife_s * _NS),
                                     c.burst_z, c.burst_warmup_buckets, c.burst_min_trades,
                                     int(c.burst_max_gap_s * _NS))
        self.adverse = adverse.AdverseSelection([int(h * _NS) for h in c.adverse_horizons_s],
                                                c.adverse_fills)
        self.adverse_slots = [self.slot[_adverse_name(h)] for h in c.adverse_horizons_s]
        self.adverse_names = [_adverse_name(h) for h in c.adverse_horizons_s]
        self.book_ok = False
        self.bars: TimeBarBuilder | None = None
        if c.bar_interval_s > 0:
            self.bars = TimeBarBuilder(symbol, int(c.bar_interval_s * _NS),
                                       clock=BarClock.RECEIVE, on_bar=on_bar)
        s = self.slot
        self.s_ti, self.s_roll = s["trade_imbalance"], s["roll_spread"]
        self.s_ofi, self.s_ofi_ml, self.s_micro = s["ofi"], s["ofi_ml"], s["microprice"]
        self.s_trz, self.s_ofz, self.s_burst = s["trade_rate_z"], s["ofi_burst_z"], s["microburst"]

    def put_burst(self, ts: int, put: Any) -> None:
        b = self.burst
        sym = self.symbol
        if b.ready:
            put(self.s_trz, b.trade_z, ts, sym, "trade_rate_z")
            put(self.s_ofz, b.ofi_z, ts, sym, "ofi_burst_z")
            put(self.s_burst, b.burst, ts, sym, "microburst")
        elif self.s_burst[2]:   # a feed gap restarted the baseline
            for sl, n in ((self.s_trz, "trade_rate_z"), (self.s_ofz, "ofi_burst_z"),
                          (self.s_burst, "microburst")):
                put(sl, None, ts, sym, n)


class FeatureEngine:
    """One feature set per symbol; values in `store`. See the module docstring."""

    def __init__(self, cfg: FeaturesCfg, symbols: list[str],
                 contract_usd: dict[str, float] | None = None) -> None:
        """`contract_usd`: USD per contract of each inverse (COIN-M) symbol."""
        self.cfg = cfg
        self._enabled = cfg.enabled
        self.symbols = list(symbols)
        self.store = FeatureStore(self.symbols, cfg.history_rows)
        for spec in feature_specs(cfg):
            self.store.register(spec)
        self._put = self.store.put if cfg.history_rows else self._fast_put
        self._sym = {s: _Symbol(cfg, self.store, s, self._bar_callback(s)) for s in self.symbols}
        for s, usd in (contract_usd or {}).items():
            if s in self._sym:
                self._sym[s].contract_usd = float(usd)
        self.stats = {"books": 0, "trades": 0, "bars": 0, "fills": 0, "unknown_symbol": 0,
                      "invalid_book": 0}

    def _fast_put(self, slot: list, value: float | None, ts_ns: int, symbol: str = "",
                  name: str = "") -> None:
        """FeatureStore.put without history (the hot path when history_rows = 0)."""
        if value is not None and value - value != 0.0:   # NaN or +-inf
            self.store.rejected += 1
            value = None
        slot[0] = value
        slot[1] = ts_ns
        slot[2] = value is not None

    def _bar_callback(self, symbol: str) -> Any:
        return lambda bar: self.on_bar(symbol, bar)

    # -- feeding ---------------------------------------------------------------------------
    def on_book(self, symbol: str, book: Any, ts_ns: int) -> None:
        """The book of `symbol` after an update (an `OrderBook`: best_bid/best_ask/levels/
        valid). An invalid book resets the book features (not ready until valid again)."""
        if not self._enabled:
            return
        st = self._sym.get(symbol)
        if st is None:
            self.stats["unknown_symbol"] += 1
            return
        self.stats["books"] += 1
        put = self._put
        n = st.levels
        bids = asks = None
        if not book.valid:
            bid = ask = None
        elif n:
            # the top levels give the best bid/ask too: one read of each side
            bids = book.levels(True, n)
            asks = book.levels(False, n)
            bid = bids[0] if bids else None
            ask = asks[0] if asks else None
        else:
            bid = book.best_bid()
            ask = book.best_ask()
        if bid is None or ask is None:
            self.stats["invalid_book"] += 1
            if st.book_ok:
                st.book_ok = False
                st.ofi.reset()
                for sl, n in ((st.s_ofi, "ofi"), (st.s_ofi_ml, "ofi_ml"),
                              (st.s_micro, "microprice")):
                    put(sl, None, ts_ns, symbol, n)
            return
        st.book_ok = True
        ofi = st.ofi
        if n:
            ofi.update(ts_ns, bid, ask, bids, asks)
            put(st.s_ofi_ml, ofi.value_ml(ts_ns), ts_ns, symbol, "ofi_ml")
        else:
            ofi.update(ts_ns, bid, ask)
        put(st.s_ofi, ofi.value(ts_ns), ts_ns, symbol, "ofi")
        pb, qb = bid
        pa, qa = ask
        tot = qb + qa
        # flow.microprice inlined; NaN sizes fail `tot > 0`, the put guards the rest
        put(st.s_micro, (pb * qa + pa * qb) / tot if tot > 0.0 else None, ts_ns, symbol,
            "microprice")
        if st.burst.on_ofi(ts_ns, ofi.last_e):
            st.put_burst(ts_ns, put)
        ofi.last_e = 0.0
        adv = st.adverse
        mid = (pb + pa) * 0.5
        if 1e-100 <= mid <= 1e100:      # _num.ok_price, inlined
            adv.mid = mid
            # (next_ns: the earliest head of its pending queues; nothing is due before it)
            if adv.pending and ts_ns >= adv.next_ns:
                for i in adv.on_mid(ts_ns, mid):
                    put(st.adverse_slots[i], adv.value(i), ts_ns, symbol,
                        st.adverse_names[i])
        if st.bars is not None:
            st.bars.advance(ts_ns)

    def on_trade(self, trade: Trade) -> None:
        if not self._enabled:
            return
        symbol = trade.symbol
        st = self._sym.get(symbol)
        if st is None:
            self.stats["unknown_symbol"] += 1
            return
        self.stats["trades"] += 1
        put = self._put
        ts = trade.ts_ns
        put(st.s_ti, st.ti.update(trade.qty, not trade.buyer_is_maker), ts, symbol,
            "trade_imbalance")
        put(st.s_roll, st.roll.update(trade.price), ts, symbol, "roll_spread")
        if st.burst.on_trade(ts):
            st.put_burst(ts, put)
        bars = st.bars
        if bars is not None and -1e100 <= trade.price <= 1e100 and 0.0 <= trade.qty <= 1e100:
            bars.update(trade)     # (NaN fails the comparisons: it never reaches a bar)

    def on_bar(self, symbol: str, bar: Bar) -> None:
        """One completed bar (see the module docstring for who calls this)."""
        if not self._enabled:
            return
        st = self._sym.get(symbol)
        if st is None:
            self.stats["unknown_symbol"] += 1
            return
        self.stats["bars"] += 1
        put = self._put
        ts = bar.end_ns
        c, h, lo = bar.close, bar.high, bar.low
        sl = st.slot
        put(sl["ema"], st.ema.update(c), ts, symbol, "ema")
        put(sl["sma"], st.sma.update(c), ts, symbol, "sma")
        put(sl["rsi"], st.rsi.update(c), ts, symbol, "rsi")
        m = st.macd
        m.update(c)
        put(sl["macd"], m.macd, ts, symbol, "macd")
        put(sl["macd_signal"], m.signal, ts, symbol, "macd_signal")
        put(sl["macd_hist"], m.hist, ts, symbol, "macd_hist")
        put(sl["atr"], st.atr.update(h, lo, c), ts, symbol, "atr")
        bb = st.bb
        bb.update(c)
        put(sl["bb_mid"], bb.mid, ts, symbol, "bb_mid")
        put(sl["bb_upper"], bb.upper, ts, symbol, "bb_upper")
        put(sl["bb_lower"], bb.lower, ts, symbol, "bb_lower")
        qv, v = bar.quote_volume, bar.volume
        put(sl["vwap"], st.vwap.update(qv, v), ts, symbol, "vwap")
        r = st.ret.update(c)
        if r is not None:
            st.rets.append(r)
            st.nret += 1
            put(sl["ewma_vol"], st.ewma.update(r), ts, symbol, "ewma_vol")
            put(sl["realised_vol"], st.rv.update(r), ts, symbol, "realised_vol")
            put(sl["garch_vol"], st.garch.update(r), ts, symbol, "garch_vol")
        put(sl["vpin"], st.vpin.update(c, v * st.contract_usd if st.contract_usd else qv), ts,
            symbol, "vpin")
        vw = qv / v if v > 0.0 else c
        put(sl["kyle_lambda"], st.kyle.update(c, (bar.buy_volume - bar.sell_volume) * vw),
            ts, symbol, "kyle_lambda")
        put(sl["cs_spread"], st.cs.update(h, lo, c), ts, symbol, "cs_spread")
        put(sl["amihud"], st.amihud.update(c, qv), ts, symbol, "amihud")

    def on_own_fill(self, fill: Any) -> None:
        """One of our fills (`daemon.execution.orders.Fill`): starts its adverse-selection
        measurement at fill.ts_ns against the last mid seen."""
        if not self._enabled:
            return
        st = self._sym.get(fill.symbol)
        if st is None:
            self.stats["unknown_symbol"] += 1
            return
        self.stats["fills"] += 1
        st.adverse.on_fill(fill.ts_ns, fill.side.sign)

    def set_garch_params(self, symbol: str, omega: float, alpha: float, beta: float, *,
                         ts_ns: int, sigma2: float | None = None, scale: float = 1.0) -> None:
        """A new GARCH(1,1) fit for `symbol` (from the heavy-analytics worker): the streaming
        forecast continues from `sigma2` or the unconditional variance (see volatility.py).
        Raises KeyError for an unknown symbol, ValueError for unusable parameters."""
        st = self._sym[symbol]
        st.garch.set_params(omega, alpha, beta, ts_ns=ts_ns, sigma2=sigma2, scale=scale)
        self._put(st.slot["garch_vol"], st.garch.value, ts_ns, symbol, "garch_vol")

    def garch_window(self, symbol: str) -> tuple[int, list[float]]:
        """The last `garch_window_bars` bar log returns of `symbol` (oldest first) for the
        heavy-analytics GARCH fit, and a sequence number to hand back with the fit."""
        st = self._sym[symbol]
        return st.nret, list(st.rets)

    def set_garch_fit(self, symbol: str, fit: Any, *, upto: int, ts_ns: int) -> int:
        """Take a fit (a `daemon.analytics.garch.GarchFit`: omega, alpha, beta, mu,
        next_variance) made on the window `garch_window` returned with sequence number
        `upto`, and roll its forecast forward over the returns that arrived since. Returns
        how many returns were rolled over. Raises KeyError for an unknown symbol,
        ValueError for unusable parameters or a fit older than the kept returns."""
        st = self._sym[symbol]
        behind = st.nret - upto
        if behind < 0 or behind > len(st.rets):
            raise ValueError(f"GARCH fit for {symbol} is for return #{upto}; have "
                             f"#{st.nret} and only the last {len(st.rets)} returns kept")
        g = st.garch
        g.set_params(float(fit.omega), float(fit.alpha), float(fit.beta), ts_ns=ts_ns,
                     sigma2=float(fit.next_variance), mu=float(getattr(fit, "mu", 0.0)))
        if behind:
            rets = st.rets
            for i in range(len(rets) - behind, len(rets)):
                g.update(rets[i])
        self._put(st.slot["garch_vol"], g.value, ts_ns, symbol, "garch_vol")
        return behind

    def finish(self) -> None:
        """End of a replay: emit the engine's open bars (never needed live)."""
        for st in self._sym.values():
            if st.bars is not None:
                st.bars.finish()

    # -- reading ---------------------------------------------------------------------------
    def get(self, symbol: str, name: str) -> FeatureValue:
        return self.store.get(symbol, name)

    def value(self, symbol: str, name: str) -> float | None:
        """The latest value, None when not ready (`get(...).value`, nothing built)."""
        return self.store.value(symbol, name)

    def status(self) -> dict[str, dict[str, dict[str, Any]]]:
        """JSON-able: symbol -> feature -> {"value", "ts_ns", "ready"}."""
        return self.store.snapshot()

    def registry(self) -> list[dict[str, Any]]:
        return self.store.registry()
