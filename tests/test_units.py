"""Checks of units/bot4d.service and the shipped etc/ snippets, without a running systemd.

- `systemd-analyze verify` on a copy whose ExecStart/ExecStopPost binaries exist (verify
  fails on a missing binary), with a control showing it does catch a broken copy.
- `systemd-analyze security --offline=yes`: the overall exposure must stay at or below
  SECURITY_THRESHOLD (measured 1.5 "OK" with systemd 252 on Debian 12; the margin absorbs
  small scoring drift, not the loss of a real hardening line).
- The directives the daemon and lgpio rely on are present, and none that would hide GPIO.
- The runtime (numpy, orjson, lgpio, gpiozero, sqlite, asyncio, systemd-python, every
  module of `daemon` and `hw`) is imported and exercised under the same seccomp rules the
  unit asks for — MemoryDenyWriteExecute, RestrictAddressFamilies and the
  SystemCallFilter allow-list, built from the unit file itself — and must behave exactly
  as without them.
- sysusers/tmpfiles snippets are applied to a scratch root with the real tools.

Only the absence of systemd-analyze skips the systemd-dependent tests.
"""
from __future__ import annotations

import ctypes.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "units" / "bot4d.service"
INSTALLED_BIN = "/opt/bot4/venv/bin/bot4d"
SECURITY_THRESHOLD = 2.0
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
ENV_C = dict(os.environ, LC_ALL="C", LANG="C", SYSTEMD_COLORS="0", SYSTEMD_PAGER="")


# --------------------------------------------------------------------------- helpers

def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order; repeated keys kept."""
    entries = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"continuation lines are not used here: {raw!r}"
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {raw!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(entries: list[tuple[str, str, str]], key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in entries if s == section and k == key]


def one(entries: list[tuple[str, str, str]], key: str, section: str = "Service") -> str:
    found = values(entries, key, section)
    assert len(found) == 1, f"[{section}] {key}= set {len(found)} times: {found}"
    return found[0]


def timespan_s(text: str) -> float:
    """systemd time span ("10s", "2min", "1min 30s", "500ms", bare seconds) in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert parts, f"not a time span: {text!r}"
    for number, unit in parts:
        assert unit in units or unit == "", f"unknown time unit in {text!r}"
        total += float(number) * units.get(unit, 1)
    return total


@pytest.fixture(scope="module")
def entries() -> list[tuple[str, str, str]]:
    return unit_entries(UNIT.read_text())


def bot4d_stand_in() -> str:
    """An existing executable to stand in for /opt/bot4/venv/bin/bot4d: this venv's own
    bot4d entry point when installed, else true(1)."""
    candidate = Path(sys.executable).parent / "bot4d"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    true = shutil.which("true")
    assert true, "no true(1) on PATH"
    return true


def unit_copy(tmp_path: Path, exe: str, extra: str = "") -> Path:
    text = UNIT.read_text()
    assert text.count(INSTALLED_BIN) == 2, "ExecStart and ExecStopPost must use the venv bot4d"
    out = tmp_path / "bot4d.service"
    out.write_text(text.replace(INSTALLED_BIN, exe) + extra)
    return out


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, env=ENV_C,
                          timeout=120)


def exposure(unit: Path) -> tuple[float, str]:
    proc = analyze("security", "--offline=yes", "--no-pager", str(unit))
    out = proc.stdout + proc.stderr
    m = re.search(r"Overall exposure level for \S+:\s*(\d+(?:\.\d+)?)\s+(\S+)", out)
    assert m, f"no overall exposure line in systemd-analyze output:\n{out}"
    return float(m.group(1)), out


# --------------------------------------------------------------------------- directives

