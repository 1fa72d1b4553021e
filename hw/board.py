"""Board and CPU detection for the boot log and `bot4ctl status --json`.

What it is for: one call, `detect()`, tells the daemon which machine it runs on — whether it
is a Raspberry Pi and of which family (3B+/4/5/Zero 2 W), its board revision and SoC, the
CPU architecture, model, features and core count, which SIMD paths numpy dispatches to,
memory, which GPIO character devices exist, and from all that whether real GPIO can be
used (`gpio_capable`). `describe()` renders it as one line for the log.

Sources, in order of trust: the firmware revision code (`/proc/cpuinfo` `Revision`, else
the device tree's `system/linux,revision`), decoded by gpiozero's
`PiBoardInfo.from_revision` (model, SoC, memory, manufacturer, PCB revision; board names are
gpiozero's: "4B", "5B", "Zero2W", ...), then the device tree `compatible` list. The device
tree `model` string only says whether the machine is a Pi. Every file is read relative to a
`root` directory (default "/") so tests can build a fake procfs/sysfs/devtmpfs tree.

What it must never do: import lgpio or any pin factory, or touch gpiozero beyond its board
tables (`gpiozero.pins.pi`: it chooses no pin factory and imports no GPIO library, only
spidev's module when installed, which opens nothing; importing lgpio would start a thread
and create a FIFO in the working directory); request, configure or drive a GPIO line (the only
thing done to a gpiochip is the read-only GPIO_GET_CHIPINFO ioctl); raise because a file is
missing or unreadable — an unreadable text value is "unknown", an unreadable number is None
(JSON null), an unreadable list is empty.
"""
from __future__ import annotations

import dataclasses
import fcntl
import importlib
import os
import platform
import re
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpiozero.exc import PinUnknownPi
from gpiozero.pins.pi import PiBoardInfo

UNKNOWN = "unknown"

# The families the design supports (DESIGN.md "Target hardware"). The 400/CM4 share the
# Pi 4's BCM2711 and the 500/CM5 the Pi 5's BCM2712, so they belong to those families.
SUPPORTED_FAMILIES: frozenset[str] = frozenset({"3B+", "4", "5", "Zero 2 W"})

# gpiozero's model name (PiBoardInfo.model) -> family. Models not listed are their own
# family (and unsupported).
_FAMILY_OF_MODEL: dict[str, str] = {
    "3B+": "3B+",
    "4B": "4", "400": "4", "CM4": "4", "CM4S": "4",
    "5B": "5", "500": "5", "CM5": "5", "CM5Lite": "5",
    "Zero2W": "Zero 2 W",
}

# Device tree `compatible` board entries -> gpiozero's model name. gpiozero decodes only
# revision codes; this is the fallback when no revision code is readable (a kernel or
# sandbox that hides both cpuinfo's Revision line and the device tree's revision cell).
_MODEL_OF_COMPATIBLE: dict[str, str] = {
    "raspberrypi,3-model-b": "3B",
    "raspberrypi,3-model-b-plus": "3B+",
    "raspberrypi,3-model-a-plus": "3A+",
    "raspberrypi,3-compute-module": "CM3",
    "raspberrypi,4-model-b": "4B",
    "raspberrypi,400": "400",
    "raspberrypi,4-compute-module": "CM4",
    "raspberrypi,4-compute-module-s": "CM4S",
    "raspberrypi,5-model-b": "5B",
    "raspberrypi,500": "500",
    "raspberrypi,5-compute-module": "CM5",
    "raspberrypi,model-zero-w": "Zero W",
    "raspberrypi,model-zero-2-w": "Zero2W",
}

# Revision code bits, from the Raspberry Pi documentation ("Raspberry Pi revision codes"):
# bit 23 marks a new-style code; an old-style code on a board whose warranty bit is set is
# reported with 0x1000000 added, which PiBoardInfo.from_revision does not strip.
_NEW_STYLE_FLAG = 1 << 23
_OLD_STYLE_WARRANTY = 1 << 24
# gpiozero's placeholders for a field it cannot decode.
_GPIOZERO_UNKNOWN = frozenset({"???", "Unknown"})

# Arm CPU part numbers (implementer 0x41 = Arm Ltd) for the cores Pis use and their
# neighbours; arm64 /proc/cpuinfo has no "model name" line, only these numbers.
_ARM_PARTS: dict[int, str] = {
    0xB76: "ARM1176", 0xC07: "Cortex-A7", 0xD03: "Cortex-A53", 0xD04: "Cortex-A35",
    0xD05: "Cortex-A55", 0xD07: "Cortex-A57", 0xD08: "Cortex-A72", 0xD09: "Cortex-A73",
    0xD0A: "Cortex-A75", 0xD0B: "Cortex-A76", 0xD0D: "Cortex-A77", 0xD41: "Cortex-A78",
}

