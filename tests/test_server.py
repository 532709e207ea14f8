"""The language server end to end: the real `nextword serve` in a subprocess, driven by pytest-lsp's client with the
recorded capabilities of Neovim and of VS Code. Expected numbers come from the same Engine, in process, over the
same store, so completions, diagnostics and hovers are checked exactly.

Read-only behaviour shares one server per client (each test opens its own documents); tests that learn, forget,
ignore words or change settings get a fresh server over a fresh copy of the store.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import math
import os
import random
import shutil
import string
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_asyncio
from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import make_test_lsp_client

from lm_core.counts import ADJUSTED, RAW
from lm_core.oddities import OddityConfig
from lsp_server.engine import Engine
from lsp_server.paths import DEFAULT_MODEL, DEFAULT_NEURAL_MODEL, seed_from_default_model
from store.countstore import CountStore, source_name
from store.sources import sha256

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parent.parent
CLIENTS = ["neovim", "visual-studio-code"]
PERPLEXITY = "nextword/perplexity"
REQUEST_CANCELLED = -32800
INVALID_PARAMS = -32602

CORPUS = """\
The cat sat on the mat. The cat sat on the mat again.
The dog sat on the mat too. The cat sat on the mat and the dog sat on the rug.
There is a problem with the plan. There is a problem here. There is a cat on the mat.
I have a dog. I have a cat. I have a big house.
It is better than nothing. It is better than before. It is better than the old one.
Their house is big. Their house is red. Their dog is big.
Its colour is red. Its colour is blue. The house is big and its colour is red.
I saw the cat on the mat. I saw the dog on the rug. I saw the cat. I saw the dog. I saw the cat again.
We have a problem. You have a dog. They have a cat.
There is a dog. There is a big house. The cat sat on the mat. I saw the mat.
"""
ODD_TEXT = "Their is a problem. I saw the the cat. I has a dog."
DOC = "The dog sat on the rug again. My dog has a red house.\n"
EDITED_DOC = "The dog sat on the mat. My cat is better than my dog.\nThe house is red.\n"

counter = itertools.count()
converter = get_converter()


# --- stores ----------------------------------------------------------------------------------------------------
def build_store(path: Path, docs: dict[str, str]) -> Path:
    """A 3-gram prose store holding `docs` (source name -> text), learned in name order."""
    with CountStore.open(path, order=3, tokenizer="prose", create=True) as store:
        for name in sorted(docs):
            store.learn(name, docs[name])
    return path


def snapshot(path: Path) -> dict[str, Any]:
    """Everything the store's tables hold (n-grams, count-of-counts, casing), keyed by words (ids depend on history)."""
    with CountStore.open(path) as store:
        tables = store.load_tables()
        words = store.vocab.words
        ngrams = {
            tuple(words[i] for i in gram): (c, cc)
            for table in tables.tables
            for gram, c, cc in zip(table.grams.tolist(), table.count.tolist(), table.cont.tolist(), strict=True)
        }
        coc = {(n, k): store.stored_count_of_counts(n, k) for n in range(1, store.order + 1) for k in (RAW, ADJUSTED)}
        casing = sorted((words[i], s, n) for i, s, n in store.db.execute("SELECT id, surface, n FROM casing"))
        return {"ngrams": ngrams, "coc": coc, "casing": casing}


def sources_of(path: Path) -> dict[str, str | None]:
    """Source name -> sha256 of the text learned from it."""
    with CountStore.open(path) as store:
        return {s.name: s.sha256 for s in store.sources()}


def fresh_snapshot(tmp: Path, docs: dict[str, str]) -> dict[str, Any]:
    return snapshot(build_store(tmp / f"fresh{next(counter)}.db", docs))


@pytest.fixture(scope="session")
def corpus_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("corpus") / "corpus.db", {"corpus": CORPUS})


@pytest.fixture(scope="session")
def engine(corpus_db: Path) -> Engine:
    """The server's model, in process, over the same (unchanging) store."""
    return Engine.open(corpus_db)


# --- the server ------------------------------------------------------------------------------------------------
async def start_server(
    kind: str, db: Path, home: Path, options: dict[str, Any] | None = None, workspace: Path | None = None
) -> LanguageClient:
    """`nextword serve --db DB` in a subprocess, initialised as client `kind`; `client.encoding` is the negotiated
    position encoding and `client.perplexities` collects the `nextword/perplexity` notifications."""
    client = make_test_lsp_client()
    perplexities: list[Any] = []
    client.perplexities = perplexities  # type: ignore[attr-defined]

    @client.feature(PERPLEXITY)
    def on_perplexity(params: Any) -> None:
        perplexities.append(params)

    env = {**os.environ, "XDG_DATA_HOME": str(home), "NEXTWORD_DB": str(home / "unused.db")}
    await client.start_io(sys.executable, "-m", "lsp_server.cli", "serve", "--db", str(db), env=env, cwd=REPO)
    folders = [types.WorkspaceFolder(uri=workspace.as_uri(), name="workspace")] if workspace else None
    result = await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(kind),
            # adaptation off unless a test turns it on: most tests compare with the plain in-process Engine
            initialization_options={"nextword": {"debounceMs": 0, "adaptation": False, **(options or {})}},
            workspace_folders=folders,
            root_uri=workspace.as_uri() if workspace else None,
        )
    )
    client.encoding = str(result.capabilities.position_encoding or "utf-16")  # type: ignore[attr-defined]
    return client


async def stop_server(client: LanguageClient) -> None:
    try:
        await asyncio.wait_for(client.shutdown_session(), 10)
    finally:
        await client.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=CLIENTS)
async def shared(
    request: pytest.FixtureRequest, corpus_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LanguageClient]:
    """One server per client kind for the tests that change nothing but their own documents."""
    client = await start_server(request.param, corpus_db, tmp_path_factory.mktemp("home"))
    client.kind = request.param  # type: ignore[attr-defined]
    yield client
    await stop_server(client)