def test_unit_required_directives(entries: list[tuple[str, str, str]]) -> None:
    assert one(entries, "Type") == "notify"
    assert one(entries, "NotifyAccess") == "main"
    assert one(entries, "ExecStart") == f"{INSTALLED_BIN} run --config /etc/bot4/bot4.toml"
    assert one(entries, "ExecStopPost") == f"{INSTALLED_BIN} stop-post --config /etc/bot4/bot4.toml"
    assert timespan_s(one(entries, "WatchdogSec")) == 10
    assert timespan_s(one(entries, "TimeoutStartSec")) == 60
    assert timespan_s(one(entries, "TimeoutStopSec")) == 30
    assert one(entries, "Restart") == "on-failure"
    assert timespan_s(one(entries, "RestartSec")) == 2
    assert "78" in one(entries, "RestartPreventExitStatus").split()
    assert one(entries, "KillSignal") == "SIGTERM"
    assert one(entries, "WatchdogSignal") == "SIGABRT"
    assert one(entries, "User") == "bot4" and one(entries, "Group") == "bot4"
    assert one(entries, "StateDirectory") == "bot4"
    assert one(entries, "RuntimeDirectory") == "bot4"
    assert one(entries, "RuntimeDirectoryMode") == "0750"
    assert one(entries, "ConfigurationDirectory") == "bot4"
    assert one(entries, "WorkingDirectory") == "%t/bot4"
    assert one(entries, "UMask") == "0027"
    # A start limit that ends a crash loop, including a loop of start timeouts: the window
    # must hold `burst` attempts that each use the whole start timeout plus the delay.
    burst = int(one(entries, "StartLimitBurst", "Unit"))
    interval = timespan_s(one(entries, "StartLimitIntervalSec", "Unit"))
    per_attempt = (timespan_s(one(entries, "TimeoutStartSec"))
                   + timespan_s(one(entries, "RestartSec")))
    assert 3 <= burst <= 10
    assert interval > burst * per_attempt


def test_unit_keeps_gpio_working(entries: list[tuple[str, str, str]]) -> None:
    # FIELD-NOTES: these two hide /dev/gpiochip* and the board revision from lgpio.
    assert values(entries, "PrivateDevices") in ([], ["no"])
    assert "pid" not in values(entries, "ProcSubset")
    assert "gpio" in one(entries, "SupplementaryGroups").split()
    env = [assignment for v in values(entries, "Environment") for assignment in v.split()]
    assert "LG_WD=%t/bot4" in env
    assert "GPIOZERO_PIN_FACTORY=lgpio" in env
    # With a closed device policy every gpiochip must be allowed explicitly, read-write.
    policy = values(entries, "DevicePolicy")
    allow = [tuple(v.split()) for v in values(entries, "DeviceAllow")]
    if policy and policy[-1] in ("closed", "strict"):
        assert ("char-gpiochip", "rw") in allow
    # ProtectProc=invisible only hides other users' /proc/PID; anything stricter that
    # would affect /proc/cpuinfo or /proc/device-tree is not allowed.
    assert values(entries, "ProtectProc") in ([], ["invisible"], ["ptraceable"], ["noaccess"])
    # The lgpio FIFO directory must be writable under ProtectSystem=strict: it is the
    # RuntimeDirectory, which systemd makes writable.
    assert one(entries, "ProtectSystem") == "strict"


def test_unit_hardening_lines(entries: list[tuple[str, str, str]]) -> None:
    expected = {
        "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "ProtectClock": "yes",
        "ProtectHostname": "yes", "RestrictNamespaces": "yes", "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes", "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native", "CapabilityBoundingSet": "",
        "AmbientCapabilities": "", "SystemCallErrorNumber": "EPERM", "LimitCORE": "0",
    }
    for key, value in expected.items():
        assert one(entries, key) == value, key
    assert values(entries, "SystemCallFilter")[0] == "@system-service"
    families = one(entries, "RestrictAddressFamilies").split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)
    assert set(families) <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}


def test_every_hardening_line_is_commented_or_self_evident() -> None:
    # Deliberate choices carry a comment right above them; this keeps the file honest
    # for the ones where a reader would otherwise wonder "why".
    lines = UNIT.read_text().splitlines()
    for key in ("DevicePolicy=", "ProtectProc=", "MemoryDenyWriteExecute=",
                "SystemCallErrorNumber=", "RestrictAddressFamilies=", "CapabilityBoundingSet=",
                "LimitCORE=", "RestrictRealtime=", "ProtectSystem="):
        idx = next(i for i, line in enumerate(lines) if line.startswith(key))
        assert lines[idx - 1].startswith("#"), f"{key} has no comment above it"


# --------------------------------------------------------------------------- systemd-analyze

@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = unit_copy(tmp_path, bot4d_stand_in())
    # --recursive-errors=no: judge our unit, not whatever the host's dependencies say.
    proc = analyze("verify", "--recursive-errors=no", "--man=no", str(unit))
    out = proc.stdout + proc.stderr
    ours = [line for line in out.splitlines() if "bot4d" in line or str(tmp_path) in line]
    assert proc.returncode == 0, out
    assert ours == [], "\n".join(ours)


@needs_analyze
def test_systemd_analyze_verify_catches_a_missing_binary(tmp_path: Path) -> None:
    # The control for the test above: the same check does fail on a broken copy.
    unit = unit_copy(tmp_path, str(tmp_path / "missing" / "bot4d"))
    proc = analyze("verify", "--recursive-errors=no", "--man=no", str(unit))
    assert proc.returncode != 0
    assert "missing/bot4d" in proc.stdout + proc.stderr


@needs_analyze
def test_systemd_analyze_security_score(tmp_path: Path) -> None:
    score, out = exposure(unit_copy(tmp_path, bot4d_stand_in()))
    assert score <= SECURITY_THRESHOLD, out
    # Item lines start with a mark: "✓"/"✗", or "+"/"-" in the C locale used here.
    # PrivateDevices= is the price of GPIO access and must show as the open item it is;
    # the strongest lines must show as closed.
    assert re.search(r"^[✗-] PrivateDevices=", out, re.M), out
    for item in ("MemoryDenyWriteExecute=", "ProtectSystem=", "NoNewPrivileges=",
                 "CapabilityBoundingSet=~CAP_SYS_ADMIN", "RestrictNamespaces=~user"):
        assert re.search(rf"^[✓+] {re.escape(item)}", out, re.M), item


@needs_analyze
def test_security_threshold_is_meaningful(tmp_path: Path) -> None:
    # Control: the same unit without its [Service] hardening block must score far above
    # the threshold, so the threshold is not trivially met.
    text = UNIT.read_text().replace(INSTALLED_BIN, bot4d_stand_in())
    head, sep, tail = text.partition("# ---- hardening")
    assert sep, "hardening block marker missing"
    stripped = head + "\n[Install]\n" + tail.partition("[Install]")[2]
    unit = tmp_path / "bot4d.service"
    unit.write_text(stripped)
    score, out = exposure(unit)
    assert score > SECURITY_THRESHOLD + 2, out


# --------------------------------------------------------------------------- seccomp emulation

_ARCHES = {
    # machine: (AUDIT_ARCH_*, syscall numbers for the MDWE and socket rules)
    "x86_64": (0xC000003E, {"mmap": 9, "mprotect": 10, "pkey_mprotect": 329, "shmat": 30,
                            "socket": 41}),
    "aarch64": (0xC00000B7, {"mmap": 222, "mprotect": 226, "pkey_mprotect": 288, "shmat": 196,
                             "socket": 198}),
}

