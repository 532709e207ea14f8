"""The server's pure helpers, called directly (no running server): positions <-> offsets in the three encodings,
settings parsing, diagnostics, hover text, completion items, quick-fix ranges and command arguments. Each expected
value is worked out by hand in the test."""

from __future__ import annotations

import math

import pytest
from lsprotocol import types
from lsprotocol.converters import get_converter

from lm_core.corrections import KINDS
from lm_core.oddities import OddityConfig
from lsp_server.completing import CursorProse, completion_list, inline_completion_list
from lsp_server.engine import Completion, DocumentCheck, OddWord, Suggestion
from lsp_server.positions import LineIndex, locate, offset_at, position_at, units
from lsp_server.server import (
    COMMANDS,
    ODD_WORD,
    PERPLEXITY,
    SOURCE,
    _flatten,
    _with_space_before,
    build_diagnostics,
    hover_oddity,
    oddity_config,
)
from lsp_server.settings import DEFAULT_LANGUAGES, ODDITY_THRESHOLD, Settings, parse_settings


def pos(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


def rng(start: tuple[int, int], end: tuple[int, int]) -> types.Range:
    return types.Range(start=pos(*start), end=pos(*end))


# --- positions ----------------------------------------------------------------------------------------------------
# "a😀b\nçx": 😀 is one code point, 2 UTF-16 units, 4 UTF-8 bytes; ç is 1 UTF-16 unit, 2 UTF-8 bytes.
TEXT = "a\U0001f600b\n\u00e7x"


@pytest.mark.parametrize(
    "encoding, widths", [("utf-16", (4, 2)), ("utf-8", (6, 3)), ("utf-32", (3, 2))], ids=["utf16", "utf8", "utf32"]
)
def test_units_count_each_encoding(encoding: str, widths: tuple[int, int]) -> None:
    first, second = TEXT.split("\n")
    assert (units(first, encoding), units(second, encoding)) == widths


@pytest.mark.parametrize(
    "encoding, after_emoji, after_cedilla",
    [("utf-16", 3, 1), ("utf-8", 5, 2), ("utf-32", 2, 1)],
    ids=["utf16", "utf8", "utf32"],
)
def test_position_and_offset_round_trip(encoding: str, after_emoji: int, after_cedilla: int) -> None:
    # offset 2 is just after the emoji (line 0); offset 5 is just after "ç" (line 1 starts at offset 4)
    assert position_at(TEXT, 2, encoding) == pos(0, after_emoji)
    assert position_at(TEXT, 5, encoding) == pos(1, after_cedilla)
    assert offset_at(TEXT, pos(0, after_emoji), encoding) == 2
    assert offset_at(TEXT, pos(1, after_cedilla), encoding) == 5
    index = LineIndex(TEXT, encoding)
    assert [index.position(o) for o in (2, 5)] == [pos(0, after_emoji), pos(1, after_cedilla)]
    assert index.range(2, 5) == types.Range(start=pos(0, after_emoji), end=pos(1, after_cedilla))


def test_positions_out_of_the_text_are_clamped() -> None:
    assert locate(TEXT, pos(0, 99)) == (3, pos(0, 4))  # past the end of line 0: its end (before "\n")
    assert locate(TEXT, pos(7, 0)) == (6, pos(1, 2))  # a line after the last: the end of the document
    assert locate(TEXT, pos(0, 2)) == (2, pos(0, 3))  # inside the emoji's surrogate pair: rounded up past it
    assert offset_at(TEXT, pos(0, 0)) == 0 and offset_at(TEXT, pos(1, 0)) == 4
    assert position_at(TEXT, -3) == pos(0, 0) and position_at(TEXT, 99) == pos(1, 2)


def test_a_carriage_return_is_not_a_column() -> None:
    text = "ab\r\ncd"
    assert locate(text, pos(0, 9)) == (2, pos(0, 2))  # the end of "ab", before "\r\n"
    assert offset_at(text, pos(1, 1)) == 5


# --- settings -----------------------------------------------------------------------------------------------------
def test_settings_from_camel_case_under_nextword() -> None:
    raw = {
        "nextword": {
            "maxSuggestions": 5,
            "oddityThreshold": 12,
            "learnOnChange": True,
            "databasePath": "/tmp/x.db",
            "ignoredWords": ["teh"],
            "languages": ["markdown"],
            "blendWeight": 1,
            "neuralModel": "  ",
        }
    }
    settings, problems = parse_settings(raw)
    assert problems == []
    assert settings == Settings(
        suggestions=5,
        oddity_threshold=12.0,
        learn_on_change=True,
        database="/tmp/x.db",
        ignored_words=("teh",),
        languages=("markdown",),
        blend_weight=1.0,
        neural_model="none",
    )
    assert isinstance(settings.oddity_threshold, float) and isinstance(settings.blend_weight, float)


def test_bad_setting_values_keep_the_previous_ones_and_are_each_named() -> None:
    base = Settings(suggestions=7)
    raw = {
        "maxSuggestions": 101,
        "learning": "yes",
        "languages": "markdown",
        "blendWeight": True,
        "databasePath": " ",
        "oddityKinds": ["article", "nonsense"],
        "colour": "red",
    }
    settings, problems = parse_settings(raw, base)
    assert settings == base
    assert problems == [
        "nextword setting 'maxSuggestions': must be between 1 and 100, not 101; using 7",
        "nextword setting 'learning': must be true or false, not 'yes'; using True",
        "nextword setting 'languages': must be a list of strings; using "
        + repr(DEFAULT_LANGUAGES),
        "nextword setting 'blendWeight': must be a number between 0 and 1, or null, not True; using None",
        "nextword setting 'databasePath': must be a file path or null; using None",
        "nextword setting 'oddityKinds': unknown kind(s) 'nonsense'; known: " + ", ".join(KINDS) + "; using "
        + repr(KINDS),
        "unknown nextword setting 'colour' ignored",
    ]  # fmt: skip


def test_a_float_for_a_whole_number_setting_is_truncated() -> None:
    assert parse_settings({"debounceMs": 2.5}) == (Settings(debounce_ms=2), [])


def test_settings_that_are_not_an_object() -> None:
    assert parse_settings(None) == (Settings(), [])
    assert parse_settings([1, 2]) == (Settings(), ["nextword settings must be an object, not list; using defaults"])
    assert parse_settings({"nextword": {}, "maxSuggestions": 3}) == (Settings(), [])  # only the "nextword" part


def test_oddity_config_takes_threshold_and_kinds() -> None:
    assert oddity_config(Settings()) == OddityConfig(threshold_bits=ODDITY_THRESHOLD, kinds=frozenset(KINDS))
    assert OddityConfig().threshold_bits == ODDITY_THRESHOLD
    chosen = oddity_config(Settings(oddity_threshold=4.5, oddity_kinds=("article", "doubled")))
    assert (chosen.threshold_bits, chosen.kinds) == (4.5, frozenset({"article", "doubled"}))


# --- diagnostics, hover, completion items -------------------------------------------------------------------------
DOC = "Their is a\n\U0001f600 the the end."
THEIR = OddWord(0, 5, "Their", 9.5, (("There", 12.345), ("They're", 10.0)), ("confusion", "confusion"), ("r1", "r2"))
DOUBLED = OddWord(17, 20, "the", math.inf, (("", 8.0),), ("doubled",), ("'the' is repeated",))


def test_diagnostics_hold_the_perplexity_and_each_odd_word() -> None:
    check = DocumentCheck(perplexity=123.456, tokens=9, oddities=[THEIR, DOUBLED])
    perplexity, their, doubled = build_diagnostics(DOC, check, Settings(), "utf-16")
    assert perplexity == types.Diagnostic(
        range=rng((0, 0), (0, 0)),
        message="Perplexity 123.5 over 9 tokens",
        severity=types.DiagnosticSeverity.Information,
        source=SOURCE,
        code=PERPLEXITY,
        data={"perplexity": 123.456, "tokens": 9},
    )
    assert their == types.Diagnostic(
        range=rng((0, 0), (0, 5)),
        message="'Their' reads oddly here; likelier: 'There', \"They're\"",
        severity=types.DiagnosticSeverity.Warning,
        source=SOURCE,
        code=ODD_WORD,
        data={
            "word": "Their",
            "alternatives": ["There", "They're"],
            "gain_bits": [12.35, 10.0],
            "surprisal_bits": 9.5,
            "kinds": ["confusion", "confusion"],
            "reasons": ["r1", "r2"],
        },
    )
    # line 1 starts at offset 11; the emoji takes 2 UTF-16 units, so offset 17 ("the" after "😀 the ") is at 7
    assert doubled.range == rng((1, 7), (1, 10))
    assert doubled.message == "'the' reads oddly here; likelier: (remove it)"
    assert doubled.data["surprisal_bits"] is None  # inf is not JSON


def test_diagnostics_without_the_perplexity() -> None:
    check = DocumentCheck(perplexity=50.0, tokens=9, oddities=[DOUBLED])
    [doubled] = build_diagnostics(DOC, check, Settings(perplexity_diagnostic=False), "utf-8")
    assert doubled.range == rng((1, 9), (1, 12))  # the emoji is 4 UTF-8 bytes
    assert build_diagnostics("", DocumentCheck(math.nan, 0, []), Settings(), "utf-16") == []


def test_hover_explains_each_alternative() -> None:
    assert hover_oddity(THEIR) == "**'Their'** reads oddly here.\n- 'There': r1\n- 'They're': r2"
    assert hover_oddity(DOUBLED) == "**'the'** reads oddly here.\n- (remove it): 'the' is repeated"


def test_a_completion_item_replaces_the_typed_prefix() -> None:
    at = CursorProse("the ma", 6, 0, 6, "utf-16")
    answer = completion_list(Completion([Suggestion("mat", 0.41234), Suggestion("man", 0.2)], "ma", 4), at)
    # the JSON reads as the protocol's own types say (what the client's library makes of it)
    read = get_converter().structure(answer, types.CompletionList)
    edit_range = rng((0, 4), (0, 6))
    assert read.is_incomplete is True and read.items[0] == types.CompletionItem(
        label="mat",
        kind=types.CompletionItemKind.Text,
        sort_text="0000",
        filter_text="mat",
        text_edit=types.TextEdit(range=edit_range, new_text="mat"),
        label_details=types.CompletionItemLabelDetails(description="41.2%"),
        detail="P = 0.4123",
    )
    assert read.items[1].sort_text == "0001" and read.items[1].detail == "P = 0.2000"


def test_ghost_text_replaces_the_typed_prefix_and_is_empty_without_a_continuation() -> None:
    at = CursorProse("I live in the Uni", 17, 2, 17, "utf-16")
    answer = inline_completion_list(Completion([Suggestion("United States", 0.5)], "Uni", 14), at)
    read = get_converter().structure(answer, types.InlineCompletionList)
    assert list(read.items) == [types.InlineCompletionItem(insert_text="United States", range=rng((2, 14), (2, 17)))]
    assert inline_completion_list(None, at) == {"items": []}


@pytest.mark.parametrize(
    "text, word, expected",
    [
        ("the  \tthe end", ((0, 6), (0, 9)), ((0, 3), (0, 9))),  # the spaces and the tab before it
        ("the\nthe end", ((1, 0), (1, 3)), ((1, 0), (1, 3))),  # a line break is kept
        ("the", ((0, 0), (0, 3)), ((0, 0), (0, 3))),  # nothing before it
    ],
)
def test_removing_a_word_takes_the_space_before_it(text: str, word: tuple, expected: tuple) -> None:
    assert _with_space_before(text, rng(*word), "utf-16") == rng(*expected)


def test_command_arguments_are_flattened() -> None:
    assert _flatten(["a", ["b", ("c", ["d"])], 1]) == ["a", "b", "c", "d", 1]
    assert _flatten("word") == ["word"]
    assert _flatten([]) == []
    assert COMMANDS["ignore_word"] == "nextword.ignoreWord"
