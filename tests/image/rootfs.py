"""Helpers for the tests in tests/image/: a real Debian 12 system tree for `install-pi
--root` (chroot mode), and wheelhouses of this host's architecture.

Both are cached under $BOT4_IMAGE_CACHE (default /var/tmp/bot4-image), keyed by what
goes into them, and built under a lock so parallel runs share one build:
  testroot-<hash>   debootstrap minbase of bookworm + python3-venv, python3-systemd,
                    systemd (what install-pi needs from the target system)
  hostwheels-<hash> cp311 wheels of bot4's dependencies for this machine (PyPI, once)
A test gets its own copy of the tree (cp --reflink=auto) and its own bot4 wheels.

Never: hand a test the cached tree itself, or reuse a half-built cache entry.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BOT4_IMAGE_CACHE", "/var/tmp/bot4-image"))
MIRROR = os.environ.get("BOT4_IMAGE_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ("python3", "python3-venv", "python3-systemd", "systemd", "ca-certificates")
RECIPE = 1


class _Lock:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = path.open("w")

    def __enter__(self) -> "_Lock":
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def debian_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def testroot() -> Path:
    """The cached Debian tree (built on first use: debootstrap, about 90 s)."""
    arch = debian_arch()
    base = CACHE / f"testroot-{_key(str(RECIPE), arch, MIRROR, *PACKAGES)}"
    with _Lock(CACHE / ".testroot.lock"):
        if not (base / ".complete").exists():
            if shutil.which("debootstrap") is None:
                subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=True,
                               capture_output=True)
            tmp = base.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            log = CACHE / "testroot-debootstrap.log"
            with log.open("w") as out:
                rc = subprocess.run(["nice", "debootstrap", "--variant=minbase", f"--arch={arch}",
                                     f"--include={','.join(PACKAGES)}", "bookworm", str(tmp),
                                     MIRROR], stdout=out, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                raise RuntimeError(f"debootstrap failed ({rc}): {log.read_text()[-3000:]}")
            for p in (tmp / "var/cache/apt/archives").glob("*.deb"):
                p.unlink()
            (tmp / ".complete").touch()
            tmp.rename(base)
    return base


def copy_root(dest: Path) -> Path:
    subprocess.run(["cp", "-a", "--reflink=auto", str(testroot()), str(dest)], check=True)
    (dest / ".complete").unlink()
    return dest


def dependency_wheels() -> Path:
    """Wheels of bot4's dependencies for this host (cached; PyPI on first use)."""
    pyproject = (REPO / "pyproject.toml").read_text()
    d = CACHE / f"hostwheels-{_key(pyproject, debian_arch(), sys.version.split()[0][:4])}"
    with _Lock(CACHE / ".hostwheels.lock"):
        if not (d / ".complete").exists():
            tmp = d.with_suffix(".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            self_wheel = build_wheel(tmp / "self")
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
                            "-d", str(tmp), str(self_wheel)], check=True)
            shutil.rmtree(tmp / "self")
            for w in tmp.glob("bot4-*.whl"):
                w.unlink()
            (tmp / ".complete").touch()
            shutil.rmtree(d, ignore_errors=True)
            tmp.rename(d)
        # Wheels for an older pyproject.toml are stale: drop them (never the one in use).
        for old in CACHE.glob("hostwheels-*"):
            if old != d and not old.name.endswith(".tmp"):
                shutil.rmtree(old, ignore_errors=True)
    return d


def build_wheel(out: Path, checkout: Path = REPO) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(out), str(checkout)], check=True, capture_output=True)
    return next(out.glob("bot4-*.whl"))


def checkout_copy(dest: Path, version: str | None = None) -> Path:
    """What git tracks in this tree (plus untracked, not ignored files), optionally with
    another version number in pyproject.toml."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, files):
        src = REPO / f.decode()
        if src.is_file():
            (dest / f.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f.decode())
    if version is not None:
        pp = dest / "pyproject.toml"
        pp.write_text(re.sub(r'(?m)^version = ".*"$', f'version = "{version}"', pp.read_text()))
    return dest


def wheelhouse(dest: Path, checkout: Path = REPO) -> Path:
    """A complete offline wheelhouse: the cached dependencies plus bot4 from `checkout`."""
    dest.mkdir(parents=True, exist_ok=True)
    for w in dependency_wheels().glob("*.whl"):
        os.link(w, dest / w.name) if w.stat().st_dev == dest.stat().st_dev \
            else shutil.copy2(w, dest / w.name)
    build_wheel(dest, checkout)
    return dest
