"""Logging setup for bot4d: the systemd journal when systemd runs us, else stderr.

Three targets, decided once at start by `setup()` (which returns the target's name):

- "journal": systemd-python's JournalHandler (structured fields, priority per record), only
  when stderr really is the journal stream — JOURNAL_STREAM is set and names the device and
  inode of our stderr (a child inherits the variable even when its stderr goes elsewhere) —
  AND the journal socket /run/systemd/journal/socket exists. Both are required: messages
  to a missing journal socket are dropped without an error, and a socket without the stream
  (bot4d run by hand, scripts/run-sim, tests on a machine with systemd) would hide the log
  from the terminal that started it.
- "stderr(journal)": stderr is the journal stream but the socket is missing or
  systemd-python is not installed: plain lines prefixed with the syslog priority ("<4>"),
  which journald turns into the record's priority.
- "stderr": anything else; lines carry their own timestamp and level.

Structured fields (journal target only): every record carries `BOT4_STATE` (the trading
state when it was logged, from the source registered with `set_state_source`), so
`journalctl -u bot4d BOT4_STATE=estop` lists what happened while the e-stop was latched;
a call may add more with `extra=fields(order_id=..., symbol=..., event=...)`, which become
`BOT4_ORDER_ID`, `BOT4_SYMBOL`, `BOT4_EVENT`. The human-readable line is the same on every
target; the stderr targets do not show the fields.

What it must never do: raise because of the environment (no stderr, a missing socket, no
systemd-python), or send records where nothing reads them; let a failing state source lose
a log line. An unknown level name is a ValueError that names it.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from typing import Callable

_JOURNAL_SOCKET = "/run/systemd/journal/socket"
_state_source: Callable[[], str] | None = None


def set_state_source(fn: Callable[[], str] | None) -> None:
    """Register what `BOT4_STATE` is read from (the supervisor's state; None: no field)."""
    global _state_source
    _state_source = fn


def fields(**kw: object) -> dict[str, str]:
    """`extra=` for a log call: fields(order_id="b4-r3--7") -> {"BOT4_ORDER_ID": "..."}."""
    out = {}
    for k, v in kw.items():
        if v is not None:
            name = "BOT4_" + re.sub(r"[^A-Z0-9_]", "_", k.upper())
            out[name] = str(v)
    return out


# The gateway's client order ids: "b4-" + run session + "-" + sequence (gateway.py; older
# runs wrote two dashes before the sequence).
_ORDER_ID = re.compile(r"\bb4-[A-Za-z0-9]+-+\d+\b")


class StateFields(logging.Filter):
    """Stamps every record with BOT4_STATE, and with BOT4_ORDER_ID when its message names
    an order (unless the call set them itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        src = _state_source
        try:
            if src is not None and not hasattr(record, "BOT4_STATE"):
                record.BOT4_STATE = str(src())
            if not hasattr(record, "BOT4_ORDER_ID"):
                m = _ORDER_ID.search(record.getMessage())
                if m:
                    record.BOT4_ORDER_ID = m.group(0)
        except Exception:   # noqa: BLE001 - a log line is never lost to its fields
            pass
        return True


def _stderr_is_journal_stream() -> bool:
    """True when systemd connected our stderr to the journal: JOURNAL_STREAM is
    "<device>:<inode>" of that stream (systemd.exec(5)), compared with fstat(stderr)."""
    dev, sep, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (sep and dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no stderr, or not a real file
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def setup(level: str = "info") -> str:
    """Replace the root logger's handlers with one for the right target; returns its name
    ("journal", "stderr(journal)" or "stderr")."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(numeric)
    stream = _stderr_is_journal_stream()
    handler: logging.Handler | None = None
    target = "stderr"
    if stream and os.path.exists(_JOURNAL_SOCKET):
        try:
            from systemd.journal import JournalHandler
        except ImportError:
            pass
        else:
            handler = JournalHandler(SYSLOG_IDENTIFIER="bot4d")
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            handler.addFilter(StateFields())
            target = "journal"
    if handler is None and stream:
        handler = logging.StreamHandler(sys.stderr)
        # journald adds time and pid itself; prefix the syslog priority instead.
        handler.setFormatter(_PriorityFormatter("%(name)s: %(message)s"))
        target = "stderr(journal)"
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(handler)
    return target


class _PriorityFormatter(logging.Formatter):
    _PRI = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
            logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self._PRI.get(record.levelno, 6)}>{super().format(record)}"
