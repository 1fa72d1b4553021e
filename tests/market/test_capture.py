"""CaptureReader / CaptureRecorder: exact round trip, damage handling, rotation, pacing."""
from __future__ import annotations

import asyncio
import gzip
import logging
import re
import time
import zlib
from pathlib import Path

import pytest

from daemon.market.capture import CaptureReader, CaptureRecorder, list_captures

SPOT_BTC = ["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"]


def original_lines(path: Path) -> list[bytes]:
    text = gzip.decompress(path.read_bytes())
    assert text.endswith(b"\n")
    return text[:-1].split(b"\n")


def as_lines(records: list[tuple[int, bytes]]) -> list[bytes]:
    return [b"%d %b" % (ns, raw) for ns, raw in records]


def write_gz(path: Path, text: bytes) -> Path:
    path.write_bytes(gzip.compress(text))
    return path


def clean(stats: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in stats.items() if v and k not in ("files", "lines")}


# -- reading the shared captures ----------------------------------------------------------

def test_reads_two_files_as_one_ordered_stream(binance_dir: Path) -> None:
    paths = [binance_dir / f for f in SPOT_BTC]
    reader = CaptureReader(paths)
    records = list(reader)
    assert len(records) == 41_249 + 58_325
    assert reader.stats["lines"] == len(records)
    assert reader.stats["files"] == 2
    assert clean(reader.stats) == {}
    expected = original_lines(paths[0]) + original_lines(paths[1])
    assert as_lines(records) == expected
    ns = [r[0] for r in records]
    assert ns == sorted(ns)
    assert records[0][0] == 1723161253937085768
    assert records[0][1].startswith(b'{"stream":"btcusdt@depth@100ms"')


