"""The journal's audit trail: the config a run loaded, and every operator command that may
change something, recorded before it acts."""
from __future__ import annotations

import asyncio
import hashlib

import pytest

from daemon import config
from daemon.control.server import CommandError
from daemon.states import State
from daemon.supervisor import RunOptions, Supervisor
from tests.daemon_harness import CONFIG
from tests.test_safety_inproc import _stop, _until


async def _boot(tmp_path, cfg_path=CONFIG, env=None):
    cfg = config.load(cfg_path, environ={"BOT4__MARKET__SYNTHETIC_RATE_HZ": "200", **(env or {})})
    sup = Supervisor(cfg, RunOptions(sim=True, state_dir=str(tmp_path / "state"),
                                     socket=str(tmp_path / "c.sock"), config_path=str(cfg_path)))
    task = asyncio.create_task(sup.run())
    await _until(lambda: sup.state is not State.BOOTING, what="boot")
    return sup, task


def test_boot_journals_the_hash_of_the_config_file_and_of_the_effective_settings(tmp_path):
    async def main():
        sup, task = await _boot(tmp_path)
        (_, _, first), = sup.journal.audit_rows("config_loaded")
        assert first["path"] == str(CONFIG)
        assert first["file_sha256"] == hashlib.sha256(CONFIG.read_bytes()).hexdigest()
        await _stop(sup, task)
        # Same file, one environment override: the file hash stays, the effective one moves.
        sup, task = await _boot(tmp_path, env={"BOT4__RISK__MAX_OPEN_ORDERS": "7"})
        rows = [d for _, _, d in sup.journal.audit_rows("config_loaded")]
        assert len(rows) == 2
        assert rows[1]["file_sha256"] == first["file_sha256"]
        assert rows[1]["effective_sha256"] != first["effective_sha256"]
        await _stop(sup, task)
    asyncio.run(main())


def test_operator_commands_are_journalled_stops_after_their_trip_reads_never(tmp_path):
    async def main():
        sup, task = await _boot(tmp_path)
        booted = len(sup.journal.audit_rows())
        await sup.handle_command({"cmd": "status"})
        await sup.handle_command({"cmd": "start"})
        await sup.handle_command({"cmd": "halt", "reason": "lunch"})
        with pytest.raises(CommandError):
            await sup.handle_command({"cmd": "start"})   # refused: still recorded as asked
        kinds = [(k, d) for _, k, d in sup.journal.audit_rows()[booted:]
                 if k in ("command", "state", "latch_trip")]
        # start: recorded before it acts; halt: stopping is always allowed, so it acts
        # first and is recorded after its trip; a refused command is still recorded.
        assert [k for k, _ in kinds] == ["command", "state", "latch_trip", "command",
                                         "command"]
        assert kinds[0][1] == {"cmd": "start"}
        assert kinds[3][1] == {"cmd": "halt", "reason": "lunch"}
        assert kinds[4][1] == {"cmd": "start"}
        assert all(d.get("cmd") != "status" for k, d in kinds)
        await _stop(sup, task)
    asyncio.run(main())


def test_a_journal_newer_than_this_bot4_is_refused_untouched_exit_65(tmp_path):
    import sqlite3

    from daemon.store import migrations
    from daemon.supervisor import EX_DATAERR, StartupError

    async def first():
        sup, task = await _boot(tmp_path)
        await _stop(sup, task)
    asyncio.run(first())
    path = tmp_path / "state" / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(migrations.LATEST + 1),))
    db.commit()
    db.close()
    before = path.read_bytes()

    async def second():
        cfg = config.load(CONFIG, environ={})
        sup = Supervisor(cfg, RunOptions(sim=True, state_dir=str(tmp_path / "state"),
                                         socket=str(tmp_path / "c.sock")))
        with pytest.raises(StartupError) as e:
            await sup.run()
        return e.value
    err = asyncio.run(second())
    assert err.exit_code == EX_DATAERR
    assert str(err).startswith("journal too new for bot4 ")
    assert f"journal schema version {migrations.LATEST + 1} is newer" in str(err)
    assert path.read_bytes() == before
