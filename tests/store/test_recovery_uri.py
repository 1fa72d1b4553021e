"""`bot4d journal-check` on a state dir whose path has characters that mean something in
an SQLite URI (#, ?, %): the healthy journal is reported healthy, and nothing is created
beside it (the unescaped URI once cut the path short: a stray empty database, exit 65)."""
from __future__ import annotations

import pytest

from daemon.store import recovery
from daemon.store.journal import Journal


@pytest.mark.parametrize("name", ["state#1", "state?x=1", "st%41te"])
def test_journal_check_reads_a_journal_under_uri_characters(tmp_path, capsys, name):
    state = tmp_path / name
    state.mkdir()
    Journal(state / recovery.JOURNAL).close()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert recovery.check(state) == 0
    out = capsys.readouterr().out
    assert "ok;" in out, out
    # The cut-short URI used to create an empty database beside the state dir ("state").
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a stray file was created"
