"""Tests for lm_core.tokenize: prose mode, benchmark mode and cursor contexts."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from lm_core.tokenize import (
    BOS,
    EOS,
    SPECIAL,
    UNK,
    CursorContext,
    Token,
    cursor_context,
    pretokenized_sentences,
    prose_sentences,
    sentences,
    tokenize,
)


def norms(text: str) -> list[str]:
    """All normalised tokens of ``text``, EOS included."""
    return [t.norm for t in tokenize(text)]


def surfaces(text: str) -> list[str]:
    """Surfaces of the non-EOS tokens of ``text``."""
    return [t.surface for t in tokenize(text) if t.kind != "eos"]


# --- API basics -----------------------------------------------------------------------------------------


def test_special_tokens() -> None:
    assert (BOS, EOS, UNK) == ("<s>", "</s>", "<unk>")
    assert frozenset({BOS, EOS, UNK}) == SPECIAL


def test_tokens_of_a_simple_sentence() -> None:
    assert tokenize("Hi, Bob.") == [
        Token("Hi", "hi", 0, 2, "word"),
        Token(",", ",", 2, 3, "punct"),
        Token("Bob", "bob", 4, 7, "word"),
        Token(".", ".", 7, 8, "punct"),
        Token("", EOS, 8, 8, "eos"),
    ]


def test_offsets_match_surfaces_in_unicode_paragraph() -> None:
    text = "Ça va? Naïve café — “quoted” text, 😀 emoji…\n\nΈλα εδώ. Über 2nd straße!"
    tokens = tokenize(text)
    assert all(text[t.start : t.end] == t.surface for t in tokens if t.kind != "eos")
    assert [t.surface for t in tokens if t.kind != "eos"] == [
        "Ça", "va", "?", "Naïve", "café", "—", "“", "quoted", "”", "text", ",", "😀", "emoji", "…",
        "Έλα", "εδώ", ".", "Über", "2nd", "straße", "!",
    ]  # fmt: skip


def test_eos_sits_just_after_the_last_token() -> None:
    eos = [t for t in tokenize("One two.  Three") if t.kind == "eos"]
    assert [(t.surface, t.norm, t.start, t.end) for t in eos] == [("", EOS, 8, 8), ("", EOS, 15, 15)]


def test_empty_and_blank_text_give_no_tokens() -> None:
    assert tokenize("") == []
    assert tokenize("  \n\n\t ") == []
    assert sentences("") == []


# --- Words, numbers, punctuation ------------------------------------------------------------------------


def test_contractions_hyphens_and_possessives_are_single_words() -> None:
    text = "Don't say it’s a well-known fact about O'Neill and Paris's rock'n'roll."
    assert surfaces(text) == [
        "Don't", "say", "it’s", "a", "well-known", "fact", "about", "O'Neill", "and", "Paris's",
        "rock'n'roll", ".",
    ]  # fmt: skip


def test_leading_and_trailing_apostrophes_are_punctuation() -> None:
    assert surfaces("'Tis the students' books") == ["'", "Tis", "the", "students", "'", "books"]


def test_numbers() -> None:
    tokens = tokenize("3 apples, 3.14 pies, 1,000 cakes on the 2nd day, 1,2 mp3")
    assert [(t.surface, t.kind) for t in tokens if t.kind != "punct"][:-1] == [
        ("3", "number"), ("apples", "word"), ("3.14", "number"), ("pies", "word"), ("1,000", "number"),
        ("cakes", "word"), ("on", "word"), ("the", "word"), ("2nd", "number"), ("day", "word"),
        ("1", "number"), ("2", "number"), ("mp3", "word"),
    ]  # fmt: skip


def test_punctuation_runs_form_one_token_and_mixed_runs_do_not() -> None:
    assert surfaces("Wait... ok -- fine?! (yes)") == [
        "Wait",
        "...",
        "ok",
        "--",
        "fine",
        "?",
        "!",
        "(",
        "yes",
        ")",
    ]


def test_case_folding_applies_to_words_only() -> None:
    tokens = tokenize("ÉCOLE Straße 2ND ?")
    assert [(t.surface, t.norm) for t in tokens] == [
        ("ÉCOLE", "école"), ("Straße", "strasse"), ("2ND", "2ND"), ("?", "?"), ("", EOS),
    ]  # fmt: skip


def test_combining_marks_stay_inside_words() -> None:
    assert norms("Cafe\u0301 हिन्दी भाषा। फिर") == ["cafe\u0301", "हिन्दी", "भाषा", "।", EOS, "फिर", EOS]


def test_fullwidth_numbers() -> None:
    assert [(t.surface, t.kind) for t in tokenize("３．１４")] == [("３．１４", "number"), ("", "eos")]


def test_control_characters_and_lone_surrogates_are_skipped() -> None:
    assert surfaces("a\x00b\ud800c\x1b[0m d\u200be") == ["a", "b", "c", "[", "0m", "d", "e"]


def test_cjk_characters_are_single_words() -> None:
    tokens = tokenize("我爱北京")
    assert [(t.surface, t.kind) for t in tokens] == [
        ("我", "word"), ("爱", "word"), ("北", "word"), ("京", "word"), ("", "eos"),
    ]  # fmt: skip
    assert prose_sentences("ひらがなカタカナ한국") == [
        ["ひ", "ら", "が", "な", "カ", "タ", "カ", "ナ", "한", "국", EOS]
    ]


def test_cjk_terminators_end_sentences() -> None:
    assert prose_sentences("我爱北京。他好！真的？") == [
        ["我", "爱", "北", "京", "。", EOS], ["他", "好", "！", EOS], ["真", "的", "？", EOS],
    ]  # fmt: skip


# --- Sentence ends --------------------------------------------------------------------------------------


def test_terminators_end_sentences() -> None:
    assert prose_sentences("It rained. Was it cold? Yes! 2 days... Then sun.") == [
        ["it", "rained", ".", EOS], ["was", "it", "cold", "?", EOS], ["yes", "!", EOS],
        ["2", "days", "...", EOS], ["then", "sun", ".", EOS],
    ]  # fmt: skip


def test_abbreviations_do_not_end_sentences() -> None:
    text = "Mr. Smith and Dr. Jones met Prof. Lee at St. Paul's vs. Co. Ltd. etc. Then left."
    assert [s[-2] for s in prose_sentences(text)] == ["."]
    assert len(prose_sentences("MRS. Brown came. FIG. Two shows it.")) == 2


def test_e_g_and_i_e_are_single_words() -> None:
    tokens = tokenize("Fruit, e.g. Apples, I.E. Pears.")
    dotted = [(t.surface, t.norm, t.kind) for t in tokens if t.surface.endswith(".") and len(t.surface) > 1]
    assert dotted == [("e.g.", "e.g.", "word"), ("I.E.", "i.e.", "word")]
    assert len(prose_sentences("Fruit, e.g. Apples, I.E. Pears.")) == 1


def test_single_capital_initials_do_not_end_sentences() -> None:
    assert prose_sentences("J. R. Smith wrote it. So did I. Then") == [
        ["j", ".", "r", ".", "smith", "wrote", "it", ".", EOS], ["so", "did", "i", ".", EOS], ["then", EOS],
    ]  # fmt: skip


def test_no_is_an_abbreviation_only_before_a_number() -> None:
    assert prose_sentences("See No. 5 here. No. I refuse.") == [
        ["see", "no", ".", "5", "here", ".", EOS], ["no", ".", EOS], ["i", "refuse", ".", EOS],
    ]  # fmt: skip


def test_closing_quotes_and_brackets_stay_in_the_sentence() -> None:
    assert prose_sentences('He said "Go." Then (he left.) Fine.') == [
        ["he", "said", '"', "go", ".", '"', EOS],
        ["then", "(", "he", "left", ".", ")", EOS],
        ["fine", ".", EOS],
    ]  # fmt: skip


def test_lowercase_after_terminator_continues_the_sentence() -> None:
    assert prose_sentences("Wait... what? oh. Fine") == [
        ["wait", "...", "what", "?", "oh", ".", EOS],
        ["fine", EOS],
    ]


def test_newline_after_terminator_ends_sentence_but_plain_newline_does_not() -> None:
    assert prose_sentences("A hard\nwrapped line.\nnext one") == [
        ["a", "hard", "wrapped", "line", ".", EOS],
        ["next", "one", EOS],
    ]


def test_blank_line_ends_a_paragraph_sentence() -> None:
    assert prose_sentences("First para\n\nSecond para\r\n  \r\nThird") == [
        ["first", "para", EOS], ["second", "para", EOS], ["third", EOS],
    ]  # fmt: skip


def test_sentences_end_with_eos_and_never_start_with_one() -> None:
    result = sentences("Ay. B!\n\n\nC")
    assert [[t.norm for t in s] for s in result] == [["ay", ".", EOS], ["b", "!", EOS], ["c", EOS]]
    assert all(s[-1].kind == "eos" and s[0].kind != "eos" for s in result)


# --- Markdown -------------------------------------------------------------------------------------------


def test_heading_markers_are_skipped_and_the_heading_is_a_sentence() -> None:
    assert prose_sentences("# Title\n## Sub title ##\nBody text") == [
        ["title", EOS], ["sub", "title", EOS], ["body", "text", EOS],
    ]  # fmt: skip


def test_each_list_item_line_is_a_sentence_without_its_marker() -> None:
    text = "Shopping:\n- milk\n* eggs\n+ bread\n1. jam\n2) tea"
    assert prose_sentences(text) == [
        ["shopping", ":", EOS], ["milk", EOS], ["eggs", EOS], ["bread", EOS], ["jam", EOS], ["tea", EOS],
    ]  # fmt: skip


def test_wrapped_year_at_line_start_is_not_a_list_item() -> None:
    assert prose_sentences("It happened in\n1984. The end") == [
        ["it", "happened", "in", "1984", ".", EOS],
        ["the", "end", EOS],
    ]


def test_emphasis_and_blockquote_markers_are_not_tokens() -> None:
    assert prose_sentences("> Some *very* **bold** _claims_\n> go on\n>\n> here") == [
        ["some", "very", "bold", "claims", "go", "on", EOS], ["here", EOS],
    ]  # fmt: skip
    assert surfaces("2 * 3") == ["2", "*", "3"]


def test_thematic_break_ends_a_sentence() -> None:
    assert prose_sentences("Before\n---\nAfter") == [["before", EOS], ["after", EOS]]


def test_fenced_code_blocks_are_skipped_and_end_the_sentence() -> None:
    text = "Run this\n```python\nprint('x')\n\nmore code\n```\nthen this\n~~~\nx = 1\n~~~\nDone"
    assert prose_sentences(text) == [["run", "this", EOS], ["then", "this", EOS], ["done", EOS]]


def test_unclosed_fence_skips_to_the_end_of_text() -> None:
    assert prose_sentences("Intro text\n```\ncode forever\n\nand ever") == [["intro", "text", EOS]]


def test_inline_code_is_skipped_without_ending_the_sentence() -> None:
    assert prose_sentences("Call `f(x)` or ``a ` b`` now.") == [["call", "or", "now", ".", EOS]]


def test_inline_code_alone_on_its_line_is_a_boundary() -> None:
    assert prose_sentences("Type\n`make all`\nto build") == [["type", EOS], ["to", "build", EOS]]


def test_urls_are_skipped_but_trailing_punctuation_is_kept() -> None:
    text = "See https://example.com/a?b=c, www.Example.org. Or <ftp://x.y/z> (http://a.b/c_(d))"
    assert surfaces(text) == ["See", ",", ".", "Or", "(", ")"]


def test_url_alone_on_its_line_is_a_boundary() -> None:
    assert prose_sentences("Read it at\nhttps://example.com\nfor details") == [
        ["read", "it", "at", EOS],
        ["for", "details", EOS],
    ]


def test_emails_are_skipped() -> None:
    assert surfaces("Mail jane.doe+x@mail.example.co.uk, <bob@x.org> or mailto:a@b.io now") == [
        "Mail", ",", "or", "now",
    ]  # fmt: skip


def test_markdown_links_keep_their_text_and_html_is_skipped() -> None:
    text = 'A [nice link](https://x.y/z "title") and ![a cat](cat.png) <b>bold</b> &amp; <!-- note --> end'
    assert surfaces(text) == ["A", "nice", "link", "and", "a", "cat", "bold", "end"]


def test_markup_heavy_inputs_are_handled() -> None:
    assert tokenize("<!--" * 20_000) == []  # an unclosed HTML comment runs to the end, as in CommonMark
    assert len(tokenize("` a " * 20_000)) == 10_001  # backticks pair up: every other "a" is inline code
    assert len(tokenize("[a](" * 20_000)) == 60_001
    assert tokenize(" " * 100_000 + "\x00") == []


# --- Benchmark mode -------------------------------------------------------------------------------------


def test_pretokenized_sentences_on_ptb_like_text() -> None:
    text = " aer banknote <unk> \n\nthe N Years Old\n"
    assert pretokenized_sentences(text) == [
        ["aer", "banknote", "<unk>", EOS],
        [EOS],
        ["the", "N", "Years", "Old", EOS],
    ]


def test_pretokenized_trailing_newline_rule() -> None:
    assert pretokenized_sentences("a b") == [["a", "b", EOS]]
    assert pretokenized_sentences("a b\n") == [["a", "b", EOS]]
    assert pretokenized_sentences("a b\n\n") == [["a", "b", EOS], [EOS]]
    assert pretokenized_sentences("") == []


# --- Cursor contexts ------------------------------------------------------------------------------------


def test_cursor_after_a_space_has_empty_prefix() -> None:
    expected = CursorContext((BOS, "the", "cat", "sat", "on"), "", 15, False)
    assert cursor_context("The cat sat on ", 15) == expected


def test_cursor_mid_word_gives_prefix_and_its_start() -> None:
    expected = CursorContext((BOS, "we", "flew", "to"), "Pa", 11, False)
    assert cursor_context("We flew to Pa", 13) == expected
    assert cursor_context("We flew to Paris today", 13) == expected


def test_cursor_while_typing_a_contraction_keeps_the_apostrophe() -> None:
    assert cursor_context("I don'", 6) == CursorContext((BOS, "i"), "don'", 2, False)


def test_cursor_at_document_start() -> None:
    assert cursor_context("", 0) == CursorContext((BOS,), "", 0, True)
    assert cursor_context("Hello", 0) == CursorContext((BOS,), "", 0, True)


def test_cursor_after_a_sentence_end_starts_a_sentence() -> None:
    assert cursor_context("It rained. ", 11) == CursorContext((BOS,), "", 11, True)
    assert cursor_context("It rained. Th", 13) == CursorContext((BOS,), "Th", 11, True)
    assert cursor_context("Para one\n\n", 10) == CursorContext((BOS,), "", 10, True)
    assert cursor_context("# Title\n- ", 10) == CursorContext((BOS,), "", 10, True)


def test_cursor_after_an_abbreviation_continues_the_sentence() -> None:
    assert cursor_context("Ask Dr. ", 8) == CursorContext((BOS, "ask", "dr", "."), "", 8, False)


def test_cursor_context_is_bounded_by_max_tokens() -> None:
    text = "one two three four five six seven eight nine ten "
    assert cursor_context(text, len(text)).context == (
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
    )
    assert cursor_context(text, len(text), max_tokens=3).context == ("eight", "nine", "ten")
    assert cursor_context("a b ", 4, max_tokens=3).context == (BOS, "a", "b")


def test_cursor_offset_is_clamped() -> None:
    assert cursor_context("Hello wor", 99) == CursorContext((BOS, "hello"), "wor", 6, False)
    assert cursor_context("Hello", -5) == CursorContext((BOS,), "", 0, True)


def test_cursor_inside_skipped_regions() -> None:
    cases = [
        ("Use `foo bar` here", 8),  # inside inline code
        ("Use `foo ba", 11),  # after an unclosed backtick on the line
        ("Text\n```python\nx = co", 21),  # inside an unclosed code block
        ("```\nx = 1\n```\n", 7),  # inside a closed code block
        ("See https://exa", 15),  # typing a URL
        ("Mail me@x.org", 13),  # typing an e-mail address
    ]
    for text, offset in cases:
        assert cursor_context(text, offset) == CursorContext((), "", offset, False, True), text


def test_cursor_after_skipped_regions_is_not_skipped() -> None:
    assert cursor_context("Use `foo` and ", 14) == CursorContext((BOS, "use", "and"), "", 14, False)
    assert cursor_context("```\nx = 1\n```\nThen we", 21) == CursorContext((BOS, "then"), "we", 19, False)


def test_cursor_context_on_a_large_document_reads_only_a_window() -> None:
    text = "```\ncode\n```\n" + "Some words here. " * 300_000 + "The end of a long text an"  # about 5 MB
    expected = CursorContext((BOS, "the", "end", "of", "a", "long", "text"), "an", len(text) - 2, False)
    started = time.perf_counter()
    for _ in range(100):
        assert cursor_context(text, len(text)) == expected
    assert time.perf_counter() - started < 1.0  # typically well under 0.1 s for all 100 calls


# --- Properties -----------------------------------------------------------------------------------------

any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300)  # surrogates too
markdown_pieces = [*"aZé 我.!?\"')-*#>`~_\n\t1,:@/w", "http://", "```", "e.g.", "\n\n", "- ", "# ", "Mr."]
prose_like = st.lists(st.sampled_from(markdown_pieces), max_size=80).map("".join)


def check_token_stream(text: str, tokens: list[Token]) -> None:
    """Offsets increase and stay in bounds, surfaces match, EOS only after a token, never twice in a row."""
    last_end = 0
    previous: Token | None = None
    for token in tokens:
        assert last_end <= token.start <= token.end <= len(text)
        if token.kind == "eos":
            assert token.start == token.end and previous is not None and previous.kind != "eos"
        else:
            assert text[token.start : token.end] == token.surface != ""
            assert token.norm not in SPECIAL
        last_end = token.end
        previous = token
    assert not tokens or tokens[-1].kind == "eos"


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_tokenize_never_fails_on_arbitrary_text(text: str) -> None:
    check_token_stream(text, tokenize(text))


@settings(max_examples=300, deadline=None)
@given(prose_like)
def test_tokenize_is_well_formed_on_markdown_like_text(text: str) -> None:
    check_token_stream(text, tokenize(text))


@settings(max_examples=200, deadline=None)
@given(st.one_of(any_text, prose_like), st.integers(-5, 400), st.integers(0, 12))
def test_cursor_context_never_fails(text: str, offset: int, max_tokens: int) -> None:
    result = cursor_context(text, offset, max_tokens)
    clamped = min(max(offset, 0), len(text))
    assert len(result.context) <= max_tokens
    assert result.prefix_start + len(result.prefix) == clamped
    assert text[result.prefix_start : clamped] == result.prefix
    assert BOS not in result.context[1:]
    if result.skipped:
        assert result == CursorContext((), "", clamped, False, True)


@settings(max_examples=200, deadline=None)
@given(any_text)
def test_pretokenized_sentences_never_fail(text: str) -> None:
    result = pretokenized_sentences(text)
    assert all(line[-1] == EOS for line in result)
    assert len(result) == (0 if not text else text.count("\n") + (0 if text.endswith("\n") else 1))


def test_a_long_sentences_context_loses_its_start_a_stride_at_a_time() -> None:
    words = [f"w{i}" for i in range(40)]
    starts = set()
    for n in range(1, 41):
        text = " ".join(words[:n]) + " "
        one = cursor_context(text, len(text), max_tokens=8)
        strided = cursor_context(text, len(text), max_tokens=8, stride=4)
        assert one.context == tuple(["<s>", *words[:n]][-8:])  # stride 1: the last 8 tokens, as always
        assert min(n + 1, 5) <= len(strided.context) <= 8 and strided.context == one.context[-len(strided.context) :]
        if n + 1 > 8:
            starts.add(strided.context[0])
    assert len(starts) == (40 + 1 - 8 + 3) // 4  # the start moved once every 4 words, not every word
