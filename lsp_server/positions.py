"""LSP positions (line, character) <-> offsets into a Python string (code points).

`character` counts in the encoding agreed with the client at initialization: "utf-16" (the LSP default: code
units, so characters outside the Basic Multilingual Plane count 2), "utf-8" (bytes) or "utf-32" (code points).
Positions past the end of a line or of the document are clamped, never an error. Finding one position costs work
proportional to the distance to it, not to the document's size, so a 50 MB one-line document stays cheap.

Also how a client's incremental edit changes a document, exactly as the LSP library (pygls) applies it, for the
server's prelude (`lsp_server.prelude`), which keeps documents before that library is loaded. This module imports
the protocol's types (lsprotocol) only where it makes one of them.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lsprotocol import types

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_NON_ASCII = re.compile("[^\x00-\x7f]")


def units(text: str, encoding: str = "utf-16") -> int:
    """How many of the client's units `text` takes."""
    if encoding == "utf-32":
        return len(text)
    if encoding == "utf-8":
        return len(text) if not _NON_ASCII.search(text) else len(text.encode("utf-8", "surrogatepass"))
    return len(text) + len(_ASTRAL.findall(text))


def _column_to_offset(line: str, character: int, encoding: str) -> int:
    """Code points of `line` covered by `character` units (clamped to the line; a unit inside a character
    rounds up to the end of that character)."""
    if character <= 0:
        return 0
    simple = _NON_ASCII if encoding == "utf-8" else _ASTRAL
    if encoding == "utf-32" or not simple.search(line, 0, min(len(line), character)):
        return min(character, len(line))
    counted = 0
    for i, ch in enumerate(line):
        counted += units(ch, encoding)
        if counted >= character:
            return i + 1
    return len(line)


def locate(text: str, position: types.Position, encoding: str = "utf-16") -> tuple[int, types.Position]:
    """The offset of `position` in `text`, and the position clamped into the text."""
    from lsprotocol import types

    offset, line, character = locate_units(text, position.line, position.character, encoding)
    return offset, types.Position(line=line, character=character)


def locate_units(text: str, line_number: int, character: int, encoding: str = "utf-16") -> tuple[int, int, int]:
    """The offset (code points) of the position (`line_number`, `character`) in `text`, and that position clamped
    into the text, as (offset, line, character)."""
    start = 0
    line = 0
    for _ in range(max(line_number, 0)):
        newline = text.find("\n", start)
        if newline < 0:
            break
        start = newline + 1
        line += 1
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    content = text[start:end]
    if content.endswith("\r"):
        content = content[:-1]
    past_the_end = line < line_number  # a line after the last one: the end of the document
    column = len(content) if past_the_end else _column_to_offset(content, character, encoding)
    return start + column, line, units(content[:column], encoding)


def offset_at(text: str, position: types.Position, encoding: str = "utf-16") -> int:
    """The offset of `position` in `text`, clamped to the text."""
    return locate(text, position, encoding)[0]


def position_at(text: str, offset: int, encoding: str = "utf-16") -> types.Position:
    """The position of one offset (for many, use `LineIndex`)."""
    from lsprotocol import types

    offset = max(0, min(offset, len(text)))
    line_start = text.rfind("\n", 0, offset) + 1
    return types.Position(line=text.count("\n", 0, line_start), character=units(text[line_start:offset], encoding))


class LineIndex:
    """Offsets -> positions for many offsets of one text (line starts found once)."""

    def __init__(self, text: str, encoding: str = "utf-16") -> None:
        self.text = text
        self.encoding = encoding
        self.starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def position(self, offset: int) -> types.Position:
        from lsprotocol import types

        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self.starts, offset) - 1
        start = self.starts[line]
        return types.Position(line=line, character=units(self.text[start:offset], self.encoding))

    def range(self, start: int, end: int) -> types.Range:
        from lsprotocol import types

        return types.Range(start=self.position(start), end=self.position(end))


# --- incremental edits, as pygls applies them -----------------------------------------------------------------------
def _pygls_column(line: str, character: int, encoding: str) -> int:
    """pygls' (2.x) `PositionCodec.position_from_client_units` for one line: code points covered by `character`
    units, with its clamping (a character past a non-empty line's end counts as one unit before that end)."""
    line = line.replace("\r\n", "\n")
    length = units(line, encoding)
    if length == 0:
        return 0
    if character > length:
        character = length - 1
    counted = 0
    column = 0
    for ch in line:
        if counted >= character:
            break
        counted += units(ch, encoding)
        column += 1
    return len(line) if counted < character else column


def apply_edit(source: str, edit: dict[str, Any], encoding: str = "utf-16") -> str:
    """`source` after one `contentChanges` entry of `textDocument/didChange` (a JSON object: `text`, and `range`
    for an incremental edit), exactly as pygls' `TextDocument.apply_change` makes it for a server that syncs
    incrementally: the same clamping, the same line breaks (`str.splitlines`), so the prelude's copy of a document
    equals the one pygls keeps after the same edits (tests/test_prelude.py compares them)."""
    text = edit["text"]
    span = edit.get("range")
    if span is None:
        return text
    lines = source.splitlines(True)
    if not lines:
        start_line = start_col = end_line = end_col = 0
    else:
        start_line, start_col = _pygls_position(lines, span["start"], encoding)
        end_line, end_col = _pygls_position(lines, span["end"], encoding)
    if start_line == len(lines):
        return source + text
    out: list[str] = []
    for i, line in enumerate(lines):
        if i < start_line or i > end_line:
            out.append(line)
            continue
        if i == start_line:
            out.append(line[:start_col])
            out.append(text)
        if i == end_line:
            out.append(line[end_col:])
    return "".join(out)


def _pygls_position(lines: list[str], position: dict[str, int], encoding: str) -> tuple[int, int]:
    line = position["line"]
    if line >= len(lines):
        return len(lines) - 1, units(lines[-1], encoding)
    return line, _pygls_column(lines[line], position["character"], encoding)