# Installs, in this order, (1) a raw BPF filter with systemd's MemoryDenyWriteExecute
# rules (mmap with PROT_WRITE|PROT_EXEC, mprotect/pkey_mprotect with PROT_EXEC, shmat
# with SHM_EXEC -> EPERM) and its RestrictAddressFamilies rule (socket() with another
# family -> EAFNOSUPPORT), then (2) an allow-list of system calls via libseccomp with
# EPERM for everything else, like SystemCallFilter= with SystemCallErrorNumber=EPERM.
# Then execs the payload. Filters survive execve, as under systemd.
SECCOMP_EXEC = r'''
import ctypes, errno, json, os, socket, struct, sys

cfg = json.loads(os.environ.pop("BOT4_SECCOMP"))
LD, JEQ, JSET, AND, RET = 0x20, 0x15, 0x45, 0x54, 0x06   # BPF_LD|W|ABS, JMP|JEQ|K, ...
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
ARG0, ARG2 = 16, 32                                       # offsetof(seccomp_data, args[i])

prog = []
def op(code, k, jt=None, jf=None): prog.append([code, jt, jf, k])
def label(name): prog.append(name)
nr = cfg["nr"]
op(LD, 4); op(JEQ, cfg["audit_arch"], None, "allow")
op(LD, 0)
if cfg["mdwe"]:
    op(JEQ, nr["mmap"], "mmap"); op(JEQ, nr["mprotect"], "prot")
    op(JEQ, nr["pkey_mprotect"], "prot"); op(JEQ, nr["shmat"], "shm")
op(JEQ, nr["socket"], "sock")
op(RET, ALLOW)
label("mmap"); op(LD, ARG2); op(AND, 0x6); op(JEQ, 0x6, "eperm", "allow")
label("prot"); op(LD, ARG2); op(JSET, 0x4, "eperm", "allow")
label("shm"); op(LD, ARG2); op(JSET, 0o100000, "eperm", "allow")
label("sock"); op(LD, ARG0)
for fam in cfg["families"]:
    op(JEQ, getattr(socket, fam), "allow")
op(RET, ERRNO | errno.EAFNOSUPPORT)
label("eperm"); op(RET, ERRNO | errno.EPERM)
label("allow"); op(RET, ALLOW)

where, n = {}, 0
for item in prog:
    if isinstance(item, str): where[item] = n
    else: n += 1
code, n = b"", 0
for item in prog:
    if isinstance(item, str): continue
    c, jt, jf, k = item
    rel = lambda target: 0 if target is None else where[target] - n - 1
    code += struct.pack("HBBI", c, rel(jt), rel(jf), k); n += 1

libc = ctypes.CDLL(None, use_errno=True)
class FProg(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
buf = ctypes.create_string_buffer(code, len(code))
fprog = FProg(len(code) // 8, ctypes.addressof(buf))
if libc.prctl(38, 1, 0, 0, 0) != 0:                      # PR_SET_NO_NEW_PRIVS
    sys.exit(f"no_new_privs: {os.strerror(ctypes.get_errno())}")
if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:    # PR_SET_SECCOMP, FILTER
    sys.exit(f"seccomp: {os.strerror(ctypes.get_errno())}")

lib = ctypes.CDLL(cfg["libseccomp"], use_errno=True)
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add.restype = ctypes.c_int
lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ctx = lib.seccomp_init(ERRNO | errno.EPERM)
if not ctx:
    sys.exit("seccomp_init failed")
for name in cfg["syscalls"]:
    number = lib.seccomp_syscall_resolve_name(name.encode())
    if number < 0:
        continue          # not a system call of this architecture; systemd skips it too
    lib.seccomp_rule_add(ctx, ALLOW, number, 0)
if lib.seccomp_load(ctx) != 0:
    sys.exit("seccomp_load failed")
os.execv(sys.argv[1], sys.argv[1:])
'''

