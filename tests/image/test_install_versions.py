"""scripts/install-pi for real, in chroot mode: `--root` pointing at a whole Debian 12
system (tests/image/rootfs.py), bot4 installed from offline wheelhouses into versioned
venvs. Covers what an operator relies on: running the installer twice changes nothing
they own and leaves the service enabled; an upgrade installs beside the old version and
switches only after its checks; a broken version is never switched to; rollback goes
back; config, journal and latch are never touched; uninstall keeps the journal unless
--purge.

Every install-pi runs in its own mount namespace (unshare -m), so the bind mounts it
makes in the tree cannot outlive it. Needs root (chroot, mount) and, the first time on a
machine, the Debian mirror and PyPI (cached afterwards).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.image import rootfs

INSTALLER = rootfs.REPO / "scripts" / "install-pi"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, bind mounts)"),
    pytest.mark.timeout(1800),
]
WANTS = "etc/systemd/system/multi-user.target.wants"


def install_pi(root: Path, *args: str, installer: Path = INSTALLER,
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["unshare", "-m", "--propagation", "private", "nice", "bash",
                           str(installer), "--force", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=1200)


def in_root(root: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    """Run a command inside the tree with /proc, /sys and /dev, in a private namespace."""
    script = ('set -e; for d in proc sys dev; do mount --bind /$d "$0/$d"; done; '
              'exec chroot "$0" "$@"')
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                           str(root), *cmd], capture_output=True, text=True, timeout=300)


def version_of(root: Path) -> str:
    proc = in_root(root, "/opt/bot4/venv/bin/python", "-c",
                   "import importlib.metadata as m; print(m.version('bot4'))")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def link(root: Path, name: str) -> str | None:
    p = root / "opt/bot4" / name
    return os.readlink(p) if p.is_symlink() else None


def digest(paths: list[Path]) -> dict[str, tuple[str, int, int, int]]:
    """Content hash, mode and owner of every file under these paths."""
    out = {}
    for top in paths:
        for p in sorted([top, *top.rglob("*")] if top.is_dir() else [top]):
            st = p.lstat()
            h = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            out[str(p)] = (h, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Wheelhouses: the checkout as it is (0.1.0...), the same code as version 9.9.0,
    and a version 9.9.1 that installs but cannot import (a broken release)."""
    base = tmp_path_factory.mktemp("wheels")
    current = rootfs.wheelhouse(base / "current")
    newer = rootfs.wheelhouse(base / "newer",
                              rootfs.checkout_copy(base / "src-newer", version="9.9.0"))
    broken_src = rootfs.checkout_copy(base / "src-broken", version="9.9.1")
    cli = broken_src / "daemon" / "cli.py"
    cli.write_text(cli.read_text() + '\nraise ImportError("bot4 9.9.1 is broken on purpose (test)")\n')
    broken = rootfs.wheelhouse(base / "broken", broken_src)
    return {"current": current, "newer": newer, "broken": broken}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return rootfs.copy_root(tmp_path / "root")


def make_state(root: Path) -> list[Path]:
    """An operator's config, credentials and a journal with a tripped latch, written by
    the installed bot4 itself (its own Journal class, inside the tree)."""
    cfg = root / "etc/bot4/bot4.toml"
    cfg.write_text(cfg.read_text().replace('log_level = "info"', 'log_level = "debug"'))
    creds = root / "etc/credstore/bot4-credentials.toml"
    creds.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    creds.write_text('[binance]\napi_key = "k"\napi_secret = "s"\n')
    creds.chmod(0o600)
    proc = in_root(root, "/opt/bot4/venv/bin/python", "-c",
                   "import os; from daemon.store.journal import Journal; "
                   "os.makedirs('/var/lib/bot4', exist_ok=True); "
                   "j = Journal('/var/lib/bot4/journal.sqlite3'); "
                   "j.set_latch(True, 'estop', 'pressed before the upgrade'); j.close()")
    assert proc.returncode == 0, proc.stderr
    return [root / "etc/bot4", root / "etc/credstore", root / "var/lib/bot4"]


