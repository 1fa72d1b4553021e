"""First-boot import of the operator's files from the SD card's FAT boot partition.

`bot4d import-config` runs as root from bot4-firstboot.service, before bot4d.service, at
every boot where one of these files sits on the boot partition (/boot/firmware):

    bot4.toml               -> /etc/bot4/bot4.toml                  0640 root:bot4
    bot4-credentials.toml   -> /etc/credstore/bot4-credentials.toml 0600 root:root, handed
                               to bot4d by systemd (LoadCredential=, drop-in written here)
    authorized_keys         -> /root/.ssh/authorized_keys           0600 root:root (sshd
                               starts only when this file exists)

Every file is validated first (bot4.toml exactly as `bot4d check-config` does). Only when
ALL files present are valid is anything moved: written beside the target, fsynced,
renamed over it, then removed from the FAT partition (with any stale `.error` file).
When a file is invalid nothing is moved, the file stays on the FAT partition and a
`<name>.error` file beside it names the problem; the command exits 78 so the unit fails
and bot4d (which Requires= the import) does not start on the wrong settings.

It must never: print or write a credential value (errors name the line and key only),
leave a half-written file in /etc, move a file it could not validate, or start trading
(the daemon boots to `ready` at most unless auto_start is set in the imported config).
"""
from __future__ import annotations

import grp
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from daemon import config as configmod

log = logging.getLogger("bot4d.firstboot")

CONFIG_NAME = "bot4.toml"
CREDENTIALS_NAME = "bot4-credentials.toml"
SSH_KEYS_NAME = "authorized_keys"
# Credential file layout: one table per venue, each key a non-empty string.
CREDENTIAL_KEYS = frozenset({"api_key", "api_secret", "passphrase"})
MAX_FILE_BYTES = 1 << 20   # a config or key file is a few KiB; refuse anything absurd


@dataclass(frozen=True)
class Paths:
    """Where things are read from and written to (tests point these at a scratch tree)."""
    boot: Path = Path("/boot/firmware")
    etc: Path = Path("/etc/bot4")
    credstore: Path = Path("/etc/credstore")
    dropin_dir: Path = Path("/etc/systemd/system/bot4d.service.d")
    ssh_dir: Path = Path("/root/.ssh")
    group: str = "bot4"


@dataclass
class Result:
    imported: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)   # FAT file name -> problem

    @property
    def ok(self) -> bool:
        return not self.errors


def _read_small(path: Path) -> bytes:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{size} bytes, more than the {MAX_FILE_BYTES} allowed")
    return path.read_bytes()


def check_credentials(data: bytes) -> None:
    """Raise ValueError naming the problem (never a value) unless `data` is a credentials
    file: TOML, tables of venues, each with only known keys holding non-empty strings."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        # tomllib's message gives the line and column, not the text of the line.
        raise ValueError(f"not valid TOML: {e}") from None
    if not doc:
        raise ValueError("no credentials in the file (expected e.g. [binance] api_key = \"...\")")
    for venue, table in doc.items():
        if not isinstance(table, dict):
            raise ValueError(f"'{venue}' must be a table like [{venue}] with api_key/api_secret")
        for key, value in table.items():
            if key not in CREDENTIAL_KEYS:
                raise ValueError(f"[{venue}] unknown key '{key}' (allowed: "
                                 f"{', '.join(sorted(CREDENTIAL_KEYS))})")
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"[{venue}] {key}: must be a non-empty string")
        for key in ("api_key", "api_secret"):
            if key not in table:
                raise ValueError(f"[{venue}] {key} is missing")


def check_ssh_keys(data: bytes) -> None:
    """Raise ValueError unless every non-comment line looks like an OpenSSH public key."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not plain ASCII (an authorized_keys file is)") from None
    keys = 0
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "PRIVATE KEY" in line:
            raise ValueError(f"line {n}: this is a private key; put the .pub key here")
        if not any(part.startswith(("ssh-", "ecdsa-", "sk-")) for part in line.split()[:3]):
            raise ValueError(f"line {n}: not an OpenSSH public key (ssh-ed25519 AAAA...)")
        keys += 1
    if keys == 0:
        raise ValueError("no public key in the file")


