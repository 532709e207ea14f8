"""Robustness, round two: a foreign SQLite file is left byte for byte as it was, a full disk changes nothing and
says so in one line, killed builds leave nothing that later builds keep, and a reader that goes away
(`| head -1`) is not an error."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import bulk
from store.countstore import CountStore
from tests.conftest import error_of, run, store_snapshot

ROOT = Path(__file__).resolve().parent.parent
PROSE = "The cat sat on the mat. The dog sat on the rug. We walked home after the rain.\n"


@pytest.fixture(autouse=True)
def private(private_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's real store out of reach (`private_data_dir`), and the test's folder as the working directory."""
    monkeypatch.chdir(tmp_path)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def nextword(*args: object, limit_bytes: int | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process, optionally under a file-size limit (as a full disk: writes past it fail)."""
    prelude = ""
    if limit_bytes is not None:
        prelude = (
            "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, {limit_bytes})); "
        )
    code = prelude + "import sys; from lsp_server.cli import run; sys.argv = ['nextword', *sys.argv[1:]]; run()"
    env = kwargs.pop("env", None) or {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], env=env, text=True, capture_output=True, **kwargs
    )


@pytest.mark.parametrize("command", [["stats"], ["complete", "the"], ["learn", "notes.txt"], ["doctor"]])
def test_a_foreign_sqlite_file_with_a_meta_table_is_left_byte_identical(tmp_path: Path, command: list[str]) -> None:
    import sqlite3

    (tmp_path / "notes.txt").write_text(PROSE)
    foreign = tmp_path / "foreign.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.execute("INSERT INTO meta VALUES ('app', 'someone else')")
    db.commit()
    db.close()
    before = md5(foreign)
    message = error_of(*command, "--db", foreign, report_first=command == ["doctor"])
    if command != ["doctor"]:  # doctor reports the problems it finds, then says this
        assert "not a nextword store; it was left untouched" in message
    assert md5(foreign) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.db", "notes.txt"]


def test_a_full_disk_changes_nothing_and_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "small.txt").write_text(PROSE)
    assert nextword("learn", "--empty-store", "--db", "s.db", "small.txt", cwd=tmp_path).returncode == 0
    with CountStore.open(tmp_path / "s.db") as store:
        before = store_snapshot(store)
    words = " ".join(f"w{i}x{i * 7919 % 10007}" for i in range(60_000))
    (tmp_path / "big.txt").write_text(words)
    size = (tmp_path / "s.db").stat().st_size  # RLIMIT_FSIZE limits each file: the -wal grows past it
    result = nextword("learn", "--db", "s.db", "big.txt", cwd=tmp_path, limit_bytes=size + 200_000)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "nothing was changed" in result.stderr, result.stderr
    assert "cannot rollback" not in result.stderr
    with CountStore.open(tmp_path / "s.db") as store:
        assert store_snapshot(store) == before


def test_a_build_that_cannot_start_leaves_no_empty_store(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text(" ".join(f"w{i}" for i in range(50_000)))
    result = nextword("build", "--db", "new.db", "--order", "3", "big.txt", cwd=tmp_path, limit_bytes=3000)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert not any(p.name.startswith("new.db") for p in tmp_path.iterdir())


def test_a_killed_builds_temporary_files_are_removed_by_the_next_build(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended
    leftovers = [tmp_path / f".s.db.{pid}.abc123.building", tmp_path / f".s.db.{pid}.abc123.building-wal"]
    for path in leftovers:
        path.write_bytes(b"half a store")
    mine = tmp_path / f".s.db.{os.getpid()}.zz.building"  # a build still running (this process)
    mine.write_bytes(b"in progress")
    other = tmp_path / f".other.db.{pid}.q.building"  # another store's
    other.write_bytes(b"x")
    (tmp_path / "text.txt").write_text("the cat sat\n" * 20)
    result = run("build", "--db", "s.db", "--order", "3", "--prune", "1", "--pretokenized", "text.txt")
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in leftovers)
    assert mine.exists() and other.exists()
    assert bulk.remove_abandoned_builds(tmp_path / "s.db") == []


def test_a_reader_that_goes_away_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text(PROSE * 50)
    assert nextword("learn", "--db", "s.db", "notes.txt", cwd=tmp_path).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = "import sys; from lsp_server.cli import run; sys.argv = ['nextword', *sys.argv[1:]]; run()"
    for args in (["stats", "--db", "s.db"], ["complete", "--db", "s.db", "-k", "100", "the"]):
        child = subprocess.Popen(
            [sys.executable, "-c", code, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()  # as `| head -0` would
        assert child.wait(timeout=60) == 0
        assert child.stderr.read() == b""


def test_seeding_on_a_full_disk_leaves_nothing_behind(tmp_path: Path) -> None:
    env_home = tmp_path / "xdg"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(env_home)}
    result = nextword("complete", "the", cwd=tmp_path, limit_bytes=1_000_000, env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("nextword: error: could not copy the shipped model to ")
    assert "nothing was left" in result.stderr
    assert result.stderr.count("\n") == 1
    assert [p for p in env_home.rglob("*") if p.is_file()] == []


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder on a file system mounted read-only (root is not stopped by file modes); skipped where this
    process may not mount one."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_store_in_a_read_only_folder_is_read_and_writes_say_read_only(read_only_folder: Path) -> None:
    notes = read_only_folder / "notes.txt"
    notes.write_text(PROSE * 3)
    assert nextword("learn", "--empty-store", "--db", "s.db", "notes.txt", cwd=read_only_folder).returncode == 0
    assert subprocess.run(["mount", "-o", "remount,ro", str(read_only_folder)], capture_output=True).returncode == 0
    before = {p.name: md5(p) for p in read_only_folder.iterdir()}
    for args in (["stats"], ["complete", "the"], ["score", "notes.txt"], ["doctor"]):
        result = nextword(*args, "--db", "s.db", cwd=read_only_folder)
        assert result.returncode == 0, (args, result.stderr)
    assert "cat" in nextword("complete", "the", "--db", "s.db", cwd=read_only_folder).stdout
    read_only = "s.db is read-only (it or its folder cannot be written): it can be read but not changed\n"
    for args in (["learn", "notes.txt"], ["forget", "notes.txt"]):
        assert nextword(*args, "--db", "s.db", cwd=read_only_folder).stderr == "nextword: error: " + read_only
    assert "s.db: healthy" in nextword("doctor", "--repair", "--db", "s.db", cwd=read_only_folder).stdout
    repair = nextword("doctor", "--rebuild", "--db", "s.db", cwd=read_only_folder)
    assert repair.returncode == 1 and "is not writable: a repair writes the rebuilt store beside" in repair.stderr
    assert {p.name: md5(p) for p in read_only_folder.iterdir()} == before
