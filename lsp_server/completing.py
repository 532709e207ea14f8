"""Answers to completion requests as the client reads them (JSON objects), made without the LSP library.

The server's handlers (`lsp_server.server`) and its prelude (`lsp_server.prelude`, which answers before that library
is loaded) both build their answers here, so a completion reads the same whichever of them answered it: which part
of a document nextword reads (`prose`), where the cursor is in it (`cursor_prose`), and the completion list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lsp_server import comments
from lsp_server.positions import locate_units, units

if TYPE_CHECKING:
    from lsp_server.engine import Completion, Suggestion
    from lsp_server.settings import Settings

TEXT_KIND = 1  # CompletionItemKind.Text: a word of prose


def prose(language_id: str | None, source: str, settings: Settings, cursor: int | None = None) -> str | None:
    """A document's text as nextword should read it: all of it for the enabled languages, only the comments (in
    place, the rest blanked) for code files when the `comments` setting is on; None when neither applies, or when
    `cursor` (an offset, code points) is given and lies outside every comment."""
    if language_id is None or language_id in settings.languages:
        return source
    if settings.comments and comments.supports(language_id):
        view = comments.comment_text(source, language_id)
        return view.text if cursor is None or view.inside(cursor) else None
    return None


@dataclass(frozen=True)
class CursorProse:
    """The prose of a document as nextword reads it (`prose`), and a cursor in it."""

    text: str
    offset: int  # the cursor, in code points of `text`
    line: int  # the cursor as the client counts (clamped into the document): its line ...
    character: int  # ... and its column, in units of `encoding`
    encoding: str  # the position encoding agreed with the client

    def range_back(self, typed: str) -> dict[str, Any]:
        """The range (LSP JSON) from where `typed` (the text just before the cursor) starts, to the cursor."""
        start = max(0, self.character - units(typed, self.encoding))
        return {
            "start": {"line": self.line, "character": start},
            "end": {"line": self.line, "character": self.character},
        }


def cursor_prose(
    language_id: str | None, source: str, line: int, character: int, encoding: str, settings: Settings
) -> CursorProse | None:
    """The prose at the client's position (`line`, `character` in units of `encoding`) of a document; None when
    there is no prose there."""
    offset, line, character = locate_units(source, line, character, encoding)
    text = prose(language_id, source, settings, offset)
    return None if text is None else CursorProse(text, offset, line, character, encoding)


def completion_list(result: Completion, at: CursorProse) -> dict[str, Any]:
    """A `CompletionList` (JSON): the suggestions in the model's order (`sortText`), each replacing the word typed
    so far; incomplete, so the client asks again as the person types."""
    edit_range = at.range_back(result.prefix)
    items = [_completion_item(suggestion, rank, edit_range) for rank, suggestion in enumerate(result.suggestions)]
    return {"isIncomplete": True, "items": items}


def _completion_item(suggestion: Suggestion, rank: int, edit_range: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": suggestion.word,
        "labelDetails": {"description": f"{suggestion.prob:.1%}"},
        "kind": TEXT_KIND,
        "detail": f"P = {suggestion.prob:.4f}",
        "sortText": f"{rank:04d}",
        "filterText": suggestion.word,
        "textEdit": {"range": edit_range, "newText": suggestion.word},
    }


def inline_completion_list(found: Completion | None, at: CursorProse) -> dict[str, Any]:
    """An `InlineCompletionList` (JSON): the continuation (ghost text) replacing the word typed so far, or none."""
    if found is None:
        return {"items": []}
    return {"items": [{"insertText": found.suggestions[0].word, "range": at.range_back(found.prefix)}]}