# linux/gpio.h: GPIO_GET_CHIPINFO_IOCTL = _IOR(0xB4, 0x01, struct gpiochip_info) with
# struct gpiochip_info { char name[32]; char label[32]; __u32 lines; } (68 bytes). The
# generic _IOR encoding is the same on arm64 and x86-64.
_CHIPINFO = struct.Struct("=32s32sI")
GPIO_GET_CHIPINFO_IOCTL = (2 << 30) | (_CHIPINFO.size << 16) | (0xB4 << 8) | 0x01
_GPIOCHIP_RE = re.compile(r"^gpiochip(\d+)$")


@dataclass(frozen=True, slots=True)
class Revision:
    """A Raspberry Pi revision code as gpiozero decodes it (`board_type` is gpiozero's
    model name, `processor` its SoC, `memory_mb` None when the code's memory field is
    unknown to it)."""

    code: str
    board_type: str
    processor: str
    memory_mb: int | None
    manufacturer: str
    pcb_revision: str


@dataclass(frozen=True, slots=True)
class GpioChip:
    """One /dev/gpiochipN. `label` and `lines` come from the kernel (read-only ioctl);
    they stay unknown/None when the node is not a character device or cannot be opened
    (e.g. the service's device policy forbids it)."""

    name: str
    path: str
    label: str = UNKNOWN
    lines: int | None = None


@dataclass(frozen=True, slots=True)
class NumpySimd:
    """numpy's SIMD picture: the baseline it was compiled for, and the dispatch targets
    this CPU actually supports (so those optimised loops are the ones that run)."""

    version: str = UNKNOWN
    baseline: list[str] = field(default_factory=list)
    dispatch: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BoardInfo:
    """Everything `detect()` found. `as_dict()` gives the JSON-ready form."""

    machine: str
    model: str
    compatible: list[str]
    is_raspberry_pi: bool
    board_type: str
    pi_family: str
    pi_supported: bool
    revision: Revision | None
    soc: str
    cpu_model: str
    cpu_features: list[str]
    cpu_cores: int | None
    numpy: NumpySimd
    mem_total_kib: int | None
    mem_available_kib: int | None
    gpiochips: list[GpioChip]
    gpio_capable: bool

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- file reading

def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (OSError, ValueError):
        # OSError covers missing, permission, is-a-directory; ValueError a path with NUL.
        return None


def _read_text(path: Path) -> str | None:
    data = _read_bytes(path)
    return None if data is None else data.decode("utf-8", errors="replace")


def _dt_read(root: Path, name: str) -> bytes | None:
    """A device tree property: /proc/device-tree is a symlink to the sysfs copy, but
    either can be missing (containers, sandboxes), so try both."""
    for base in ("proc/device-tree", "sys/firmware/devicetree/base"):
        data = _read_bytes(root / base / name)
        if data is not None:
            return data
    return None


def _dt_strings(data: bytes | None) -> list[str]:
    """Device tree string properties are NUL-terminated, lists are NUL-separated."""
    if not data:
        return []
    return [s.decode("utf-8", errors="replace") for s in data.split(b"\0") if s]


def _parse_cpuinfo(text: str | None) -> tuple[dict[str, str], int]:
    """(first value of every key, number of `processor` entries). The first value is the
    one we want: per-CPU keys repeat identically, and board keys (Revision, Model,
    Hardware) appear once at the end."""
    fields: dict[str, str] = {}
    processors = 0
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "processor":
            processors += 1
        fields.setdefault(key, value.strip())
    return fields, processors


def _parse_meminfo(text: str | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        parts = value.split()
        if sep and parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0])  # meminfo values are in kB (KiB)
    return out


def _parse_cpu_list(text: str | None) -> int | None:
    """Count CPUs in a sysfs cpu list such as "0-3" or "0,2-3"."""
    if not text or not text.strip():
        return None
    count = 0
    try:
        for part in text.strip().split(","):
            lo, _, hi = part.partition("-")
            first = int(lo)
            count += (int(hi) - first + 1) if hi else 1
    except ValueError:
        return None
    return count if count > 0 else None


# --------------------------------------------------------------------------- revision codes

