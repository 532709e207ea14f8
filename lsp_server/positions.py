"""LSP positions (line, character) <-> offsets into a Python string (code points).

`character` counts in the encoding agreed with the client at initialization: "utf-16" (the LSP default: code
units, so characters outside the Basic Multilingual Plane count 2), "utf-8" (bytes) or "utf-32" (code points).
Positions past the end of a line or of the document are clamped, never an error. Finding one position costs work
proportional to the distance to it, not to the document's size, so a 50 MB one-line document stays cheap.
"""

from __future__ import annotations

import re
from bisect import bisect_right

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
    start = 0
    line = 0
    for _ in range(max(position.line, 0)):
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
    past_the_end = line < position.line  # a line after the last one: the end of the document
    column = len(content) if past_the_end else _column_to_offset(content, position.character, encoding)
    return start + column, types.Position(line=line, character=units(content[:column], encoding))


def offset_at(text: str, position: types.Position, encoding: str = "utf-16") -> int:
    """The offset of `position` in `text`, clamped to the text."""
    return locate(text, position, encoding)[0]


def position_at(text: str, offset: int, encoding: str = "utf-16") -> types.Position:
    """The position of one offset (for many, use `LineIndex`)."""
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
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self.starts, offset) - 1
        start = self.starts[line]
        return types.Position(line=line, character=units(self.text[start:offset], self.encoding))

    def range(self, start: int, end: int) -> types.Range:
        return types.Range(start=self.position(start), end=self.position(end))
