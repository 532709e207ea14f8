"""`CursorProse.range_back`: the range a completion replaces, counted in the client's position encoding."""

from __future__ import annotations

import pytest

from lsp_server.completing import CursorProse


def span(line: int, start: int, end: int) -> dict[str, dict[str, int]]:
    return {"start": {"line": line, "character": start}, "end": {"line": line, "character": end}}


@pytest.mark.parametrize(
    ("encoding", "start"),
    [("utf-16", 10 - 4), ("utf-8", 10 - 7), ("utf-32", 10 - 3)],  # "é😀a": 4 UTF-16 units, 7 bytes, 3 code points
)
def test_the_typed_prefix_is_measured_in_the_client_encoding(encoding: str, start: int) -> None:
    at = CursorProse("text", 4, 2, 10, encoding)
    assert at.range_back("é😀a") == span(2, start, 10)


def test_nothing_typed_is_an_empty_range_and_the_start_never_goes_before_the_line() -> None:
    at = CursorProse("text", 4, 0, 2, "utf-16")
    assert at.range_back("") == span(0, 2, 2)
    assert at.range_back("longer") == span(0, 0, 2)