def _write_atomic(dst: Path, data: bytes, mode: int, uid: int, gid: int) -> None:
    """Write `data` to `dst` so that a power cut leaves the old file or the new one."""
    tmp = dst.with_name(f".{dst.name}.import")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)   # the umask must not decide a secret's mode
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dst)
    _fsync_dir(dst.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_from_fat(path: Path) -> None:
    path.unlink()
    error = path.with_name(path.name + ".error")
    if error.exists():
        error.unlink()
    _fsync_dir(path.parent)


def _write_error(path: Path, problem: str) -> None:
    error = path.with_name(path.name + ".error")
    error.write_text(
        f"bot4 did not import {path.name}: {problem}\n"
        f"Nothing was changed on the device and bot4d was not started.\n"
        f"Fix {path.name} (or delete it), delete this file, and boot again.\n",
        encoding="utf-8")
    _fsync_dir(path.parent)


def credentials_dropin(credstore: Path) -> str:
    return ("# Written by `bot4d import-config` (first boot): hands the imported venue\n"
            "# credentials to bot4d as a systemd credential; the daemon reads them from\n"
            "# $CREDENTIALS_DIRECTORY/bot4-credentials.toml, never from /etc.\n"
            "[Service]\n"
            f"LoadCredential={CREDENTIALS_NAME}:{credstore / CREDENTIALS_NAME}\n")


def import_boot_files(paths: Paths = Paths()) -> Result:
    """Validate every operator file on the boot partition; import all of them, or none.
    Returns what was imported and, per FAT file, the problem that stopped the import."""
    result = Result()
    found = {name: paths.boot / name for name in (CONFIG_NAME, CREDENTIALS_NAME, SSH_KEYS_NAME)
             if (paths.boot / name).is_file()}
    if not found:
        log.info("import-config: nothing to import on %s", paths.boot)
        return result
    contents: dict[str, bytes] = {}
    for name, path in found.items():
        try:
            data = _read_small(path)
            if name == CONFIG_NAME:
                # Exactly what `bot4d check-config` and the daemon accept; the import's own
                # environment is not the daemon's, so no BOT4__* overrides apply here.
                configmod.load(path, environ={})
            elif name == CREDENTIALS_NAME:
                check_credentials(data)
            else:
                check_ssh_keys(data)
            contents[name] = data
        except configmod.ConfigError as e:
            result.errors[name] = str(e)
        except (OSError, ValueError) as e:
            result.errors[name] = str(e)
    if result.errors:
        for name, problem in result.errors.items():
            log.error("import-config: %s is invalid, not imported: %s", found[name], problem)
            _write_error(found[name], problem)
        for name in contents:
            log.error("import-config: %s is valid but not imported either: the files are "
                      "imported together or not at all", found[name])
        return result

    gid = grp.getgrnam(paths.group).gr_gid
    if CONFIG_NAME in contents:
        paths.etc.mkdir(mode=0o750, parents=True, exist_ok=True)
        # 0640 root:bot4, what tmpfiles.d/bot4.conf enforces at every boot: the daemon
        # (user bot4) reads it, nobody else.
        _write_atomic(paths.etc / CONFIG_NAME, contents[CONFIG_NAME], 0o640, 0, gid)
        _remove_from_fat(found[CONFIG_NAME])
        result.imported.append(f"{found[CONFIG_NAME]} -> {paths.etc / CONFIG_NAME}")
    if CREDENTIALS_NAME in contents:
        paths.credstore.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(paths.credstore, 0o700)
        # Only PID 1 reads it (LoadCredential=); the daemon gets a private copy.
        _write_atomic(paths.credstore / CREDENTIALS_NAME, contents[CREDENTIALS_NAME],
                      0o600, 0, 0)
        paths.dropin_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        _write_atomic(paths.dropin_dir / "50-credentials.conf",
                      credentials_dropin(paths.credstore).encode(), 0o644, 0, 0)
        _remove_from_fat(found[CREDENTIALS_NAME])
        result.imported.append(f"{found[CREDENTIALS_NAME]} -> "
                               f"{paths.credstore / CREDENTIALS_NAME} (LoadCredential=)")
    if SSH_KEYS_NAME in contents:
        paths.ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(paths.ssh_dir, 0o700)
        _write_atomic(paths.ssh_dir / SSH_KEYS_NAME, contents[SSH_KEYS_NAME], 0o600, 0, 0)
        _remove_from_fat(found[SSH_KEYS_NAME])
        result.imported.append(f"{found[SSH_KEYS_NAME]} -> {paths.ssh_dir / SSH_KEYS_NAME}")
    for line in result.imported:
        log.info("import-config: imported %s", line)
    return result
