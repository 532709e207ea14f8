"""`nextword doctor`: a healthy store passes; a corrupted page or a tampered count is found, and `--repair` rebuilds
the store from its sources while the damaged file is kept aside, byte for byte."""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from lm_core.counting import count_ngrams, encode_sentences
from lm_core.tokenize import prose_sentences
from lm_core.vocab import Vocab
from store import doctor
from store.countstore import CountStore
from tests.conftest import run, store_snapshot

pytestmark = pytest.mark.usefixtures("private_data_dir")

DOCS = {
    "a.md": "The cat sat on the mat. The cat ran to the door. " * 40,
    "b.md": "A dog sat on the rug, and the dog slept. Then the dog woke up. " * 40,
    "c.md": "Their house is big and red. Its garden is green and wide. " * 40,
}


WORDS = ["apple", "river", "stone", "cloud", "music", "paper", "window", "garden", "silver", "forest", "candle"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "docs"
    folder.mkdir()
    paths = []
    for name, text in DOCS.items():
        (folder / name).write_text(text)
        paths.append(folder / name)
    return paths


@pytest.fixture
def store(tmp_path: Path, files: list[Path]) -> Path:
    path = tmp_path / "store" / "s.db"
    path.parent.mkdir()
    with CountStore.open(path, order=3, tokenizer="prose", create=True) as s:
        for file in files:
            s.learn_file(file)
        s.learn("untitled:1", "A note that is not a file. It has no file behind it.")
    return path


def expected_snapshot(tmp_path: Path, files: list[Path]) -> dict[str, object]:
    with CountStore.open(tmp_path / "expected.db", order=3, tokenizer="prose", create=True) as s:
        for file in files:
            s.learn_file(file)
        s.learn("untitled:1", "A note that is not a file. It has no file behind it.")
        return store_snapshot(s)


def damage_page_of(path: Path, table: str, pagetype: str | None = None) -> None:
    """Overwrite the middle of one of `table`'s pages (of `pagetype`, if given) with garbage."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    rows = db.execute("SELECT pageno, pagetype FROM dbstat WHERE name = ? ORDER BY pageno", (table,)).fetchall()
    pages = [page for page, kind in rows if pagetype in (None, kind)]
    db.close()
    assert pages, f"{table} has no pages"
    page = pages[len(pages) // 2]
    data = bytearray(path.read_bytes())
    start = (page - 1) * page_size
    data[start + 8 : start + page_size - 8] = bytes((i * 37 + 11) % 256 for i in range(page_size - 16))
    path.write_bytes(bytes(data))


def test_a_healthy_store_passes(store: Path) -> None:
    report = doctor.diagnose(store)
    assert report.healthy, report.problems
    assert report.checked == [
        "PRAGMA quick_check: ok",
        "PRAGMA integrity_check: ok",
        "a nextword count store, schema version 1",
        "the counts equal a rebuild from the 4 recorded sources",
    ]
    result = run("doctor", "--db", store)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"{store}: healthy"


def test_a_tampered_count_is_found_and_repaired(store: Path, tmp_path: Path, files: list[Path]) -> None:
    db = sqlite3.connect(store)
    cat = db.execute("SELECT id FROM vocab WHERE word = 'cat'").fetchone()[0]
    db.execute("UPDATE ng1 SET c = c + 5 WHERE w1 = ?", (cat,))
    db.commit()
    db.close()
    report = doctor.diagnose(store)
    assert report.problems[0] == "1 1-gram count(s) differ from a rebuild from the sources"
    assert "1-gram 'cat': count" in report.problems[1]

    result = run("doctor", "--db", store)
    assert result.exit_code == 1
    assert "problem: 1 1-gram count(s) differ" in result.stdout
    assert "--repair" in result.stderr

    tampered = sha(store)
    result = run("doctor", "--db", store, "--repair")
    assert result.exit_code == 0, result.output
    [damaged] = store.parent.glob("s.db.damaged-*[0-9]Z")
    assert sha(damaged) == tampered  # kept aside as it was
    assert "rebuilt" in result.stdout and result.stdout.splitlines()[-1] == f"{store}: healthy"
    assert (store.stat().st_mode & 0o777) == 0o600
    with CountStore.open(store) as s:
        assert store_snapshot(s) == expected_snapshot(tmp_path, files)
    assert doctor.diagnose(store).healthy


def test_a_corrupted_count_page_is_found_and_rebuilt_from_the_recorded_streams(
    store: Path, tmp_path: Path, files: list[Path]
) -> None:
    damage_page_of(store, "ng3")
    report = doctor.diagnose(store)
    assert not report.healthy
    assert any(p.startswith(("quick_check", "integrity_check")) for p in report.problems), report.problems
    corrupted = sha(store)

    result = run("doctor", "--db", store, "--repair")
    assert result.exit_code == 0, result.output
    assert "4 source(s) from their records, 0 read again from their files, 0 lost" in result.stdout
    [damaged] = store.parent.glob("s.db.damaged-*[0-9]Z")
    assert sha(damaged) == corrupted
    with CountStore.open(store) as s:
        assert store_snapshot(s) == expected_snapshot(tmp_path, files)


def test_a_damaged_source_record_is_rebuilt_from_its_file(store: Path, tmp_path: Path, files: list[Path]) -> None:
    rng = random.Random(3)
    big = files[0].parent / "big.md"
    big.write_text(" ".join(rng.choice(WORDS) for _ in range(6000)) + ".\n")
    files.append(big)
    with CountStore.open(store) as s:
        s.learn_file(big)
    damage_page_of(store, "sources", pagetype="overflow")  # inside big.md's recorded token stream
    report = doctor.diagnose(store)
    assert f"source {big}: its recorded token stream is damaged (its file can be read again)" in report.problems

    result = run("doctor", "--db", store, "--repair")
    assert result.exit_code == 0, result.output
    assert "4 source(s) from their records, 1 read again from their files, 0 lost" in result.stdout
    with CountStore.open(store) as s:
        assert store_snapshot(s) == expected_snapshot(tmp_path, files)


def test_repair_never_overwrites_a_kept_file(tmp_path: Path) -> None:
    first = tmp_path / "s.db.damaged-1"
    first.write_text("kept")
    assert doctor._free_name(first) == tmp_path / "s.db.damaged-1.1"
    (tmp_path / "s.db.damaged-1.1-wal").write_text("kept")
    assert doctor._free_name(first) == tmp_path / "s.db.damaged-1.2"


def test_a_file_that_is_not_a_store_is_a_problem_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just text\n" * 500)
    before = sha(path)
    report = doctor.diagnose(path)
    assert not report.healthy
    result = run("doctor", "--db", path)
    assert result.exit_code == 1 and "problem:" in result.stdout
    assert sha(path) == before
    assert run("doctor", "--db", tmp_path / "missing.db").exit_code == 1


def test_a_store_with_a_base_model_is_checked_against_that_model(tmp_path: Path) -> None:
    base_text = "the cat sat on the mat. the dog sat on the rug. " * 20
    vocab = Vocab()
    tables = count_ngrams(encode_sentences(prose_sentences(base_text), vocab), 3, vocab)
    model = tmp_path / "model.db"
    with CountStore.open(model, order=3, tokenizer="prose", create=True) as s:
        s.add_base(tables, name="test base")
    user = tmp_path / "user.db"
    shutil.copyfile(model, user)
    with CountStore.open(user) as s:
        s.learn("doc", "My cat sat on my mat. The rug is red.")

    report = doctor.diagnose(user, lambda: model)
    assert report.healthy, report.problems
    assert report.checked[-1] == "the counts equal a rebuild from the 2 recorded sources"

    without = doctor.diagnose(user)  # the base cannot be rebuilt: only integrity is checked
    assert without.healthy and "cannot be checked" in without.checked[-1]

    db = sqlite3.connect(user)
    db.execute("UPDATE ng2 SET c = c + 1 WHERE w1 = 1 AND w2 = (SELECT id FROM vocab WHERE word = 'my')")
    db.commit()
    db.close()
    assert not doctor.diagnose(user, lambda: model).healthy
    result = doctor.repair(user, lambda: model)
    assert result.lost == [] and result.restored == ["doc"]
    assert doctor.diagnose(user, lambda: model).healthy


def test_forgetting_leaves_no_word_behind_and_a_rebuild_keeps_the_counts(store: Path) -> None:
    with CountStore.open(store) as s:
        s.learn("untitled:2", "Zanzibar is my passphrase hint.")
        s.forget("untitled:2")
        assert "zanzibar" not in s.vocab.words  # its id keeps a placeholder; the word itself is gone
        assert b"anzibar" not in store.read_bytes()
        before = store_snapshot(s)
    result = run("doctor", "--db", store, "--rebuild")
    assert result.exit_code == 0, result.output
    [old] = store.parent.glob("s.db.replaced-*[0-9]Z")
    assert f"the old file is kept as {old}" in result.stdout
    with CountStore.open(store) as s:
        assert "zanzibar" not in s.vocab.words
        assert store_snapshot(s) == before