# Runs inside the filters (and once without, as the control). Probes first, then real
# work through every runtime dependency; prints one JSON object.
PAYLOAD = r'''
import asyncio, concurrent.futures, errno, importlib, json, mmap, os, pkgutil, socket
import sqlite3, sys

work = os.environ["BOT4_PROBE_DIR"]
out, probes = {}, {}

def probe(name, fn):
    try:
        fn()
        probes[name] = "allowed"
    except OSError as e:
        probes[name] = errno.errorcode.get(e.errno, str(e.errno))

probe("wx_mmap", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE
                                   | mmap.PROT_EXEC).close())
probe("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close())
probe("setuid", lambda: os.setuid(os.getuid()))

import numpy as np
a = np.arange(40000, dtype=np.float64).reshape(200, 200) / 1e4
out["numpy_matmul"] = round(float((a @ a.T).sum()), 3)               # BLAS threads
out["numpy_sort"] = float(np.sort(np.sin(a).ravel())[123])           # SIMD dispatch
out["numpy_fft"] = round(float(np.abs(np.fft.rfft(a[0])).sum()), 3)

import orjson
out["orjson"] = orjson.loads(orjson.dumps({"p": "1.5", "q": [1, 2]}))

import pydantic
class Order(pydantic.BaseModel):
    qty: int
out["pydantic"] = Order.model_validate({"qty": "3"}).qty

import sortedcontainers
out["sorted"] = list(sortedcontainers.SortedDict({3: 0, 1: 0}).keys())

db = sqlite3.connect(os.path.join(work, "journal.db"))
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE IF NOT EXISTS t (x)")
db.execute("INSERT INTO t VALUES (1)")
db.commit()
out["sqlite"] = db.execute("SELECT count(*) FROM t").fetchone()[0] >= 1

import ctypes
out["ctypes_callback"] = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)(41)

with concurrent.futures.ThreadPoolExecutor(4) as pool:
    out["threads"] = sorted(pool.map(lambda x: x * x, range(4)))

async def net():
    async def echo(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ping\n")
    line = await reader.readline()
    writer.close()
    server.close()
    await server.wait_closed()
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo("localhost", 443, type=socket.SOCK_STREAM,
                                   flags=socket.AI_ADDRCONFIG)   # what aiohttp does
    import aiohttp
    async with aiohttp.ClientSession() as session:
        assert not session.closed
    return line.decode().strip(), bool(infos)
out["asyncio_echo"], out["getaddrinfo"] = asyncio.run(net())

import systemd.journal                   # daemon/logsetup.py's JournalHandler
from daemon.sdnotify import Notifier     # bot4d's sd_notify, with each of its two backends
notify_path = os.path.join(work, "notify")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(notify_path)
sock.settimeout(30)                      # a lost datagram fails here instead of hanging
os.environ["NOTIFY_SOCKET"] = notify_path
out["sd_notify"] = {}
for use_systemd_python in (True, False):
    notifier = Notifier(use_systemd_python=use_systemd_python)
    notifier.ready("up")
    out["sd_notify"][notifier.backend] = sock.recv(64).decode()
sock.close()

import lgpio, gpiozero
from gpiozero.pins.mock import MockFactory
factory = MockFactory()
button = gpiozero.Button(17, pull_up=True, pin_factory=factory)
factory.pin(17).drive_low()
out["gpiozero_mock"] = button.is_pressed
button.close()
out["lgpio_fifo"] = any(n.startswith(".lgd-nfy") for n in os.listdir(os.environ["LG_WD"]))

modules = []
for pkg in ("daemon", "hw"):
    mod = importlib.import_module(pkg)
    modules.append(pkg)
    for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
        importlib.import_module(info.name)
        modules.append(info.name)
out["modules"] = sorted(modules)

from hw import board
info = board.detect()
out["board"] = [info.is_raspberry_pi, info.gpio_capable, info.cpu_model, info.numpy.dispatch]

print(json.dumps({"out": out, "probes": probes}))
'''


def expand_syscall_filter(entries: list[tuple[str, str, str]]) -> list[str]:
    """The unit's SystemCallFilter= as a flat allow-list: the first (allow) assignment,
    minus every later ~ assignment, groups expanded with systemd-analyze's own tables."""
    listing = analyze("syscall-filter", "--no-pager").stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith(" ") and current is not None:
            item = line.strip()
            if item and not item.startswith("#"):
                current.append(item)
        else:
            current = None

    def expand(names: list[str], seen: frozenset[str] = frozenset()) -> set[str]:
        result: set[str] = set()
        for name in names:
            if name.startswith("@"):
                assert name in groups, f"unknown syscall group {name}"
                if name not in seen:
                    result |= expand(groups[name], seen | {name})
            else:
                result.add(name)
        return result

    assignments = values(entries, "SystemCallFilter")
    assert assignments and not assignments[0].startswith("~"), "expected an allow-list first"
    allowed = expand(assignments[0].split())
    for later in assignments[1:]:
        if later.startswith("~"):
            allowed -= expand(later[1:].split())
        else:
            allowed |= expand(later.split())
    return sorted(allowed)


