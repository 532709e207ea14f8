"""Comments in code files, as prose: with the `comments` setting, nextword completes, checks and learns the text of
comments and nothing else of a code file.

`comment_text` keeps every comment's characters where they stand and blanks out everything else (new lines kept),
so offsets into it are offsets into the document and the prose tokenizer sees each comment as its own paragraph.
Strings are recognised first, so a `#` or `//` inside a string is not a comment.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

_STRINGS = r"\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'"
_FAMILIES: dict[str, tuple[str, ...]] = {
    # line comment prefixes, then block comment (open, close) pairs as regex alternations
    "hash": (r"#[^\n]*",),
    "slash": (r"//[^\n]*", r"/\*.*?(?:\*/|\Z)"),
    "dash": (r"--[^\n]*",),
    "percent": (r"%[^\n]*",),
}
LANGUAGES: dict[str, str] = {
    **dict.fromkeys(
        [
            "python",
            "shellscript",
            "sh",
            "bash",
            "ruby",
            "perl",
            "r",
            "yaml",
            "toml",
            "dockerfile",
            "makefile",
            "cmake",
            "elixir",
            "julia",
            "nim",
            "powershell",
        ],
        "hash",
    ),
    **dict.fromkeys(
        [
            "c",
            "cpp",
            "csharp",
            "java",
            "javascript",
            "javascriptreact",
            "typescript",
            "typescriptreact",
            "go",
            "rust",
            "swift",
            "kotlin",
            "scala",
            "dart",
            "php",
            "css",
            "scss",
            "less",
            "zig",
            "groovy",
            "objective-c",
        ],
        "slash",
    ),
    **dict.fromkeys(["lua", "sql", "haskell", "elm", "ada"], "dash"),
    **dict.fromkeys(["erlang", "matlab", "tex"], "percent"),
}
_MARKERS = re.compile(r"^[#/*%\-!]+|[*/]+$")


@dataclass(frozen=True)
class CommentText:
    """The document with everything but comment text blanked, and the comments' spans (start, end)."""

    text: str
    spans: list[tuple[int, int]]

    def inside(self, offset: int) -> bool:
        """Whether `offset` (a cursor) lies within a comment (at its end counts)."""
        i = bisect_right([s for s, _ in self.spans], offset) - 1
        return i >= 0 and self.spans[i][0] < offset <= self.spans[i][1]


def supports(language_id: str) -> bool:
    return language_id in LANGUAGES


def comment_text(text: str, language_id: str) -> CommentText:
    """Comments of `text` (a document in `language_id`) in place, all else blanked; see the module docstring."""
    family = LANGUAGES.get(language_id)
    if family is None:
        return CommentText(_blank(text), [])
    pattern = re.compile(f"({_STRINGS})|({'|'.join(_FAMILIES[family])})", re.DOTALL)
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    last = 0
    for match in pattern.finditer(text):
        if match.group(2) is None:
            continue
        start, end = match.span(2)
        pieces.append(_blank(text[last:start]))
        body = match.group(2)
        marker = _MARKERS.match(body)
        skip = marker.end() if marker else 0
        pieces.append(" " * skip + _strip_line_markers(body[skip:]))
        spans.append((start, end))
        last = end
    pieces.append(_blank(text[last:]))
    return CommentText("".join(pieces), spans)


def _strip_line_markers(body: str) -> str:
    """Inside a block comment, the leading ` * ` of each line is decoration, not prose; a closing `*/` too."""
    body = re.sub(r"(?m)^(\s*)\*(?!/)", lambda m: m.group(1) + " ", body)
    return re.sub(r"\*+/$", lambda m: " " * len(m.group(0)), body)


def _blank(text: str) -> str:
    """Spaces for every character but new lines (so offsets and lines are kept)."""
    return re.sub(r"[^\n]", " ", text)
