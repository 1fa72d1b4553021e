"""[quality]: defaults load, and the meaning checks name the keys that contradict."""
from __future__ import annotations

import pytest

from daemon import config


def _load(tmp_path, body: str):
    f = tmp_path / "bot4.toml"
    f.write_text(body)
    return config.load(f, environ={})


def test_defaults_and_an_override(tmp_path):
    q = config.load(None, environ={}).quality
    assert (q.score_min, q.score_breaker_below, q.score_action, q.drift_action) == (
        0.8, 0.5, "reducing", "off")
    q = _load(tmp_path, "[quality]\nkalman_action = \"breaker\"\n").quality
    assert q.kalman_action == "breaker"
    q = config.load(None, environ={"BOT4__QUALITY__DRIFT_ACTION": "reducing"}).quality
    assert q.drift_action == "reducing"


@pytest.mark.parametrize("body, words", [
    ("[quality]\nscore_breaker_below = 0.9\n",
     ["score_breaker_below", "score_min", "must be below"]),
    ("[quality]\ndrift_live = 700\n", ["drift_live", "drift_reference"]),
    ("[quality]\ndrift_bins = 100\n", ["drift_bins", "drift_live"]),
    ("[quality]\nbenford_action = \"halted\"\n", ["[quality] benford_action"]),
    ("[quality]\nkalman_z = 1\n", ["[quality] kalman_z"]),
    ("[quality]\nbenford_windw = 5\n", ["benford_windw", "unknown key"]),
])
def test_contradictions_are_config_errors(tmp_path, body, words):
    with pytest.raises(config.ConfigError) as e:
        _load(tmp_path, body)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
