"""Tests for hw.board: fake procfs/sysfs/dev trees for a Pi 4, Pi 5, Zero 2 W, 3B+ and an
x86 box, revision codes decoded through gpiozero's PiBoardInfo (expected values from the
Raspberry Pi "revision codes" documentation), numpy SIMD reporting, and the promise that
detection never loads lgpio or a pin factory and never raises on missing or odd files."""
from __future__ import annotations

import ast
import json
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hw import board
from hw.board import GPIO_GET_CHIPINFO_IOCTL, NumpySimd, decode_revision, describe, detect

REPO = Path(__file__).resolve().parent.parent
FAKE_SIMD = NumpySimd(version="9.9.9", baseline=["NEON", "NEON_FP16", "NEON_VFPV4", "ASIMD"],
                      dispatch=["ASIMDHP"])

ARM_CPU = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: {features}
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: {part}
CPU revision\t: 3

"""


def arm_cpuinfo(part: str, features: str, cores: int = 4, tail: str = "") -> str:
    return "".join(ARM_CPU.format(n=n, features=features, part=part) for n in range(cores)) + tail


MEMINFO = "MemTotal:        3884116 kB\nMemFree:         3000000 kB\nMemAvailable:    3512344 kB\n"


def write(root: Path, rel: str, data: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)


def make_chips(root: Path, *numbers: int) -> None:
    for n in numbers:
        write(root, f"dev/gpiochip{n}", b"")


@pytest.fixture
def pi4(tmp_path: Path) -> Path:
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 4 Model B Rev 1.4\0")
    write(tmp_path, "proc/device-tree/compatible", b"raspberrypi,4-model-b\0brcm,bcm2711\0")
    write(tmp_path, "proc/cpuinfo", arm_cpuinfo(
        "0xd08", "fp asimd evtstrm crc32 cpuid",
        tail="Revision\t: c03114\nSerial\t\t: 10000000deadbeef\n"
             "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n"))
    write(tmp_path, "proc/meminfo", MEMINFO)
    write(tmp_path, "sys/devices/system/cpu/online", "0-3\n")
    make_chips(tmp_path, 0, 1)
    return tmp_path


@pytest.fixture
def pi5(tmp_path: Path) -> Path:
    # Only the sysfs copy of the device tree, and no Revision line in cpuinfo: the
    # revision must come from the device tree's linux,revision cell.
    dt = "sys/firmware/devicetree/base"
    write(tmp_path, f"{dt}/model", b"Raspberry Pi 5 Model B Rev 1.0\0")
    write(tmp_path, f"{dt}/compatible", b"raspberrypi,5-model-b\0brcm,bcm2712\0")
    write(tmp_path, f"{dt}/system/linux,revision", struct.pack(">I", 0xD04170))
    write(tmp_path, "proc/cpuinfo", arm_cpuinfo(
        "0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                 "asimdrdm lrcpc dcpop asimddp"))
    write(tmp_path, "proc/meminfo", "MemTotal:        8245008 kB\nMemAvailable:    7900000 kB\n")
    write(tmp_path, "sys/devices/system/cpu/online", "0-3\n")
    make_chips(tmp_path, 10, 0, 4, 2)
    return tmp_path


@pytest.fixture
def zero2w(tmp_path: Path) -> Path:
    # No device tree at all (hidden by a sandbox): cpuinfo's Model/Revision lines must do.
    write(tmp_path, "proc/cpuinfo", arm_cpuinfo(
        "0xd03", "fp asimd evtstrm crc32 cpuid",
        tail="Revision\t: 902120\nModel\t\t: Raspberry Pi Zero 2 W Rev 1.0\n"))
    write(tmp_path, "proc/meminfo", "MemTotal:         427636 kB\nMemAvailable:     300000 kB\n")
    make_chips(tmp_path, 0)
    return tmp_path


@pytest.fixture
def x86(tmp_path: Path) -> Path:
    write(tmp_path, "proc/cpuinfo",
          "".join(f"processor\t: {n}\nvendor_id\t: GenuineIntel\n"
                  f"model name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz\n"
                  f"flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2\n\n" for n in range(8)))
    write(tmp_path, "proc/meminfo", MEMINFO)
    write(tmp_path, "sys/devices/system/cpu/online", "0-7\n")
    return tmp_path


# --------------------------------------------------------------------------- boards

def test_pi4(pi4: Path) -> None:
    info = detect(pi4, machine="aarch64", simd=FAKE_SIMD)
    assert info.is_raspberry_pi
    assert info.model == "Raspberry Pi 4 Model B Rev 1.4"  # trailing NUL stripped
    assert info.compatible == ["raspberrypi,4-model-b", "brcm,bcm2711"]
    assert info.board_type == "4B"
    assert info.pi_family == "4"
    assert info.pi_supported
    assert info.revision is not None
    assert info.revision.code == "c03114"
    assert info.revision.memory_mb == 4096
    assert info.revision.pcb_revision == "1.4"
    assert info.revision.processor == "BCM2711" and info.revision.manufacturer == "Sony"
    assert info.soc == "BCM2711"
    assert info.machine == "aarch64"
    assert info.cpu_model == "ARM Cortex-A72"
    assert info.cpu_features == ["fp", "asimd", "evtstrm", "crc32", "cpuid"]
    assert info.cpu_cores == 4
    assert info.mem_total_kib == 3884116
    assert info.mem_available_kib == 3512344
    assert [c.name for c in info.gpiochips] == ["gpiochip0", "gpiochip1"]
    assert info.gpiochips[0].path == "/dev/gpiochip0"
    # Regular files in a fake tree are never opened, so label/lines stay unknown.
    assert info.gpiochips[0].label == "unknown" and info.gpiochips[0].lines is None
    assert info.gpio_capable


def test_pi5_from_sysfs_devicetree_and_revision_cell(pi5: Path) -> None:
    info = detect(pi5, machine="aarch64", simd=FAKE_SIMD)
    assert info.is_raspberry_pi
    assert info.model == "Raspberry Pi 5 Model B Rev 1.0"
    assert info.pi_family == "5" and info.board_type == "5B" and info.pi_supported
    assert info.revision is not None and info.revision.code == "d04170"
    assert info.revision.memory_mb == 8192 and info.revision.processor == "BCM2712"
    assert info.soc == "BCM2712"
    assert info.cpu_model == "ARM Cortex-A76"
    assert "asimddp" in info.cpu_features
    # Numeric, not lexical, order.
    assert [c.name for c in info.gpiochips] == ["gpiochip0", "gpiochip2", "gpiochip4",
                                                "gpiochip10"]
    assert info.gpio_capable


def test_zero2w_without_device_tree(zero2w: Path) -> None:
    info = detect(zero2w, machine="aarch64", simd=FAKE_SIMD)
    assert info.is_raspberry_pi
    assert info.model == "Raspberry Pi Zero 2 W Rev 1.0"
    assert info.compatible == []
    assert info.board_type == "Zero2W"
    assert info.pi_family == "Zero 2 W" and info.pi_supported
    assert info.revision is not None and info.revision.memory_mb == 512
    # No compatible list: the SoC comes from the revision code.
    assert info.soc == "BCM2837"
    assert info.cpu_model == "ARM Cortex-A53"
    # No sysfs cpu list: cores are counted from cpuinfo's processor entries.
    assert info.cpu_cores == 4
    assert info.gpio_capable


def test_3b_plus_from_compatible_only(tmp_path: Path) -> None:
    write(tmp_path, "proc/device-tree/compatible", b"raspberrypi,3-model-b-plus\0brcm,bcm2837\0")
    info = detect(tmp_path, machine="aarch64", simd=FAKE_SIMD)
    assert info.is_raspberry_pi
    assert info.revision is None
    assert info.board_type == "3B+" and info.pi_family == "3B+" and info.pi_supported
    assert info.soc == "BCM2837"
    assert not info.gpio_capable  # no gpiochip in this tree


def test_cm4_from_compatible_is_family_4(tmp_path: Path) -> None:
    write(tmp_path, "proc/device-tree/compatible",
          b"raspberrypi,4-compute-module\0brcm,bcm2711\0")
    info = detect(tmp_path, machine="aarch64", simd=FAKE_SIMD)
    assert info.board_type == "CM4" and info.pi_family == "4" and info.pi_supported


def test_model_string_alone_says_pi_but_not_which(tmp_path: Path) -> None:
    # No revision code and no compatible list: the model string is not parsed for a
    # board type (gpiozero decodes revision codes only), so the family stays unknown.
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi Compute Module 4 Rev 1.1\0")
    make_chips(tmp_path, 0)
    info = detect(tmp_path, machine="aarch64", simd=FAKE_SIMD)
    assert info.is_raspberry_pi and info.board_type == "unknown"
    assert info.pi_family == "unknown" and not info.pi_supported
    assert info.gpio_capable


def test_board_newer_than_gpiozero_falls_back_to_compatible(tmp_path: Path) -> None:
    # A new-style code whose type field (0x7e) gpiozero does not know: memory and SoC
    # still decode, the board type comes from the device tree.
    write(tmp_path, "proc/device-tree/compatible", b"raspberrypi,5-model-b\0brcm,bcm2712\0")
    write(tmp_path, "proc/cpuinfo", f"Revision\t: {0xD047E0:x}\n")
    info = detect(tmp_path, machine="aarch64", simd=FAKE_SIMD)
    assert info.revision is not None and info.revision.board_type == "unknown"
    assert info.revision.memory_mb == 8192 and info.revision.processor == "BCM2712"
    assert info.board_type == "5B" and info.pi_family == "5" and info.pi_supported


def test_original_pi_from_an_old_style_code(tmp_path: Path) -> None:
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi Model B Plus Rev 1.2\0")
    write(tmp_path, "proc/cpuinfo", "Revision\t: 0010\n")
    info = detect(tmp_path, machine="armv6l", simd=FAKE_SIMD)
    assert info.revision is not None and info.revision.memory_mb == 512
    assert info.board_type == "B+" and info.pi_family == "B+" and not info.pi_supported
    assert info.soc == "BCM2835"


def test_revision_code_outranks_compatible(tmp_path: Path) -> None:
    # A Pi 400 firmware code with a (generic) Pi 4 compatible: the firmware code wins.
    write(tmp_path, "proc/device-tree/compatible", b"raspberrypi,4-model-b\0brcm,bcm2711\0")
    write(tmp_path, "proc/cpuinfo", "Revision\t: c03130\n")
    info = detect(tmp_path, machine="aarch64", simd=FAKE_SIMD)
    assert info.board_type == "400" and info.pi_family == "4"


def test_unsupported_pi_family(tmp_path: Path) -> None:
    write(tmp_path, "proc/device-tree/model", b"Raspberry Pi 3 Model A Plus Rev 1.0\0")
    write(tmp_path, "proc/cpuinfo", "Revision\t: 9020e0\n")
    make_chips(tmp_path, 0)
    info = detect(tmp_path, machine="aarch64", simd=FAKE_SIMD)
    assert info.is_raspberry_pi and info.board_type == "3A+"
    assert info.pi_family == "3A+" and not info.pi_supported
    assert info.gpio_capable  # GPIO works; "supported" is a separate, softer verdict
    assert "(unsupported)" in describe(info)


def test_unknown_x86_box(x86: Path) -> None:
    info = detect(x86, machine="x86_64", simd=FAKE_SIMD)
    assert not info.is_raspberry_pi
    assert info.model == "unknown" and info.board_type == "unknown"
    assert info.pi_family == "unknown" and not info.pi_supported
    assert info.revision is None
    assert info.soc == "unknown"
    assert info.cpu_model == "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz"
    assert info.cpu_features[-2:] == ["avx", "avx2"]
    assert info.cpu_cores == 8
    assert info.gpiochips == []
    assert not info.gpio_capable


def test_gpiochip_on_a_non_pi_is_not_gpio_capable(x86: Path) -> None:
    # e.g. an Intel PCH or gpio-mockup chip: lgpio's pin factory still refuses off a Pi.
    make_chips(x86, 0)
    info = detect(x86, machine="x86_64", simd=FAKE_SIMD)
    assert len(info.gpiochips) == 1 and not info.gpio_capable


def test_pi_without_gpiochip_is_not_gpio_capable(pi4: Path) -> None:
    for chip in (pi4 / "dev").iterdir():
        chip.unlink()
    info = detect(pi4, machine="aarch64", simd=FAKE_SIMD)
    assert info.is_raspberry_pi and not info.gpio_capable


def test_non_pi_arm_board_revision_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, "proc/device-tree/model", b"Radxa ROCK 5B\0")
    write(tmp_path, "proc/device-tree/compatible", b"radxa,rock-5b\0rockchip,rk3588\0")
    write(tmp_path, "proc/cpuinfo", "Revision\t: a02082\n")
    make_chips(tmp_path, 0)
    info = detect(tmp_path, machine="aarch64", simd=FAKE_SIMD)
    assert not info.is_raspberry_pi
    assert info.revision is None and info.board_type == "unknown"
    assert info.soc == "rockchip,rk3588"
    assert not info.gpio_capable


# --------------------------------------------------------------------------- robustness

def test_empty_root_never_raises(tmp_path: Path) -> None:
    info = detect(tmp_path, machine="", simd=FAKE_SIMD)
    assert info.model == "unknown" and info.soc == "unknown" and info.cpu_model == "unknown"
    assert info.cpu_cores is None and info.mem_total_kib is None
    assert info.cpu_features == [] and info.compatible == [] and info.gpiochips == []
    assert not info.is_raspberry_pi and not info.gpio_capable
    json.dumps(info.as_dict())
    describe(info)


def test_missing_root_never_raises(tmp_path: Path) -> None:
    info = detect(tmp_path / "does-not-exist", machine="aarch64", simd=FAKE_SIMD)
    assert info.model == "unknown" and info.gpiochips == []


def test_odd_files_never_raise(tmp_path: Path) -> None:
    (tmp_path / "proc/cpuinfo").mkdir(parents=True)  # a directory where a file belongs
    write(tmp_path, "proc/meminfo", "MemTotal: lots\nnonsense\n")
    write(tmp_path, "proc/device-tree/system/linux,revision", b"\x01\x02")  # wrong length
    write(tmp_path, "proc/device-tree/model", b"\xff\xfeRaspberry\0")
    write(tmp_path, "sys/devices/system/cpu/online", "garbage\n")
    write(tmp_path, "dev", "")  # /dev is a file, not a directory
    info = detect(tmp_path, machine="aarch64", simd=FAKE_SIMD)
    assert info.revision is None and info.mem_total_kib is None
    assert info.cpu_cores is None and info.gpiochips == []


@pytest.mark.skipif(os.geteuid() != 0, reason="creating device nodes needs root")
def test_real_char_device_that_is_not_a_gpiochip(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    try:
        os.mknod(tmp_path / "dev/gpiochip0", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null
    except PermissionError:
        pytest.skip("mknod not permitted here")
    chips = board.gpio_chips(tmp_path)
    # open() may fail on a nodev mount, or the ioctl says ENOTTY: both mean "unknown".
    assert [(c.name, c.label, c.lines) for c in chips] == [("gpiochip0", "unknown", None)]


def test_chipinfo_ioctl_is_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "gpiochip0").write_bytes(b"")
    calls: list[int] = []

    def fake_ioctl(fd: int, request: int, buf: bytearray, mutate: bool) -> int:
        calls.append(request)
        buf[:] = struct.pack("=32s32sI", b"gpiochip0", b"pinctrl-bcm2711", 58)
        return 0

    real_stat = os.stat

    def fake_stat(path: os.PathLike[str] | str, *a: object, **kw: object) -> os.stat_result:
        st = real_stat(path, *a, **kw)  # type: ignore[arg-type]
        if Path(path).name == "gpiochip0":
            fields = list(st)
            fields[0] = stat.S_IFCHR | 0o660
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(board.fcntl, "ioctl", fake_ioctl)
    monkeypatch.setattr(board.os, "stat", fake_stat)
    chips = board.gpio_chips(tmp_path)
    assert calls == [0x8044B401]
    assert [(c.label, c.lines) for c in chips] == [("pinctrl-bcm2711", 58)]
    assert GPIO_GET_CHIPINFO_IOCTL == 0x8044B401  # _IOR(0xB4, 0x01, 68-byte struct)


# --------------------------------------------------------------------------- revision codes

@pytest.mark.parametrize("code,board_type,processor,memory_mb,maker,pcb", [
    ("c03114", "4B", "BCM2711", 4096, "Sony", "1.4"),
    ("B03115", "4B", "BCM2711", 2048, "Sony", "1.5"),
    ("d04170", "5B", "BCM2712", 8192, "Sony", "1.0"),
    ("e04171", "5B", "BCM2712", 16384, "Sony", "1.1"),
    ("902120", "Zero2W", "BCM2837", 512, "Sony", "1.0"),
    ("a020d3", "3B+", "BCM2837", 1024, "Sony", "1.3"),
    ("c03130", "400", "BCM2711", 4096, "Sony", "1.0"),
    ("a22082", "3B", "BCM2837", 1024, "Embest", "1.2"),
    ("2a020d3", "3B+", "BCM2837", 1024, "Sony", "1.3"),  # warranty bit set
    # old-style codes (original Pi 1 boards)
    ("0010", "B+", "BCM2835", 512, "Sony", "1.2"),
    ("000e", "B", "BCM2835", 512, "Sony", "2.0"),
    ("0002", "B", "BCM2835", 256, "Egoman", "1.0"),
    ("1000002", "B", "BCM2835", 256, "Egoman", "1.0"),  # old-style + warranty bit
])
def test_decode_revision(code: str, board_type: str, processor: str, memory_mb: int,
                         maker: str, pcb: str) -> None:
    rev = decode_revision(code)
    assert rev is not None
    assert (rev.code, rev.board_type, rev.processor, rev.memory_mb, rev.manufacturer,
            rev.pcb_revision) == (code.lower(), board_type, processor, memory_mb, maker, pcb)


@pytest.mark.parametrize("code", ["0001", "0016", "", "zz", "-1", "0x10", "123456789"])
def test_decode_revision_rejects_unknown_old_style_and_garbage(code: str) -> None:
    assert decode_revision(code) is None


def test_decode_revision_unknown_type_is_reported_not_guessed() -> None:
    rev = decode_revision(f"{0xC00000 | (0x7E << 4):x}")
    assert rev is not None and rev.board_type == "unknown"
    assert rev.memory_mb == 4096 and rev.processor == "BCM2835"
    # all-ones: every field outside gpiozero's tables
    rev = decode_revision("ffffffff")
    assert rev is not None and rev.memory_mb is None
    assert (rev.board_type, rev.processor, rev.manufacturer) == ("unknown",) * 3


# --------------------------------------------------------------------------- numpy SIMD

def test_numpy_simd_reports_only_available_dispatch_targets() -> None:
    fake = SimpleNamespace(
        __cpu_baseline__=["NEON", "NEON_FP16", "NEON_VFPV4", "ASIMD"],
        __cpu_dispatch__=["ASIMDHP", "ASIMDDP", "ASIMDFHM", "SVE"],
        __cpu_features__={"ASIMDHP": True, "ASIMDDP": True, "ASIMDFHM": False, "SVE": False},
    )
    simd = board.numpy_simd(fake, version="1.26.4")
    assert simd == NumpySimd("1.26.4", ["NEON", "NEON_FP16", "NEON_VFPV4", "ASIMD"],
                             ["ASIMDHP", "ASIMDDP"])


def test_numpy_simd_tolerates_missing_attributes() -> None:
    assert board.numpy_simd(SimpleNamespace(), version="x") == NumpySimd("x", [], [])


def test_numpy_simd_of_this_interpreter() -> None:
    import numpy

    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as umath  # type: ignore[no-redef]
    simd = board.numpy_simd()
    assert simd.version == numpy.__version__
    assert simd.baseline == list(umath.__cpu_baseline__)
    assert set(simd.dispatch) <= set(umath.__cpu_dispatch__)
    assert all(umath.__cpu_features__[f] for f in simd.dispatch)
    missing = [f for f in umath.__cpu_dispatch__ if not umath.__cpu_features__.get(f)]
    assert not set(missing) & set(simd.dispatch)


# --------------------------------------------------------------------------- output

def test_as_dict_is_json_ready(pi4: Path) -> None:
    data = json.loads(json.dumps(detect(pi4, machine="aarch64", simd=FAKE_SIMD).as_dict()))
    assert data["pi_family"] == "4" and data["gpio_capable"] is True
    assert data["revision"]["code"] == "c03114"
    assert data["numpy"]["dispatch"] == ["ASIMDHP"]
    assert data["gpiochips"][0] == {"name": "gpiochip0", "path": "/dev/gpiochip0",
                                    "label": "unknown", "lines": None}
    assert "Serial" not in json.dumps(data) and "deadbeef" not in json.dumps(data)


def test_describe_pi4(pi4: Path) -> None:
    line = describe(detect(pi4, machine="aarch64", simd=FAKE_SIMD))
    assert "\n" not in line
    assert line.startswith(
        "Raspberry Pi 4 Model B Rev 1.4 (family 4, rev c03114, 4096 MB, BCM2711)")
    assert "aarch64 ARM Cortex-A72 x4" in line
    assert "numpy 9.9.9 baseline NEON,NEON_FP16,NEON_VFPV4,ASIMD dispatch ASIMDHP" in line
    assert "mem 3430/3793 MiB available" in line
    assert "gpio gpiochip0, gpiochip1" in line
    assert line.endswith("gpio_capable=yes")


def test_describe_x86(x86: Path) -> None:
    line = describe(detect(x86, machine="x86_64", simd=NumpySimd()))
    assert line.startswith("not a Raspberry Pi (model unknown, SoC unknown)")
    assert "gpio none" in line and line.endswith("gpio_capable=no")
    assert "baseline none dispatch none" in line


def test_describe_shows_chip_labels() -> None:
    info = board.BoardInfo(
        machine="aarch64", model="Raspberry Pi 5 Model B Rev 1.0", compatible=[],
        is_raspberry_pi=True, board_type="5", pi_family="5", pi_supported=True, revision=None,
        soc="BCM2712", cpu_model="ARM Cortex-A76", cpu_features=[], cpu_cores=None,
        numpy=NumpySimd(), mem_total_kib=None, mem_available_kib=None,
        gpiochips=[board.GpioChip("gpiochip0", "/dev/gpiochip0", "pinctrl-rp1", 54)],
        gpio_capable=True)
    line = describe(info)
    assert "gpio gpiochip0=pinctrl-rp1" in line and "xunknown" in line
    assert "mem unknown/unknown MiB" in line


def test_this_host_detects_without_error() -> None:
    info = detect()
    json.dumps(info.as_dict())
    assert info.cpu_cores is None or info.cpu_cores >= 1
    assert describe(info)


# --------------------------------------------------------------------------- purity

def test_module_imports_only_gpiozeros_board_tables() -> None:
    tree = ast.parse((REPO / "hw/board.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    gpio = {m for m in imported if m.split(".")[0] in {"gpiozero", "lgpio", "RPi", "pigpio"}}
    assert gpio == {"gpiozero.pins.pi", "gpiozero.exc"}


def test_detect_does_not_load_pin_libraries(tmp_path: Path) -> None:
    # A fresh interpreter, run in an empty directory: importing lgpio would also leave a
    # .lgd-nfy FIFO behind in the working directory. gpiozero itself is loaded (its board
    # tables), but no pin factory may be chosen or built.
    code = ("import sys, hw.board as b; b.describe(b.detect()); "
            "from gpiozero import Device; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('lgpio', '_lgpio', 'RPi', 'pigpio') "
            "or m.startswith(('gpiozero.pins.lgpio', 'gpiozero.pins.native', "
            "'gpiozero.pins.rpigpio', 'gpiozero.pins.pigpio', 'gpiozero.pins.local'))]; "
            "bad += ['pin_factory'] if Device.pin_factory is not None else []; "
            "print(bad); sys.exit(1 if bad else 0)")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []
