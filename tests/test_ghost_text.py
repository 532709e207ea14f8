"""Ghost text (textDocument/inlineCompletion) through the real server: it never rewrites what was typed, brings the
space it needs, and never leaves a quotation mark or bracket unmatched. Accepting it is applying its one edit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.test_server import build_store, end_of, offset_of, open_doc, start_server, stop_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

CORPUS = """\
I walked in Hyde Park. We met in Hyde Park. They ran in Hyde Park.
I have a dog. The dog sat on the mat. I have a dog. The dog sat on the mat.
The sign said "stop here" today. The sign said "stop here" today.
She wrote (as always) a letter. She wrote (as always) a letter.
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LanguageClient]:
    folder = tmp_path_factory.mktemp("ghost")
    db = build_store(folder / "ghost.db", {"corpus": CORPUS})
    started = await start_server("neovim", db, folder / "home", {"neuralModel": "none"})
    yield started
    await stop_server(started)


async def ghost(client: LanguageClient, text: str, max_words: int = 6) -> tuple[str, str] | None:
    """(the ghost's insert text, the document after accepting it), or None when there is no ghost."""
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"nextword": {"inlineMaxWords": max_words}})
    )
    uri = open_doc(client, text)
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=end_of(text, client.encoding),  # type: ignore[attr-defined]
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
    )
    assert result is not None
    if not result.items:
        return None
    [item] = result.items
    assert isinstance(item.insert_text, str) and item.range is not None
    start, end = offset_of(text, item.range.start, "utf-8"), offset_of(text, item.range.end, "utf-8")
    return item.insert_text, text[:start] + item.insert_text + text[end:]


async def test_accepting_twice_brings_the_space_after_a_sentence_end(client: LanguageClient) -> None:
    first = await ghost(client, "I have a dog")
    assert first == ("dog.", "I have a dog.")  # the typed word, kept as typed, and its rest
    second = await ghost(client, first[1])
    assert second is not None
    insert, accepted = second
    assert insert[0] == " " and insert[1].isupper()  # the next sentence, one space after the full stop
    assert accepted == "I have a dog." + insert


async def test_a_typed_word_is_never_rewritten(client: LanguageClient) -> None:
    # "Park" is how the store writes it; the person typed "park": the ghost adds only what follows.
    assert await ghost(client, "We met in Hyde park") == ("park.", "We met in Hyde park.")
    assert await ghost(client, "We met in Hyde pa") == ("park.", "We met in Hyde park.")
    assert await ghost(client, "We met in Hyde Pa") == ("Park.", "We met in Hyde Park.")


async def test_quotation_marks_and_brackets_are_never_left_open(client: LanguageClient) -> None:
    # The continuation opens a quotation (or a bracket) it would not close within the word limit: it stops before.
    assert await ghost(client, "The sign ", max_words=3) == ("said", "The sign said")
    assert await ghost(client, "She ", max_words=3) == ("wrote", "She wrote")
    # With room to close them, they stay, each matched.
    assert await ghost(client, "The sign said ", max_words=3) is None  # it would open one: no ghost at all
    said = await ghost(client, "The sign said ", max_words=6)
    assert said is not None and said[0].count('"') == 2
    wrote = await ghost(client, "She ", max_words=6)
    assert wrote is not None and wrote[0].count("(") == wrote[0].count(")") == 1