def run_payload(tmp_path: Path, name: str, seccomp: dict | None) -> dict:
    work = tmp_path / name
    work.mkdir()
    (work / "payload.py").write_text(PAYLOAD)
    (work / "seccomp_exec.py").write_text(SECCOMP_EXEC)
    env = dict(os.environ, BOT4_PROBE_DIR=str(work), LG_WD=str(work),
               PYTHONPATH=str(REPO), GPIOZERO_PIN_FACTORY="mock")
    env.pop("NOTIFY_SOCKET", None)
    argv = [sys.executable, str(work / "payload.py")]
    if seccomp is not None:
        env["BOT4_SECCOMP"] = json.dumps(seccomp)
        argv = [sys.executable, str(work / "seccomp_exec.py"), *argv]
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{name} run failed ({proc.returncode}):\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_analyze
@pytest.mark.skipif(platform.machine() not in _ARCHES,
                    reason=f"seccomp emulation knows only {sorted(_ARCHES)}")
def test_runtime_under_the_units_seccomp_rules(tmp_path: Path,
                                               entries: list[tuple[str, str, str]]) -> None:
    libseccomp = ctypes.util.find_library("seccomp")
    # libseccomp is a dependency of systemd itself, so it is present wherever
    # systemd-analyze is; its absence is a broken host, not a reason to skip.
    assert libseccomp, "libseccomp not found although systemd is installed"
    audit_arch, numbers = _ARCHES[platform.machine()]
    families = one(entries, "RestrictAddressFamilies").split()
    syscalls = expand_syscall_filter(entries)
    assert "execve" in syscalls and "setuid" not in syscalls  # sanity of the expansion

    control = run_payload(tmp_path, "control", None)
    confined = run_payload(tmp_path, "confined", {
        "audit_arch": audit_arch, "nr": numbers, "libseccomp": libseccomp,
        "mdwe": one(entries, "MemoryDenyWriteExecute") == "yes",
        "families": families, "syscalls": syscalls,
    })

    # The probes prove the rules were in force...
    assert confined["probes"]["wx_mmap"] == "EPERM"
    assert confined["probes"]["setuid"] == "EPERM"
    if "AF_NETLINK" not in families:
        assert confined["probes"]["netlink"] == "EAFNOSUPPORT"
    # ...and the real work is unaffected by them.
    assert confined["out"] == control["out"]
    assert control["out"]["asyncio_echo"] == "ping"
    assert control["out"]["sd_notify"] == {"systemd-python": "READY=1\nSTATUS=up",
                                           "socket": "READY=1\nSTATUS=up"}
    assert control["out"]["lgpio_fifo"] is True
    assert control["out"]["ctypes_callback"] == 42
    assert "hw.board" in control["out"]["modules"]


# --------------------------------------------------------------------------- etc/ snippets

SYSUSERS = REPO / "etc" / "sysusers.d" / "bot4.conf"
TMPFILES = REPO / "etc" / "tmpfiles.d" / "bot4.conf"
UDEV = REPO / "etc" / "udev" / "rules.d" / "60-bot4-gpio.rules"
WATCHDOG = REPO / "etc" / "systemd" / "system.conf.d" / "bot4-watchdog.conf"


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None,
                    reason="systemd-sysusers is not installed")
