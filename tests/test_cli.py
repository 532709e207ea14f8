"""The `nextword` command line, end to end on small stores of its own (never the user's data dir or ../shared)."""

from __future__ import annotations

import math
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lm_core.metrics import perplexity
from lm_core.tokenize import pretokenized_sentences
from lsp_server.cli import main
from lsp_server.engine import Engine
from lsp_server.paths import DEFAULT_MODEL
from tests.conftest import error_of, ok, snapshot, write

pytestmark = pytest.mark.usefixtures("private_data_dir")

# Pretokenized, order 3. By hand (with <s> and </s>): words the cat sat on mat dog log ran </s> = 9 (+ <s> = 10
# unigrams); bigrams <s>-the the-cat cat-sat sat-on on-the the-mat mat-</s> the-dog dog-sat the-log log-</s>
# cat-ran ran-</s> = 13; trigrams <s>-the-cat the-cat-sat cat-sat-on sat-on-the on-the-mat the-mat-</s>
# <s>-the-dog the-dog-sat dog-sat-on on-the-log the-log-</s> the-cat-ran cat-ran-</s> = 13; tokens 14 + 4 = 18.
TEXT_A = "the cat sat on the mat\nthe dog sat on the log\n"
TEXT_B = "the cat ran\n"


def ranked(output: str) -> list[tuple[str, float]]:
    """`complete` output as (word, probability), checking the ranks run 1, 2, 3, ..."""
    rows = [line.split() for line in output.splitlines()]
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(len(r) == 3 for r in rows), output
    return [(r[1], float(r[2])) for r in rows]


@pytest.fixture
def store3(tmp_path: Path) -> Path:
    """A 3-gram pretokenized store built from TEXT_A and TEXT_B."""
    db = tmp_path / "s.db"
    ok(
        "build",
        "--db",
        db,
        "--order",
        3,
        "--pretokenized",
        write(tmp_path / "a.txt", TEXT_A),
        write(tmp_path / "b.txt", TEXT_B),
    )
    return db


# --- help --------------------------------------------------------------------------------------------------------
def test_group_help_has_an_example() -> None:
    assert "Example:" in ok("--help")


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_help_has_an_example(name: str) -> None:
    assert "Example:" in ok(name, "--help")


def test_every_documented_command_exists() -> None:
    expected = {"build", "learn", "forget", "complete", "score", "generate", "export-arpa", "import-arpa", "stats"}
    assert expected <= set(main.commands)


