"""Tests for scripts/install-pi, run for real but harmlessly: into a scratch --root tree,
or with --dry-run, and always with stand-ins for every host-changing command on PATH, so
a call that should never happen is recorded (and fails the test) instead of executed."""
from __future__ import annotations

import os
import platform
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
INSTALLER = REPO / "scripts" / "install-pi"

# Commands that change the host. With --root or --dry-run none of them may run.
HOST_COMMANDS = ("apt-get", "apt", "systemctl", "systemd-sysusers", "systemd-tmpfiles",
                 "udevadm", "systemd-analyze", "pip", "pip3", "chgrp", "chown", "useradd",
                 "groupadd", "sudo")
# What the installer puts where (checkout path -> installed path, mode).
INSTALLED = {
    "units/bot4d.service": ("etc/systemd/system/bot4d.service", 0o644),
    "etc/sysusers.d/bot4.conf": ("etc/sysusers.d/bot4.conf", 0o644),
    "etc/tmpfiles.d/bot4.conf": ("etc/tmpfiles.d/bot4.conf", 0o644),
    "etc/udev/rules.d/60-bot4-gpio.rules": ("etc/udev/rules.d/60-bot4-gpio.rules", 0o644),
    "etc/systemd/system.conf.d/bot4-watchdog.conf":
        ("etc/systemd/system.conf.d/bot4-watchdog.conf", 0o644),
    "etc/systemd/journald.conf.d/bot4-sdcard.conf":
        ("etc/systemd/journald.conf.d/bot4-sdcard.conf", 0o644),
    "etc/systemd/system/bot4-firstboot.service":
        ("etc/systemd/system/bot4-firstboot.service", 0o644),
    "etc/systemd/system/bot4d.service.d/10-firstboot.conf":
        ("etc/systemd/system/bot4d.service.d/10-firstboot.conf", 0o644),
    "etc/bot4/bot4.toml": ("etc/bot4/bot4.toml", 0o640),
}
ENABLE = "systemctl enable bot4d.service bot4-firstboot.service"
IS_ARM64 = platform.machine() == "aarch64" and (
    shutil.which("dpkg") is None
    or subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                      text=True).stdout.strip() == "arm64")


def make_stubs(tmp_path: Path, extra: tuple[str, ...] = ()) -> tuple[Path, Path]:
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)  # reused across runs in one test; the log starts empty
    log = tmp_path / "calls.log"
    log.write_text("")
    for name in HOST_COMMANDS + extra:
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit 0\n')
        stub.chmod(0o755)
    return stubs, log