def test_sysusers_creates_user_and_gpio_membership(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    proc = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
                          capture_output=True, text=True, env=ENV_C, timeout=60)
    assert proc.returncode == 0, proc.stderr
    passwd = {line.split(":")[0]: line.split(":")
              for line in (tmp_path / "etc/passwd").read_text().splitlines()}
    group = {line.split(":")[0]: line.split(":")
             for line in (tmp_path / "etc/group").read_text().splitlines()}
    assert passwd["bot4"][5] == "/var/lib/bot4"
    assert passwd["bot4"][6] == "/usr/sbin/nologin"
    assert int(passwd["bot4"][2]) < 1000  # a system user
    assert "bot4" in group["gpio"][3].split(",")
    assert passwd["bot4"][3] == group["bot4"][2]


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None,
                    reason="systemd-sysusers is not installed")
def test_sysusers_keeps_an_existing_gpio_group(tmp_path: Path) -> None:
    # Raspberry Pi OS already has gpio (with its own GID): it must be reused, not remade.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/group").write_text("gpio:x:997:pi\n")
    (tmp_path / "etc/passwd").write_text("")
    proc = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
                          capture_output=True, text=True, env=ENV_C, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in (tmp_path / "etc/group").read_text().splitlines()
             if line.startswith("gpio:")]
    assert len(lines) == 1 and lines[0].split(":")[2] == "997"
    assert set(lines[0].split(":")[3].split(",")) == {"pi", "bot4"}


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None or os.geteuid() != 0,
                    reason="needs systemd-tmpfiles and root (it changes ownership)")
def test_tmpfiles_fixes_config_permissions(tmp_path: Path) -> None:
    (tmp_path / "etc/bot4").mkdir(parents=True)
    (tmp_path / "etc/group").write_text("bot4:x:998:\n")
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    config = tmp_path / "etc/bot4/bot4.toml"
    config.write_text("")
    config.chmod(0o600)
    (tmp_path / "etc/bot4").chmod(0o755)
    proc = subprocess.run(["systemd-tmpfiles", f"--root={tmp_path}", "--create", str(TMPFILES)],
                          capture_output=True, text=True, env=ENV_C, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (config.stat().st_mode & 0o7777, config.stat().st_gid) == (0o640, 998)
    d = (tmp_path / "etc/bot4").stat()
    assert (d.st_mode & 0o7777, d.st_gid) == (0o750, 998)


def test_udev_rule_matches_only_gpiochips() -> None:
    rules = [line for line in UDEV.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert len(rules) == 1
    keys = dict(re.findall(r'(\w+)\s*(?:==|=)\s*"([^"]*)"', rules[0]))
    assert keys == {"SUBSYSTEM": "gpio", "KERNEL": "gpiochip[0-9]*", "GROUP": "gpio",
                    "MODE": "0660"}
    # Matches are "==", assignments "=": a typo here silently turns a match into an
    # assignment (or the reverse) and udev only logs it.
    assert 'SUBSYSTEM=="gpio"' in rules[0] and 'KERNEL=="gpiochip[0-9]*"' in rules[0]
    assert 'GROUP="gpio"' in rules[0] and 'MODE="0660"' in rules[0]


def test_watchdog_dropin() -> None:
    entries = unit_entries(WATCHDOG.read_text())
    assert {s for s, _, _ in entries} == {"Manager"}
    runtime = timespan_s(one(entries, "RuntimeWatchdogSec", "Manager"))
    # bcm2835_wdt: at most 15 s on the kernels that do not emulate longer timeouts.
    assert 0 < runtime <= 15
    assert timespan_s(one(entries, "RebootWatchdogSec", "Manager")) == 120


@pytest.mark.parametrize("text,seconds", [("10s", 10), ("2min", 120), ("1min 30s", 90),
                                          ("500ms", 0.5), ("14", 14)])
def test_timespan_parser(text: str, seconds: float) -> None:
    assert timespan_s(text) == seconds


def test_unit_parser_keeps_repeated_keys() -> None:
    parsed = unit_entries(textwrap.dedent("""
        [Service]
        # comment
        Environment=A=1
        Environment=B=2 C=3
        CapabilityBoundingSet=
    """))
    assert values(parsed, "Environment") == ["A=1", "B=2 C=3"]
    assert one(parsed, "CapabilityBoundingSet") == ""
