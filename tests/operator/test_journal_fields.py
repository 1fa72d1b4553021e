"""Structured journald fields: a real `bot4d --sim` whose stderr is "the journal stream"
(JOURNAL_STREAM names it) logs through systemd-python's JournalHandler into a real
AF_UNIX datagram socket at journald's path, in journald's native protocol; every record
carries BOT4_STATE, records naming an order carry BOT4_ORDER_ID, so
`journalctl -u bot4d BOT4_STATE=estop` works. The human text stays as it was.

Runs only where no journald owns /run/systemd/journal/socket and we may create it (the
development VM and CI containers); elsewhere it is skipped with the reason."""
from __future__ import annotations

import os
import re
import socket
import struct
import threading
from pathlib import Path

import pytest

from tests.daemon_harness import REPO, wait_for

DATA = Path(os.environ.get("BOT4_DATA_DIR", REPO.parent / "shared" / "data"))
SPOT = DATA / "binance" / "spot_btcusdt_20240808.gz"
JOURNAL_DIR = Path("/run/systemd/journal")
JOURNAL_SOCKET = JOURNAL_DIR / "socket"


def _parse(dgram: bytes) -> dict[str, str]:
    """journald's native protocol: KEY=VALUE\\n, or KEY\\n<le64 size>VALUE\\n (binary safe)."""
    out, i = {}, 0
    while i < len(dgram):
        nl = dgram.index(b"\n", i)
        line = dgram[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            out[k.decode()] = v.decode("utf-8", "replace")
            i = nl + 1
        else:
            size = struct.unpack("<Q", dgram[nl + 1:nl + 9])[0]
            out[line.decode()] = dgram[nl + 9:nl + 9 + size].decode("utf-8", "replace")
            i = nl + 9 + size + 1
    return out


@pytest.fixture
def journal_socket():
    if not SPOT.is_file():
        pytest.skip(f"shared captures not found under {DATA}")
    try:
        import systemd.journal  # noqa: F401
    except ImportError:
        pytest.skip("systemd-python is not installed (the systemd extra)")
    if JOURNAL_SOCKET.exists():
        pytest.skip("a journald owns /run/systemd/journal/socket here; the fields are "
                    "checked on machines without one")
    try:
        made_dir = not JOURNAL_DIR.exists()
        JOURNAL_DIR.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(JOURNAL_SOCKET))
    except OSError as e:   # not root, or another run took the path a moment ago
        pytest.skip(f"cannot stand in for journald here: {e}")
    sock.settimeout(0.05)
    records: list[dict[str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def reader() -> None:
        # Like journald, read all the time: a full socket buffer blocks the sender.
        while not stop.is_set():
            try:
                rec = _parse(sock.recv(1 << 20))
            except (socket.timeout, BlockingIOError):
                continue
            with lock:
                records.append(rec)
    t = threading.Thread(target=reader, daemon=True)
    t.start()

    def drain() -> list[dict[str, str]]:
        with lock:
            return list(records)
    yield drain
    stop.set()
    t.join(5)
    sock.close()
    JOURNAL_SOCKET.unlink(missing_ok=True)
    if made_dir:
        JOURNAL_DIR.rmdir()


def test_every_record_has_bot4_state_and_orders_have_their_id(start_daemon, tmp_path,
                                                               journal_socket):
    sub = tmp_path / "d"
    sub.mkdir()
    log = sub / "bot4d.log"
    log.touch()   # the harness appends to this file: it is the daemon's stderr
    st = os.stat(log)
    d = start_daemon("--replay", str(SPOT), "--replay-speed", "0", sub="d",
                     env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
                          "BOT4__DAEMON__AUTO_START": "true",
                          "BOT4__STRATEGY__QUOTER__HALF_SPREAD_BPS": "0.5",
                          "BOT4__STRATEGY__QUOTER__REQUOTE_BPS": "0.5", "BOT4__RISK__MAX_POSITION": "1"})
    d.wait_ready()
    wait_for(lambda: d.status()["orders"]["fills"] >= 1, 60, what="a fill")
    assert d.ctl("sim", "estop", "press").returncode == 0

    def estop_record():
        return next((r for r in journal_socket() if "-> estop" in r.get("MESSAGE", "")), None)
    rec = wait_for(estop_record, 10, what="the e-stop line in the journal")
    assert rec["BOT4_STATE"] == "estop" and rec["PRIORITY"] == "4"
    assert rec["SYSLOG_IDENTIFIER"] == "bot4d"
    # (trading, or finished when the replay ran out first on a fast machine)
    assert re.match(r"bot4d: state (trading|finished) -> estop: e-stop pressed",
                    rec["MESSAGE"]), rec["MESSAGE"]
    assert d.terminate() == 0
    records = journal_socket()
    assert records[0]["MESSAGE"].endswith("logging to journal")
    # From the moment the supervisor registers its state (the first lines of boot come
    # before it: "logging to journal", "booting on ...") every record carries it.
    first = next(i for i, r in enumerate(records) if "BOT4_STATE" in r)
    assert first <= 2, records[:first]
    assert all("BOT4_STATE" in r for r in records[first:])
    states = {r["BOT4_STATE"] for r in records[first:]}
    assert {"booting", "trading", "estop"} <= states
    ids = re.compile(r"\bb4-[A-Za-z0-9]+-+\d+\b")
    named = [r for r in records if ids.search(r["MESSAGE"])]
    assert named, "\n".join(r["MESSAGE"] for r in records)
    for r in named:
        assert r["BOT4_ORDER_ID"] == ids.search(r["MESSAGE"]).group(0)
    fill = next(r for r in records if r.get("BOT4_EVENT") == "fill")
    assert fill["BOT4_SYMBOL"] == "BTCUSDT" and fill["MESSAGE"].startswith("bot4d.operator: fill b4-")
    assert "state trading -> estop" not in d.log   # it went to the journal, not the file
