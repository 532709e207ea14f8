"""LSP positions (line, character in UTF-16 or UTF-32 units) <-> offsets into a Python string (code points).

Positions past the end of a line or of the document are clamped, never an error. Work is proportional to the
distance to the position, not to the document's size, so a 50 MB one-line document stays cheap.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from lsprotocol import types

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _units(text: str, utf16: bool) -> int:
    """Length of `text` in the client's units."""
    if not utf16:
        return len(text)
    return len(text) + len(_ASTRAL.findall(text))


def _column_to_offset(line: str, character: int, utf16: bool) -> int:
    """Code points of `line` covered by `character` units (clamped to the line)."""
    if character <= 0:
        return 0
    if not utf16 or not _ASTRAL.search(line, 0, min(len(line), character)):
        return min(character, len(line))
    units = 0
    for i, ch in enumerate(line):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units >= character:
            return i + 1
    return len(line)


def offset_at(text: str, position: types.Position, utf16: bool = True) -> int:
    """The offset of `position` in `text`, clamped to the text."""
    start = 0
    for _ in range(max(position.line, 0)):
        newline = text.find("\n", start)
        if newline < 0:
            return len(text)
        start = newline + 1
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    line = text[start:end]
    if line.endswith("\r"):
        line = line[:-1]
    return start + _column_to_offset(line, position.character, utf16)


class LineIndex:
    """Offsets -> positions for many offsets of one text (line starts found once)."""

    def __init__(self, text: str, utf16: bool = True) -> None:
        self.text = text
        self.utf16 = utf16
        self.starts = [0, *(m.end() for m in re.finditer("\n", text))]

    def position(self, offset: int) -> types.Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self.starts, offset) - 1
        start = self.starts[line]
        return types.Position(line=line, character=_units(self.text[start:offset], self.utf16))

    def range(self, start: int, end: int) -> types.Range:
        return types.Range(start=self.position(start), end=self.position(end))


def units(text: str, utf16: bool = True) -> int:
    """How many of the client's units `text` takes."""
    return _units(text, utf16)
