"""Privacy on every path that reads what a person wrote: credential files (by name, or behind a symbolic link) are
never read, secrets never reach a store or a checkpoint's vocabulary, documents that are not local files obey the
same rules, every file nextword writes is 0600 and every folder it creates 0700 whatever the umask, and input is
read within a bounded size."""

from __future__ import annotations

import contextlib
import os
import random
import stat
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from lm_core.files import make_private_folder, open_private
from lsp_server import server as server_module
from lsp_server.engine import Engine
from lsp_server.ignore import never_learned
from lsp_server.settings import Settings
from store import sources
from store.countstore import CountStore
from store.errors import InputError
from tests.conftest import error_of, ok

_rng = random.Random(15)
PROSE = "The cat sat on the mat. The dog sat on the rug. We walked home after the rain.\n"


def fake(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


@pytest.fixture(autouse=True)
def private(private_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's real store out of reach (`private_data_dir`), and the test's folder as the working directory."""
    monkeypatch.delenv(sources.MAX_DOCUMENT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the leak, end to end -----------------------------------------------------------------------------------
def test_a_netrc_password_is_never_suggested_after_its_login(tmp_path: Path) -> None:
    password = "Lantern6Pike"
    notes = tmp_path / "notes.md"
    notes.write_text(f"{PROSE}\nmachine api.example.com login thornquist password {password}\n\n{PROSE}")
    ok("learn", "--db", "s.db", notes)
    out = ok("complete", "--db", "s.db", "-k", "50", "login thornquist password")
    assert password.lower() not in out.lower()
    with CountStore.open(tmp_path / "s.db") as store:
        assert not {"thornquist", password.lower(), password} & set(store.vocab.words)


# --- credential files, by name or behind a symbolic link ------------------------------------------------------------
def test_a_symbolic_link_to_a_credentials_file_is_never_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"the team meets on mondays\nAPI_TOKEN={fake(string.ascii_letters, 30)}\n")
    (tmp_path / "notes.md").symlink_to(tmp_path / ".env")
    for command in (["learn", "--db", "s.db"], ["score", "--db", "s.db"], ["report", "-o", "r.html", "--db", "s.db"]):
        assert "credentials file by its name" in error_of(*command, "notes.md")
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "r.html").exists()
    assert never_learned(tmp_path / "notes.md") == "notes.md holds credentials"
    with CountStore.open(tmp_path / "t.db", order=3, create=True) as store, pytest.raises(InputError):
        store.learn_file(tmp_path / "notes.md")


def test_train_neural_refuses_credential_files_and_drops_secret_sentences(tmp_path: Path) -> None:
    key = "AKIA" + fake(string.ascii_uppercase + string.digits, 16)
    (tmp_path / ".env").write_text("the cat sees the dog\n" * 50)
    args = ["--hidden", "8", "--layers", "1", "--batch-size", "4", "--bptt", "8", "--epochs", "1", "--dropout", "0"]
    assert "credentials file by its name" in error_of("train-neural", "--pretokenized", *args, "-o", "m.pt", ".env")
    lines = "".join(f"the {a} sees the {b}\n" for a in ("cat", "dog", "owl") for b in ("cow", "yak", "emu")) * 20
    (tmp_path / "train.txt").write_text(lines + f"my key is {key} today\nglpat-{fake(string.ascii_letters, 24)}\n")
    ok("train-neural", "--pretokenized", *args, "-o", "m.pt", "train.txt")
    from lm_core.neural import load_checkpoint

    vocab = load_checkpoint(tmp_path / "m.pt").vocab
    assert "yak" in vocab and key not in vocab and "today" not in vocab  # the whole line holding the key is gone
    assert not any(w.startswith("glpat-") for w in vocab)


def test_eval_refuses_credential_files(tmp_path: Path) -> None:
    (tmp_path / "id_rsa").write_text("the cat sees the dog\n" * 4)
    assert "credentials file by its name" in error_of("eval", "--db", "s.db", "id_rsa")


# --- documents that are not local files --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("untitled:Untitled-1", None),
        ("untitled:.env", ".env holds credentials"),
        ("vscode-remote://ssh-remote%2Bbox/home/ann/project/.env", ".env holds credentials"),
        ("vscode-remote://ssh-remote%2Bbox/home/ann/project/deploy/id_rsa", "id_rsa holds credentials"),
        ("vscode-remote://ssh-remote%2Bbox/home/ann/project/notes.md", None),
        ("vscode-remote://ssh-remote%2Bbox/home/ann/project/drafts/diary.md", "excluded by excludeGlobs"),
        ("vscode-vfs://github/ann/repo/prod.env", "prod.env holds credentials"),
    ],
)
def test_documents_that_are_not_files_obey_the_credential_names_and_exclude_globs(uri: str, reason: str) -> None:
    ls = server_module.server
    before = ls.settings
    try:
        ls.settings = Settings(exclude_globs=("drafts/",))
        assert server_module._never_learned(ls, uri) == reason
    finally:
        ls.settings = before


# --- file modes ---------------------------------------------------------------------------------------------------
def test_every_file_is_0600_and_every_new_folder_0700_whatever_the_umask(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text(PROSE * 3)
    with umask(0):
        ok("learn", "--db", "deep/er/s.db", "notes.txt")
        ok("export-arpa", "--db", "deep/er/s.db", "-o", "out/model.arpa")
        ok("report", "--db", "deep/er/s.db", "-o", "out/r.html", "notes.txt")
    assert mode(tmp_path / "deep") == 0o700 and mode(tmp_path / "deep/er") == 0o700
    assert mode(tmp_path / "deep/er/s.db") == 0o600
    assert mode(tmp_path / "out") == 0o700
    assert mode(tmp_path / "out/model.arpa") == 0o600 and mode(tmp_path / "out/r.html") == 0o600


def test_a_checkpoint_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("the cat sees the dog\nthe dog sees the cow\n" * 40)
    args = ["--hidden", "8", "--layers", "1", "--batch-size", "4", "--bptt", "8", "--epochs", "1", "--dropout", "0"]
    with umask(0):
        ok("train-neural", "--pretokenized", *args, "-o", "models/m.pt", "--plot", "models/c.png", "train.txt")
    assert mode(tmp_path / "models") == 0o700
    assert mode(tmp_path / "models/m.pt") == 0o600 and mode(tmp_path / "models/c.png") == 0o600


def test_private_files_narrow_an_existing_file_and_leave_existing_folders_alone(tmp_path: Path) -> None:
    wide = tmp_path / "wide.txt"
    wide.write_text("x")
    wide.chmod(0o666)
    with open_private(wide, "w") as f:
        f.write("y")
    assert mode(wide) == 0o600 and wide.read_text() == "y"
    (tmp_path / "shared").mkdir(mode=0o755)
    (tmp_path / "shared").chmod(0o755)
    make_private_folder(tmp_path / "shared/mine")
    assert mode(tmp_path / "shared") == 0o755 and mode(tmp_path / "shared/mine") == 0o700


# --- bounded reading -------------------------------------------------------------------------------------------------
def test_endless_input_is_refused_after_the_maximum_document_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sources.MAX_DOCUMENT_ENV, "0.5")
    for device in ("/dev/zero", "/dev/urandom"):
        assert error_of("learn", "--db", "s.db", device) == (
            f"{device} is larger than the maximum document size (0.5 MB); set NEXTWORD_MAX_DOCUMENT_MB to read it,"
            " or split it"
        )
    assert not Path("s.db").exists()


def test_the_maximum_document_size_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.txt"
    big.write_text("the cat sat on the mat. " * 5000)  # 120,000 bytes
    monkeypatch.setenv(sources.MAX_DOCUMENT_ENV, "0.1")
    assert "larger than the maximum document size (0.1 MB)" in error_of("learn", "--db", "s.db", big)
    monkeypatch.setenv(sources.MAX_DOCUMENT_ENV, "0.2")
    assert "learned" in ok("learn", "--db", "s.db", big)
    monkeypatch.setenv(sources.MAX_DOCUMENT_ENV, "lots")
    message = "NEXTWORD_MAX_DOCUMENT_MB='lots': give a number of megabytes above 0, e.g. 64"
    assert error_of("learn", "--db", "s.db", big) == message
    monkeypatch.delenv(sources.MAX_DOCUMENT_ENV)
    assert sources.max_document_bytes() == 16_000_000


def test_score_of_a_binary_file_says_only_text_files_can_be_read(tmp_path: Path) -> None:
    (tmp_path / "prog").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    ok("learn", "--db", "s.db", write_notes(tmp_path))
    assert error_of("score", "--db", "s.db", "prog") == (
        "prog looks like a binary file (it contains NUL bytes); only text files can be read"
    )


def write_notes(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text(PROSE * 3)
    return path


# --- doctor and the kind of a CLI-learned file ----------------------------------------------------------------------
def test_a_cli_learned_file_is_recorded_as_a_file(tmp_path: Path) -> None:
    ok("learn", "--empty-store", "--db", "s.db", write_notes(tmp_path))
    with CountStore.open(tmp_path / "s.db") as store:
        assert [(s.name, s.kind) for s in store.sources()] == [(str(tmp_path / "notes.txt"), "file")]


def test_engine_learns_documents_by_uri_as_documents(tmp_path: Path) -> None:
    engine = Engine.open(tmp_path / "e.db", create=True)
    engine.learn("untitled:Untitled-1", PROSE)
    assert [s.kind for s in engine.sources()] == ["document"]
    engine.close()


# --- messages -------------------------------------------------------------------------------------------------------
def test_export_arpa_never_overwrites_a_file_unless_forced(tmp_path: Path) -> None:
    ok("learn", "--db", "s.db", write_notes(tmp_path))
    (tmp_path / "precious.txt").write_text("keep me")
    assert error_of("export-arpa", "--db", "s.db", "-o", "precious.txt") == (
        "precious.txt exists; give --force to replace it"
    )
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    ok("export-arpa", "--db", "s.db", "-o", "precious.txt", "--force")
    assert (tmp_path / "precious.txt").read_text().startswith("\\data\\")


def test_an_imported_model_says_what_does_not_apply(tmp_path: Path) -> None:
    ok("learn", "--db", "s.db", write_notes(tmp_path))
    ok("export-arpa", "--db", "s.db", "-o", "m.arpa")
    ok("import-arpa", "m.arpa", "--db", "m.db", "--prose")
    assert "imported ARPA model, not a count store" in error_of("export-arpa", "--db", "m.db", "-o", "again.arpa")
    not_applied = "--model-order and --smoothing do not apply"
    assert not_applied in error_of("complete", "--db", "m.db", "--model-order", "2", "the")
    assert not_applied in error_of("score", "--db", "m.db", "--smoothing", "katz", "notes.txt")
    assert ok("complete", "--db", "m.db", "the")  # without the options it completes


def test_builds_refuse_credential_files_and_devices_and_read_corpora_of_any_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "id_ed25519").write_text("the cat sat\n" * 10)
    (tmp_path / "link.txt").symlink_to(tmp_path / "id_ed25519")
    for extra in ([], ["--prune", "1"]):
        for name in ("id_ed25519", "link.txt"):
            assert "credentials file by its name" in error_of("build", "--db", "b.db", "--order", "2", *extra, name)
    assert "not a regular file" in error_of("build", "--db", "b.db", "--order", "2", "/dev/zero")
    monkeypatch.setenv(sources.MAX_DOCUMENT_ENV, "0.01")  # documents, not corpora
    (tmp_path / "corpus.txt").write_text("the cat sat on the mat .\n" * 2000)  # 50,000 bytes
    assert "2-grams" in ok("build", "--db", "b.db", "--order", "2", "--pretokenized", "corpus.txt")
    assert "larger than the maximum document size" in error_of("learn", "--db", "c.db", "corpus.txt")


def test_a_report_never_shows_a_secret(tmp_path: Path) -> None:
    key = "AKIA" + fake(string.ascii_uppercase + string.digits, 16)
    password = "Opal7Crane"
    (tmp_path / "draft.md").write_text(f"{PROSE}The key is {key} here.\nmy password is {password} today.\n{PROSE}")
    ok("learn", "--db", "s.db", write_notes(tmp_path))
    ok("report", "--db", "s.db", "-o", "r.html", "draft.md")
    page = (tmp_path / "r.html").read_text()
    assert key not in page and password not in page and "AKIA" not in page
    assert ">walked<" in page and "•" * len(key) in page


def test_a_secret_is_not_held_out_by_the_adaptive_mixture_either(tmp_path: Path) -> None:
    """The adaptive mixture scores a learn's new sentences before they are learned: it reads the text as the store
    learns it, so the line holding a key is neither learned nor held out (its tokens are not counted as fitted)."""
    key = "AKIA" + fake(string.ascii_uppercase + string.digits, 16)
    db = tmp_path / "s.db"
    with CountStore.open(db, create=True, tokenizer="pretokenized", order=3) as store:
        store.learn("base", "the cat sat on the mat\nthe dog sat on the log\n" * 3)
    engine = Engine.open(db)
    engine.enable_adaptation()
    engine.learn("first", "the red car sat on the log\n")  # a user layer to weigh
    fitted = engine.adaptation.fitted_tokens
    engine.learn("notes", f"a red car ran to the mat\nmy key is {key} today\n")
    assert engine.adaptation.fitted_tokens - fitted == 7 + 1  # "a red car ran to the mat" and its end
    assert engine.store.vocab.get(key.casefold()) is None and engine.store.vocab.get("today") is None
    engine.close()