def run(args: list[str], tmp_path: Path, *, installer: Path = INSTALLER,
        extra_stubs: tuple[str, ...] = (), prefix: list[str] | None = None,
        ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    stubs, log = make_stubs(tmp_path, ("python3", *extra_stubs))
    # The installer calls the system interpreter by absolute path; point it at the stub
    # so even a broken --dry-run can never build a venv in /opt on the test host.
    env = dict(os.environ, PATH=f"{stubs}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               LC_ALL="C", BOT4_SYSTEM_PYTHON=str(stubs / "python3"))
    proc = subprocess.run([*(prefix or []), "bash", str(installer), *args],
                          capture_output=True, text=True, env=env, timeout=120)
    return proc, log.read_text().splitlines()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


# --------------------------------------------------------------------------- --root

def test_root_install_lands_files(tmp_path: Path, root: Path) -> None:
    proc, calls = run(["--force", "--root", str(root)], tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert calls == [], f"host commands ran despite --root: {calls}"
    for src, (dst, mode) in INSTALLED.items():
        target = root / dst
        assert target.read_bytes() == (REPO / src).read_bytes(), dst
        assert stat.S_IMODE(target.stat().st_mode) == mode, dst
    assert stat.S_IMODE((root / "etc/bot4").stat().st_mode) == 0o750
    # Exactly these files and their directories, nothing else (no venv under --root).
    expected = set()
    for dst, _ in INSTALLED.values():
        parts = Path(dst).parts
        expected |= {str(Path(*parts[:i])) for i in range(1, len(parts) + 1)}
    assert set(tree(root)) == expected
    out = proc.stdout
    for host_step in ("apt-get update", "systemd-sysusers /etc/sysusers.d/bot4.conf",
                      "systemctl daemon-reload", ENABLE,
                      "udevadm control --reload-rules"):
        assert f"skip (--root {root}): {host_step}" in out, host_step
    assert "not building /opt/bot4/venv" in out
    assert "systemctl start" not in out


def test_root_install_keeps_existing_config(tmp_path: Path, root: Path) -> None:
    config = root / "etc/bot4/bot4.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# operator's own config\n")
    config.chmod(0o600)
    proc, calls = run(["--force", "--root", str(root)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert calls == []
    assert config.read_text() == "# operator's own config\n"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert f"keeping existing {config}" in proc.stdout


def test_root_install_is_repeatable(tmp_path: Path, root: Path) -> None:
    first, _ = run(["--force", "--root", str(root)], tmp_path)
    assert first.returncode == 0, first.stderr
    before = {p: (root / p).read_bytes() for p in tree(root) if (root / p).is_file()}
    second, calls = run(["--force", f"--root={root}"], tmp_path)
    assert second.returncode == 0, second.stderr
    assert calls == []
    after = {p: (root / p).read_bytes() for p in tree(root) if (root / p).is_file()}
    assert after == before
    assert "keeping existing" in second.stdout


def test_missing_source_fails_before_changing_anything(tmp_path: Path, root: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(INSTALLER, checkout / "scripts/install-pi")
    shutil.copy2(REPO / "pyproject.toml", checkout / "pyproject.toml")
    for src in INSTALLED:
        (checkout / src).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / src, checkout / src)
    (checkout / "etc/udev/rules.d/60-bot4-gpio.rules").unlink()
    proc, calls = run(["--force", "--root", str(root)], tmp_path,
                      installer=checkout / "scripts/install-pi")
    assert proc.returncode == 1
    assert "etc/udev/rules.d/60-bot4-gpio.rules" in proc.stderr
    assert tree(root) == [] and calls == []


def test_copied_checkout_installs_from_its_own_files(tmp_path: Path, root: Path) -> None:
    # The installer takes files from the checkout it lives in, not from a fixed path.
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy2(INSTALLER, checkout / "scripts/install-pi")
    shutil.copy2(REPO / "pyproject.toml", checkout / "pyproject.toml")
    for src in INSTALLED:
        (checkout / src).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / src, checkout / src)
    (checkout / "etc/bot4/bot4.toml").write_text("# marker from the copied checkout\n")
    proc, _ = run(["--force", "--root", str(root)], tmp_path,
                  installer=checkout / "scripts/install-pi")
    assert proc.returncode == 0, proc.stderr
    assert (root / "etc/bot4/bot4.toml").read_text() == "# marker from the copied checkout\n"


# --------------------------------------------------------------------------- --dry-run

def test_dry_run_on_host_lists_every_action_and_does_nothing(tmp_path: Path) -> None:
    # No --root: this is the plan for the real machine. `install` and `python3` are
    # stubbed too, so any action that slipped past --dry-run would be recorded.
    proc, calls = run(["--dry-run", "--force"], tmp_path, extra_stubs=("install",))
    assert proc.returncode == 0, proc.stderr
    assert calls == [], f"commands ran in a dry run: {calls}"
    planned = [line[len("would run: "):] for line in proc.stdout.splitlines()
               if line.startswith("would run: ")]
    assert planned[0] == "apt-get update"
    apt = next(p for p in planned if "apt-get install" in p).split()
    assert {"python3-venv", "python3-systemd", "python3-dev", "gcc"} <= set(apt)
    for src, (dst, mode) in INSTALLED.items():
        if src == "etc/bot4/bot4.toml" and Path("/etc/bot4/bot4.toml").exists():
            assert "keeping existing /etc/bot4/bot4.toml" in proc.stdout
            continue
        assert any(p.startswith("install ") and p.endswith(f"{REPO}/{src} /{dst}")
                   and f"-m 0{mode:o}" in p for p in planned), src
    assert "systemd-sysusers /etc/sysusers.d/bot4.conf" in planned
    # A new version beside the old one, checked, then switched (never in place).
    venv = next(p for p in planned if " -m venv --system-site-packages " in p)
    m = re.fullmatch(rf"{tmp_path}/stubs/python3 -m venv --system-site-packages "
                     r"/opt/bot4/versions/(0\.\d+\.\d+-\d{8}T\d{6}Z)/venv", venv)
    assert m, venv
    new = f"/opt/bot4/versions/{m.group(1)}"
    assert f"{new}/venv/bin/python -m pip install {REPO}" in planned
    check = planned.index(f"{new}/venv/bin/bot4d check-config --config /etc/bot4/bot4.toml")
    switch = planned.index(f"ln -sfn versions/{m.group(1)}/venv /opt/bot4/venv.new")
    assert check < switch
    assert planned[switch + 1] == "mv -T /opt/bot4/venv.new /opt/bot4/venv"
    assert planned[-1] == ENABLE
    assert "systemctl daemon-reload" in planned
    assert not any("systemctl start" in p or "systemctl restart" in p for p in planned)
    # sysusers before the config (its group must exist), venv before enabling the unit.
    idx = {key: next(i for i, p in enumerate(planned) if key in p)
           for key in ("systemd-sysusers", "systemd-tmpfiles", "-m venv", "daemon-reload",
                       "enable bot4d")}
    assert idx["systemd-sysusers"] < idx["systemd-tmpfiles"]
    assert idx["-m venv"] < idx["daemon-reload"] < idx["enable bot4d"]
    assert "dry run: nothing was changed" in proc.stdout


def test_dry_run_with_root_changes_nothing(tmp_path: Path, root: Path) -> None:
    proc, calls = run(["--dry-run", "--force", "--root", str(root)], tmp_path,
                      extra_stubs=("install",))
    assert proc.returncode == 0, proc.stderr
    assert calls == [] and tree(root) == []
    assert f"would run: install -D -m 0644 {REPO}/units/bot4d.service " \
           f"{root}/etc/systemd/system/bot4d.service" in proc.stdout
    assert f"skip (--root {root}): {ENABLE}" in proc.stdout


# --------------------------------------------------------------------------- refusals

@pytest.mark.skipif(IS_ARM64, reason="this host is arm64: the installer rightly proceeds")
def test_refuses_non_arm64_without_force(tmp_path: Path, root: Path) -> None:
    proc, calls = run(["--root", str(root)], tmp_path)
    assert proc.returncode == 1
    assert "arm64" in proc.stderr and "--force" in proc.stderr
    assert platform.machine() in proc.stderr
    assert tree(root) == [] and calls == []


@pytest.mark.skipif(IS_ARM64, reason="this host is arm64: the installer rightly proceeds")
def test_dry_run_also_refuses_non_arm64(tmp_path: Path) -> None:
    proc, calls = run(["--dry-run"], tmp_path)
    assert proc.returncode == 1 and "--force" in proc.stderr
    assert "would run" not in proc.stdout and calls == []


def test_real_host_install_needs_root(tmp_path: Path) -> None:
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) missing"
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    tmp_path.chmod(0o755)  # the unprivileged user must reach the stub directory
    proc, calls = run(["--force"], tmp_path, extra_stubs=("install",), prefix=prefix)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "run as root" in proc.stderr
    assert calls == []


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "unknown option: --bogus"),
    (["--root"], "--root needs a directory"),
    (["--force", "--root", "/nonexistent/bot4-root"], "no such directory"),
])
def test_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    proc, calls = run(args, tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert calls == []


def test_venv_is_built_from_debians_python() -> None:
    # python3-systemd is only visible to a venv made from /usr/bin/python3; the override
    # exists for the tests above and must default to it.
    assert 'SYSTEM_PYTHON="${BOT4_SYSTEM_PYTHON:-/usr/bin/python3}"' in INSTALLER.read_text()


def test_help(tmp_path: Path) -> None:
    proc, calls = run(["--help"], tmp_path)
    assert proc.returncode == 0
    for option in ("--dry-run", "--force", "--root DIR", "--no-venv", "--wheelhouse DIR",
                   "--upgrade FROM", "--rollback", "--uninstall", "--purge"):
        assert option in proc.stdout
    assert calls == []
