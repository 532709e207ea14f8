"""Bad input to the command line and the store: a clear one-line error, exit status 1, and nothing lost or changed."""

from __future__ import annotations

import gc
import hashlib
import random
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from lm_core.counts import ADJUSTED, RAW
from lsp_server.cli import main
from store.countstore import CountStore
from store.errors import InputError, NotAStoreError, StoreError
from store.sources import decode_text
from tests.conftest import error_of, ok, snapshot, write

pytestmark = pytest.mark.usefixtures("private_data_dir")

CORPUS = "the cat sat on the mat\nthe dog sat on the log\nthe cat ran\n"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A good 3-gram pretokenized store."""
    db = tmp_path / "store" / "s.db"
    db.parent.mkdir()
    ok("build", "--db", db, "--order", 3, "--pretokenized", write(tmp_path / "corpus.txt", CORPUS))
    return db


def build_error(*args: object) -> str:
    """A failed `build`: exit status 1 and one error line; the progress label "counting" may come first (see
    test_a_failed_build_writes_only_the_error_to_stderr)."""
    result = CliRunner().invoke(main, ["build", *(str(a) for a in args)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    *before, last = result.stderr.splitlines()
    assert before in ([], ["counting"]), result.stderr
    assert last.startswith("nextword: error: ")
    return last.removeprefix("nextword: error: ")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_in(directory: Path) -> dict[str, str]:
    """Each file's sha256. Collects garbage first: a store that failed to open may leave its SQLite connection
    (and so its -wal/-shm files) to the garbage collector."""
    gc.collect()
    return {p.name: sha256(p) for p in directory.iterdir()}


# --- files that cannot be learned --------------------------------------------------------------------------------
BAD_FILES = {
    "missing": (None, "{path}: no such file"),
    "directory": ("dir", "{path} is a directory; give the text files inside it"),
    "binary": (
        b"some text\x00\x01\x02\x03 more",
        "{path} looks like a binary file (it contains NUL bytes); only text files can be read",
    ),
    "binary-late": (
        b"word " * 3000 + b"\x00",
        "{path} looks like a binary file (it contains NUL bytes); only text files can be read",
    ),
    "invalid-utf8": (
        b"first line\nsecond line\nthird \xc3\x28 line\n",
        "{path} is not valid UTF-8 (byte 29, line 3); convert it to UTF-8",
    ),
    "latin-1": (b"caf\xe9\n", "{path} is not valid UTF-8 (byte 3, line 1); convert it to UTF-8"),
}


def bad_file(tmp_path: Path, kind: str) -> tuple[Path, str]:
    content, message = BAD_FILES[kind]
    path = tmp_path / f"{kind}.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    return path, message.format(path=path)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_build_into_a_store_rejects_a_bad_file_and_changes_nothing(store: Path, tmp_path: Path, kind: str) -> None:
    path, expected = bad_file(tmp_path, kind)
    before = snapshot(store)
    assert build_error("--db", store, "--order", 3, "--pretokenized", path) == expected
    assert snapshot(store) == before


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_build_of_a_new_store_from_a_bad_file_leaves_no_file(tmp_path: Path, kind: str) -> None:
    path, expected = bad_file(tmp_path, kind)
    assert build_error("--db", tmp_path / "new.db", "--order", 3, path) == expected
    assert not list(tmp_path.glob("new.db*"))


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_learn_rejects_a_bad_file_and_changes_nothing(store: Path, tmp_path: Path, kind: str) -> None:
    path, expected = bad_file(tmp_path, kind)
    before = snapshot(store)
    assert error_of("learn", path, "--db", store) == expected
    assert snapshot(store) == before


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_score_rejects_a_bad_file(store: Path, tmp_path: Path, kind: str) -> None:
    path, expected = bad_file(tmp_path, kind)
    assert error_of("score", path, "--db", store) == expected


def test_build_with_a_bad_file_after_good_ones_adds_nothing(store: Path, tmp_path: Path) -> None:
    before = snapshot(store)
    good = write(tmp_path / "good.txt", "a brand new sentence\n")
    bad, expected = bad_file(tmp_path, "invalid-utf8")
    assert build_error("--db", store, "--order", 3, "--pretokenized", good, bad) == expected
    assert snapshot(store) == before
    assert "     sources: 1\n" in ok("stats", "--db", store)
    ok("learn", good, "--db", store)  # the good file was not recorded as learned: learning it now is a first learn


def test_a_failed_build_writes_only_the_error_to_stderr(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    assert error_of("build", "--db", tmp_path / "new.db", "--order", 3, missing) == f"{missing}: no such file"
    assert not list(tmp_path.glob("new.db*"))


def test_a_failed_learn_into_a_new_db_leaves_no_file(tmp_path: Path) -> None:
    assert (
        error_of("learn", tmp_path / "missing.txt", "--db", tmp_path / "new.db")
        == f"{tmp_path / 'missing.txt'}: no such file"
    )
    assert not list(tmp_path.glob("new.db*"))


# --- empty corpora -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, pretokenized",
    [
        ("", False),
        ("", True),
        ("  \n\n \t\n", False),
        ("  \n\n \t\n", True),
    ],
    ids=["empty-prose", "empty-pretokenized", "whitespace-prose", "whitespace-pretokenized"],
)
def test_build_of_an_empty_corpus_is_an_error(tmp_path: Path, text: str, pretokenized: bool) -> None:
    corpus = write(tmp_path / "empty.txt", text)
    flags = ["--pretokenized"] if pretokenized else []
    assert build_error("--db", tmp_path / "new.db", *flags, corpus) == f"the corpus is empty: no words in {corpus}"
    assert not list(tmp_path.glob("new.db*"))


def test_build_of_an_empty_file_into_a_store_changes_nothing(store: Path, tmp_path: Path) -> None:
    corpus = write(tmp_path / "empty.txt", "")
    before = snapshot(store)
    assert (
        build_error("--db", store, "--order", 3, "--pretokenized", corpus)
        == f"the corpus is empty: no words in {corpus}"
    )
    assert snapshot(store) == before


# --- orders and tokenizers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [0, 10, -1])
def test_build_rejects_an_order_out_of_range(tmp_path: Path, order: int) -> None:
    corpus = write(tmp_path / "c.txt", CORPUS)
    assert (
        build_error("--db", tmp_path / "new.db", "--order", order, corpus)
        == f"--order must be between 1 and 9, not {order}"
    )
    assert not list(tmp_path.glob("new.db*"))


def test_build_with_another_order_into_a_store_changes_nothing(store: Path, tmp_path: Path) -> None:
    before = snapshot(store)
    more = write(tmp_path / "more.txt", "another line\n")
    assert (
        build_error("--db", store, "--order", 4, "--pretokenized", more) == f"{store} holds order-3 counts, not order 4"
    )
    assert snapshot(store) == before


def test_build_with_another_tokenizer_into_a_store_changes_nothing(store: Path, tmp_path: Path) -> None:
    before = snapshot(store)
    more = write(tmp_path / "more.txt", "Another line.\n")
    message = build_error("--db", store, "--order", 3, more)
    assert message == f"{store} was built with the pretokenized tokenizer, not prose"
    assert snapshot(store) == before


def test_build_of_a_file_already_in_the_store_changes_nothing(store: Path, tmp_path: Path) -> None:
    before = snapshot(store)
    corpus = tmp_path / "corpus.txt"
    message = build_error("--db", store, "--order", 3, "--pretokenized", corpus)
    assert message == f"{corpus} is already in the store; use 'nextword learn' to update it"
    assert snapshot(store) == before


def test_build_into_an_existing_store_needs_no_order(store: Path, tmp_path: Path) -> None:
    before = snapshot(store)["ngrams"]
    ok("build", "--db", store, "--pretokenized", write(tmp_path / "more.txt", "another line\n"))
    after = snapshot(store)["ngrams"]
    assert "     sources: 2\n" in ok("stats", "--db", store)
    # The new sentence's n-grams, each seen once, are added (the store is order 3); nothing else was lost.
    added = {("another",), ("line",), ("<s>", "another"), ("another", "line"), ("line", "</s>"),
             ("<s>", "another", "line"), ("another", "line", "</s>")}  # fmt: skip
    assert added <= after.keys() and not added & before.keys()
    assert {g: after[g][0] for g in added} == dict.fromkeys(added, 1)
    assert all(after[g][0] >= c for g, (c, _) in before.items())


# --- damaged and foreign store files -----------------------------------------------------------------------------
COMMANDS = {
    "stats": ["stats"],
    "complete": ["complete", "the"],
    "learn": ["learn", "{text}"],
    "forget": ["forget", "{text}"],
    "score": ["score", "{text}"],
    "generate": ["generate", "the", "--seed", "1"],
    "export-arpa": ["export-arpa", "-o", "{out}"],
    "build": ["build", "--order", "3", "--pretokenized", "{text}"],
}


def run_failing(tmp_path: Path, name: str, db: Path) -> str:
    """Run one of COMMANDS against `db`; it must fail with one line; returns the message."""
    text = write(tmp_path / "text.txt", "the cat sat on the mat\n")
    args = [a.format(text=text, out=tmp_path / "out.arpa") for a in COMMANDS[name]]
    message = build_error(*args[1:], "--db", db) if name == "build" else error_of(*args, "--db", db)
    assert not (tmp_path / "out.arpa").exists()
    return message


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real store of a few hundred KB (so a page in its middle holds its data)."""
    tmp = tmp_path_factory.mktemp("big")
    rng = random.Random(0)
    words = [f"w{i}" for i in range(400)]
    corpus = write(tmp / "big.txt", "".join(" ".join(rng.choices(words, k=12)) + "\n" for _ in range(600)))
    db = tmp / "big.db"
    ok("build", "--db", db, "--order", 3, "--pretokenized", corpus)
    return db


