"""Large inputs read in pieces (`store.streaming`, `lsp_server.large_inputs`): exactly what reading the whole text
gives (sentences, casing, secrets, counts, scores), with cuts inside sentences, lines, Markdown constructs and
multi-byte UTF-8 characters; the errors of whole-file reading; a progress line on stderr for large inputs."""

from __future__ import annotations

import random
import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from lm_core import tokenize
from lsp_server.cli import main
from lsp_server.engine import Engine
from lsp_server.large_inputs import score_file
from store import sources, streaming
from store.countstore import CountStore
from store.errors import InputError

PARAGRAPHS = [
    "The cat sat on the mat. The dog sat on the rug, and Mr. Smith said so. It is No. 5 in the list.",
    "- A list item. Its second sentence\n- Another item, with *emphasis* and `inline code`.\n",
    "# A heading. With two sentences\nText after the heading goes on\nover three lines. Then it ends!",
    "> A quotation. It runs on\n> to a second line.\n\n1984. The year. 1. An ordered item. 2) Another.",
    "```python\nprint('code is skipped. Even sentences.')\n\nstill code\n```\nAfter the fence. Élan, naïve café: "
    "déjà vu. 日本語の文。次の文。 Emoji 🙂 end.",
    "A link to [the docs](https://example.com/a.html) and <b>bold</b> text <!-- a comment\n\nover lines --> here.",
    "The password field is empty. A token economy works. password: Opal7Crane, user: admin",
    "Keys: AKIAIOSFODNN7ABCDEFG and more text after it. The end of the paragraph.",
]


def corpus(size: int, seed: int = 7) -> str:
    """About `size` characters of paragraphs in a random order, some run together on one line."""
    rng = random.Random(seed)
    parts: list[str] = []
    while sum(map(len, parts)) < size:
        parts.append(rng.choice(PARAGRAPHS))
        parts.append(rng.choice(["\n\n", "\n", " ", "\r\n\r\n"]))
    return "".join(parts)


