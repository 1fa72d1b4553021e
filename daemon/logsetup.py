"""Logging: to the systemd journal when running under systemd, else to stderr.

The journal socket silently drops messages when it is missing, so the journal handler is
used only when JOURNAL_STREAM is set (systemd connected our stderr to it) or the socket
exists. Never logs secrets; never raises.
"""
from __future__ import annotations

import logging
import os
import sys

_JOURNAL_SOCKET = "/run/systemd/journal/socket"


def setup(level: str = "info") -> str:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(getattr(logging, level.upper()))
    target = "stderr"
    if os.environ.get("JOURNAL_STREAM") and os.path.exists(_JOURNAL_SOCKET):
        try:
            from systemd.journal import JournalHandler
            h: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER="bot4d")
            h.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            target = "journal"
        except ImportError:
            h = logging.StreamHandler(sys.stderr)
            # journald adds time and pid itself; prefix the syslog priority instead.
            h.setFormatter(_PriorityFormatter("%(name)s: %(message)s"))
            target = "stderr(journal)"
    else:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root.addHandler(h)
    return target


class _PriorityFormatter(logging.Formatter):
    _PRI = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
            logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self._PRI.get(record.levelno, 6)}>{super().format(record)}"
