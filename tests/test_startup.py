"""Start-up: what `nextword serve` imports before it can answer `initialize`. The models, numpy, the store and torch
are imported once the engine opens (after `initialize`), the ignore rules (pathspec) and the credential detectors
when something is learned, so the editor's server is ready as soon as the LSP library is; bench/startup.py measures
the seconds. Also the vocabulary a store opens with, read in bulk."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from lm_core.oddities import OddityConfig
from lm_core.vocab import Vocab
from lsp_server.settings import ODDITY_THRESHOLD
from store.countstore import CountStore
from store.errors import StoreError

REPO = Path(__file__).resolve().parent.parent
LATER = (
    "numpy",
    "torch",
    "lm_core.ngram",
    "lm_core.tokenize",
    "lm_core.oddities",
    "store.countstore",
    "sqlite_utils",
    "pathspec",
    "store.secrets",
)


def test_the_server_answers_initialize_before_importing_the_models() -> None:
    code = (
        "import sys, json; import lsp_server.cli, lsp_server.server; "
        f"print(json.dumps([m for m in {list(LATER)!r} if m in sys.modules]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True
    )
    assert json.loads(proc.stdout) == []


def test_the_model_a_first_completion_needs_comes_without_the_neural_models_modules() -> None:
    code = (
        "import sys, json; from lsp_server.engine import Engine; "
        "print(json.dumps([m for m in ('lm_core.inference', 'threadpoolctl', 'torch') if m in sys.modules]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True
    )
    assert json.loads(proc.stdout) == []  # they load when a neural model is attached, after the first completions


def test_the_settings_default_threshold_is_the_oddity_detectors() -> None:
    assert OddityConfig().threshold_bits == ODDITY_THRESHOLD


# --- the vocabulary, read in bulk when a store opens ----------------------------------------------------------------
def test_a_vocabulary_extended_in_bulk_numbers_words_as_adding_them_one_by_one() -> None:
    bulk, single = Vocab(["cat"]), Vocab(["cat"])
    assert bulk.extend(["dog", "sat", "mat"]) is True
    assert [single.add(w) for w in ["dog", "sat", "mat"]] == [4, 5, 6]
    assert bulk.words == single.words == ["<unk>", "<s>", "</s>", "cat", "dog", "sat", "mat"]
    assert [bulk.id_of(w) for w in ["cat", "dog", "sat", "mat", "owl"]] == [3, 4, 5, 6, 0]


def test_a_bulk_extension_with_a_known_or_repeated_word_changes_nothing() -> None:
    vocab = Vocab(["cat"])
    assert vocab.extend(["dog", "cat"]) is False
    assert vocab.extend(["dog", "owl", "dog"]) is False
    assert vocab.words == ["<unk>", "<s>", "</s>", "cat"] and vocab.get("dog") is None


def test_a_store_reopened_has_the_vocabulary_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with CountStore.open(path, order=3, create=True) as store:
        store.learn("a", "The cat sat on the mat. The dog sat too.")
        written = list(store.vocab.words)
    with CountStore.open(path) as store:
        assert store.vocab.words == written and store.vocab.id_of("dog") == written.index("dog")


def test_a_store_whose_vocabulary_ids_have_a_gap_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with CountStore.open(path, order=3, create=True) as store:
        store.learn("a", "The cat sat on the mat.")
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE vocab SET id = 1000 WHERE word = 'mat'")
    db.close()
    with pytest.raises(StoreError, match="vocabulary ids are not contiguous; run 'nextword doctor'"):
        CountStore.open(path)


def test_opening_a_store_and_suggesting_once_imports_neither_numpy_ma_nor_the_credential_detectors(
    tmp_path: Path,
) -> None:
    # numpy imports numpy.ma (~35 ms) on the first np.unique or np.union1d, and store.secrets compiles 39 detectors
    # (~20 ms): neither is on the way to a server's first completion
    path = tmp_path / "s.db"
    with CountStore.open(path, order=3, create=True) as store:
        store.learn("a", "The cat sat on the mat. The dog sat on the rug.")
    code = (
        "import sys; from lsp_server.engine import Engine; "
        f"print([w.word for w in Engine.open({str(path)!r}).next_words(('the',), 2)], "
        "[m for m in ('numpy.ma', 'store.secrets') if m in sys.modules])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True
    )
    assert proc.stdout.split() == ["['cat',", "'dog']", "[]"]
