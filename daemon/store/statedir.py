"""The state directory's guards, kept OUTSIDE the SQLite journal so they survive its loss.

- `bot4d.lock`: an exclusive `flock` taken before anything else touches the directory. A
  second bot4d on the same state dir is refused (it would otherwise unlink the first's
  socket and "recover" the first's live orders). The kernel drops the lock when the holder
  dies, however it dies, so a stale lock file never blocks a restart.
- `running`: the run marker. Created (and fsynced) at boot, removed only by an orderly stop
  whose journal is known to be complete. Finding it at boot means the previous run ended
  uncleanly (kill -9, power cut, crash) or could not write its journal (disk full): the
  daemon then comes back latched, never trading, even if the latch row itself was lost.
- `journal.expected`: written once the journal exists. If it is present while the journal
  file is missing or empty, the journal was lost: boot is refused instead of silently
  starting a fresh journal without the latch, orders and positions.

This module only reads and writes these small files; it never decides trading state.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

LOCK_NAME = "bot4d.lock"
RUN_MARKER = "running"
JOURNAL_EXPECTED = "journal.expected"


class StateDirError(Exception):
    """The state directory cannot be used (held by another instance, unwritable)."""


class AlreadyRunning(StateDirError):
    """Another bot4d holds the state directory's lock."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class StateDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    # -- single instance ---------------------------------------------------------------
    def lock(self) -> None:
        """Take the exclusive lock or raise AlreadyRunning naming the holder's pid."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as e:
            raise StateDirError(f"state dir {self.path}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise AlreadyRunning(
                    f"another bot4d (pid {holder}) is running on state dir {self.path} "
                    f"(lock {self.path / LOCK_NAME}); stop it first") from None
            raise StateDirError(f"state dir {self.path}: cannot lock: {e}") from e
        # The pid inside is for the message above only; the flock is what counts.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)   # closing the descriptor releases the flock
            self._lock_fd = None

    # -- run marker ------------------------------------------------------------------------
    def previous_run_unclean(self) -> str | None:
        """What the marker of an unclean previous run says, or None after a clean stop."""
        marker = self.path / RUN_MARKER
        try:
            return marker.read_text(encoding="utf-8", errors="replace").strip() or "unknown"
        except FileNotFoundError:
            return None

    def mark_running(self) -> None:
        _write_durably(self.path / RUN_MARKER,
                       f"pid {os.getpid()} started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")

    def mark_clean_stop(self) -> None:
        try:
            (self.path / RUN_MARKER).unlink()
            _fsync_dir(self.path)
        except FileNotFoundError:
            pass

    # -- journal presence -----------------------------------------------------------------
    def journal_expected(self) -> str | None:
        try:
            return (self.path / JOURNAL_EXPECTED).read_text(encoding="utf-8").strip() or "yes"
        except FileNotFoundError:
            return None

    def expect_journal(self, journal_name: str) -> None:
        if self.journal_expected() is None:
            _write_durably(self.path / JOURNAL_EXPECTED,
                           f"{journal_name} created "
                           f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
