"""Comments of code files read as prose, in place."""

from __future__ import annotations

from lsp_server.comments import comment_text

PYTHON = 'import os  # the operating system\nx = "# not a comment"\n# Sum the values.\n'
C = "/* The entry point.\n * It runs the loop. */\nint x = 1; // count of things\n"


def test_python_comments_stay_in_place_and_code_is_blanked() -> None:
    view = comment_text(PYTHON, "python")
    assert len(view.text) == len(PYTHON)
    assert view.text.split("\n") == ["             the operating system", " " * 21, "  Sum the values.", ""]


def test_a_hash_inside_a_string_is_not_a_comment() -> None:
    view = comment_text(PYTHON, "python")
    assert "not a comment" not in view.text
    assert [PYTHON[s:e] for s, e in view.spans] == ["# the operating system", "# Sum the values."]


def test_block_comment_decoration_is_not_prose() -> None:
    view = comment_text(C, "c")
    assert view.text.split("\n") == ["   The entry point.", "   It runs the loop.   ", " " * 14 + "count of things", ""]


def test_a_cursor_is_inside_a_comment_only_within_one() -> None:
    view = comment_text(PYTHON, "python")
    assert view.inside(PYTHON.index("operating") + 3)
    assert view.inside(PYTHON.index("system") + len("system"))  # at the end of the comment
    assert not view.inside(PYTHON.index("import") + 3)
    assert not view.inside(PYTHON.index("not a comment"))


def test_an_unknown_language_has_no_comments() -> None:
    view = comment_text("# heading\ntext\n", "markdown-not-code")
    assert view.spans == []
    assert view.text.strip() == ""
