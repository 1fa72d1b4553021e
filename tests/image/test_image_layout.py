"""The Debian-base image as built by `scripts/build-image --raw-only`, read without
mounting (tests/image/imagefile.py: sfdisk, mtools, debugfs): partitions, boot files,
bot4 installed and enabled, no secrets and no password.

Opt-in: building the image takes tens of minutes under qemu-user on a shared machine
(README, "Boot test"). Set BOT4_IMAGE_TESTS=1; the image at dist/bot4-<version>-arm64.img
is built when missing (or point BOT4_IMAGE at another raw image)."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.image.imagefile import Image

REPO = Path(__file__).resolve().parents[2]
VERSION = re.search(r'(?m)^version = "(.*)"$', (REPO / "pyproject.toml").read_text()).group(1)
IMAGE = Path(os.environ.get("BOT4_IMAGE", REPO / "dist" / f"bot4-{VERSION}-arm64.img"))
pytestmark = [
    pytest.mark.skipif(os.environ.get("BOT4_IMAGE_TESTS") != "1",
                       reason="opt-in (slow image build): set BOT4_IMAGE_TESTS=1"),
    pytest.mark.skipif(os.geteuid() != 0, reason="building the image needs root"),
    pytest.mark.timeout(4 * 3600),
]


@pytest.fixture(scope="module")
def image() -> Image:
    if not IMAGE.exists():
        proc = subprocess.run([str(REPO / "scripts/build-image"), "--raw-only", "--out",
                               str(IMAGE.parent)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return Image(IMAGE)


def test_partitions(image: Image) -> None:
    assert image.label == "dos"    # the Pi boot ROM reads an MBR
    boot, root = image.parts
    assert boot.type == "c" and boot.bootable
    assert boot.start == 4 << 20 and boot.size == 256 << 20
    assert root.type == "83" and root.start == boot.start + boot.size
    assert root.start + root.size <= IMAGE.stat().st_size
    assert image.fat_label() == "RASPIFIRM"
    assert image.ext_label() == "RASPIROOT"


def test_boot_partition_has_firmware_kernel_and_generated_config(image: Image) -> None:
    names = image.fat_names()
    for firmware in ("bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat"):
        assert firmware in names, firmware
    kernel = [n for n in names if n.startswith("vmlinuz-")]
    initrd = [n for n in names if n.startswith("initrd.img-")]
    assert len(kernel) == 1 and len(initrd) == 1
    for dtb in ("bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb", "bcm2711-rpi-4-b.dtb",
                "bcm2837-rpi-zero-2-w.dtb"):
        assert dtb in names, dtb
    config = image.fat_read("config.txt")
    assert "arm_64bit=1" in config and f"kernel={kernel[0]}" in config
    assert f"initramfs {initrd[0]}" in config
    cmdline = image.fat_read("cmdline.txt")
    assert "root=LABEL=RASPIROOT" in cmdline and "console=ttyS1,115200" in cmdline
    # Nothing of the operator's: no config, credentials or keys are shipped.
    for name in ("bot4.toml", "bot4-credentials.toml", "authorized_keys"):
        assert name not in names


def test_bot4_installed_in_a_versioned_venv(image: Image) -> None:
    venv = image.stat("/opt/bot4/venv")
    assert venv and venv["type"] == "symlink"
    assert re.fullmatch(rf"versions/{re.escape(VERSION)}-\d{{8}}T\d{{6}}Z/venv", venv["target"])
    base = "/opt/bot4/" + venv["target"]
    for exe in ("bin/bot4d", "bin/bot4ctl", "bin/python"):
        assert image.exists(f"{base}/{exe}"), exe
    assert "include-system-site-packages = true" in image.read(f"{base}/pyvenv.cfg")
    assert image.stat("/opt/bot4/previous") is None


def test_units_and_dropins_are_the_checkouts_and_enabled(image: Image) -> None:
    files = {
        "units/bot4d.service": "/etc/systemd/system/bot4d.service",
        "etc/systemd/system/bot4d.service.d/10-firstboot.conf":
            "/etc/systemd/system/bot4d.service.d/10-firstboot.conf",
        "etc/systemd/system/bot4-firstboot.service": "/etc/systemd/system/bot4-firstboot.service",
        "etc/systemd/system/bot4-growroot.service": "/etc/systemd/system/bot4-growroot.service",
        "etc/systemd/system.conf.d/bot4-watchdog.conf": "/etc/systemd/system.conf.d/bot4-watchdog.conf",
        "etc/systemd/journald.conf.d/bot4-sdcard.conf": "/etc/systemd/journald.conf.d/bot4-sdcard.conf",
        "etc/systemd/system/ssh.service.d/bot4-keys.conf": "/etc/systemd/system/ssh.service.d/bot4-keys.conf",
        "etc/ssh/sshd_config.d/bot4.conf": "/etc/ssh/sshd_config.d/bot4.conf",
        "etc/sysusers.d/bot4.conf": "/etc/sysusers.d/bot4.conf",
        "etc/tmpfiles.d/bot4.conf": "/etc/tmpfiles.d/bot4.conf",
        "etc/udev/rules.d/60-bot4-gpio.rules": "/etc/udev/rules.d/60-bot4-gpio.rules",
    }
    for src, dst in files.items():
        assert image.read(dst) == (REPO / src).read_text(), f"{dst} (image older than the checkout? rebuild it)"
    # The config is the one its bot4 version shipped with (the checkout's may be newer).
    version_dir = "/opt/bot4/" + image.stat("/opt/bot4/venv")["target"].removesuffix("/venv")
    assert image.read("/etc/bot4/bot4.toml") == image.read(f"{version_dir}/bot4.toml.shipped")
    assert "[daemon]" in image.read("/etc/bot4/bot4.toml")
    wants = image.ls("/etc/systemd/system/multi-user.target.wants")
    for unit in ("bot4d.service", "bot4-firstboot.service", "bot4-growroot.service",
                 "ssh.service", "systemd-networkd.service"):
        assert unit in wants, unit
    # No test-only or sim drop-in in a shipped image: on a Pi bot4d runs real GPIO.
    assert image.ls("/etc/systemd/system/bot4d.service.d") == ["10-firstboot.conf"]
    cfg = image.stat("/etc/bot4/bot4.toml")
    assert cfg["mode"] == "0640" and cfg["uid"] == "0"


def test_system_setup(image: Image) -> None:
    fstab = image.read("/etc/fstab")
    assert re.search(r"(?m)^LABEL=RASPIROOT\s+/\s+ext4", fstab)
    assert re.search(r"(?m)^LABEL=RASPIFIRM\s+/boot/firmware\s+vfat", fstab)
    sources = image.read("/etc/apt/sources.list")
    assert "non-free-firmware" in sources
    assert "bot4:" in image.read("/etc/passwd") and "gpio:" in image.read("/etc/group")
    assert image.read("/etc/bot4-image-version").strip() == VERSION
    assert image.exists("/usr/lib/firmware/brcm") or image.exists("/lib/firmware/brcm")


def test_no_secrets_and_no_password(image: Image) -> None:
    shadow = image.read("/etc/shadow")
    root = next(line for line in shadow.splitlines() if line.startswith("root:"))
    assert root.split(":")[1].startswith("!")         # locked, no password
    for line in shadow.splitlines():
        assert not line.split(":")[1].startswith("$"), line.split(":")[0]   # no hash at all
    assert not [n for n in image.ls("/etc/ssh") if n.startswith("ssh_host_")]
    assert image.read("/etc/machine-id") == ""
    assert not image.exists("/etc/credstore")
    assert not image.exists("/root/.ssh/authorized_keys")
    assert not image.exists("/root/.bash_history")
