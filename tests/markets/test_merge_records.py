"""merge_records: several captures of different markets as one stream by receive time,
each record tagged with its source's instrument-id prefix. On the two shared recordings
that overlap (spot and USD-M BTCUSDT, 2024-08-08 23:54-23:59 UTC) and on hand-made ties."""
from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from daemon.market.capture import CaptureReader, merge_records
from daemon.market.instruments import captures_by_market
from tests.test_paper_venue import DATA_DIR

SPOT = DATA_DIR / "binance" / "spot_btcusdt_20240808.gz"
USDM = DATA_DIR / "binance" / "usdm_btcusdt_20240808.gz"


def raw_lines(path: Path) -> list[tuple[int, bytes]]:
    """The file's lines read independently of CaptureReader: (ns, payload)."""
    out = []
    with gzip.open(path, "rb") as f:
        for line in f:
            ns, _, raw = line.rstrip(b"\n").partition(b" ")
            out.append((int(ns), raw))
    return out


@pytest.mark.skipif(not (SPOT.is_file() and USDM.is_file()),
                    reason=f"shared captures not found under {DATA_DIR} (set BOT4_DATA_DIR)")
def test_merge_two_real_captures_of_different_markets() -> None:
    groups = captures_by_market([SPOT, USDM], "spot")
    assert groups == [("", [str(SPOT)]), ("usdm:", [str(USDM)])]
    sources = [(prefix, CaptureReader(paths)) for prefix, paths in groups]
    merged = list(merge_records(sources))
    spot, usdm = raw_lines(SPOT), raw_lines(USDM)
    # Every line of both, nothing else, each with its own source's prefix.
    assert len(merged) == len(spot) + len(usdm) == 41_249 + 93_954
    assert Counter(merged) == Counter([(ns, raw, "") for ns, raw in spot]
                                      + [(ns, raw, "usdm:") for ns, raw in usdm])
    # Non-decreasing receive time over the whole stream.
    ts = [ns for ns, _, _ in merged]
    assert all(a <= b for a, b in zip(ts, ts[1:]))
    # Each source's own order is kept, and the two really interleave (they overlap).
    assert [(ns, raw) for ns, raw, p in merged if p == ""] == spot
    assert [(ns, raw) for ns, raw, p in merged if p == "usdm:"] == usdm
    switches = sum(1 for a, b in zip(merged, merged[1:]) if a[2] != b[2])
    assert switches > 1000
    # The USD-M stream's payloads are futures depth ("pu"), spot's are not.
    assert all(b'"pu":' not in raw for _, raw, p in merged if p == "" and b"depthUpdate" in raw)


def test_ties_keep_source_order_and_each_source_its_own_order() -> None:
    a = [(1, b"a1"), (5, b"a5"), (5, b"a5b"), (9, b"a9")]
    b = [(0, b"b0"), (5, b"b5"), (5, b"b5b"), (12, b"b12")]
    c = [(5, b"c5")]
    got = list(merge_records([("", iter(a)), ("usdm:", iter(b)), ("coinm:", iter(c))]))
    assert got == [(0, b"b0", "usdm:"), (1, b"a1", ""), (5, b"a5", ""), (5, b"a5b", ""),
                   (5, b"b5", "usdm:"), (5, b"b5b", "usdm:"), (5, b"c5", "coinm:"),
                   (9, b"a9", ""), (12, b"b12", "usdm:")]
    # Order of the sources decides ties, not the bytes.
    got = list(merge_records([("usdm:", iter(b)), ("", iter(a))]))
    assert [r for r in got if r[0] == 5] == [(5, b"b5", "usdm:"), (5, b"b5b", "usdm:"),
                                             (5, b"a5", ""), (5, b"a5b", "")]


def test_merge_is_lazy_and_handles_empty_sources() -> None:
    pulled: list[int] = []

    def gen(n: int):
        for i in range(n):
            pulled.append(i)
            yield (i * 10, b"x%d" % i)

    it = merge_records([("", gen(1000)), ("usdm:", iter([])), ("coinm:", gen(0))])
    assert next(it) == (0, b"x0", "")
    assert len(pulled) <= 2, "holds one record per source, not the whole capture"
    assert list(merge_records([])) == []
    assert list(merge_records([("", iter([]))])) == []