Launch = Callable[..., Awaitable[LanguageClient]]


@pytest.fixture(params=CLIENTS)
def client_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_copy(corpus_db: Path, tmp_path: Path) -> Path:
    """A private copy of the corpus store, for a server that learns or forgets."""
    path = tmp_path / "store" / "s.db"
    path.parent.mkdir()
    shutil.copyfile(corpus_db, path)
    return path


@pytest_asyncio.fixture(loop_scope="module")
async def launch(client_kind: str, store_copy: Path, tmp_path: Path) -> AsyncIterator[Launch]:
    """Start a fresh server over `store_copy` (options and a workspace folder as asked); stopped after the test."""
    started: list[LanguageClient] = []

    async def start(options: dict[str, Any] | None = None, workspace: Path | None = None) -> LanguageClient:
        client = await start_server(client_kind, store_copy, tmp_path / "home", options, workspace)
        started.append(client)
        return client

    yield start
    for client in started:
        await stop_server(client)


# --- helpers ---------------------------------------------------------------------------------------------------
async def eventually(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll `predicate` until it returns something truthy (which is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def new_uri(name: str = "doc") -> str:
    return f"file:///nextword-tests/{name}-{next(counter)}.md"


def open_doc(client: LanguageClient, text: str, uri: str | None = None, language: str = "markdown") -> str:
    uri = uri or new_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
        )
    )
    return uri


def save_doc(client: LanguageClient, uri: str) -> None:
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))


def units(text: str, encoding: str) -> int:
    """Length of `text` in the client's position units."""
    if "8" in encoding:
        return len(text.encode("utf-8", "surrogatepass"))
    if "32" in encoding:
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def end_of(text: str, encoding: str = "utf-16") -> types.Position:
    """The position at the end of `text`."""
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=units(lines[-1], encoding))


def offset_of(text: str, position: types.Position, encoding: str = "utf-16") -> int:
    """The code-point offset of a position (exact, no clamping: the server's edits must be valid)."""
    lines = text.split("\n")
    before = sum(len(line) + 1 for line in lines[: position.line])
    line, count = lines[position.line], 0
    for i, ch in enumerate(line):
        if count == position.character:
            return before + i
        count += units(ch, encoding)
    assert count == position.character, f"{position} is not on a character boundary of {line!r}"
    return before + len(line)


def apply_edits(text: str, edits: list[types.TextEdit]) -> str:
    for edit in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        start, end = offset_of(text, edit.range.start), offset_of(text, edit.range.end)
        text = text[:start] + edit.new_text + text[end:]
    return text


async def complete(client: LanguageClient, uri: str, position: types.Position) -> types.CompletionList | None:
    result = await client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri), position=position)
    )
    assert result is None or isinstance(result, types.CompletionList)
    return result


async def labels_at_end(client: LanguageClient, uri: str, text: str) -> list[str]:
    result = await complete(client, uri, end_of(text, client.encoding))  # type: ignore[attr-defined]
    assert result is not None
    return [item.label for item in result.items]


async def still_completes(client: LanguageClient) -> None:
    """The server is alive and answers a normal completion with the corpus's best next word."""
    text = "The cat sat on the "
    uri = open_doc(client, text)
    assert (await labels_at_end(client, uri, text))[0] == "mat"


async def command(client: LanguageClient, name: str, *arguments: Any) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(arguments))
    )


async def diagnostics_of(client: LanguageClient, uri: str) -> list[types.Diagnostic]:
    return list(await eventually(lambda: client.diagnostics.get(uri), f"diagnostics for {uri}"))


def odd_words(diagnostics: list[types.Diagnostic]) -> list[types.Diagnostic]:
    return [d for d in diagnostics if d.code == "odd-word"]


@attrs.define
class RawResponse:
    """A response whose result is kept as plain JSON (the client's typed parsing is bypassed)."""

    id: str | int
    jsonrpc: str
    result: Any


def send_raw(client: LanguageClient, method: str, params: Any, msg_id: str | None = None) -> asyncio.Future[Any]:
    """Send a request with untyped (possibly malformed) params; the future resolves with the plain JSON result or
    fails with the JsonRpcException of an error response."""
    msg_id = msg_id or str(uuid.uuid4())
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    client.protocol._request_futures[msg_id] = future
    client.protocol._result_types[msg_id] = RawResponse
    client.protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
    return asyncio.wrap_future(future)


def to_json(value: Any) -> Any:
    return converter.unstructure(value)


# --- completion ------------------------------------------------------------------------------------------------
async def test_completion_after_a_space_ranks_the_next_words(shared: LanguageClient, engine: Engine) -> None:
    text = "I saw the dog.\nThe cat sat on the "
    uri = open_doc(shared, text)
    result = await complete(shared, uri, end_of(text))
    expected = engine.complete_at(text, len(text), 10).suggestions

    assert result is not None and result.is_incomplete is True
    assert [item.label for item in result.items] == [s.word for s in expected]
    assert result.items[0].label == "mat"
    assert [item.label_details.description for item in result.items] == [f"{s.prob:.1%}" for s in expected]
    assert [item.detail for item in result.items] == [f"P = {s.prob:.4f}" for s in expected]
    assert [item.sort_text for item in result.items] == [f"{rank:04d}" for rank in range(len(expected))]
    assert all(item.kind == types.CompletionItemKind.Text for item in result.items)
    percents = [float(item.label_details.description.rstrip("%")) for item in result.items]
    assert percents == sorted(percents, reverse=True)
    cursor = end_of(text)
    assert all(item.text_edit.range == types.Range(start=cursor, end=cursor) for item in result.items)


async def test_prefix_completion_replaces_exactly_the_typed_prefix(shared: LanguageClient, engine: Engine) -> None:
    text = "The cat sat on the m"
    uri = open_doc(shared, text)
    result = await complete(shared, uri, types.Position(line=0, character=20))
    expected = engine.complete_at(text, len(text), 10).suggestions

    assert result is not None
    assert [item.label for item in result.items] == [s.word for s in expected] == ["mat"]
    for item in result.items:
        assert item.label.startswith("m")
        assert item.text_edit.range == types.Range(
            start=types.Position(line=0, character=19), end=types.Position(line=0, character=20)
        )
        assert apply_edits(text, [item.text_edit]) == "The cat sat on the mat"


async def test_suggestions_are_capitalised_at_a_sentence_start(shared: LanguageClient, engine: Engine) -> None:
    after_full_stop = "I have a cat. "
    uri = open_doc(shared, after_full_stop)
    labels = await labels_at_end(shared, uri, after_full_stop)
    assert labels == [s.word for s in engine.complete_at(after_full_stop, len(after_full_stop)).suggestions]
    assert sorted(labels[:2]) == ["I", "The"]
    assert all(label[0].isupper() for label in labels)

    typed_capital = "I have a cat. Th"
    uri = open_doc(shared, typed_capital)
    result = await complete(shared, uri, end_of(typed_capital))
    assert result is not None
    labels = [item.label for item in result.items]
    assert labels == [s.word for s in engine.complete_at(typed_capital, len(typed_capital)).suggestions]
    assert labels[0] == "The" and set(labels[1:3]) == {"There", "Their"}
    assert all(item.label.startswith("Th") for item in result.items)
    edit = result.items[0].text_edit
    assert (edit.range.start.character, edit.range.end.character) == (14, 16)
    assert apply_edits(typed_capital, [edit]) == "I have a cat. The"


async def test_positions_are_in_the_negotiated_encoding(
    shared: LanguageClient, engine: Engine, request: pytest.FixtureRequest
) -> None:
    """Astral characters (2 UTF-16 units, 4 UTF-8 bytes, 1 code point) before the cursor and before a flagged word."""
    encoding = shared.encoding  # type: ignore[attr-defined]
    line = "Wow 😀 é 😀. The cat sat on the m"
    text = f"Hi.\n{line} 😀 end.\nHi 😀. I has a dog."
    uri = open_doc(shared, text)
    cursor = types.Position(line=1, character=units(line, encoding))
    result = await complete(shared, uri, cursor)
    assert result is not None
    assert [item.label for item in result.items] == ["mat"]
    start = types.Position(line=1, character=cursor.character - 1)
    assert result.items[0].text_edit.range == types.Range(start=start, end=cursor)

    [odd] = odd_words(await diagnostics_of(shared, uri))
    assert odd.data["word"] == "has"
    begin = units("Hi 😀. I ", encoding)
    assert odd.range == types.Range(
        start=types.Position(line=2, character=begin), end=types.Position(line=2, character=begin + 3)
    )


async def test_inline_completion_continues_with_several_words(shared: LanguageClient) -> None:
    text = "I have a dog. The dog s"
    uri = open_doc(shared, text)
    cursor = end_of(text)
    result = await shared.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=cursor,
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        )
    )
    assert result is not None
    [item] = result.items
    assert item.insert_text == "sat on the mat."
    assert item.range == types.Range(start=types.Position(line=0, character=cursor.character - 1), end=cursor)

    after_space = "The cat "
    uri = open_doc(shared, after_space)
    result = await shared.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=end_of(after_space),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
    )
    assert result is not None
    assert [(i.insert_text, i.range.start.character, i.range.end.character) for i in result.items] == [
        ("sat on the mat.", 8, 8)
    ]


# --- diagnostics, quick fixes and hover ------------------------------------------------------------------------
async def test_diagnostics_on_open_report_perplexity_and_odd_words(shared: LanguageClient, engine: Engine) -> None:
    uri = open_doc(shared, ODD_TEXT)
    diagnostics = await diagnostics_of(shared, uri)
    check = engine.check(ODD_TEXT, OddityConfig())
    assert check.tokens == 19

    [perplexity] = [d for d in diagnostics if d.code == "perplexity"]
    assert perplexity.message == f"Perplexity {check.perplexity:.1f} over {check.tokens} tokens"
    assert perplexity.severity == types.DiagnosticSeverity.Information
    assert perplexity.source == "nextword"
    assert perplexity.range == types.Range(start=types.Position(line=0, character=0), end=types.Position(0, 0))
    assert perplexity.data == {"perplexity": check.perplexity, "tokens": check.tokens}

    odd = odd_words(diagnostics)
    assert [(d.data["word"], d.data["alternatives"]) for d in odd] == [
        ("Their", ["There"]),
        ("the", [""]),
        ("has", ["have"]),
    ]
    assert [(d.data["word"], d.data["alternatives"]) for d in odd] == [
        (o.word, [a for a, _ in o.alternatives]) for o in check.oddities
    ]
    assert [(d.range.start.character, d.range.end.character) for d in odd] == [(0, 5), (30, 33), (41, 44)]
    assert all(d.severity == types.DiagnosticSeverity.Warning and d.source == "nextword" for d in odd)
    assert "'There'" in odd[0].message and "(remove it)" in odd[1].message

    note = await eventually(lambda: [p for p in shared.perplexities if p.uri == uri], "nextword/perplexity")  # type: ignore[attr-defined]
    assert (note[-1].perplexity, note[-1].tokens) == (round(check.perplexity, 2), check.tokens)


async def code_actions(client: LanguageClient, uri: str, diagnostic: types.Diagnostic) -> list[dict[str, Any]]:
    """The code actions for one diagnostic, as the JSON the server sent. (lsprotocol's converter reads a CodeAction
    that carries a `command` object as a `Command` whose `command` is that object stringified, so the typed client
    API loses them.)"""
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        range=diagnostic.range,
        context=types.CodeActionContext(diagnostics=[diagnostic]),
    )
    return await send_raw(client, "textDocument/codeAction", to_json(params))


def edits_of(action: dict[str, Any], uri: str) -> list[types.TextEdit]:
    assert list(action["edit"]["changes"]) == [uri]
    return [converter.structure(edit, types.TextEdit) for edit in action["edit"]["changes"][uri]]


async def test_quick_fixes_replace_or_remove_the_odd_word(shared: LanguageClient) -> None:
    uri = open_doc(shared, ODD_TEXT)
    their, doubled, has = odd_words(await diagnostics_of(shared, uri))

    actions = await code_actions(shared, uri, their)
    assert [a["title"] for a in actions] == [
        "Replace with 'There'",
        "Ignore 'Their'",
        "Forget this document (nextword)",
    ]
    replace, ignore, forget = actions
    assert (replace["kind"], replace["isPreferred"]) == ("quickfix", True)
    assert apply_edits(ODD_TEXT, edits_of(replace, uri)) == ODD_TEXT.replace("Their", "There")
    assert ignore["kind"] == "quickfix" and "edit" not in ignore
    assert ignore["command"] == {"title": "Ignore 'Their'", "command": "nextword.ignoreWord", "arguments": ["Their"]}
    assert forget["command"]["command"] == "nextword.forgetDocument" and forget["command"]["arguments"] == [uri]

    remove = (await code_actions(shared, uri, doubled))[0]
    assert remove["title"] == "Remove the repeated 'the'"
    assert apply_edits(ODD_TEXT, edits_of(remove, uri)) == ODD_TEXT.replace("the the", "the")

    have = (await code_actions(shared, uri, has))[0]
    assert have["title"] == "Replace with 'have'"
    assert apply_edits(ODD_TEXT, edits_of(have, uri)) == ODD_TEXT.replace("I has", "I have")

    unrelated = types.Diagnostic(range=their.range, message="not ours", source="spelling", code="odd-word")
    assert [a["title"] for a in await code_actions(shared, uri, unrelated)] == ["Forget this document (nextword)"]


async def test_ignoring_a_word_stops_flagging_it(launch: Launch) -> None:
    client = await launch()
    text = "Their is a problem."
    uri = open_doc(client, text)
    [odd] = odd_words(await diagnostics_of(client, uri))
    [ignore] = [a["command"] for a in await code_actions(client, uri, odd) if a["title"] == "Ignore 'Their'"]
    client.diagnostics.pop(uri)
    assert await command(client, ignore["command"], *ignore["arguments"]) == {
        "ignored": ["their"]
    }  # case-folded: 'their' anywhere is ignored

    diagnostics = await diagnostics_of(client, uri)
    assert odd_words(diagnostics) == []
    assert [d.code for d in diagnostics] == ["perplexity"]
    assert (await command(client, "nextword.statistics"))["ignored"] == ["their"]


async def test_hover_shows_surprisal_and_alternatives(shared: LanguageClient, engine: Engine) -> None:
    uri = open_doc(shared, ODD_TEXT)
    hover = await shared.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(0, 2))
    )
    assert hover is not None and hover.contents.kind == types.MarkupKind.Markdown
    bits = -engine.model.logprob("their", ("<s>",)) / math.log(2)
    info = engine.word_info(ODD_TEXT, 2)
    assert info is not None and math.isclose(info.surprisal, bits)
    alternatives = ", ".join(f"{a.word} ({a.prob:.1%})" for a in info.alternatives)
    [reason] = engine.check(ODD_TEXT).oddities[0].reasons
    assert reason.startswith("'Their' is often confused with 'There'; the model finds 'There' ")
    assert reason.endswith("x likelier than 'Their' here")
    assert hover.contents.value == (
        f"**'Their'** reads oddly here.\n- 'There': {reason}\n\n---\n\n"
        f"**Their**: surprisal {bits:.1f} bits (P = {2**-bits:.2g})\n\nLikelier here: {alternatives}"
    )
    assert "There (" in alternatives
    assert hover.range == types.Range(start=types.Position(0, 0), end=types.Position(0, 5))

    nothing = await shared.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=open_doc(shared, "  ")), position=types.Position(0, 1)
        )
    )
    assert nothing is None


# --- commands and learning -------------------------------------------------------------------------------------
async def test_statistics_reports_the_stores_counts(shared: LanguageClient, corpus_db: Path) -> None:
    stats = await command(shared, "nextword.statistics")
    with CountStore.open(corpus_db) as store:
        expected = store.stats()
    assert stats["ngrams"] == {str(n): c for n, c in expected["ngrams"].items()}
    assert (stats["order"], stats["sources"], stats["tokens"]) == (3, 1, expected["tokens"])
    assert stats["learning"] is True and stats["ignored"] == []


async def test_learning_on_save_adds_exactly_the_documents_ngrams(
    launch: Launch, store_copy: Path, tmp_path: Path
) -> None:
    client = await launch()
    assert snapshot(store_copy) == fresh_snapshot(tmp_path, {"corpus": CORPUS})
    uri = open_doc(client, DOC)
    save_doc(client, uri)
    await eventually(lambda: uri in sources_of(store_copy), "the document to be learned")
    assert snapshot(store_copy) == fresh_snapshot(tmp_path, {"corpus": CORPUS, uri: DOC})

    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=EDITED_DOC)],
        )
    )
    save_doc(client, uri)
    wanted = sha256(EDITED_DOC)
    await eventually(lambda: sources_of(store_copy).get(uri) == wanted, "the edited document to be learned")
    assert snapshot(store_copy) == fresh_snapshot(tmp_path, {"corpus": CORPUS, uri: EDITED_DOC})
    stats = await command(client, "nextword.statistics")
    assert stats["sources"] == 2


