"""Fast subsets of the reliability scripts: concurrent writers (`bench/stress.py`) and kill -9 (`bench/crash.py`).
The full runs, with their figures, are in `bench/RESULTS.md`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.crash import run_crashes
from bench.fuzz_server import Server, run_fuzz
from bench.reliability import violations
from bench.stress import run_stress
from store.countstore import CountStore


def test_two_writers_two_servers_and_the_cli_at_once_end_equal_to_a_rebuild(tmp_path: Path) -> None:
    result = run_stress(tmp_path, procs=2, ops=30, readers=1, servers=2, server_ops=8, cli_ops=1, seed=1)
    assert result.problems == []
    assert result.reader_violation_count == 0, result.reader_violations
    assert result.reader_checks > 0
    kinds = sorted(log.kind for log in result.writers)
    assert kinds == ["CountStore", "CountStore", "nextword CLI", "nextword serve", "nextword serve"]
    assert sum(log.learns for log in result.writers) > 0 and sum(log.forgets for log in result.writers) > 0


def test_the_readers_check_sees_a_half_applied_change(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with CountStore.open(path, order=3, tokenizer="prose", create=True) as store:
        store.learn("doc", "The cat sat on the mat. The dog sat on the rug.")
    db = sqlite3.connect(path, isolation_level=None)
    assert violations(db, 3) == []
    db.execute("UPDATE ng2 SET c = c + 1 WHERE w1 = 1")  # as if only part of a learn had been applied
    assert any("bigram counts" in v for v in violations(db, 3))
    db.execute("UPDATE ng2 SET c = c - 1 WHERE w1 = 1")
    db.execute("UPDATE coc SET v = v + 1 WHERE n = 3 AND kind = 'raw' AND k = 1")
    assert any("order-3 count-of-counts" in v for v in violations(db, 3))
    db.close()


def test_kill_9_at_random_moments_leaves_a_sound_store_each_time(tmp_path: Path) -> None:
    result = run_crashes(tmp_path, kills=5, seed=3, max_delay=0.3)
    assert result.problems == []
    assert result.kills == 5


def test_fuzzing_the_server_leaves_it_answering_with_consistent_counts(tmp_path: Path) -> None:
    result = run_fuzz(tmp_path, messages=600, seed=1)
    assert result.problems == []
    assert result.messages == 600 and result.answered > 50


def test_malformed_messages_cause_no_error_popups(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    CountStore.open(db, order=3, tokenizer="prose", create=True).close()
    server = Server(db, tmp_path)
    try:
        server.request("initialize", {"processId": None, "capabilities": {}, "rootUri": None})
        for body in (b"[1, 2, 3]", b"null", b"{}", b'{"jsonrpc": "2.0", "id": 5}'):
            server.send_bytes(body)
        server.request("workspace/executeCommand", {"command": "nextword.statistics", "arguments": []})
        assert server.error_popups == []
    finally:
        server.close()
