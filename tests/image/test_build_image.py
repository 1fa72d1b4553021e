"""scripts/build-image on every path that does not need the official Raspberry Pi OS
download: it refuses at once when the base cannot be fetched, refuses a base that does
not match the pinned sha256, accepts one that does (--check-only, with the pin pointed
at a test file), and rejects bad arguments. Nothing here builds an image (see
test_image_layout.py for that)."""
from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build-image"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="build-image refuses to run unprivileged")
PINNED_URL = re.search(r'RASPIOS_URL="\$\{BOT4_RASPIOS_URL:-([^}]+)\}"', SCRIPT.read_text()).group(1)
PINNED_SHA = re.search(r'RASPIOS_SHA256="\$\{BOT4_RASPIOS_SHA256:-([0-9a-f]+)\}"',
                       SCRIPT.read_text()).group(1)


def build(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("BOT4_")}
    full.update(BOT4_IMAGE_CACHE=str(tmp_path / "cache"), **env)
    return subprocess.run([str(SCRIPT), "--out", str(tmp_path / "out"), *args],
                          capture_output=True, text=True, env=full, timeout=120)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # closed again when the block ends: connect is refused


def test_pinned_base_is_the_bookworm_arm64_lite_image() -> None:
    assert PINNED_URL.startswith("https://downloads.raspberrypi.com/raspios_lite_arm64/images/")
    assert PINNED_URL.endswith("-raspios-bookworm-arm64-lite.img.xz")
    assert len(PINNED_SHA) == 64


def test_unreachable_base_fails_at_once_with_a_clear_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/2024-11-19-raspios-bookworm-arm64-lite.img.xz"
    proc = build(tmp_path, "--base", "raspios", BOT4_RASPIOS_URL=url)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    err = proc.stderr
    assert "the official Raspberry Pi OS base cannot be downloaded here" in err
    assert url in err and PINNED_SHA in err
    assert "--base debian" in err and "--base-image FILE" in err
    assert "curl:" in err
    # Nothing was built or left half-downloaded.
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_default_url_refused_offline(tmp_path: Path) -> None:
    try:
        socket.getaddrinfo("downloads.raspberrypi.com", 443)
    except OSError:
        pass
    else:
        pytest.skip("downloads.raspberrypi.com resolves here: this test must not download 400 MB")
    proc = build(tmp_path, "--base", "raspios")
    assert proc.returncode == 3
    assert PINNED_URL in proc.stderr and "cannot be downloaded here" in proc.stderr


def test_base_image_with_wrong_sha256_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "2024-11-19-raspios-bookworm-arm64-lite.img.xz"
    fake.write_bytes(b"not the real image")
    proc = build(tmp_path, "--base", "raspios", "--base-image", str(fake))
    assert proc.returncode == 3
    assert "does not match its pinned sha256" in proc.stderr
    assert PINNED_SHA in proc.stderr
    assert hashlib.sha256(b"not the real image").hexdigest() in proc.stderr
    assert "Refusing to build from an unverified base" in proc.stderr
    assert fake.exists()          # the operator's file is never deleted


def test_base_image_matching_the_pin_is_accepted(tmp_path: Path) -> None:
    base = tmp_path / "base.img.xz"
    base.write_bytes(b"stand-in for the verified download")
    sha = hashlib.sha256(base.read_bytes()).hexdigest()
    proc = build(tmp_path, "--base", "raspios", "--base-image", str(base), "--check-only",
                 BOT4_RASPIOS_SHA256=sha)
    assert proc.returncode == 0, proc.stderr
    assert f"base verified: base.img.xz sha256 {sha}" in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["--base", "ubuntu"], "--base must be debian or raspios"),
    (["--base-image", "/x.img.xz"], "--base-image is for --base raspios"),
    (["--bogus"], "unknown option: --bogus"),
    (["--base", "raspios", "--base-image", "/nonexistent.img.xz"], "no such file"),
])
def test_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    proc = build(tmp_path, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