async def test_a_document_closed_right_after_saving_is_still_learned(
    launch: Launch, store_copy: Path, tmp_path: Path
) -> None:
    client = await launch()
    uri = open_doc(client, DOC)
    save_doc(client, uri)
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    await eventually(lambda: uri in sources_of(store_copy), "the saved and closed document to be learned")
    assert snapshot(store_copy) == fresh_snapshot(tmp_path, {"corpus": CORPUS, uri: DOC})


async def test_paused_learning_ignores_saves_until_resumed(launch: Launch, store_copy: Path, tmp_path: Path) -> None:
    client = await launch()
    before = snapshot(store_copy)
    uri = open_doc(client, DOC)
    assert await command(client, "nextword.pauseLearning") == {"learning": False}
    save_doc(client, uri)
    await asyncio.sleep(0.3)
    assert (await command(client, "nextword.statistics"))["learning"] is False
    assert snapshot(store_copy) == before
    assert uri not in sources_of(store_copy)

    assert await command(client, "nextword.resumeLearning") == {"learning": True}
    save_doc(client, uri)
    await eventually(lambda: uri in sources_of(store_copy), "the document to be learned after resuming")
    assert snapshot(store_copy) == fresh_snapshot(tmp_path, {"corpus": CORPUS, uri: DOC})


async def test_forget_document_restores_the_counts_exactly(launch: Launch, store_copy: Path) -> None:
    client = await launch()
    before = snapshot(store_copy)
    uri = open_doc(client, DOC)
    save_doc(client, uri)
    await eventually(lambda: uri in sources_of(store_copy), "the document to be learned")
    assert snapshot(store_copy) != before

    result = await command(client, "nextword.forgetDocument", uri)
    assert result["uri"] == uri and result["forgotten"] is True and result["changed_ngrams"] > 0
    assert snapshot(store_copy) == before
    assert list(sources_of(store_copy)) == ["corpus"]
    again = await command(client, "nextword.forgetDocument", uri)
    assert again == {"uri": uri, "forgotten": False, "changed_ngrams": 0}


async def test_learn_workspace_learns_its_text_files_with_progress(
    launch: Launch, store_copy: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "workspace"
    (workspace / "notes").mkdir(parents=True)
    first, second = workspace / "a.md", workspace / "notes" / "b.md"
    first.write_text("The cat sat on the sofa. My sofa is red.\n")
    second.write_text("There is a dog on the sofa.\n")
    (workspace / "tool.py").write_text("def f():\n    return 'the cat sat on the keyboard'\n")
    client = await launch(workspace=workspace)

    result = await command(client, "nextword.learnWorkspace")
    assert result == {"learned": 2, "skipped": 0, "files": 2, "cancelled": False}

    [(token, reports)] = client.progress_reports.items()
    assert isinstance(token, str)
    assert [type(r) for r in reports] == [
        types.WorkDoneProgressBegin,
        types.WorkDoneProgressReport,
        types.WorkDoneProgressReport,
        types.WorkDoneProgressEnd,
    ]
    assert reports[0].title == "nextword: learning the workspace"
    assert [r.percentage for r in reports[1:3]] == [50, 100]
    assert reports[-1].message == "learned 2 files"

    names = {source_name(first), source_name(second)}
    assert set(sources_of(store_copy)) == {"corpus", *names}
    with CountStore.open(tmp_path / "expected.db", order=3, tokenizer="prose", create=True) as store:
        store.learn("corpus", CORPUS)
        store.learn_file(first)
        store.learn_file(second)
    assert snapshot(store_copy) == snapshot(tmp_path / "expected.db")


# --- configuration ---------------------------------------------------------------------------------------------
async def test_configuration_changes_take_effect_and_bad_values_are_reported(launch: Launch) -> None:
    client = await launch()
    text = "The cat sat on the "
    uri = open_doc(client, text)
    assert len(await labels_at_end(client, uri, text)) == 10

    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"nextword": {"maxSuggestions": 2}})
    )
    assert await labels_at_end(client, uri, text) == ["mat", "rug"]
    assert client.messages == []

    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"nextword": {"maxSuggestions": "lots", "frobnicate": True}})
    )
    messages = await eventually(lambda: len(client.messages) >= 2 and client.messages, "two window/showMessage")
    texts = [m.message for m in messages]
    assert any("maxSuggestions" in t and "lots" in t and "using 2" in t for t in texts), texts
    assert any("unknown nextword setting 'frobnicate'" in t for t in texts), texts
    assert all(m.type == types.MessageType.Warning for m in messages)
    assert await labels_at_end(client, uri, text) == ["mat", "rug"]


# --- cancellation ----------------------------------------------------------------------------------------------
async def test_superseded_and_cancelled_completions_are_answered_cancelled_or_in_full(shared: LanguageClient) -> None:
    """A burst of completions for one document, then one for another document cancelled at once by the client.

    Which of them come back cancelled depends on timing (a request is superseded only if a newer one for its document
    arrived before its turn on the interactive thread, and completion work is faster than reading a request), so the
    test checks what always holds: each answer is either the full result or RequestCancelled (-32800), never another
    error; the newest of the burst is never superseded; and the server goes on answering."""
    text = "The cat sat on the "
    uri, other = open_doc(shared, text), open_doc(shared, text)
    full = to_json(await complete(shared, uri, end_of(text)))
    params = {"textDocument": {"uri": uri}, "position": {"line": 0, "character": len(text)}}
    burst = [send_raw(shared, "textDocument/completion", params) for _ in range(12)]
    victim_id = f"cancel-me-{uuid.uuid4()}"
    victim = send_raw(shared, "textDocument/completion", {**params, "textDocument": {"uri": other}}, msg_id=victim_id)
    shared.protocol.notify("$/cancelRequest", types.CancelParams(id=victim_id))

    outcomes = await asyncio.gather(*burst, victim, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            assert isinstance(outcome, JsonRpcException) and outcome.code == REQUEST_CANCELLED, outcome
        else:
            assert outcome == full
    assert outcomes[len(burst) - 1] == full
    await still_completes(shared)


# --- bad input -------------------------------------------------------------------------------------------------
async def test_unknown_documents_get_empty_answers(shared: LanguageClient) -> None:
    nowhere = types.TextDocumentIdentifier(uri="file:///nowhere/never-opened.md")
    assert await complete(shared, nowhere.uri, types.Position(0, 0)) is None
    assert (
        await shared.text_document_hover_async(types.HoverParams(text_document=nowhere, position=types.Position(0, 0)))
        is None
    )
    inline = await shared.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=nowhere,
            position=types.Position(0, 0),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
        )
    )
    assert inline is None
    await still_completes(shared)


