"""The malformed-config torture set through real `bot4d check-config` subprocesses.

Every case in tests/config_cases.py must end in exit 78 (EX_CONFIG, which systemd does not
restart) with exactly one stderr line `bot4d: config error: ...` that names the key (or the
file for whole-file problems), the line where the damage sits, and the environment variable
instead of the file when an override caused it. Never a traceback, never exit 1.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.config_cases import CASES, SHIPPED, Built, Case
from tests.daemon_harness import CONFIG, REPO

PREFIX = "bot4d: config error: "


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT4__")}
    env.update(extra)
    return env


def _check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # A FIFO or a hanging parser would block: the timeout turns that into a failure of
    # that one case (returncode None) rather than of the whole set.
    args = [sys.executable, "-m", "daemon.cli", "check-config", "--config", str(path)]
    try:
        return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=60,
                              env=_env(env))
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, None, "", "(timed out after 60 s)")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple[Built, subprocess.CompletedProcess]]:
    """All cases at once on a small thread pool: each subprocess spends most of its time
    importing, so a few in parallel keep the set short even on two cores."""
    root = tmp_path_factory.mktemp("torture")
    built = {c.name: c.build(root / c.name) for c in CASES}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {c.name: pool.submit(_check, built[c.name].path, c.env) for c in CASES}
        return {name: (built[name], f.result()) for name, f in futures.items()}


def test_the_set_is_big_enough():
    assert len(CASES) >= 50
    assert sum(1 for c in CASES if c.from_env) >= 5


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_malformed_config_exits_78_naming_the_key(results, case: Case):
    built, r = results[case.name]
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 78, (r.returncode, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    msg = lines[0]
    assert msg.startswith(PREFIX), msg
    for word in case.names:
        assert word in msg, f"{word!r} not in {msg!r}"
    if case.from_env:
        var = next(iter(k for k in case.env if k in msg), None)
        assert var is not None and f"environment {var}:" in msg, msg
        assert str(built.path) not in msg, "an environment problem must not blame the file"
    else:
        assert msg.startswith(f"{PREFIX}{built.path}"), msg
        if built.line is not None:
            assert f"{built.path}, line {built.line}:" in msg, msg


def test_shipped_config_passes_check_config():
    r = _check(CONFIG, {})
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "OK" in r.stdout


def test_every_case_differs_from_the_shipped_file_in_one_place_only(tmp_path):
    """Guards the generator: a case that damaged several keys (or none) would prove less."""
    import difflib
    for c in CASES:
        if c.env:
            continue
        built = c.build(tmp_path / c.name)
        if not built.path.is_file() or built.path.stat().st_size > 100_000:
            continue
        try:
            text = built.path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if not text.startswith(SHIPPED[:200]):
            continue   # a file written from scratch
        changed = [d for d in difflib.ndiff(SHIPPED.splitlines(), text.splitlines())
                   if d[:2] in ("+ ", "- ")]
        assert 1 <= len(changed) <= 4, (c.name, changed)