def test_missing_file_is_reported_up_front(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.gz"):
        CaptureReader([tmp_path / "nope.gz"])


def test_stats_count_lines_when_consumer_stops_early(binance_dir: Path) -> None:
    reader = CaptureReader(binance_dir / SPOT_BTC[0])
    it = iter(reader)
    for _ in range(10):
        next(it)
    it.close()
    assert reader.stats["lines"] == 10


# -- exact round trip through the recorder -------------------------------------------------

def test_round_trip_is_byte_identical(binance_dir: Path, tmp_path: Path) -> None:
    src = binance_dir / SPOT_BTC[0]
    with CaptureRecorder(tmp_path, "spot_btcusdt", rotate_bytes=None,
                         rotate_seconds=None) as rec:
        for ns, raw in CaptureReader(src):
            rec.write(ns, raw)
    assert len(rec.files) == 1
    assert rec.files[0].name == "spot_btcusdt_20240808T235413_0000.gz"
    original = gzip.decompress(src.read_bytes())
    assert gzip.decompress(rec.files[0].read_bytes()) == original
    back = CaptureReader(rec.files)
    assert as_lines(list(back)) == original[:-1].split(b"\n")
    assert clean(back.stats) == {}


def test_round_trip_with_rotation_is_byte_identical(binance_dir: Path, tmp_path: Path) -> None:
    paths = [binance_dir / f for f in SPOT_BTC]
    rotate = 2_000_000
    with CaptureRecorder(tmp_path, "spot_btcusdt", rotate_bytes=rotate,
                         rotate_seconds=None) as rec:
        for ns, raw in CaptureReader(paths):
            rec.write(ns, raw)
    assert len(rec.files) > 5
    pieces = [gzip.decompress(p.read_bytes()) for p in rec.files]  # each a complete gzip
    assert all(0 < len(p) <= rotate for p in pieces)
    assert all(p.endswith(b"\n") for p in pieces)
    original = b"".join(gzip.decompress(p.read_bytes()) for p in paths)
    assert b"".join(pieces) == original
    assert list_captures(tmp_path, "spot_btcusdt") == rec.files


def test_rotation_by_message_time(binance_dir: Path, tmp_path: Path) -> None:
    src = binance_dir / SPOT_BTC[0]   # 23:54:13 .. 23:59:59
    with CaptureRecorder(tmp_path, "btc", rotate_bytes=None, rotate_seconds=60) as rec:
        for ns, raw in CaptureReader(src):
            rec.write(ns, raw)
    assert len(rec.files) == 6
    pat = re.compile(r"^btc_(\d{8}T\d{6})_(\d{4})\.gz$")
    for i, p in enumerate(rec.files):
        m = pat.match(p.name)
        assert m and int(m[2]) == i
        recs = list(CaptureReader(p))
        first, last = recs[0][0], recs[-1][0]
        assert time.strftime("%Y%m%dT%H%M%S", time.gmtime(first // 10**9)) == m[1]
        assert last - first < 60 * 10**9
    assert as_lines(list(CaptureReader(rec.files))) == original_lines(src)


def test_recorder_never_overwrites(tmp_path: Path) -> None:
    ns = 1723161253937085768
    taken = tmp_path / "x_20240808T235413_0000.gz"
    taken.write_bytes(b"precious")
    with CaptureRecorder(tmp_path, "x") as rec:
        rec.write(ns, b"{}")
    assert taken.read_bytes() == b"precious"
    assert rec.files == [tmp_path / "x_20240808T235413_0001.gz"]
    assert gzip.decompress(rec.files[0].read_bytes()) == b"%d {}\n" % ns
    # A restarted recorder in the same second continues the sequence: name order stays
    # write order for list_captures.
    with CaptureRecorder(tmp_path, "x") as again:
        again.write(ns + 1, b"{}")
    assert again.files == [tmp_path / "x_20240808T235413_0002.gz"]
    assert list_captures(tmp_path, "x") == [taken, *rec.files, *again.files]


def test_flush_makes_lines_readable_before_close(tmp_path: Path) -> None:
    rec = CaptureRecorder(tmp_path, "live", flush_seconds=3600)
    base = 1_700_000_000_000_000_000
    for i in range(100):
        rec.write(base + i, b'{"i":%d}' % i)
    # Nothing flushed yet: the compressor holds everything in memory.
    early = CaptureReader(rec.files)
    assert list(early) == []
    rec.flush()
    mid = CaptureReader(rec.files)
    assert [r[0] - base for r in mid] == list(range(100))
    assert mid.stats["truncated_gzip"] == 1  # still open: no gzip trailer yet
    rec.close()
    done = CaptureReader(rec.files)
    assert len(list(done)) == 100 and clean(done.stats) == {}


def test_automatic_flush_by_message_time(tmp_path: Path) -> None:
    rec = CaptureRecorder(tmp_path, "live", flush_seconds=1.0)
    base = 1_700_000_000_000_000_000
    for i in range(30):                       # 0.1 s apart: flushes at 1 s, 2 s
        rec.write(base + i * 100_000_000, b"{}")
    got = list(CaptureReader(rec.files))
    assert len(got) == 21                     # up to and including the line at 2.0 s
    rec.close()
    with pytest.raises(ValueError):
        rec.write(base, b"{}")


def test_recorder_rejects_embedded_newline(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    with CaptureRecorder(tmp_path, "x") as rec:
        rec.write(1, b'{"a":1}')
        rec.write(2, b'{"a":\n2}')
    assert rec.stats["rejected_newline"] == 1
    assert gzip.decompress(rec.files[0].read_bytes()) == b'1 {"a":1}\n'
    assert "rejected_newline" in caplog.text


# -- damaged input -------------------------------------------------------------------------

def test_malformed_lines_are_counted_logged_and_skipped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = [b"", b"nospace", b"12a4 {}", b"-5 {}", b"123 ", b" 123 {}"] * 500
    text = b"\n".join([b"1 {\"ok\":1}", *bad, b"2 {\"ok\":2}"]) + b"\n"
    p = write_gz(tmp_path / "bad.gz", text)
    caplog.set_level(logging.WARNING)
    reader = CaptureReader(p)
    assert list(reader) == [(1, b'{"ok":1}'), (2, b'{"ok":2}')]
    assert clean(reader.stats) == {"empty_line": 500, "no_space": 500, "bad_ns": 1500,
                                   "empty_payload": 500}
    # Rate-limited: one line per kind, not 3000 lines.
    assert len(caplog.records) == 4


def test_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    p = write_gz(tmp_path / "a.gz", b'1 {"a":1}\n2 {"a":2}')
    reader = CaptureReader(p)
    assert list(reader) == [(1, b'{"a":1}'), (2, b'{"a":2}')]
    assert clean(reader.stats) == {}


def test_multi_member_gzip(tmp_path: Path) -> None:
    p = tmp_path / "m.gz"
    p.write_bytes(gzip.compress(b"1 {}\n2 {}\n") + gzip.compress(b"3 {}\n")
                  + gzip.compress(b""))
    reader = CaptureReader(p)
    assert [r[0] for r in reader] == [1, 2, 3]
    assert clean(reader.stats) == {}


def test_multi_member_boundary_on_chunk_edge(tmp_path: Path) -> None:
    # Members whose boundaries fall on read-chunk edges and inside the gzip header.
    members = [gzip.compress(b"".join(b"%d {}\n" % (i * 1000 + j) for j in range(300)))
               for i in range(40)]
    p = tmp_path / "m.gz"
    p.write_bytes(b"".join(members))
    reader = CaptureReader(p)
    reader.SYNC_CHUNK = len(members[0])  # the first member ends exactly on a chunk edge
    got = [r[0] for r in reader]
    assert got == [i * 1000 + j for i in range(40) for j in range(300)]
    for chunk in (7, 10, 13):
        r2 = CaptureReader(p)
        r2.SYNC_CHUNK = chunk
        assert [r[0] for r in r2] == got
        assert clean(r2.stats) == {}


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_gzip_keeps_complete_lines(binance_dir: Path, tmp_path: Path,
                                             cut: float) -> None:
    src = binance_dir / SPOT_BTC[0]
    data = src.read_bytes()
    p = tmp_path / "cut.gz"
    p.write_bytes(data[: int(len(data) * cut)])
    nxt = tmp_path / "next.gz"
    write_gz(nxt, b"9 {}\n")
    reader = CaptureReader([p, nxt])
    records = list(reader)
    assert records[-1] == (9, b"{}")              # carries on with the next file
    got = as_lines(records[:-1])
    full = original_lines(src)
    assert 0 < len(got) < len(full)
    assert got == full[: len(got)]                # an exact prefix: no half line leaked
    assert reader.stats["truncated_gzip"] == 1
    assert reader.stats["corrupt_gzip"] == 0
    assert reader.stats["partial_line"] <= 1


def damaged_copy(src: Path, dst: Path, fill: int, n: int) -> bytes:
    data = bytearray(src.read_bytes())
    at = len(data) // 2
    data[at: at + n] = bytes([fill]) * n
    dst.write_bytes(bytes(data))
    return bytes(data)


def inflate_error(data: bytes) -> str:
    try:
        zlib.decompress(data, 31)
    except zlib.error as e:
        return str(e)
    return ""


def test_corrupt_gzip_keeps_what_precedes_the_damage(binance_dir: Path,
                                                     tmp_path: Path) -> None:
    src = binance_dir / SPOT_BTC[0]
    p = tmp_path / "bad.gz"
    # 16 bytes of 0xFF mid-file make inflate fail on the spot ("invalid block type").
    assert "invalid block type" in inflate_error(damaged_copy(src, p, 0xFF, 16))
    nxt = write_gz(tmp_path / "next.gz", b"9 {}\n")
    reader = CaptureReader([p, nxt])
    records = list(reader)
    assert records[-1] == (9, b"{}")              # carries on with the next file
    got = as_lines(records[:-1])
    full = original_lines(src)
    assert got == full[: len(got)]
    # Salvage in 4 KiB pieces keeps nearly everything before the damage, not only the
    # whole 256 KiB chunks that preceded it.
    assert len(got) > 0.45 * len(full)
    assert reader.stats["corrupt_gzip"] == 1


def test_damage_inflate_accepts_is_caught_by_the_crc(binance_dir: Path,
                                                     tmp_path: Path) -> None:
    """Deflate often decodes damaged bytes into garbage without complaint; only the CRC at
    the member's end shows it. A streaming reader has already passed on those lines: the
    reader must still not raise, must count the damage, and what precedes it is exact."""
    src = binance_dir / SPOT_BTC[0]
    p = tmp_path / "bad.gz"
    assert "incorrect data check" in inflate_error(damaged_copy(src, p, 0x00, 64))
    reader = CaptureReader(p)
    got = as_lines(list(reader))
    full = original_lines(src)
    same = 0
    for a, b in zip(got, full):
        if a != b:
            break
        same += 1
    assert same > 0.45 * len(full)
    assert got != full
    assert reader.stats["corrupt_gzip"] == 1


def test_bad_crc_is_corrupt(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(b"".join(b"%d {}\n" % i for i in range(1, 20000))))
    data[-8] ^= 0xFF                              # CRC32 in the trailer
    p = tmp_path / "crc.gz"
    p.write_bytes(bytes(data))
    reader = CaptureReader(p)
    got = [r[0] for r in reader]
    assert got == list(range(1, len(got) + 1))
    assert reader.stats["corrupt_gzip"] == 1


def test_garbage_and_empty_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"this is not gzip at all\n")
    empty = tmp_path / "empty.gz"
    empty.write_bytes(b"")
    good = write_gz(tmp_path / "good.gz", b"5 {}\n")
    reader = CaptureReader([junk, empty, good])
    assert list(reader) == [(5, b"{}")]
    assert clean(reader.stats) == {"corrupt_gzip": 1, "empty_file": 1}


# -- pacing --------------------------------------------------------------------------------

def paced_file(tmp_path: Path, n: int = 11, step_ns: int = 100_000_000) -> Path:
    base = 1_700_000_000_000_000_000
    return write_gz(tmp_path / "p.gz", b"".join(b"%d {}\n" % (base + i * step_ns)
                                                for i in range(n)))


class VirtualClock:
    """Stands in for the reader's `time` module: sleeping advances the clock instead of
    waiting, and every clock read costs `read_cost_ns` of virtual time. Pacing is then
    checked by what the reader asks for, not by how fast this machine is."""

    def __init__(self, read_cost_ns: int = 0) -> None:
        self.now_ns = 1_000_000_000
        self.read_cost_ns = read_cost_ns
        self.slept_ns = 0

    def monotonic_ns(self) -> int:
        self.now_ns += self.read_cost_ns
        return self.now_ns

    def __getattr__(self, name: str):   # wall-clock reads and the rest: the real module
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        self.slept_ns += int(seconds * 1e9)
        self.now_ns += int(seconds * 1e9)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await _real_asyncio_sleep(0)


_real_asyncio_sleep = asyncio.sleep


@pytest.fixture
def vclock(monkeypatch: pytest.MonkeyPatch) -> VirtualClock:
    import daemon.market.capture as capture_mod
    clock = VirtualClock()
    monkeypatch.setattr(capture_mod, "time", clock)
    monkeypatch.setattr(capture_mod.asyncio, "sleep", clock.asleep)
    return clock


def test_sync_pacing_follows_receive_times(tmp_path: Path, vclock: VirtualClock) -> None:
    p = paced_file(tmp_path)                     # 1.0 s of data
    assert len(list(CaptureReader(p, speed=10.0))) == 11
    assert vclock.slept_ns == pytest.approx(100_000_000, abs=1_000_000)   # 1.0 s / 10
    vclock.slept_ns = 0
    list(CaptureReader(p))
    assert vclock.slept_ns == 0                  # speed 0: no sleeping


def test_async_pacing_follows_receive_times(tmp_path: Path, vclock: VirtualClock) -> None:
    p = paced_file(tmp_path)

    async def run() -> int:
        n = 0
        async for _ in CaptureReader(p, speed=5.0):
            n += 1
        return n

    assert asyncio.run(run()) == 11
    assert vclock.slept_ns == pytest.approx(200_000_000, abs=1_000_000)   # 1.0 s / 5


def test_async_full_speed_does_not_starve_the_loop(binance_dir: Path, vclock: VirtualClock
                                                   ) -> None:
    """Another task (think e-stop handling) must get the loop at least every max_block of
    the reader's own work, however slow the machine."""
    vclock.read_cost_ns = 100_000      # each clock read: 0.1 ms of "work" between records

    async def run() -> tuple[int, list[int]]:
        ticks: list[int] = []
        done = False
        n = 0

        async def ticker() -> None:
            while not done:
                ticks.append(n)
                await _real_asyncio_sleep(0)

        task = asyncio.create_task(ticker())
        await _real_asyncio_sleep(0)
        async for _ in CaptureReader(binance_dir / SPOT_BTC[0], max_block_ms=2.0):
            n += 1
        done = True
        await task
        return n, ticks

    n, ticks = asyncio.run(run())
    assert n == 41_249
    # The reader looks at the clock every 16 records and yields once 2 ms have passed:
    # with 0.1 ms per read that is every 16 x 20 = 320 records at most.
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) >= n // 320 and max(gaps) <= 320, \
        f"the loop went {max(gaps)} records without a turn"