def write(tmp_path: Path, text: str, name: str = "doc.md") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pieces of about 500 characters, read 333 bytes at a time: many cuts in a test-sized text."""
    monkeypatch.setattr(streaming, "PIECE_CHARS", 500)
    monkeypatch.setattr(streaming, "READ_CHUNK_BYTES", 333)


# --- reading chunks -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_a_character_split_between_chunks_is_decoded_whole(tmp_path: Path, chunk: int) -> None:
    text = "\ufeffhé€𝄞 naïve 日本語\n" * 20  # 1- to 4-byte characters; a second BOM stays, as in utf-8-sig
    path = tmp_path / "u.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert "".join(streaming.read_chunks(path, 10**6, chunk)) == text == sources.read_text_file(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"ab\ncd\xff\n", "is not valid UTF-8 (byte 5, line 2)"),
        (b"\xef\xbb\xbfab\ncd\xff\n", "is not valid UTF-8 (byte 8, line 2)"),  # the byte in the file, BOM counted
        (b"ab\n\xe2\x82", "is not valid UTF-8 (byte 3, line 2)"),  # a character cut short at the end
        (b"text\x00more", "looks like a binary file (it contains NUL bytes)"),
    ],
)
@pytest.mark.parametrize("chunk", [1, 2, 4, 100])
def test_bad_bytes_give_the_errors_of_whole_file_reading(tmp_path: Path, data: bytes, message: str, chunk: int):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(InputError, match=re.escape(message)) as whole:
        sources.read_text_file(path)
    with pytest.raises(InputError) as streamed:
        list(streaming.read_chunks(path, 100, chunk))
    assert str(streamed.value) == str(whole.value)


def test_the_size_limit_comes_first_even_for_an_endless_device(tmp_path: Path) -> None:
    message = re.escape("/dev/zero is larger than the maximum document size (0.001 MB)")
    with pytest.raises(InputError, match=message):
        list(streaming.read_chunks(Path("/dev/zero"), 1000, 64))  # NUL bytes, but too large first (as before)
    big = write(tmp_path, "x" * 1001)
    with pytest.raises(InputError, match="larger than the maximum document size"):
        next(streaming.read_chunks(big, 1000))  # a regular file: refused before it is read


# --- pieces give what the whole text gives ----------------------------------------------------------------------------
def test_a_resumed_scan_goes_on_exactly_as_one_scan() -> None:
    text = corpus(20_000)
    whole = [[(t.norm, t.surface, t.start, t.end) for t in s] for s in tokenize.sentences(text)]
    rng = random.Random(1)
    for _ in range(20):
        got, pos, state = [], 0, tokenize.ScanState()
        while True:
            found, resume, state = tokenize.sentences_from(text, pos, state, pos + rng.randint(1, 3000))
            got += [[(t.norm, t.surface, t.start, t.end) for t in s] for s in found]
            if resume is None:
                break
            assert resume > pos
            pos = resume
        assert got == whole


@pytest.mark.parametrize("tokenizer", ["prose", "pretokenized"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reading_in_pieces_gives_the_whole_texts_analysis(tmp_path: Path, small_pieces, tokenizer, seed) -> None:
    text = corpus(30_000, seed)
    whole = sources.analyse(text, tokenizer)
    document = streaming.read_document(write(tmp_path, text), tokenizer)
    assert document.analysed.sentences == whole.sentences
    assert document.analysed.casing == whole.casing
    assert sorted(document.analysed.secrets) == sorted(whole.secrets)
    assert len(whole.secrets) > 10  # the corpus has secrets, some near the cuts
    assert document.sha256 == sources.sha256(text)
    assert document.bytes == len(text.encode("utf-8"))


def test_one_long_line_is_read_in_pieces_too(tmp_path: Path, small_pieces) -> None:
    # the case: one line, many sentences (a fence opens only at a line's start: here it never does)
    text = "It begins. " + corpus(30_000).replace("\n", " ").replace("\r", " ")
    batches = list(streaming.prose_batches(iter(text[i : i + 333] for i in range(0, len(text), 333)), 500))
    assert len(batches) > 2  # cut inside the line
    placed = [[(t.norm, t.surface, b.offset + t.start) for t in s] for b in batches for s in b.sentences]
    assert placed == [[(t.norm, t.surface, t.start) for t in s] for s in tokenize.sentences(text)]
    assert streaming.read_document(write(tmp_path, text), "prose").analysed == sources.analyse(text, "prose")


def test_a_cut_in_the_middle_of_a_sentence_and_of_a_character(tmp_path: Path, monkeypatch) -> None:
    # "Zoë" and "naïve" cross chunk boundaries (2-byte characters), and the sentences cross piece boundaries
    sentence = "The zebra named Zoë ate a naïve apple at the café near the big old station. "
    text = sentence * 400
    monkeypatch.setattr(streaming, "READ_CHUNK_BYTES", 17)
    document = streaming.read_document(write(tmp_path, text), "prose", piece_chars=101)
    assert document.analysed == sources.analyse(text, "prose")


# --- the store and the CLI --------------------------------------------------------------------------------------------
def table(db: Path, name: str) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute(f"SELECT * FROM {name}").fetchall())
    finally:
        con.close()


def words_and_counts(db: Path) -> list[tuple]:
    """Every n-gram as words, with its counts (word ids may differ between two stores)."""
    con = sqlite3.connect(db)
    try:
        words = dict(con.execute("SELECT id, word FROM vocab").fetchall())
        rows = []
        for n in (1, 2, 3):
            columns = ", ".join(f"w{i}" for i in range(1, n + 1))
            for row in con.execute(f"SELECT {columns}, c, cc FROM ng{n}"):
                rows.append((tuple(words[i] for i in row[:n]), *row[n:]))
        return sorted(rows)
    finally:
        con.close()


def test_a_long_sentence_makes_its_own_piece_longer_not_the_pieces_after_it() -> None:
    """A sentence running past the look-ahead is read whole by its piece, and the text after it is read too (the
    scan reaching the end of what was read had been taken for the end of the text: everything after the sentence
    was lost); the pieces after it keep their size (a learn pauses after each: a piece that grew for good made every
    later pause come later, ~3 s apart)."""
    sentence = "The cat sat on the mat and looked at the dog. "
    long = " ".join(["word"] * 8_000) + ". "  # ~40,000 characters without a sentence end
    text = sentence * 600 + long + sentence * 1_200
    piece = 2_000
    chunks = (text[i : i + 1_000] for i in range(0, len(text), 1_000))
    batches = list(streaming.prose_batches(chunks, piece))
    spans = [(b.offset + b.start, b.offset + b.end) for b in batches]
    long_start = text.index(long)
    after = [end - start for start, end in spans[:-1] if start > long_start + len(long)]  # the last: the rest
    assert len(after) > 15 and max(after) < piece + 2 * len(sentence)
    assert any(end - start > len(long) for start, end in spans)  # the long sentence's piece holds it whole
    whole = [[t.norm for t in sent] for sent in tokenize.sentences(text)]
    assert [[t.norm for t in sent] for b in batches for sent in b.sentences] == whole


def test_learning_a_file_in_pieces_stores_what_learning_its_text_stores(tmp_path: Path, small_pieces) -> None:
    text = corpus(30_000, 5)
    path = write(tmp_path, text)
    result = CliRunner().invoke(main, ["learn", "--db", str(tmp_path / "streamed.db"), "--empty-store", str(path)])
    assert result.exit_code == 0, result.output
    with CountStore.open(tmp_path / "whole.db", order=5, create=True) as store:
        whole = store.learn(str(path.resolve()), text, kind="file")
    assert f"learned {path.resolve()}: {whole.tokens:,} tokens" in result.output
    assert f"not learned: {len(whole.secrets)} sentence(s) holding a secret" in result.output
    assert words_and_counts(tmp_path / "streamed.db") == words_and_counts(tmp_path / "whole.db")
    assert table(tmp_path / "streamed.db", "casing") == table(tmp_path / "whole.db", "casing")


def test_a_learn_that_pauses_stores_what_a_learn_at_once_stores(tmp_path: Path, monkeypatch) -> None:
    """The server's learn pauses (`Engine.yield_point`) between pieces of the text and steps of the count update;
    what it stores is what a learn without pauses stores, secrets written across a piece's edge dropped alike."""
    monkeypatch.setattr(streaming, "PAUSE_PIECE_CHARS", 700)
    text = corpus(20_000, 11)
    pauses: list[int] = []
    with CountStore.open(tmp_path / "paused.db", order=3, create=True) as store:
        store.learn("old", corpus(3_000, 12))
        store.learn("doc", corpus(5_000, 13))
        paused = store.learn("doc", text, pause=lambda: pauses.append(1))  # replaces what "doc" contributed
    with CountStore.open(tmp_path / "whole.db", order=3, create=True) as store:
        store.learn("old", corpus(3_000, 12))
        store.learn("doc", corpus(5_000, 13))
        whole = store.learn("doc", text)
    assert paused == whole and whole.secrets  # the same tokens, changed rows and secrets found
    # 8 between the count update's steps (3 orders' raw counts, 2 continuation updates, 3 deletes), the others
    # after pieces of the text (pieces grow past 700 characters where the scanner's margin asks for more)
    assert len(pauses) >= 8 + 5
    assert words_and_counts(tmp_path / "paused.db") == words_and_counts(tmp_path / "whole.db")
    assert table(tmp_path / "paused.db", "casing") == table(tmp_path / "whole.db", "casing")


