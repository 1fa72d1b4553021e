"""[features] in the config: defaults load, the cross-key checks name the keys, and the
engine is built from a loaded config."""
from __future__ import annotations

import pytest

from daemon import config
from daemon.features.engine import FeatureEngine


def _load(**env: str) -> config.Config:
    return config.load(None, environ={f"BOT4__FEATURES__{k.upper()}": v for k, v in env.items()})


def test_defaults_and_overrides() -> None:
    f = _load().features
    assert f.enabled and f.bar_interval_s == 60.0 and f.ewma_lambda == 0.94
    assert f.adverse_horizons_s == [1.0, 5.0, 30.0] and f.history_rows == 0
    f = _load(adverse_horizons_s="[1, 5]", bar_interval_s="0").features
    assert f.adverse_horizons_s == [1.0, 5.0] and f.bar_interval_s == 0.0


@pytest.mark.parametrize("env,msg", [
    ({"macd_fast": "26"}, "macd_fast = 26 must be below macd_slow = 26"),
    ({"adverse_horizons_s": "[1, 1]"}, "must be distinct positive seconds"),
    ({"adverse_horizons_s": "[-1]"}, "must be distinct positive seconds"),
    ({"adverse_horizons_s": "[nan]"}, "adverse_horizons_s"),
    ({"burst_max_gap_s": "0.5"}, "burst_max_gap_s = 0.5 is below burst_bucket_s = 1"),
    ({"ewma_lambda": "1"}, "ewma_lambda"),
    ({"vpin_buckets": "0"}, "vpin_buckets"),
    ({"garch_window_bars": "10"}, "garch_window_bars"),
    ({"no_such_key": "1"}, "no_such_key"),
])
def test_bad_features_config_is_refused_with_the_key(env: dict[str, str], msg: str) -> None:
    with pytest.raises(config.ConfigError, match="features") as e:
        _load(**env)
    assert msg in str(e.value)


def test_engine_from_loaded_config() -> None:
    cfg = _load(ema_period="3", adverse_horizons_s="[2]")
    eng = FeatureEngine(cfg.features, cfg.market.symbols)
    reg = {r["name"]: r for r in eng.registry()}
    assert reg["ema"]["params"]["period"] == 3 and "adverse_2s" in reg
    assert set(eng.status()) == set(cfg.market.symbols)