@pytest.fixture
def corrupt_store(big_store: Path, tmp_path: Path) -> Path:
    db = tmp_path / "store" / "corrupt.db"
    db.parent.mkdir()
    data = bytearray(big_store.read_bytes())
    assert len(data) > 64 * 1024
    data[8192 : 8192 + 4096] = random.Random(1).randbytes(4096)
    db.write_bytes(bytes(data))
    return db


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_corrupt_store_is_a_one_line_error_and_left_untouched(corrupt_store: Path, tmp_path: Path, name: str) -> None:
    before = files_in(corrupt_store.parent)
    run_failing(tmp_path, name, corrupt_store)
    assert files_in(corrupt_store.parent) == before


def test_a_corrupt_store_is_named_as_damaged(corrupt_store: Path, tmp_path: Path) -> None:
    message = run_failing(tmp_path, "stats", corrupt_store)
    assert str(corrupt_store) in message
    assert "damaged" in message


@pytest.fixture
def foreign_db(tmp_path: Path) -> Path:
    path = tmp_path / "store" / "other.db"
    path.parent.mkdir()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE people (name TEXT)")
    db.execute("INSERT INTO people VALUES ('ann')")
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_foreign_sqlite_database_is_not_a_store_and_left_untouched(
    foreign_db: Path, tmp_path: Path, name: str
) -> None:
    before = files_in(foreign_db.parent)
    assert "not a nextword store" in run_failing(tmp_path, name, foreign_db)
    assert files_in(foreign_db.parent) == before


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_text_file_as_the_store_is_left_untouched(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    not_a_db = write(folder / "notes.txt", "just some text, not a database\n" * 50)
    before = files_in(folder)
    assert "not a nextword store" in run_failing(tmp_path, name, not_a_db)
    assert files_in(folder) == before


# --- the library ------------------------------------------------------------------------------------------------
def test_decode_text_names_the_line_of_invalid_utf8() -> None:
    with pytest.raises(InputError, match=r"^doc is not valid UTF-8 \(byte 8, line 2\)"):
        decode_text(b"hello\nab\xffcd", "doc")


def test_decode_text_rejects_nul_bytes_and_drops_a_bom() -> None:
    with pytest.raises(InputError, match="binary"):
        decode_text(b"abc\x00def", "doc")
    assert decode_text("\ufeffhello".encode(), "doc") == "hello"


@pytest.mark.parametrize("order", [0, 10])
def test_opening_a_store_with_an_order_out_of_range_creates_nothing(tmp_path: Path, order: int) -> None:
    with pytest.raises(StoreError, match="order must be between 1 and 9"):
        CountStore.open(tmp_path / "s.db", order=order, create=True)
    assert not list(tmp_path.iterdir())


def test_opening_a_foreign_database_raises_not_a_store(foreign_db: Path) -> None:
    before = files_in(foreign_db.parent)
    with pytest.raises(NotAStoreError):
        CountStore.open(foreign_db)
    assert files_in(foreign_db.parent) == before


def store_contents(store: CountStore) -> tuple[object, ...]:
    """The n-gram tables by words, the count-of-counts and the casing table."""
    words = store.vocab.words
    tables = store.load_tables()
    ngrams = sorted(
        (tuple(words[i] for i in gram), c, cc)
        for table in tables.tables
        for gram, c, cc in zip(table.grams.tolist(), table.count.tolist(), table.cont.tolist(), strict=True)
    )
    coc = [store.stored_count_of_counts(n, kind) for n in range(1, store.order + 1) for kind in (RAW, ADJUSTED)]
    casing = store.db.execute("SELECT count(*) FROM casing").fetchone()[0]
    return tuple(ngrams), tuple(coc), casing


ODD_TEXTS = {
    "surrogates": ("caf\ud800e is open\nthe \udfffend\n", "caf\ud800e is closed\n"),
    "controls": ("bell\x07 and tab\there\x1b[0m\n", "bell\x07 only\n"),
}


@pytest.mark.parametrize(
    "kind, tokenizer",
    [
        ("surrogates", "prose"),
        ("surrogates", "pretokenized"),
        ("controls", "prose"),
        ("controls", "pretokenized"),
    ],
)
def test_odd_characters_learn_relearn_and_forget_back_to_empty(tmp_path: Path, kind: str, tokenizer: str) -> None:
    first, second = ODD_TEXTS[kind]
    with CountStore.open(tmp_path / "s.db", order=3, tokenizer=tokenizer, create=True) as store:
        empty = store_contents(store)
        assert store.learn("doc", first).tokens > 0
        assert store.stats()["ngrams"][1] > 0
        assert store.learn("doc", second).replaced
        store.forget("doc")
        assert store_contents(store) == empty