def test_building_from_a_file_read_in_pieces_counts_what_the_whole_text_counts(tmp_path: Path, small_pieces):
    text = corpus(30_000, 6)
    path = write(tmp_path, text, "corpus.txt")
    result = CliRunner().invoke(main, ["build", "--db", str(tmp_path / "b.db"), "--order", "3", str(path)])
    assert result.exit_code == 0, result.output
    with CountStore.open(tmp_path / "whole.db", order=3, create=True) as store:
        store.learn("x", text)
    assert words_and_counts(tmp_path / "b.db") == words_and_counts(tmp_path / "whole.db")


def test_a_file_that_cannot_be_learned_creates_no_store(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"fine text\n" * 100 + b"\xff")
    result = CliRunner().invoke(main, ["learn", "--db", str(tmp_path / "new.db"), str(bad)])
    assert result.exit_code != 0
    assert "is not valid UTF-8 (byte 1000, line 101)" in result.output
    assert not (tmp_path / "new.db").exists()


def test_scoring_in_pieces_gives_the_whole_texts_scores(tmp_path: Path, small_pieces) -> None:
    with CountStore.open(tmp_path / "s.db", order=3, create=True) as store:
        store.learn("corpus", corpus(5000, 9))
    text = corpus(30_000, 10)
    engine = Engine.open(tmp_path / "s.db")
    whole = engine.score(text)
    streamed = score_file(engine, write(tmp_path, text), top=25)
    assert streamed.tokens == whole.tokens
    assert streamed.perplexity == pytest.approx(whole.perplexity, rel=1e-12)
    worst = sorted(whole.words, key=lambda w: -w.surprisal)[:25]
    assert [s.score for s in streamed.worst] == worst
    for placed in streamed.worst:  # 1-based line and column, as the CLI printed them from the whole text
        start = placed.score.start
        assert placed.line == text.count("\n", 0, start) + 1
        assert placed.column == start - (text.rfind("\n", 0, start) + 1) + 1
    engine.close()


# --- progress ---------------------------------------------------------------------------------------------------------
def test_a_large_input_shows_progress_on_stderr_and_a_small_one_does_not(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(streaming, "READ_CHUNK_BYTES", 1000)
    path = write(tmp_path, corpus(10_000))
    size = path.stat().st_size
    runner = CliRunner()
    args = ["learn", "--db", str(tmp_path / "p.db"), "--empty-store", str(path)]
    quiet = runner.invoke(main, args, env={"NEXTWORD_PROGRESS_MB": "1"})
    assert quiet.exit_code == 0, quiet.output
    assert "reading" not in quiet.stderr
    shown = runner.invoke(main, args, env={"NEXTWORD_PROGRESS_MB": "0.005"})
    assert shown.exit_code == 0, shown.output
    lines = shown.stderr.splitlines()
    assert len(lines) == 10  # not a terminal: a line each tenth
    assert lines[-1] == f"reading {path}: {size / 1e6:.1f} of {size / 1e6:.1f} MB (100%)"
    assert "learned" in shown.stdout and "reading" not in shown.stdout
    bad = runner.invoke(main, args, env={"NEXTWORD_PROGRESS_MB": "lots"})
    assert bad.exit_code != 0
    assert "NEXTWORD_PROGRESS_MB='lots': give a number of megabytes" in bad.output