def decode_revision(code: str) -> Revision | None:
    """Decode a firmware revision code ("c03114", old-style "000e") with gpiozero's
    `PiBoardInfo.from_revision`. None for text that is not a 32-bit hex number and for an
    old-style code gpiozero does not know. A new-style code of a board newer than gpiozero
    still decodes; its unknown fields are "unknown" (memory None)."""
    text = code.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{1,8}", text):
        return None
    value = int(text, 16)
    if not value & _NEW_STYLE_FLAG:
        value &= ~_OLD_STYLE_WARRANTY
    try:
        info = PiBoardInfo.from_revision(value)
    except PinUnknownPi:
        return None  # an old-style code missing from gpiozero's table

    def known(field: str) -> str:
        return UNKNOWN if field in _GPIOZERO_UNKNOWN else field

    return Revision(
        code=text.lower(),
        board_type=known(info.model),
        processor=known(info.soc),
        memory_mb=info.memory,
        manufacturer=known(info.manufacturer),
        pcb_revision=known(info.pcb_revision),
    )


def _revision_code(root: Path, cpuinfo: dict[str, str]) -> str | None:
    code = cpuinfo.get("Revision", "").strip().lower()
    if code and re.fullmatch(r"[0-9a-f]+", code):
        return code
    # Some kernels (and sandboxes that filter cpuinfo) lack the line; the firmware also
    # writes the code into the device tree as a 32-bit big-endian cell.
    cell = _dt_read(root, "system/linux,revision")
    if cell is not None and len(cell) == 4:
        return f"{struct.unpack('>I', cell)[0]:x}"
    return None


# --------------------------------------------------------------------------- CPU, numpy

def _cpu_model(cpuinfo: dict[str, str]) -> str:
    name = cpuinfo.get("model name")
    if name:
        return name  # x86 and 32-bit Arm kernels give a name
    impl, part = cpuinfo.get("CPU implementer"), cpuinfo.get("CPU part")
    if impl and part:
        try:
            impl_i, part_i = int(impl, 16), int(part, 16)
        except ValueError:
            return UNKNOWN
        if impl_i == 0x41 and part_i in _ARM_PARTS:
            return f"ARM {_ARM_PARTS[part_i]}"
        return f"implementer 0x{impl_i:02x} part 0x{part_i:03x}"
    return UNKNOWN


def _load_umath() -> tuple[object | None, str]:
    try:
        import numpy
    except ImportError:
        return None, UNKNOWN
    version = str(getattr(numpy, "__version__", UNKNOWN))
    # numpy >= 2 moved the extension to numpy._core; 1.x has numpy.core.
    for name in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):
        try:
            return importlib.import_module(name), version
        except ImportError:
            continue
    return None, version


def numpy_simd(umath: object | None = None, version: str | None = None) -> NumpySimd:
    """numpy's baseline features and the dispatch targets available on this CPU.
    `umath` may be any object with numpy's `__cpu_*__` attributes (tests pass a fake)."""
    if umath is None:
        umath, found_version = _load_umath()
        version = version or found_version
        if umath is None:
            return NumpySimd(version=version)
    features = getattr(umath, "__cpu_features__", None)
    features = features if isinstance(features, dict) else {}
    baseline = [str(f) for f in getattr(umath, "__cpu_baseline__", None) or []]
    dispatch = [str(f) for f in getattr(umath, "__cpu_dispatch__", None) or []
                if features.get(f)]
    return NumpySimd(version=version or UNKNOWN, baseline=baseline, dispatch=dispatch)


# --------------------------------------------------------------------------- GPIO chips

def _chip_info(path: Path) -> tuple[str, int | None]:
    """(label, lines) of a gpiochip via the read-only GET_CHIPINFO ioctl."""
    try:
        if not stat.S_ISCHR(os.stat(path).st_mode):
            return UNKNOWN, None  # a fake tree's regular file: never open non-devices
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return UNKNOWN, None
    try:
        buf = bytearray(_CHIPINFO.size)
        fcntl.ioctl(fd, GPIO_GET_CHIPINFO_IOCTL, buf, True)
    except OSError:
        return UNKNOWN, None
    finally:
        os.close(fd)
    _name, label, lines = _CHIPINFO.unpack(bytes(buf))
    text = label.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return text or UNKNOWN, lines


def gpio_chips(root: str | os.PathLike[str] = "/") -> list[GpioChip]:
    """Every /dev/gpiochipN under `root`, in numeric order, with label and line count
    when the kernel answers. Empty when /dev has none or cannot be listed."""
    dev = Path(root) / "dev"
    numbered: list[tuple[int, str]] = []
    try:
        for entry in dev.iterdir():
            m = _GPIOCHIP_RE.match(entry.name)
            if m:
                numbered.append((int(m.group(1)), entry.name))
    except OSError:
        return []
    chips = []
    for _number, name in sorted(numbered):  # numeric order: gpiochip10 after gpiochip9
        label, lines = _chip_info(dev / name)
        chips.append(GpioChip(name=name, path=f"/dev/{name}", label=label, lines=lines))
    return chips


# --------------------------------------------------------------------------- detect

