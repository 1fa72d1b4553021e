"""units/bot4d.service under a real systemd: runs scripts/systemd-e2e, which boots Debian
bookworm in systemd-nspawn, installs bot4d there (--sim) and checks READY, the control
socket, the hardening, the watchdog kill + ExecStopPost + restart, the orderly stop and
the no-restart rule for a config error. One PASS/FAIL line per check; every check listed in
CHECKS must pass.

The second test breaks the unit on purpose (a drop-in) and expects exactly the checks that
cover those directives to fail, so a green first test means something.

Skips only when not root, or when debootstrap/systemd-nspawn cannot be installed (the
script exits 77 and says why). One script run takes ~1.5 min cold (debootstrap, wheels
from PyPI) and ~30-40 s warm (cache in /var/tmp/bot4-e2e); this module runs it twice.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "systemd-e2e"
CHECKS = ["1a", "1b", "1c", "2a", "2b", "2c", "2d", "2e", "2f",
          "3a", "3b", "3c", "3d", "3e", "3f", "4a", "4b", "5a", "5b", "5c"]
# A cold run measured ~85 s here; generous for a slow mirror. The script bounds its own
# waits; this is the backstop.
RUN_TIMEOUT_S = 1200

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (debootstrap, systemd-nspawn)"),
    pytest.mark.timeout(RUN_TIMEOUT_S + 120),
]


def run_e2e(tmp_path: Path, *args: str) -> tuple[int, str, dict[str, str]]:
    """Run the script in its own session; on timeout it gets SIGTERM (its trap powers the
    container off), then SIGKILL. Returns (exit code, output, {check id: PASS|FAIL})."""
    log = tmp_path / "systemd-e2e.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(SCRIPT), *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            pytest.fail(f"scripts/systemd-e2e timed out after {RUN_TIMEOUT_S} s:\n"
                        + log.read_text()[-6000:])
    text = log.read_text()
    results = {m.group(2): m.group(1)
               for m in re.finditer(r"^(PASS|FAIL) (\w+): ", text, re.MULTILINE)}
    return rc, text, results


def skip_if_cannot_run(rc: int, text: str) -> None:
    if rc == 77:
        reason = next((line for line in text.splitlines() if line.startswith("SKIP: ")),
                      "SKIP: (no reason printed)")
        pytest.skip(f"scripts/systemd-e2e: {reason[6:]}")


def test_unit_end_to_end_under_real_systemd(tmp_path):
    rc, text, results = run_e2e(tmp_path)
    skip_if_cannot_run(rc, text)
    summary = "\n".join(line for line in text.splitlines()
                        if line.startswith(("PASS", "FAIL", "RESULT", "timings", "rootfs")))
    print(summary)
    failed = sorted(c for c, r in results.items() if r == "FAIL")
    missing = [c for c in CHECKS if c not in results]
    assert not failed and not missing and rc == 0, (
        f"exit {rc}; failed {failed}; missing {missing}\n{text[-8000:]}")
    assert "RESULT: all " in text


def test_e2e_catches_a_broken_unit(tmp_path):
    broken = tmp_path / "broken.conf"
    broken.write_text(
        "[Service]\n"
        "Type=simple\n"                    # start no longer waits for READY=1 -> 1a, 1b
        "DevicePolicy=auto\nDeviceAllow=\n"  # no device restriction -> 2f
        "RestartPreventExitStatus=\n"      # exit 78 restart-loops -> 5c
    )
    rc, text, results = run_e2e(tmp_path, "--extra-dropin", str(broken))
    skip_if_cannot_run(rc, text)
    failed = {c for c, r in results.items() if r == "FAIL"}
    assert rc == 1, f"exit {rc}, expected 1 (checks failed)\n{text[-6000:]}"
    assert {"1a", "1b", "2f", "5c"} <= failed, f"failed: {sorted(failed)}\n{text[-6000:]}"
    # Untouched behaviour still passes: the watchdog path and the orderly stop.
    for c in ("3b", "3d", "4a", "4b"):
        assert results.get(c) == "PASS", f"{c}: {results.get(c)}\n{text[-6000:]}"