def latch_of(root: Path) -> str:
    proc = in_root(root, "/opt/bot4/venv/bin/python", "-c",
                   "from daemon.store.journal import Journal; "
                   "j = Journal('/var/lib/bot4/journal.sqlite3', must_exist=True); "
                   "l = j.latch(); print(l.tripped, l.reason); j.close()")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_install_twice_keeps_config_and_service_enabled(root: Path,
                                                        wheels: dict[str, Path]) -> None:
    first = install_pi(root, "--wheelhouse", str(wheels["current"]))
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr
    assert "(chroot)" in first.stdout
    assert (root / WANTS / "bot4d.service").is_symlink()
    assert (root / WANTS / "bot4-firstboot.service").is_symlink()
    v1 = link(root, "venv")
    assert v1 and v1.startswith("versions/") and link(root, "previous") is None
    assert in_root(root, "/opt/bot4/venv/bin/bot4d", "check-config", "--config",
                   "/etc/bot4/bot4.toml").returncode == 0
    # The operator edits the config; the installer runs again.
    cfg = root / "etc/bot4/bot4.toml"
    cfg.write_text(cfg.read_text() + "# operator's edit\n")
    before = digest([root / "etc/bot4"])
    second = install_pi(root, "--wheelhouse", str(wheels["current"]))
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr
    assert f"keeping existing {cfg}" in second.stdout
    assert digest([root / "etc/bot4"]) == before
    assert (root / WANTS / "bot4d.service").is_symlink()
    assert (root / WANTS / "bot4-firstboot.service").is_symlink()
    # The re-run is an upgrade to the same code: a new version beside the first.
    assert link(root, "venv") != v1 and link(root, "previous") == v1.removesuffix("/venv")
    assert sorted(p.name for p in (root / "opt/bot4/versions").iterdir()) == sorted(
        [v1.split("/")[1], link(root, "venv").split("/")[1]])
    # The group bot4 exists in the tree (sysusers ran there, not on this host).
    assert "bot4:" in (root / "etc/group").read_text()


def test_upgrade_and_rollback_never_touch_config_journal_or_latch(
        root: Path, wheels: dict[str, Path]) -> None:
    proc = install_pi(root, "--wheelhouse", str(wheels["current"]))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    old_version, old_link = version_of(root), link(root, "venv")
    state = make_state(root)
    before = digest(state)

    up = install_pi(root, "--upgrade", str(wheels["newer"]))
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr
    assert version_of(root) == "9.9.0"
    assert link(root, "previous") == old_link.removesuffix("/venv")
    assert digest(state) == before
    assert latch_of(root) == "True pressed before the upgrade"

    back = install_pi(root, "--rollback")
    assert back.returncode == 0, back.stdout[-4000:] + back.stderr
    assert "rolled back" in back.stdout and "systemctl restart bot4d" in back.stdout
    assert version_of(root) == old_version and link(root, "venv") == old_link
    assert link(root, "previous", ).startswith("versions/9.9.0-")
    assert digest(state) == before
    assert latch_of(root) == "True pressed before the upgrade"
    # Rolling back again goes forward to 9.9.0: the two are swapped, nothing is lost.
    again = install_pi(root, "--rollback")
    assert again.returncode == 0, again.stderr
    assert version_of(root) == "9.9.0"