async def test_positions_past_the_end_are_clamped(shared: LanguageClient) -> None:
    text = "The cat sat on the \nI have a dog. The cat sat on the "
    uri = open_doc(shared, text)
    past_line = await complete(shared, uri, types.Position(line=0, character=500))
    assert past_line is not None and past_line.items[0].label == "mat"
    past_document = await complete(shared, uri, types.Position(line=40, character=3))
    assert past_document is not None and past_document.items[0].label == "mat"
    hover = await shared.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(99, 99))
    )
    assert hover is None or hover.contents.value.startswith("**")
    await still_completes(shared)


async def test_a_50_mb_one_line_document_completes_at_its_end(shared: LanguageClient) -> None:
    sentence = "the cat sat on the mat "
    text = sentence * (50_000_000 // len(sentence))
    uri = open_doc(shared, text)
    started = time.monotonic()
    result = await complete(shared, uri, types.Position(line=0, character=len(text)))
    elapsed = time.monotonic() - started
    assert result is not None and [item.label for item in result.items][:2] == ["again", "and"]
    assert elapsed < 5, f"completing at the end of a 50 MB line took {elapsed:.1f} s"
    shared.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri)))
    await still_completes(shared)


async def test_a_100000_line_document_completes_and_gets_diagnostics(shared: LanguageClient) -> None:
    text = "The cat sat on the mat.\n" * 99_999 + "The cat sat on the "
    uri = open_doc(shared, text)
    result = await complete(shared, uri, types.Position(line=99_999, character=len("The cat sat on the ")))
    assert result is not None and [item.label for item in result.items][:2] == ["mat", "rug"]
    # 2.4 M characters: over maxDocumentChars, so no diagnostics (published empty) and a line in the server's log
    assert await eventually(lambda: uri in shared.diagnostics, "diagnostics") and list(shared.diagnostics[uri]) == []
    assert await eventually(
        lambda: any(uri in m.message and "maxDocumentChars" in m.message for m in shared.log_messages), "a log line"
    )
    shared.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri)))
    await still_completes(shared)


async def test_changes_with_out_of_order_versions_are_applied_and_answered(shared: LanguageClient) -> None:
    text = "The cat sat on the "
    uri = open_doc(shared, "Hello.")
    for version in (5, 3, 3, 1):  # versions going backwards, and repeated: applied in the order they arrive
        shared.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )
    assert await labels_at_end(shared, uri, text) == (await labels_at_end(shared, open_doc(shared, text), text))
    await still_completes(shared)


@pytest.mark.parametrize(
    "text",
    [
        "abc \ud800 def. The cat sat on the ",
        "I saw \udc80\udc81 the cat. The cat sat on the ",
        "\x00\x01\x02\x7f\ufffe\uffff bin\x00ary. The cat sat on the ",
    ],
    ids=["lone-high-surrogate", "lone-low-surrogates", "nul-and-binary"],
)
async def test_odd_characters_do_not_break_the_server(shared: LanguageClient, text: str) -> None:
    uri = open_doc(shared, text)
    result = await complete(shared, uri, types.Position(line=0, character=units(text, shared.encoding)))  # type: ignore[attr-defined]
    assert result is not None and result.items[0].label == "mat"
    diagnostics = await diagnostics_of(shared, uri)
    assert [d.code for d in diagnostics][:1] == ["perplexity"]
    await still_completes(shared)


async def test_malformed_params_do_not_kill_the_server(shared: LanguageClient) -> None:
    send_raw(shared, "textDocument/completion", {"textDocument": 5})
    send_raw(shared, "textDocument/hover", {"position": "here"})
    await still_completes(shared)


async def test_malformed_params_are_answered_with_an_error(shared: LanguageClient) -> None:
    malformed = send_raw(shared, "textDocument/completion", {"textDocument": 5})
    await still_completes(shared)  # answered after the malformed request, which must have been answered by now
    assert malformed.done()
    with pytest.raises(JsonRpcException) as error:
        malformed.result()
    assert error.value.code == INVALID_PARAMS


# --- comments in code files -----------------------------------------------------------------------------------
async def test_code_files_complete_only_inside_comments_when_asked(launch: Launch) -> None:
    text = "x = 1  # The cat sat on the "
    code = "x = the cat sat on the "
    plain = await launch()
    uri = open_doc(plain, text, language="python")
    assert await complete(plain, uri, end_of(text, plain.encoding)) is None  # type: ignore[attr-defined]

    client = await launch({"comments": True})
    uri = open_doc(client, text, language="python")
    assert (await labels_at_end(client, uri, text))[:2] == ["mat", "rug"]
    code_uri = open_doc(client, code, language="python")
    assert await complete(client, code_uri, end_of(code, client.encoding)) is None  # type: ignore[attr-defined]


