"""A store that is not there yet, however it is named (`--db`, `NEXTWORD_DB`, the server's `databasePath` setting,
the default path), starts from the shipped model and says so once; `--empty-store` makes an empty one instead.
Through the CLI and through the real server."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import make_test_lsp_client

from lsp_server.paths import DEFAULT_BASE_NAME, DEFAULT_MODEL
from store.countstore import CountStore
from tests.conftest import run
from tests.test_server import complete, end_of, open_doc, stop_server

pytestmark = [
    pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason=f"the shipped model {DEFAULT_MODEL} is missing"),
    pytest.mark.usefixtures("private_data_dir"),
]

REPO = Path(__file__).resolve().parent.parent
TEXT = "I live in the United "
NOTE = (
    "nextword: new store {path}, started from the shipped model (WikiText-2 train (CC BY-SA 3.0)); "
    "'nextword serve --empty-store' (or learn --empty-store) makes an empty one instead"
)


def cli(*args: object) -> tuple[str, str]:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


def base_sources(path: Path) -> list[str]:
    with CountStore.open(path) as store:
        return [s.name for s in store.sources() if s.kind == "base"]


# --- the CLI ---------------------------------------------------------------------------------------------------------
def test_a_new_store_named_by_db_or_by_nextword_db_is_seeded_and_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = tmp_path / "notes" / "named.db"
    out, err = cli("complete", TEXT, "--db", named, "-k", 1)
    assert out.split()[1] == "States"
    assert err == NOTE.format(path=named) + "\n"
    assert base_sources(named) == [DEFAULT_BASE_NAME]
    assert cli("complete", TEXT, "--db", named, "-k", 1) == (out, "")  # said once, when it was made

    by_env = tmp_path / "env.db"
    monkeypatch.setenv("NEXTWORD_DB", str(by_env))
    assert cli("complete", TEXT, "-k", 1) == (out, NOTE.format(path=by_env) + "\n")  # the same on both paths
    assert cli("complete", TEXT, "-k", 1) == (out, "")


def test_learn_into_a_new_store_keeps_the_shipped_model_unless_asked_for_an_empty_one(tmp_path: Path) -> None:
    note = tmp_path / "n.txt"
    note.write_text("Hello there. Hello World.\n")
    seeded, empty = tmp_path / "seeded.db", tmp_path / "empty.db"
    _, err = cli("learn", note, "--db", seeded)
    assert err == NOTE.format(path=seeded) + "\n"
    assert base_sources(seeded) == [DEFAULT_BASE_NAME]

    out, err = cli("learn", note, "--db", empty, "--empty-store")
    assert (out.startswith("learned "), err) == (True, "")
    with CountStore.open(empty) as store:
        assert [(s.kind, s.tokens) for s in store.sources()] == [("file", 8)]  # the file's words alone


# --- the server ------------------------------------------------------------------------------------------------------
async def start(home: Path, args: list[str], options: dict[str, Any]) -> LanguageClient:
    """`nextword serve ARGS` initialised as Neovim, with `options` as its initializationOptions."""
    client = make_test_lsp_client()
    env = {**os.environ, "XDG_DATA_HOME": str(home), "NEXTWORD_DB": str(home / "default.db")}
    await client.start_io(sys.executable, "-m", "lsp_server.cli", "serve", *args, env=env, cwd=REPO)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("neovim"),
            initialization_options={"nextword": {"neuralModel": "none", "debounceMs": 0, **options}},
        )
    )
    return client


async def first_words(client: LanguageClient) -> list[str]:
    uri = open_doc(client, TEXT)
    result = await complete(client, uri, end_of(TEXT))
    assert result is not None
    return [item.label for item in result.items]


async def served(home: Path, args: list[str], options: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The words after TEXT, and the messages the server showed, from a server started and stopped here."""
    client = await start(home, args, options)
    try:
        words = await first_words(client)
        return words, [m.message for m in client.messages if m.type == types.MessageType.Info]
    finally:
        await stop_server(client)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["--db", "databasePath", "NEXTWORD_DB"])
async def test_the_server_seeds_a_new_store_however_it_is_named(tmp_path: Path, how: str) -> None:
    home = tmp_path / "home"
    db = home / "default.db" if how == "NEXTWORD_DB" else tmp_path / "notes" / "nextword.db"
    args = ["--db", str(db)] if how == "--db" else []
    options = {"databasePath": str(db)} if how == "databasePath" else {}

    words, shown = await served(home, args, options)
    assert words[:2] == ["States", "Kingdom"]
    assert shown == [NOTE.format(path=db)]
    assert base_sources(db) == [DEFAULT_BASE_NAME]

    words_again, shown_again = await served(home, args, options)
    assert (words_again, shown_again) == (words, [])  # said once, when the store was made


@pytest.mark.asyncio
async def test_the_server_makes_an_empty_store_when_asked(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    words, shown = await served(tmp_path / "home", ["--empty-store"], {"databasePath": str(db)})
    assert (words, shown) == ([], [])
    with CountStore.open(db) as store:
        assert store.sources() == []


def test_a_damaged_or_truncated_shipped_model_is_one_clear_error_and_leaves_no_store(tmp_path: Path) -> None:
    import gzip

    from lsp_server.paths import seed_from_default_model
    from store.errors import StoreError

    whole = gzip.compress(b"SQLite format 3\x00" + bytes(5000))
    for name, data in (("truncated", whole[: len(whole) // 2]), ("damaged", whole[:20] + b"\xff" * 40 + whole[60:])):
        model = tmp_path / f"{name}.db.gz"
        model.write_bytes(data)
        target = tmp_path / f"{name}.db"
        with pytest.raises(StoreError, match="reinstall nextword"):
            seed_from_default_model(target, model)
        assert not target.exists() and not target.with_name(f"{name}.db.seeding").exists()
    good = tmp_path / "good.db.gz"
    good.write_bytes(whole)
    assert seed_from_default_model(tmp_path / "good.db", good)
    assert (tmp_path / "good.db").read_bytes() == gzip.decompress(whole)