# --- build, stats, complete --------------------------------------------------------------------------------------
def test_build_reports_tokens_and_ngrams_per_order(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    out = ok(
        "build",
        "--db",
        db,
        "--order",
        3,
        "--pretokenized",
        write(tmp_path / "a.txt", TEXT_A),
        write(tmp_path / "b.txt", TEXT_B),
    )
    assert out == f"{db}: 18 tokens from 2 file(s); 1-grams 10, 2-grams 13, 3-grams 13\n"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_stats_shows_ngrams_per_order_and_sources(store3: Path, tmp_path: Path) -> None:
    lines = ok("stats", "--db", store3).splitlines()
    fields = dict(line.strip().split(": ", 1) for line in lines if not line.startswith("  file"))
    assert fields["order"] == "3"
    assert fields["tokenizer"] == "pretokenized"
    assert fields["ngrams"] == "1: 10, 2: 13, 3: 13"
    assert fields["vocabulary"] == "9"
    assert fields["sources"] == "2"
    assert fields["tokens"] == "18"
    sources = [line.split() for line in lines if line.startswith("  file")]
    assert [(s[1], s[-1]) for s in sources] == [
        ("14", str((tmp_path / "a.txt").resolve())),
        ("4", str((tmp_path / "b.txt").resolve())),
    ]


def test_complete_ranks_words_by_probability(store3: Path) -> None:
    words = ranked(ok("complete", "the", "--db", store3))
    # every word seen in the corpus (8 of them) can follow; "cat" follows "the" most often (2 of 5)
    assert sorted(w for w, _ in words) == ["cat", "dog", "log", "mat", "on", "ran", "sat", "the"]
    assert [w for w, _ in words[:2]] == ["cat", "dog"]
    probs = [p for _, p in words]
    assert probs == sorted(probs, reverse=True)
    assert 0 < sum(probs) <= 1


def test_complete_after_a_longer_context(store3: Path) -> None:
    words = ranked(ok("complete", "sat on the", "--db", store3, "-k", 2))
    assert [w for w, _ in words] == ["log", "mat"]  # seen once each after "on the"; ties in word order
    assert words[0][1] == words[1][1]


def test_complete_prefix_filters_words(store3: Path) -> None:
    assert [w for w, _ in ranked(ok("complete", "the", "--db", store3, "--prefix", "c"))] == ["cat"]
    assert [w for w, _ in ranked(ok("complete", "the", "--db", store3, "--prefix", "d"))] == ["dog"]
    assert ok("complete", "the", "--db", store3, "--prefix", "zz") == "(no suggestions)\n"


def test_complete_k_limits_the_number_of_words(store3: Path) -> None:
    full = ok("complete", "the", "--db", store3)
    two = ok("complete", "the", "--db", store3, "-k", 2)
    assert [w for w, _ in ranked(two)] == ["cat", "dog"]
    assert [p for _, p in ranked(two)] == [p for _, p in ranked(full)[:2]]


# --- learn, re-learn, forget -------------------------------------------------------------------------------------
def test_relearning_an_edited_file_replaces_its_counts_and_forget_removes_them(tmp_path: Path) -> None:
    base = write(tmp_path / "base.txt", "The cat sat on the mat. The dog ran!\n")
    db = tmp_path / "s.db"
    ok("build", "--db", db, "--order", 3, base)
    before = snapshot(db)

    notes = write(tmp_path / "notes.txt", "The cat sat on a log.\n\nA Dog slept in New York.\n")
    out = ok("learn", notes, "--db", db)
    assert out.startswith(f"learned {notes.resolve()}: 16 tokens, ")
    write(notes, "The dog sat on the mat in New York. I sat.\n")
    out = ok("learn", notes, "--db", db)
    assert out.startswith(f"re-learned {notes.resolve()}: 15 tokens, ")

    fresh = tmp_path / "fresh.db"
    ok("build", "--db", fresh, "--order", 3, base, write(tmp_path / "edited.txt", notes.read_text()))
    assert snapshot(db) == snapshot(fresh)
    assert ranked(ok("complete", "in new", "--db", db)) == ranked(ok("complete", "in new", "--db", fresh))

    out = ok("forget", notes, "--db", db)
    assert out.startswith(f"forgot {notes.resolve()}: ")
    assert snapshot(db) == before
    stats = ok("stats", "--db", db)
    assert str(notes.resolve()) not in stats
    assert "     sources: 1\n" in stats

    message = error_of("forget", notes, "--db", db)
    assert message == f"nothing was learned from {str(notes.resolve())!r}; see 'nextword stats' for sources"
    assert snapshot(db) == before


def test_forget_works_after_the_file_is_deleted(store3: Path, tmp_path: Path) -> None:
    before = snapshot(store3)
    notes = write(tmp_path / "notes.txt", "a new line of words\n")
    ok("learn", notes, "--db", store3)
    notes.unlink()
    ok("forget", notes, "--db", store3)
    assert snapshot(store3) == before


def test_learn_into_a_new_db_creates_a_prose_store(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    ok("learn", write(tmp_path / "n.txt", "Hello there. Hello World.\n"), "--db", db)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    stats = ok("stats", "--db", db)
    assert "   tokenizer: prose\n" in stats
    assert "       order: 5\n" in stats


# --- score -------------------------------------------------------------------------------------------------------
def test_score_prints_the_perplexity_of_the_model(store3: Path, tmp_path: Path) -> None:
    text = "the cat sat on the log\nthe dog ran\nthe mat sat\n"
    out = ok("score", write(tmp_path / "t.txt", text), "--db", store3, "--top", 2)
    lines = out.splitlines()
    match = re.fullmatch(r".*t\.txt: perplexity (\S+) over (\d+) tokens \(sentence ends included\)", lines[0])
    assert match, lines[0]
    tokens = [w for sentence in pretokenized_sentences(text) for w in sentence]
    assert int(match[2]) == len(tokens) == 15
    engine = Engine.open(store3)
    try:
        expected = perplexity(engine.model, tokens)
    finally:
        engine.close()
    assert math.isfinite(expected)
    assert match[1] == f"{expected:.2f}"
    assert lines[1] == "most surprising words (bits = -log2 P):"
    assert len(lines) == 4


# --- generate ----------------------------------------------------------------------------------------------------
def test_generate_with_a_seed_is_deterministic(store3: Path) -> None:
    first = ok("generate", "the", "--db", store3, "-n", 25, "--seed", 7)
    assert first.startswith("the ") and len(first.split()) > 1
    assert ok("generate", "the", "--db", store3, "-n", 25, "--seed", 7) == first
    assert ok("generate", "--db", store3, "-n", 25, "--seed", 7, "--top-p", 0.9) == ok(
        "generate", "--db", store3, "-n", 25, "--seed", 7, "--top-p", 0.9
    )


def test_generate_greedy_is_deterministic(store3: Path) -> None:
    first = ok("generate", "the", "--db", store3, "-n", 5, "--greedy")
    assert first.startswith("the cat sat on the ")
    assert ok("generate", "the", "--db", store3, "-n", 5, "--greedy") == first


@pytest.mark.parametrize("temperature", ["0", "-1"])
def test_generate_temperature_must_be_positive(store3: Path, temperature: str) -> None:
    message = error_of("generate", "the", "--db", store3, "--temperature", temperature)
    assert message == "--temperature must be above 0 (use --greedy for the most probable words)"


# --- ARPA --------------------------------------------------------------------------------------------------------
def test_export_then_import_arpa_completes_like_the_count_store(store3: Path, tmp_path: Path) -> None:
    arpa = tmp_path / "s.arpa"
    assert ok("export-arpa", "--db", store3, "-o", arpa) == f"{arpa}: 1-grams 11, 2-grams 13, 3-grams 13\n"
    imported = tmp_path / "imported.db"
    assert ok("import-arpa", arpa, "--db", imported) == f"{imported}: imported order-3 ARPA model from {arpa}\n"
    for context in ["the", "on the", "sat", "the cat", ""]:
        assert ok("complete", context, "--db", imported) == ok("complete", context, "--db", store3), context
    text = write(tmp_path / "t.txt", "the cat sat on the log\nthe dog ran\n")
    assert ok("score", text, "--db", imported, "--top", 0) == ok("score", text, "--db", store3, "--top", 0)

    assert "ARPA" in error_of("learn", text, "--db", imported)
    assert "ARPA" in error_of("forget", text, "--db", imported)
    assert "ARPA" in error_of("build", "--db", imported, "--order", 3, "--pretokenized", text)
    assert "   kind: arpa" in ok("stats", "--db", imported)


def test_export_then_import_arpa_of_a_prose_store_scores_the_same(tmp_path: Path) -> None:
    corpus = write(tmp_path / "p.txt", "The cat sat on the mat. The dog sat on the log.\n\nI live in New York.\n")
    db, arpa, imported = tmp_path / "p.db", tmp_path / "p.arpa", tmp_path / "imported.db"
    ok("build", "--db", db, "--order", 3, corpus)
    ok("export-arpa", "--db", db, "-o", arpa)
    ok("import-arpa", arpa, "--db", imported, "--prose")
    assert ok("score", corpus, "--db", imported, "--top", 0) == ok("score", corpus, "--db", db, "--top", 0)


def test_import_arpa_never_overwrites_a_store(store3: Path, tmp_path: Path) -> None:
    arpa = tmp_path / "s.arpa"
    ok("export-arpa", "--db", store3, "-o", arpa)
    before = snapshot(store3)
    assert "already exists" in error_of("import-arpa", arpa, "--db", store3)
    assert snapshot(store3) == before


# --- the Quick start ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason=f"the shipped default model {DEFAULT_MODEL} is missing")
def test_quick_start_completes_from_the_shipped_model(private_data_dir: Path) -> None:
    words = ranked(ok("complete", "the sun rises every"))
    assert len(words) == 10
    probs = [p for _, p in words]
    assert probs == sorted(probs, reverse=True)
    assert all(0 < p < 1 for p in probs)
    assert len({w for w, _ in words}) == 10
    store = private_data_dir / "nextword" / "nextword.db"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert not list(store.parent.glob("*.seeding"))  # no partial seed left behind


# --- a real process ----------------------------------------------------------------------------------------------
def test_the_console_script_fails_with_one_line_and_status_1(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "nextword"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lsp_server.cli"]
    env = {k: v for k, v in os.environ.items() if k not in ("NEXTWORD_DB", "NEXTWORD_DEBUG")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    not_a_store = write(tmp_path / "notes.db", "only text, not a store\n")
    proc = subprocess.run(
        [*command, "complete", "the", "--db", str(not_a_store)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == (
        f"nextword: error: {not_a_store} is not a nextword store (not an SQLite database); it was left untouched\n"
    )
    assert not_a_store.read_text() == "only text, not a store\n"
    assert not (tmp_path / "xdg").exists()
