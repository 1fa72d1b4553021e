"""First-boot import (`bot4d import-config`, daemon/firstboot.py) on a scratch tree: a
"FAT partition" directory with the operator's files, and scratch /etc/bot4,
/etc/credstore, drop-in and ~/.ssh directories. Run through the real command line
(subprocess, as bot4-firstboot.service runs it) and in-process for the details.

Valid files are moved (modes and owners as the service needs them) and removed from the
FAT partition; an invalid file stays, gets a `.error` file naming the problem, nothing
is imported and the exit code is 78 (the unit fails, bot4d is not started)."""
from __future__ import annotations

import grp
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import firstboot

REPO = Path(__file__).resolve().parents[2]
CONFIG = (REPO / "etc/bot4/bot4.toml").read_text()
CREDS = '[binance]\napi_key = "AKIAEXAMPLEKEY"\napi_secret = "s3cr3t-value-never-logged"\n'
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0i0Ryz2C5Xb5hEbkFjvFS0u2Ie2lYkP0T1p9u8Uxs op@laptop\n"
# A group other than root's, so "root:<group>" is really checked (Debian has nogroup).
GROUP = "nogroup"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the import chowns files (root)")


@pytest.fixture
def tree(tmp_path: Path) -> firstboot.Paths:
    boot = tmp_path / "boot"
    boot.mkdir()
    return firstboot.Paths(boot=boot, etc=tmp_path / "etc/bot4",
                           credstore=tmp_path / "etc/credstore",
                           dropin_dir=tmp_path / "etc/systemd/system/bot4d.service.d",
                           ssh_dir=tmp_path / "root/.ssh", group=GROUP)


def cli(p: firstboot.Paths) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", "import-config", "--boot", str(p.boot),
         "--etc", str(p.etc), "--credstore", str(p.credstore), "--dropin-dir",
         str(p.dropin_dir), "--ssh-dir", str(p.ssh_dir), "--group", p.group, "--no-reload"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("BOT4__")})


def mode_owner(p: Path) -> tuple[int, int, int]:
    st = p.stat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


@needs_root
def test_valid_config_is_imported_and_removed_from_the_fat(tree: firstboot.Paths) -> None:
    text = CONFIG.replace('log_level = "info"', 'log_level = "debug"')
    (tree.boot / "bot4.toml").write_text(text)
    (tree.boot / "bot4.toml.error").write_text("left from an earlier failed boot\n")
    proc = cli(tree)
    assert proc.returncode == 0, proc.stderr
    dst = tree.etc / "bot4.toml"
    assert dst.read_text() == text
    assert mode_owner(dst) == (0o640, 0, grp.getgrnam(GROUP).gr_gid)
    assert not (tree.boot / "bot4.toml").exists()
    assert not (tree.boot / "bot4.toml.error").exists()
    assert f"imported {tree.boot / 'bot4.toml'} -> {dst}" in proc.stdout
    assert list(tree.etc.iterdir()) == [dst]           # no temporary file left behind
    assert not tree.credstore.exists() and not tree.dropin_dir.exists()


@needs_root
def test_import_replaces_an_existing_config(tree: firstboot.Paths) -> None:
    tree.etc.mkdir(parents=True)
    (tree.etc / "bot4.toml").write_text("# the old one\n")
    (tree.boot / "bot4.toml").write_text(CONFIG)
    assert cli(tree).returncode == 0
    assert (tree.etc / "bot4.toml").read_text() == CONFIG


@pytest.mark.parametrize("bad,problem", [
    ('[risk]\nmax_position = "lots"\n', "max_position"),
    ("[daemon]\nlog_level = \n", "TOML"),
    ("[nonsense]\nx = 1\n", "nonsense"),
    ("", "empty"),
])
def test_invalid_config_stays_with_an_error_file(tree: firstboot.Paths, bad: str,
                                                 problem: str) -> None:
    (tree.boot / "bot4.toml").write_text(bad)
    proc = cli(tree)
    assert proc.returncode == 78, proc.stdout + proc.stderr
    assert (tree.boot / "bot4.toml").read_text() == bad        # left exactly as it was
    error = (tree.boot / "bot4.toml.error").read_text()
    assert problem.lower() in error.lower(), error
    assert "bot4d was not started" in error
    assert problem.lower() in proc.stderr.lower()
    assert not tree.etc.exists()