# --- the neural model ------------------------------------------------------------------------------------------
NEURAL_KIND = "visual-studio-code"  # one client kind is enough: these test the server, not the client


@pytest.fixture(scope="session")
def neural_checkpoint(corpus_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small LSTM trained one epoch on the corpus store's own documents."""
    import torch

    from lm_core import training

    torch.set_num_threads(1)
    with CountStore.open(corpus_db) as store:
        sentences = store.learned_sentences()
    path = tmp_path_factory.mktemp("neural") / "corpus.pt"
    training.train_on_sentences(sentences, path, config=training.TrainConfig(epochs=1, batch_size=4, bptt=10))
    return path


def details(result: types.CompletionList | None) -> list[tuple[str, str | None]]:
    assert result is not None
    return [(item.label, item.detail) for item in result.items]


async def test_a_neural_model_is_attached_in_the_background(
    store_copy: Path, tmp_path: Path, neural_checkpoint: Path
) -> None:
    text = "I saw the dog.\nThe cat sat on the "
    engine = Engine.open(store_copy)
    ngram = [(s.word, f"P = {s.prob:.4f}") for s in engine.complete_at(text, len(text)).suggestions]
    engine.attach_neural(neural_checkpoint)
    blend = [(s.word, f"P = {s.prob:.4f}") for s in engine.complete_at(text, len(text)).suggestions]
    engine.close()
    assert blend != ngram

    client = await start_server(NEURAL_KIND, store_copy, tmp_path / "home", {"neuralModel": str(neural_checkpoint)})
    try:
        uri = open_doc(client, text)
        first = details(await complete(client, uri, end_of(text)))
        assert first in (ngram, blend)  # answered at once, from the n-gram model until the neural one is ready
        deadline = time.monotonic() + 30
        while details(await complete(client, uri, end_of(text))) != blend:
            assert time.monotonic() < deadline, "completions never came from the blend"
            await asyncio.sleep(0.05)
        stats = await command(client, "nextword.statistics")
        assert stats["neural_model"] == str(neural_checkpoint) and stats["blend_weight"] == 0.3

        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"neuralModel": ""}))
        deadline = time.monotonic() + 30
        while details(await complete(client, uri, end_of(text))) != ngram:
            assert time.monotonic() < deadline, "completions never went back to the n-gram model"
            await asyncio.sleep(0.05)
        assert client.messages == []
    finally:
        await stop_server(client)


@pytest.mark.skipif(
    not (DEFAULT_MODEL.exists() and DEFAULT_NEURAL_MODEL.exists()), reason="the shipped default models are missing"
)
async def test_the_shipped_lstm_comes_by_itself_to_a_store_grown_from_the_shipped_model(tmp_path: Path) -> None:
    db = tmp_path / "seeded.db"
    assert seed_from_default_model(db)
    text = "I live in New "
    engine = Engine.open(db)
    ngram = [(s.word, f"P = {s.prob:.4f}") for s in engine.complete_at(text, len(text)).suggestions]
    engine.close()
    client = await start_server(NEURAL_KIND, db, tmp_path / "home")  # no neuralModel setting: "default"
    try:
        uri = open_doc(client, text)
        first = details(await complete(client, uri, end_of(text)))
        assert first[0][0] == "York"  # answered at once, by whichever model is ready

        async def attached() -> Any:
            stats = await command(client, "nextword.statistics")
            return stats if "neural_model" in stats else None

        deadline = time.monotonic() + 60
        while (stats := await attached()) is None:
            assert time.monotonic() < deadline, "the shipped LSTM was never attached"
            await asyncio.sleep(0.1)
        assert stats["neural_model"] == str(DEFAULT_NEURAL_MODEL)
        assert 0 < stats["blend_weight"] < 1 and stats["blend_weight"] != 0.3  # the checkpoint's EM weight
        blended = details(await complete(client, uri, end_of(text)))
        assert blended[0][0] == "York" and blended != ngram and first in (ngram, blended)
        assert client.messages == []
    finally:
        await stop_server(client)


async def test_a_damaged_neural_model_is_reported_and_completions_go_on(store_copy: Path, tmp_path: Path) -> None:
    bad = tmp_path / "damaged.pt"
    bad.write_bytes(b"not a checkpoint")
    client = await start_server(NEURAL_KIND, store_copy, tmp_path / "home", {"neuralModel": str(bad)})
    try:
        # the neural model loads once the n-gram model is warm (store opened, first lookups cached)
        [message] = await eventually(lambda: client.messages, "a window/showMessage", timeout=30)
        assert message.type == types.MessageType.Warning
        assert "stays on the n-gram model" in message.message and str(bad) in message.message
        assert "\n" not in message.message
        await still_completes(client)
    finally:
        await stop_server(client)


async def retrain(client: LanguageClient, cancel_on_first_report: bool = False, **options: Any) -> Any:
    """Run nextword.retrainNeural; optionally cancel it (window/workDoneProgress/cancel) on its first report."""
    task = asyncio.ensure_future(command(client, "nextword.retrainNeural", options))
    if cancel_on_first_report:

        def first_report() -> Any:
            for token, reports in client.progress_reports.items():
                if any(isinstance(r, types.WorkDoneProgressReport) for r in reports):
                    return token
            return None

        token = await eventually(first_report, "a $/progress report", timeout=60)
        client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
    return await asyncio.wait_for(task, 120)


