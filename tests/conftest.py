"""Helpers shared by the test files: running the `nextword` CLI in-process, writing small texts, keeping the user's
real store out of reach, and a word-keyed snapshot of a count store.

The helpers are plain functions (import them: `from tests.conftest import error_of, ok`); `private_data_dir` is a
fixture (a module turns it on for every test with `pytestmark = pytest.mark.usefixtures("private_data_dir")`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lm_core.counts import ADJUSTED, RAW
from lsp_server.cli import main
from store.countstore import CountStore

ERROR_PREFIX = "nextword: error: "


def run(*args: object) -> Result:
    """`nextword ARGS...` in this process (arguments turned into strings); exceptions propagate."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def ok(*args: object) -> str:
    """Run a command that must succeed (exit status 0); returns its stdout."""
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def error_of(*args: object, report_first: bool = False) -> str:
    """Run a command that must fail: exit status 1, nothing on stdout (`report_first`: a command such as `doctor`
    or `eval` that says what it found or does before the error may write there), exactly one `nextword: error:`
    line on stderr and no traceback; returns the message after the prefix."""
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert report_first or result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(ERROR_PREFIX), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0].removeprefix(ERROR_PREFIX)


def write(path: Path, text: str) -> Path:
    """`text` written to `path` as UTF-8; returns the path."""
    path.write_text(text, encoding="utf-8")
    return path


def store_snapshot(store: CountStore) -> dict[str, object]:
    """Everything an open count store holds, keyed by words rather than ids (ids depend on history): n-grams with
    (count, continuation count), the count-of-counts per order and kind, the casing table."""
    words = store.vocab.words
    ngrams = {
        tuple(words[i] for i in gram): (c, cc)
        for table in store.load_tables().tables
        for gram, c, cc in zip(table.grams.tolist(), table.count.tolist(), table.cont.tolist(), strict=True)
    }
    coc = {(n, k): store.stored_count_of_counts(n, k) for n in range(1, store.order + 1) for k in (RAW, ADJUSTED)}
    casing = sorted((words[i], s, n) for i, s, n in store.db.execute("SELECT id, surface, n FROM casing").fetchall())
    return {"ngrams": ngrams, "coc": coc, "casing": casing}


def snapshot(path: Path) -> dict[str, object]:
    """`store_snapshot` of the store file at `path` (opened and closed here)."""
    with CountStore.open(path) as store:
        return store_snapshot(store)


@pytest.fixture
def private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Whatever a test forgets to pass, the user's real store is never touched: the default store's folder
    ($XDG_DATA_HOME) is under the test's temporary folder, and $NEXTWORD_DB and $NEXTWORD_DEBUG are unset."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("NEXTWORD_DB", raising=False)
    monkeypatch.delenv("NEXTWORD_DEBUG", raising=False)
    return tmp_path / "xdg"