@needs_root
def test_credentials_go_to_the_credstore_with_a_loadcredential_dropin(
        tree: firstboot.Paths) -> None:
    (tree.boot / "bot4.toml").write_text(CONFIG)
    (tree.boot / "bot4-credentials.toml").write_text(CREDS)
    proc = cli(tree)
    assert proc.returncode == 0, proc.stderr
    cred = tree.credstore / "bot4-credentials.toml"
    assert cred.read_text() == CREDS
    assert mode_owner(cred) == (0o600, 0, 0)
    assert stat.S_IMODE(tree.credstore.stat().st_mode) == 0o700
    dropin = (tree.dropin_dir / "50-credentials.conf").read_text()
    assert f"LoadCredential=bot4-credentials.toml:{cred}" in dropin
    assert not (tree.boot / "bot4-credentials.toml").exists()
    assert not (tree.boot / "bot4.toml").exists()
    assert "s3cr3t" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("bad,problem", [
    ('[binance]\napi_key = "k"\n', "api_secret is missing"),
    ('[binance]\napi_key = "k"\napi_secret = ""\n', "api_secret: must be a non-empty string"),
    ('[binance]\napi_key = "k"\napi_secret = "s3cr3t-value"\ntoken = "s3cr3t-value"\n',
     "unknown key 'token'"),
    ('api_key = "s3cr3t-value"\n', "must be a table"),
    ('[binance]\napi_key = "s3cr3t-value\n', "not valid TOML"),
])
def test_invalid_credentials_block_the_whole_import_and_never_echo_secrets(
        tree: firstboot.Paths, bad: str, problem: str) -> None:
    (tree.boot / "bot4.toml").write_text(CONFIG)
    (tree.boot / "bot4-credentials.toml").write_text(bad)
    proc = cli(tree)
    assert proc.returncode == 78
    error = (tree.boot / "bot4-credentials.toml.error").read_text()
    assert problem in error, error
    for text in (error, proc.stdout, proc.stderr):
        assert "s3cr3t" not in text
    # All or nothing: the valid config was not imported either, and stays.
    assert (tree.boot / "bot4.toml").exists() and not tree.etc.exists()
    assert not (tree.boot / "bot4.toml.error").exists()
    assert "imported together or not at all" in proc.stderr


@needs_root
def test_ssh_key_is_installed_for_root(tree: firstboot.Paths) -> None:
    (tree.boot / "authorized_keys").write_text(SSH_KEY)
    assert cli(tree).returncode == 0
    keys = tree.ssh_dir / "authorized_keys"
    assert keys.read_text() == SSH_KEY and mode_owner(keys) == (0o600, 0, 0)
    assert stat.S_IMODE(tree.ssh_dir.stat().st_mode) == 0o700
    assert not (tree.boot / "authorized_keys").exists()


def test_private_key_is_refused(tree: firstboot.Paths) -> None:
    (tree.boot / "authorized_keys").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n")
    assert cli(tree).returncode == 78
    assert "private key" in (tree.boot / "authorized_keys.error").read_text()


def test_nothing_on_the_fat_is_success_and_changes_nothing(tree: firstboot.Paths) -> None:
    proc = cli(tree)
    assert proc.returncode == 0, proc.stderr
    assert list(tree.boot.iterdir()) == [] and not tree.etc.exists()


def test_oversized_file_is_refused(tree: firstboot.Paths) -> None:
    (tree.boot / "bot4.toml").write_bytes(b"#" * (firstboot.MAX_FILE_BYTES + 1))
    result = firstboot.import_boot_files(tree)
    assert not result.ok and "more than" in result.errors["bot4.toml"]


def test_firstboot_unit_gates_bot4d() -> None:
    """The shipped units wire the import before bot4d and make its failure stop bot4d."""
    unit = (REPO / "etc/systemd/system/bot4-firstboot.service").read_text()
    assert "ExecStart=/opt/bot4/venv/bin/bot4d import-config --boot /boot/firmware" in unit
    assert "Before=bot4d.service" in unit and "RemainAfterExit=yes" in unit
    for name in ("bot4.toml", "bot4-credentials.toml", "authorized_keys"):
        assert f"ConditionPathExists=|/boot/firmware/{name}" in unit
    dropin = (REPO / "etc/systemd/system/bot4d.service.d/10-firstboot.conf").read_text()
    assert "Requires=bot4-firstboot.service" in dropin
    assert "After=bot4-firstboot.service" in dropin