async def test_retrain_neural_trains_on_the_learned_documents_and_attaches_the_model(
    store_copy: Path, tmp_path: Path
) -> None:
    client = await start_server(NEURAL_KIND, store_copy, tmp_path / "home")
    try:
        text = "The cat sat on the "
        uri = open_doc(client, text)
        ngram = details(await complete(client, uri, end_of(text)))
        result = await retrain(client, epochs=1)
        checkpoint = Path(f"{store_copy}.neural.pt")
        assert result["status"] == "finished" and result["epochs"] == 1
        assert result["path"] == str(checkpoint) and checkpoint.exists()
        assert 1 < result["valid_perplexity"] < 1000
        [(_, reports)] = client.progress_reports.items()
        assert isinstance(reports[0], types.WorkDoneProgressBegin)
        assert isinstance(reports[-1], types.WorkDoneProgressEnd)
        middle = reports[1:-1]
        assert middle and all(isinstance(r, types.WorkDoneProgressReport) for r in middle)
        assert "loss" in middle[0].message and "perplexity" in middle[0].message
        assert reports[-1].message.startswith("finished: valid perplexity")
        assert details(await complete(client, uri, end_of(text))) != ngram  # the blend answers now
        assert (await command(client, "nextword.statistics"))["neural_model"] == str(checkpoint)
        assert client.messages == []
    finally:
        await stop_server(client)


async def test_retrain_neural_can_be_cancelled(tmp_path: Path) -> None:
    rng = random.Random(0)
    nouns, verbs = ["cat", "dog", "bird", "cow", "fox", "owl"], ["sees", "likes", "chases", "feeds"]
    text = "".join(f"The {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)}.\n" for _ in range(3000))
    store = build_store(tmp_path / "big.db", {"notes": text})
    client = await start_server(NEURAL_KIND, store, tmp_path / "home")
    try:
        result = await retrain(client, cancel_on_first_report=True, epochs=1000)
        assert result["status"] == "cancelled" and result["epochs"] == 0
        [(_, reports)] = client.progress_reports.items()
        assert reports[-1].message == "cancelled"
        stats = await command(client, "nextword.statistics")
        assert "neural_model" not in stats
        typed = "The cat sees the "
        assert (await labels_at_end(client, open_doc(client, typed), typed))[0] in nouns
    finally:
        await stop_server(client)


async def test_adaptation_suggests_from_the_mixture_with_the_document_cache(store_copy: Path, tmp_path: Path) -> None:
    text = "The dog ran to the log. The dog ran to the log. The dog sat on the "
    local = Engine.open(store_copy)
    local.enable_adaptation()
    adapted = [(s.word, f"P = {s.prob:.4f}") for s in local.complete_at(text, len(text)).suggestions]
    local.disable_adaptation()
    plain = [(s.word, f"P = {s.prob:.4f}") for s in local.complete_at(text, len(text)).suggestions]
    local.close()
    assert adapted != plain

    client = await start_server(NEURAL_KIND, store_copy, tmp_path / "home", {"adaptation": True, "neuralModel": ""})
    try:
        uri = open_doc(client, text)
        deadline = time.monotonic() + 30
        while details(await complete(client, uri, end_of(text))) != adapted:
            assert time.monotonic() < deadline, "completions never came from the adaptive mixture"
            await asyncio.sleep(0.05)
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"adaptation": False}))
        deadline = time.monotonic() + 30
        while details(await complete(client, uri, end_of(text))) != plain:
            assert time.monotonic() < deadline, "turning adaptation off did not reach the completions"
            await asyncio.sleep(0.05)
    finally:
        await stop_server(client)


FILLER = "\n".join(
    " ".join("".join(p) for p in itertools.islice(itertools.product(string.ascii_lowercase, repeat=3), i, i + 12)) + "."
    for i in range(0, 1800, 12)
)  # 1,800 made-up words, so that a word the corpus never has after 'want' is surprising enough to be looked at
WANT = "I want to go home. We want to go home now. They want to go to the park. I want to eat. You want to sleep."


async def test_a_missing_word_is_flagged_inserted_by_its_quick_fix_and_explained_on_hover(
    client_kind: str, tmp_path: Path
) -> None:
    db = build_store(tmp_path / "want.db", {"corpus": (WANT + "\n") * 3 + FILLER})
    client = await start_server(client_kind, db, tmp_path / "home")
    try:
        text = "They want go to the park."
        uri = open_doc(client, text)
        [odd] = odd_words(await diagnostics_of(client, uri))
        assert (odd.data["word"], odd.data["alternatives"], odd.data["kinds"]) == ("go", ["to go"], ["preposition"])
        assert (odd.range.start.character, odd.range.end.character) == (10, 12)
        [reason] = odd.data["reasons"]
        assert reason.startswith("a preposition may be missing, extra or wrong; the model finds 'to go' ")
        assert reason.endswith("x likelier than 'go' here")

        insert = (await code_actions(client, uri, odd))[0]
        assert (insert["title"], insert["isPreferred"]) == ("Replace with 'to go'", True)
        assert apply_edits(text, edits_of(insert, uri)) == "They want to go to the park."

        hover = await client.text_document_hover_async(
            types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(0, 11))
        )
        assert hover is not None and hover.contents.kind == types.MarkupKind.Markdown
        assert hover.contents.value.startswith(f"**'go'** reads oddly here.\n- 'to go': {reason}\n\n---\n\n**go**:")
        assert hover.range == types.Range(start=types.Position(0, 10), end=types.Position(0, 12))

        plain = await client.text_document_hover_async(
            types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(0, 1))
        )
        assert plain is not None and plain.contents.value.startswith("**They**: surprisal")
    finally:
        await stop_server(client)


async def test_the_oddity_kinds_setting_turns_kinds_off(client_kind: str, tmp_path: Path) -> None:
    db = build_store(tmp_path / "want.db", {"corpus": (WANT + "\n") * 3 + FILLER})
    client = await start_server(client_kind, db, tmp_path / "home", {"oddityKinds": ["confusion", "doubled"]})
    try:
        uri = open_doc(client, "They want go to the park. I saw the the park.")
        assert [d.data["word"] for d in odd_words(await diagnostics_of(client, uri))] == ["the"]
    finally:
        await stop_server(client)