def test_broken_upgrade_is_never_switched_to(root: Path, wheels: dict[str, Path]) -> None:
    proc = install_pi(root, "--wheelhouse", str(wheels["current"]))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    good = link(root, "venv")
    versions = sorted(p.name for p in (root / "opt/bot4/versions").iterdir())
    bad = install_pi(root, "--upgrade", str(wheels["broken"]))
    assert bad.returncode == 1
    assert "failed to install or to pass its checks; nothing was switched" in bad.stderr
    assert "broken on purpose" in bad.stdout + bad.stderr
    assert link(root, "venv") == good
    assert sorted(p.name for p in (root / "opt/bot4/versions").iterdir()) == versions
    assert in_root(root, "/opt/bot4/venv/bin/bot4d", "check-config", "--config",
                   "/etc/bot4/bot4.toml").returncode == 0


def test_rollback_without_a_previous_version_refuses(root: Path,
                                                     wheels: dict[str, Path]) -> None:
    proc = install_pi(root, "--wheelhouse", str(wheels["current"]))
    assert proc.returncode == 0, proc.stderr
    current = link(root, "venv")
    back = install_pi(root, "--rollback")
    assert back.returncode == 1 and "no previous version to roll back to" in back.stderr
    assert link(root, "venv") == current


def test_uninstall_keeps_the_journal_unless_purged(root: Path,
                                                   wheels: dict[str, Path]) -> None:
    proc = install_pi(root, "--wheelhouse", str(wheels["current"]))
    assert proc.returncode == 0, proc.stderr
    state = make_state(root)
    before = digest(state)
    gone = install_pi(root, "--uninstall")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert not (root / "opt/bot4").exists()
    assert not (root / "etc/systemd/system/bot4d.service").exists()
    assert not (root / "etc/systemd/system/bot4-firstboot.service").exists()
    assert not (root / "etc/systemd/system/bot4d.service.d").exists()
    assert not (root / WANTS / "bot4d.service").exists()
    assert not (root / WANTS / "bot4-firstboot.service").is_symlink()
    assert digest(state) == before
    assert "kept /etc/bot4/bot4.toml and /var/lib/bot4" in gone.stdout
    purged = install_pi(root, "--uninstall", "--purge")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    for p in ("etc/bot4", "var/lib/bot4", "etc/credstore/bot4-credentials.toml"):
        assert not (root / p).exists(), p


def test_installed_bot4_refuses_a_journal_newer_than_it_understands(
        root: Path, wheels: dict[str, Path]) -> None:
    """After a rollback the older bot4 may meet a journal a newer bot4 migrated: it must
    refuse it untouched with a clear error (daemon/store/journal.py JournalTooNew)."""
    proc = install_pi(root, "--wheelhouse", str(wheels["current"]))
    assert proc.returncode == 0, proc.stderr
    make_state(root)
    journal = root / "var/lib/bot4/journal.sqlite3"
    # What a newer release's migration leaves behind: a schema version above ours.
    bump = in_root(root, "/opt/bot4/venv/bin/python", "-c",
                   "import sqlite3; from daemon.store import migrations as m; "
                   "db = sqlite3.connect('/var/lib/bot4/journal.sqlite3'); "
                   "db.execute(\"UPDATE meta SET value = ? WHERE key = 'schema'\", "
                   "(str(m.LATEST + 1),)); db.commit(); db.close(); print(m.LATEST + 1)")
    assert bump.returncode == 0, bump.stderr
    newer = bump.stdout.strip()
    before = digest([root / "var/lib/bot4"])
    run = in_root(root, "timeout", "120", "/opt/bot4/venv/bin/bot4d", "run", "--sim",
                  "--config", "/etc/bot4/bot4.toml", "--state-dir", "/var/lib/bot4",
                  "--socket", "/tmp/bot4-test.sock")
    assert run.returncode not in (0, 124), run.stdout + run.stderr   # refused, not running
    assert f"journal schema version {newer} is newer than this bot4 supports" in run.stderr
    assert {k: v for k, v in digest([root / "var/lib/bot4"]).items()
            if not k.endswith(("bot4d.lock", "-wal", "-shm"))} == \
        {k: v for k, v in before.items() if not k.endswith(("bot4d.lock", "-wal", "-shm"))}
    assert journal.exists()