def detect(root: str | os.PathLike[str] = "/", *, machine: str | None = None,
           simd: NumpySimd | None = None) -> BoardInfo:
    """Detect board and CPU. `root` prefixes every path; `machine` overrides
    `platform.machine()` (a fake tree cannot change uname); `simd` overrides the numpy
    probe (which always describes the running interpreter, whatever `root` is)."""
    base = Path(root)
    cpuinfo, processors = _parse_cpuinfo(_read_text(base / "proc/cpuinfo"))
    meminfo = _parse_meminfo(_read_text(base / "proc/meminfo"))

    models = _dt_strings(_dt_read(base, "model"))
    # Pi kernels also append "Model :" to cpuinfo; use it when the device tree is hidden.
    model = models[0] if models else cpuinfo.get("Model") or UNKNOWN
    compatible = _dt_strings(_dt_read(base, "compatible"))

    code = _revision_code(base, cpuinfo)
    revision = decode_revision(code) if code else None

    is_pi = (model.startswith("Raspberry Pi")
             or any(c.startswith("raspberrypi,") for c in compatible))

    board_type = UNKNOWN
    if is_pi:
        # Trust order: the firmware revision code (decoded by gpiozero), then the device
        # tree's compatible list (also the fallback for a board newer than gpiozero).
        from_revision = (revision.board_type if revision is not None
                         and revision.board_type != UNKNOWN else None)
        board_type = (from_revision
                      or next((_MODEL_OF_COMPATIBLE[c] for c in compatible
                               if c in _MODEL_OF_COMPATIBLE), None)
                      or UNKNOWN)
    else:
        # A revision line on a non-Pi (some Arm boards print "Revision: 0000") means
        # nothing: do not let it dress the board up as a Pi.
        revision = None
    family = _FAMILY_OF_MODEL.get(board_type, board_type)

    soc = next((c.split(",", 1)[1].upper() for c in compatible if c.startswith("brcm,bcm")),
               None)
    if soc is None and compatible:
        soc = compatible[-1]  # by convention the last entry names the SoC
    if soc is None and revision is not None and revision.processor != UNKNOWN:
        soc = revision.processor
    if soc is None:
        soc = cpuinfo.get("Hardware") or UNKNOWN

    features = (cpuinfo.get("flags") or cpuinfo.get("Features") or "").split()
    cores = _parse_cpu_list(_read_text(base / "sys/devices/system/cpu/online"))
    if cores is None and processors:
        cores = processors

    chips = gpio_chips(base)
    return BoardInfo(
        machine=machine if machine is not None else (platform.machine() or UNKNOWN),
        model=model,
        compatible=compatible,
        is_raspberry_pi=is_pi,
        board_type=board_type,
        pi_family=family,
        pi_supported=is_pi and family in SUPPORTED_FAMILIES,
        revision=revision,
        soc=soc,
        cpu_model=_cpu_model(cpuinfo),
        cpu_features=features,
        cpu_cores=cores,
        numpy=simd if simd is not None else numpy_simd(),
        mem_total_kib=meminfo.get("MemTotal"),
        mem_available_kib=meminfo.get("MemAvailable"),
        gpiochips=chips,
        # lgpio needs both: a Pi board revision (LGPIOFactory refuses without one) and
        # a gpiochip node to open.
        gpio_capable=is_pi and bool(chips),
    )


def _mib(kib: int | None) -> str:
    return UNKNOWN if kib is None else str(kib // 1024)


def describe(info: BoardInfo) -> str:
    """One line for the boot log."""
    if info.is_raspberry_pi:
        extra = [f"family {info.pi_family}" + ("" if info.pi_supported else " (unsupported)")]
        if info.revision is not None:
            extra.append(f"rev {info.revision.code}")
            if info.revision.memory_mb is not None:
                extra.append(f"{info.revision.memory_mb} MB")
        extra.append(info.soc)
        board = f"{info.model} ({', '.join(extra)})"
    else:
        board = f"not a Raspberry Pi (model {info.model}, SoC {info.soc})"
    cores = UNKNOWN if info.cpu_cores is None else str(info.cpu_cores)
    cpu = f"{info.machine} {info.cpu_model} x{cores}"
    simd = (f"numpy {info.numpy.version} baseline {','.join(info.numpy.baseline) or 'none'}"
            f" dispatch {','.join(info.numpy.dispatch) or 'none'}")
    mem = f"mem {_mib(info.mem_available_kib)}/{_mib(info.mem_total_kib)} MiB available"
    if info.gpiochips:
        gpio = "gpio " + ", ".join(
            c.name if c.label == UNKNOWN else f"{c.name}={c.label}" for c in info.gpiochips)
    else:
        gpio = "gpio none"
    capable = "gpio_capable=yes" if info.gpio_capable else "gpio_capable=no"
    return " | ".join((board, cpu, simd, mem, gpio, capable))
