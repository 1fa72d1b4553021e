from __future__ import annotations

import pytest

from tests.daemon_harness import Daemon


@pytest.fixture
def start_daemon(tmp_path):
    """Start real bot4d subprocesses; every one is killed at teardown."""
    started: list[Daemon] = []

    def start(*extra: str, sub: str = "d", **kw) -> Daemon:
        d = Daemon(tmp_path / sub if sub else tmp_path, *extra, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()
