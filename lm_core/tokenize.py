"""Tokenisation for nextword.

Three views of text are provided:

* **Prose mode** (:func:`tokenize`, :func:`sentences`, :func:`prose_sentences`): Markdown-aware
  tokenisation of ordinary documents into words, numbers and punctuation with character offsets, split into
  sentences that each end with an :data:`EOS` token.  Code blocks, inline code, URLs, e-mail addresses and
  HTML tags are skipped.
* **Benchmark mode** (:func:`pretokenized_sentences`): one sentence per line, split on whitespace, the
  convention used for Penn Treebank and WikiText-2 perplexities.
* **Cursor mode** (:func:`cursor_context`): what a completion at a given offset conditions on, computed from
  a bounded window around the cursor so that it stays fast on very large documents.

The scanner is a single compiled regular expression walked with ``finditer``; only the rare constructs (line
markers, sentence terminators, skipped regions) do extra work in Python.  Any ``str`` is accepted, including
control characters and lone surrogates, which produce no tokens.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple

from lm_core.vocab import BOS, EOS, SPECIAL, UNK

__all__ = [
    "BOS",
    "EOS",
    "SPECIAL",
    "UNK",
    "CursorContext",
    "ScanState",
    "Token",
    "cursor_context",
    "pretokenized_sentences",
    "prose_sentences",
    "sentences",
    "sentences_from",
    "tokenize",
]


class Token(NamedTuple):
    """One token of prose-mode output (a named tuple: tokens are made by the million, and tuples are cheap).

    ``surface`` is the text as written (``text[start:end]``); ``norm`` is the form used for counting:
    ``surface.casefold()`` for words, the surface for numbers and punctuation, :data:`EOS` for sentence ends.
    ``kind`` is one of ``"word"``, ``"number"``, ``"punct"`` and ``"eos"``; an EOS token is empty, with
    ``start == end`` just after the last token of its sentence.
    """

    surface: str
    norm: str
    start: int
    end: int
    kind: str


@dataclass(frozen=True, slots=True)
class CursorContext:
    """What a completion at a cursor conditions on (see :func:`cursor_context`)."""

    context: tuple[str, ...]
    prefix: str
    prefix_start: int
    sentence_start: bool
    skipped: bool = False


# ----------------------------------------------------------------------------------------------------------
# Character classes
# ----------------------------------------------------------------------------------------------------------

# Characters that are each a word of their own: CJK ideographs (and 々〆〇), Hiragana, Katakana, Hangul
# syllables.
_CJK = (
    "\u3005-\u3007\u3041-\u3096\u309d-\u309f\u30a1-\u30fa\u30fc-\u30ff\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3\uf900-\ufaff\uff66-\uff9d"
    "\U00020000-\U0002fa1f\U00030000-\U000323af"
)
# Blocks known to hold no combining marks or format characters; skipped when building the classes below.
_NO_MARK_BLOCKS = ((0x3400, 0x4DC0), (0x4E00, 0xA000), (0xAC00, 0xD7A4), (0xD800, 0xF900))


def _class_ranges(codepoints: list[int]) -> str:
    """Render sorted code points as the inside of a regex character class, merging consecutive runs."""
    parts: list[str] = []
    i = 0
    while i < len(codepoints):
        j = i
        while j + 1 < len(codepoints) and codepoints[j + 1] == codepoints[j] + 1:
            j += 1
        lo, hi = chr(codepoints[i]), chr(codepoints[j])
        parts.append(re.escape(lo) if i == j else f"{re.escape(lo)}-{re.escape(hi)}")
        i = j + 1
    return "".join(parts)


def _unicode_classes() -> tuple[str, str]:
    """Return (combining marks, format characters) as character-class bodies, from the Unicode database."""
    marks: list[int] = []
    formats: list[int] = []
    category = unicodedata.category
    start = 0x00AD
    for lo, hi in (*_NO_MARK_BLOCKS, (0x20000, 0x20000)):
        for cp in range(start, lo):
            cat = category(chr(cp))
            if cat[0] == "M":
                marks.append(cp)
            elif cat == "Cf":
                formats.append(cp)
        start = hi
    marks.extend(range(0xE0100, 0xE01F0))  # variation selectors supplement
    formats.extend([0xE0001, *range(0xE0020, 0xE0080)])  # language tag and tag characters
    return _class_ranges(marks), _class_ranges(formats)


_MARKS, _FORMATS = _unicode_classes()
# Never part of a token on their own: controls, format characters, surrogates, private use.
_SKIP = "\x00-\x1f\x7f-\x9f" + _FORMATS + "\ud800-\udfff\ue000-\uf8ff\U000f0000-\U0010ffff"

_LET = "[^\\W\\d_" + _CJK + "]"  # a letter that may start a word
_ALNUM = "[^\\W_" + _CJK + "]"  # letters and digits
_MK = "[" + _MARKS + "\u00ad\u200c\u200d]"  # combining marks, soft hyphen, ZWNJ/ZWJ: glued to what precedes
_BODY = _ALNUM + "*+(?:" + _MK + "++" + _ALNUM + "*+)*+"
_JOINERS = "'\u2019\\-\u2010\u2011"  # apostrophes and hyphens kept inside words

# ----------------------------------------------------------------------------------------------------------
# The scanner pattern
# ----------------------------------------------------------------------------------------------------------

_FENCE_SRC = (
    r"^[ \t]*(?:(?P<bt>`{3,})(?![^\n]*`)|(?P<tl>~{3,}))[^\n]*"
    r"(?:\n(?:[^\n]*\n)*?[ \t]*(?(bt)(?P=bt)`*|(?P=tl)~*)[ \t\r]*$|(?s:.*))"
)
_BRANCHES = (
    ("fence", _FENCE_SRC),
    ("rule", r"^[ \t]*(?:(?P<rc>[-*_])[ \t]*(?:(?P=rc)[ \t]*){2,}|=+[ \t]*)\r?$"),
    (
        "mark",
        r"^[ \t]*(?:>[ \t]?)*(?:(?P<hd>#{1,6})|(?P<li>[-*+\u2022]|\d{1,9}[.)]))(?=[ \t\r]|$)"
        r"|^[ \t]*(?:>[ \t]?)+",
    ),
    ("nl", "(?:\r\n|[\n\r\x85\u2028])(?P<blank>(?:[ \t\f\v]*(?:\r\n|[\n\r\x85\u2028]))+)?|\u2029"),
    ("code", r"(?P<tk>`+)(?!`)(?:[^`\n]|\n(?![ \t\r]*\n)|(?!(?P=tk)(?!`))(?>`+)){1,4000}?(?P=tk)(?!`)"),
    (
        "url",
        r"(?=[hHfFwW<])(?:<(?:https?|ftp):[^\s<>]*>"
        r"|(?i:\b(?:https?://|ftp://|www\.))(?:[^\s<>\"`{}|\\^\[\]()]|\([^\s()<>]*\))*"
        r"(?<![.,;:!?'*_~\u2026]))",
    ),
    (
        "email",
        r"<(?:mailto:)?[^\s<>@]+@[^\s<>]+>"
        r"|(?:mailto:)?[\w.%+-]++@[^\W_][\w-]*(?:\.[\w-]+)*\.[^\W\d_]{2,}\b",
    ),
    (
        "markup",
        r"(?=[<&!\[\]])(?:<!--(?s:.*?)(?:-->|\Z)|</?[A-Za-z][A-Za-z0-9-]*+(?:\s[^<>]{0,500})?/?>"
        r"|&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});"
        r"|!?\[(?=[^\[\]\n]*\]\()"
        r"|\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'))?\))",
    ),
    ("emph", r"(?=[*_])(?:(?<=\S)[*_]++|[*_]++(?=\S))"),
    ("abbr", "(?:" + _LET + r"\.){2,}+(?!" + _ALNUM + ")"),
    ("word", _LET + _BODY + "(?:[" + _JOINERS + "]" + _ALNUM + _BODY + ")*"),
    ("cjk", "[" + _CJK + "][" + _MARKS + "]*+"),
    (
        "number",
        r"(?:\d{1,3}(?:,\d{3})++(?!\d)|\d++)(?:[.\uff0e]\d++)*+(?:['\u2019]?" + _LET + _BODY + ")?",
    ),
    ("punct", "(?P<pc>[^\\w\\s" + _SKIP + _MARKS + "])(?:(?P=pc)|" + _MK + ")*+"),
)
_LINE_START_BRANCHES = 3  # fence, rule, mark: tried before the leading blanks are skipped
_BLANKS = r"[ \t\xa0]"


def _alternatives(branches: tuple[tuple[str, str], ...]) -> str:
    return "|".join(f"(?P<{name}>{src})" for name, src in branches)


_GUARDED = ("code", "url", "markup", "emph")
"""Branches that start with one of `_GUARD`'s characters (regex alternatives that begin with a group are each entered
at every token; one character class in front of these four skips them at once)."""
_GUARD = "(?=[`hHfFwW<&!\\[\\]*_])"


def _master(branches: tuple[tuple[str, str], ...]) -> re.Pattern[str]:
    """The scanner's pattern: the line-start branches behind one shared "^", then blanks and the other branches in
    order; `_GUARDED` branches, where they follow each other, behind `_GUARD`."""
    line_start = "^(?:" + _alternatives(tuple((n, s.removeprefix("^")) for n, s in branches[:_LINE_START_BRANCHES]))
    rest = branches[_LINE_START_BRANCHES:]
    names = [n for n, _ in rest]
    first = names.index(_GUARDED[0])
    if tuple(names[first : first + len(_GUARDED)]) == _GUARDED:
        inner = (
            _alternatives(rest[:first])
            + f"|{_GUARD}(?:"
            + _alternatives(rest[first : first + len(_GUARDED)])
            + ")|"
            + _alternatives(rest[first + len(_GUARDED) :])
        )
    else:
        inner = _alternatives(rest)
    return re.compile(line_start + f")|{_BLANKS}*+(?:" + inner + r"|(?P<junk>[^ \t\xa0]|\Z))", re.MULTILINE)


# Blanks before a token are skipped inside the match (much faster than failing every branch at each blank);
# "junk" consumes any other character no branch wants (controls, lone marks, a lone "_"), and trailing blanks.
# Every e-mail alternative needs an "@": where the scanned text has none, the scanner uses the pattern without them,
# which gives the same matches (~1/3 faster: the e-mail branch otherwise runs along every word before "word" matches
# it). The full pattern is compiled when a text with an "@" first comes (each takes ~55 ms to compile: not at start).
_MASTER_WITHOUT_EMAIL = _master(tuple(b for b in _BRANCHES if b[0] != "email"))


@functools.cache
def _master_with_email() -> re.Pattern[str]:
    return _master(_BRANCHES)


_FENCE = re.compile(_FENCE_SRC, re.MULTILINE)

# Sentence-end machinery.
_TERMINATORS = frozenset(".!?\u2026\u203c\u2047\u2048\u2049\u0964\u0965\u3002\uff01\uff1f\uff0e")
_CJK_TERMINATORS = frozenset("\u3002\uff01\uff1f")  # 。！？ end a sentence even without a space
_CLOSERS = "\"'\u201d\u2019\u00bb\u203a)\\]}\u300d\u300f\uff09\u3011\u3009\u300b\u3015\uff5d\uff3d*_"
_FOLLOW = re.compile("(?P<cl>[" + _CLOSERS + "".join(sorted(_TERMINATORS)) + "]*)(?P<ws>\\s*)")
_ABBREVIATIONS = frozenset(
    (
        *("mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mt", "rev", "hon"),  # titles and names
        *("gen", "col", "lt", "sgt", "capt"),  # ranks
        *("inc", "ltd", "co", "dept"),  # organisations
        *("vs", "etc", "cf", "al", "fig", "figs", "approx", "viz", "esp", "resp"),  # in running text
    )
)
_NUMBER_ABBREVIATIONS = frozenset(("no", "nos", "vol", "p", "pp"))  # only when a number follows: "No. 5"
_REST_OF_LINE_BLANK = re.compile(r"[ \t\r]*(?:\n|\Z)")
_CJK_TOKEN = re.compile("[" + _CJK + "]")
_NEVER = sys.maxsize
_TOKEN_KINDS = frozenset(("word", "abbr", "punct", "number", "cjk"))  # matches that are a token themselves

# Line kinds, tracked for Markdown structure.
_PLAIN, _BLANK, _HEADING, _LIST, _QUOTE = range(5)


# ----------------------------------------------------------------------------------------------------------
# Scanner
# ----------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Scan:
    """Result of scanning ``text[pos:endpos]``."""

    sentences: list[list[Token]]  # finished sentences, each ending with its EOS token
    tail: list[Token]  # tokens of the last, unfinished sentence (no EOS yet)
    tail_closed: bool  # the tail already ended with a sentence terminator (its EOS is only pending)
    boundaries: int  # sentence boundaries met, including ones with nothing to close
    skips: list[tuple[int, int, str]]  # skipped regions: (start, end, kind)


def _seal(cur: list[Token], out: list[list[Token]]) -> list[Token]:
    """Append an EOS to ``cur`` and move it to ``out`` if it has tokens; return the (new) open sentence."""
    if not cur:
        return cur
    end = cur[-1].end
    cur.append(Token("", EOS, end, end, "eos"))
    out.append(cur)
    return []


def _is_abbreviation_dot(text: str, dot: int, endpos: int, cur: list[Token]) -> bool:
    """Whether the "." at ``dot`` (already the last token of ``cur``) closes an abbreviation or an initial."""
    if len(cur) < 2:
        return False
    prev = cur[-2]
    if prev.end != dot or prev.kind != "word":
        return False
    if prev.norm in _ABBREVIATIONS:
        return True
    if prev.norm in _NUMBER_ABBREVIATIONS:
        rest = text[dot + 1 : min(endpos, dot + 8)].lstrip()
        return rest[:1].isdigit()
    surface = prev.surface
    return len(surface) == 1 and surface.isupper() and surface != "I"


def _sentence_end(text: str, start: int, end: int, endpos: int, cur: list[Token]) -> int | None:
    """For a terminator token at ``[start, end)``, the offset after which its sentence ends, or None.

    Closing quotes/brackets and further terminators right after it belong to the same sentence.
    """
    term = text[start]
    if term == "." and end - start == 1 and _is_abbreviation_dot(text, start, endpos, cur):
        return None
    follow = _FOLLOW.match(text, end, endpos)
    assert follow is not None  # the pattern can match the empty string
    close = follow.end("cl")
    after = follow.end()
    if term in _CJK_TERMINATORS or after >= endpos:
        return close
    gap = follow.group("ws")
    if not gap:
        return None
    if "\n" in gap or "\r" in gap or "\u2028" in gap or "\u2029" in gap:
        return close
    nxt = text[after]
    return None if nxt.islower() or nxt in ",;:" else close


class _Scanner:
    """Walks the master pattern over ``text[pos:endpos]`` and assembles tokens into sentences."""

    __slots__ = (
        "boundaries",
        "cur",
        "endpos",
        "eos_after",
        "line_kind",
        "line_start",
        "out",
        "pos",
        "prev_line",
        "resume_at",
        "skips",
        "stop",
        "text",
    )

    def __init__(self, text: str, pos: int, endpos: int, stop: int = _NEVER) -> None:
        self.text = text
        self.pos = pos
        self.endpos = endpos
        self.stop = stop  # stop at the first sentence start at or after this offset (see `ScanState`)
        self.resume_at = _NEVER  # where it stopped
        self.out: list[list[Token]] = []
        self.cur: list[Token] = []
        self.skips: list[tuple[int, int, str]] = []
        self.eos_after = _NEVER  # a pending sentence end: close before the next event starting from here
        self.boundaries = 0
        self.line_kind = _PLAIN
        self.line_start = pos
        self.prev_line = _BLANK

    def run(self) -> _Scan:
        """Scan the whole range and return the result."""
        text, stop, endpos = self.text, self.stop, self.endpos
        master = _master_with_email() if text.find("@", self.pos, endpos) >= 0 else _MASTER_WITHOUT_EMAIL
        make = tuple.__new__  # Token(...) without its Python-level __new__: tokens are made by the million
        cur, eos_after = self.cur, self.eos_after  # kept in locals for words, the common case; synced around calls
        for m in master.finditer(text, self.pos, endpos):
            kind = m.lastgroup or "junk"
            start, end = m.span(kind)
            if start >= eos_after:
                self.boundary()
                cur, eos_after = self.cur, self.eos_after
            if kind == "word" or kind == "abbr":
                if start >= stop and not cur:
                    self.resume_at = m.start()
                    break
                surface = text[start:end]
                cur.append(make(Token, (surface, surface.casefold(), start, end, "word")))
                continue
            if start >= stop and not cur and kind in _TOKEN_KINDS:
                self.resume_at = m.start()
                break
            if kind == "punct":
                self.add_punct(start, end)
            elif kind == "number" or kind == "cjk":
                surface = text[start:end]
                cur.append(make(Token, (surface, surface, start, end, "number" if kind == "number" else "word")))
            elif kind == "nl":
                self.newline(m)
            elif kind == "mark":
                self.marker(m)
            elif kind == "fence" or kind == "rule":
                self.boundary()
                if kind == "fence":
                    self.skips.append((start, end, kind))
            elif kind != "emph" and kind != "junk":
                self.skips.append((start, end, kind))
            cur, eos_after = self.cur, self.eos_after
        tail_closed = bool(self.cur) and self.eos_after <= endpos
        return _Scan(self.out, self.cur, tail_closed, self.boundaries, self.skips)

    def boundary(self) -> None:
        """A sentence boundary: close the open sentence, if it has tokens."""
        self.cur = _seal(self.cur, self.out)
        self.eos_after = _NEVER
        self.boundaries += 1

    def add_punct(self, start: int, end: int) -> None:
        """Add a punctuation token; a terminator may schedule the end of the sentence."""
        text = self.text
        surface = text[start:end]
        first = surface[0]
        if first == "#" and self.line_kind == _HEADING and _REST_OF_LINE_BLANK.match(text, end, self.endpos):
            return  # closing "##" of an ATX heading
        self.cur.append(Token(surface, surface, start, end, "punct"))
        if first in _TERMINATORS:
            close = _sentence_end(text, start, end, self.endpos, self.cur)
            if close is not None:
                self.eos_after = close

    def line_has_tokens(self) -> bool:
        """Whether the current line produced any token that is still in the open sentence."""
        return bool(self.cur) and self.cur[-1].end > self.line_start

    def newline(self, m: re.Match[str]) -> None:
        """End of a line: headings, list items, blank lines and lines without tokens end the sentence."""
        paragraph = m.group("blank") is not None or m.group("nl") == "\u2029"
        had_tokens = self.line_has_tokens()
        if paragraph or self.line_kind in (_HEADING, _LIST) or not had_tokens:
            self.boundary()
        self.prev_line = _BLANK if paragraph or not had_tokens else self.line_kind
        self.line_kind = _PLAIN
        self.line_start = m.end("nl")

    def marker(self, m: re.Match[str]) -> None:
        """Line-start Markdown markers: headings, list items and blockquotes (never tokens themselves)."""
        item = m.group("li")
        if m.group("hd") is not None:
            self.boundary()
            self.line_kind = _HEADING
        elif item is not None:
            if item[0].isdigit() and item[:-1] != "1" and self.prev_line not in (_BLANK, _LIST, _HEADING):
                self.false_marker(m)  # e.g. a hard-wrapped "... in\n1984. The", not an ordered list
                return
            self.boundary()
            self.line_kind = _LIST
        else:
            if self.prev_line != _QUOTE:
                self.boundary()
            self.line_kind = _QUOTE

    def false_marker(self, m: re.Match[str]) -> None:
        """Tokenise "1984." matched as a list marker as a number and a punctuation token."""
        if ">" in m.group():
            self.line_kind = _QUOTE
        start, end = m.span("li")
        digits = self.text[start : end - 1]
        self.cur.append(Token(digits, digits, start, end - 1, "number"))
        self.add_punct(end - 1, end)


def _scan(text: str, pos: int = 0, endpos: int | None = None) -> _Scan:
    """Scan ``text[pos:endpos]`` (offsets stay absolute)."""
    return _Scanner(text, pos, len(text) if endpos is None else endpos).run()


# ----------------------------------------------------------------------------------------------------------
# Prose mode
# ----------------------------------------------------------------------------------------------------------


def sentences(text: str) -> list[list[Token]]:
    """tokenize() split into sentences; each list ends with its EOS token. No BOS tokens are produced."""
    result = _scan(text)
    _seal(result.tail, result.sentences)
    return result.sentences


@dataclass(frozen=True, slots=True)
class ScanState:
    """The Markdown line state at a sentence start, where a prose scan stopped (`sentences_from`): a later scan from
    there, with this state, goes on exactly as one scan of the whole text would. `line_start` is the offset of the
    current line's start, relative to the resume point (0 or below)."""

    line_kind: int = _PLAIN
    prev_line: int = _BLANK
    line_start: int = 0


def sentences_from(
    text: str, pos: int = 0, state: ScanState = ScanState(), stop: int = _NEVER
) -> tuple[list[list[Token]], int | None, ScanState]:
    """Prose sentences of ``text[pos:]`` (offsets stay absolute), as `sentences` gives them, but stopping at the
    first sentence start at or after offset `stop`: a token that begins a sentence (nothing open or pending), where
    the scan stops before the blanks in front of it.

    Returns the finished sentences, the offset to resume from (None where the scan reached the end of `text`; its
    unfinished last sentence is then closed, as at the end of a document) and the state there. ``text[:pos]`` is
    context only: keep at least the character before `pos` (line starts and look-behinds read it).
    """
    scanner = _Scanner(text, pos, len(text), stop)
    scanner.line_kind, scanner.prev_line, scanner.line_start = state.line_kind, state.prev_line, pos + state.line_start
    result = scanner.run()
    if scanner.resume_at == _NEVER:
        _seal(result.tail, result.sentences)
        return result.sentences, None, ScanState()
    resume = scanner.resume_at
    return result.sentences, resume, ScanState(scanner.line_kind, scanner.prev_line, scanner.line_start - resume)


def tokenize(text: str) -> list[Token]:
    """Prose mode. Words, numbers and punctuation as tokens with offsets; an EOS token (surface "",
    norm EOS, start == end == offset just after the sentence's last token) at each sentence end.

    Skipped (produce no tokens, and act as a sentence boundary where they stand alone on their lines):
    Markdown fenced code blocks (``` or ~~~ fences, up to the closing fence or the end of text), inline code
    spans (`...`), URLs (http://, https://, ftp://, www.…), e-mail addresses, HTML tags, comments and
    entities, and Markdown link syntax (``[text](url)`` keeps only "text"). Heading, list, blockquote and
    emphasis markers are not tokens. CJK ideographs, Hiragana, Katakana and Hangul syllables: each character
    is its own word token.
    """
    return [token for sentence in sentences(text) for token in sentence]


def prose_sentences(text: str) -> list[list[str]]:
    """Normalised token strings per sentence, each ending with EOS: what the counting code consumes."""
    return [[token.norm for token in sentence] for sentence in sentences(text)]


# ----------------------------------------------------------------------------------------------------------
# Benchmark mode
# ----------------------------------------------------------------------------------------------------------


def pretokenized_sentences(text: str) -> list[list[str]]:
    """Benchmark mode: one sentence per line, split on whitespace, no case folding, EOS appended to every
    line, blank lines included (a blank line gives [EOS]).

    A trailing newline at the very end of the text does not create an extra empty line, and the empty text
    has no lines. This matches the conventions for PTB and WikiText-2 perplexities.
    """
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [[*line.split(), EOS] for line in lines]


# ----------------------------------------------------------------------------------------------------------
# Cursor mode
# ----------------------------------------------------------------------------------------------------------

_CONTEXT_LOOKBACK = 512  # characters before the cursor the context is taken from (more for large max_tokens)
_CHARS_PER_CONTEXT_TOKEN = 12  # ... at least this many per token of context wanted (English prose: ~5.5 a token)
_LINE_LOOKBACK = 2000  # how much further back the start of the window's first line is looked for
_FENCE_LOOKBACK = 20_000  # how far back an open code fence is noticed
_LOOKAHEAD = 1000  # how far past the cursor (on its line) a closing backtick is looked for
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_WHITESPACE = re.compile(r"\s+")
_INCLUSIVE_SKIPS = frozenset({"fence", "url", "email"})  # a cursor right at their end is still typing them


def _fence_regions(text: str, offset: int, line_end: int) -> list[tuple[int, int]]:
    """Fenced code blocks starting within ``_FENCE_LOOKBACK`` characters before the cursor's line end."""
    lo = max(0, offset - _FENCE_LOOKBACK)
    if lo:
        lo = text.find("\n", lo, offset) + 1 or offset
    if text.find("```", lo, line_end) < 0 and text.find("~~~", lo, line_end) < 0:
        return []
    return [m.span() for m in _FENCE.finditer(text, lo, line_end)]


def _window_start(text: str, offset: int, lookback: int) -> tuple[int, bool]:
    """Where to start scanning for the context of ``offset``, and whether a sentence is known to start there.

    The window starts at the last paragraph break within ``lookback`` characters, else at the start of the
    line containing ``offset - lookback`` (if it is not too far back), else after whitespace near that point.
    """
    lo = max(0, offset - lookback)
    if lo == 0:
        return 0, True
    breaks = list(_PARAGRAPH_BREAK.finditer(text, lo, offset))
    if breaks:
        return breaks[-1].end(), True
    floor = max(0, lo - _LINE_LOOKBACK)
    newline = text.rfind("\n", floor, lo)
    if newline >= 0:
        return newline + 1, False
    if floor == 0:
        return 0, True
    gap = _WHITESPACE.search(text, lo, offset)
    return (gap.end() if gap else offset), False


def _prefix_token(tokens: list[Token], offset: int) -> Token | None:
    """The word or number being typed at ``offset`` (containing it or ending there), if any."""
    for i in range(len(tokens) - 1, -1, -1):
        token = tokens[i]
        if token.start >= offset or token.kind == "eos":
            continue
        if token.end < offset:
            return None
        if token.kind == "punct" and token.end == offset and token.surface in ("'", "\u2019", "-"):
            prev = tokens[i - 1] if i else None  # "don'" or "well-": a word whose joiner is being typed
            if prev is not None and prev.kind == "word" and prev.end == token.start:
                return prev
            return None
        if token.kind == "number" or (
            token.kind == "word" and not token.surface.endswith(".") and not _CJK_TOKEN.match(token.surface)
        ):
            return token
        return None
    return None


def _in_skipped(scan: _Scan, tokens: list[Token], offset: int, line_start: int) -> bool:
    """Whether ``offset`` lies inside a skipped region, or after an unmatched backtick on its line."""
    for start, end, kind in scan.skips:
        if start < offset < end or (offset == end > start and kind in _INCLUSIVE_SKIPS):
            return True
    return any(t.surface[0] == "`" and line_start <= t.start and t.end <= offset for t in tokens if t.surface)


def cursor_context(text: str, offset: int, max_tokens: int = 8, stride: int = 1) -> CursorContext:
    """What a completion at character `offset` of `text` conditions on.

    ``context`` holds the normalised tokens of the current sentence before the word being typed, oldest
    first, starting with BOS when that sentence began within the window, and at most ``max_tokens`` of them;
    ``prefix`` is the part of that word typed so far. Only a bounded window is read (a few hundred characters
    back, not past the paragraph start; a code fence is noticed up to about 20 000 characters back), so it is
    fast on a 50 MB document. Offsets are clamped to ``[0, len(text)]``. Inside a skipped region (code block,
    inline code, URL, e-mail address, or after an unclosed backtick on the line) the result is an empty
    context with prefix "", sentence_start False and ``skipped`` True.

    With ``stride`` > 1, a sentence longer than ``max_tokens`` loses tokens from its start ``stride`` at a time
    (the context then holds between ``max_tokens - stride + 1`` and ``max_tokens`` of them), so the context's start
    stays put while the next ``stride`` words are typed: a recurrent model's cached state after it stays usable
    (with a stride of 1 every word moves the start, and the network runs the whole window again).
    """
    offset = min(max(offset, 0), len(text))
    line_end = text.find("\n", offset, offset + _LOOKAHEAD)
    if line_end < 0:
        line_end = min(len(text), offset + _LOOKAHEAD)
    skipped = CursorContext((), "", offset, False, True)

    lookback = min(max(_CONTEXT_LOOKBACK, _CHARS_PER_CONTEXT_TOKEN * max_tokens), _FENCE_LOOKBACK)
    ws, known_start = _window_start(text, offset, lookback)
    for start, end in _fence_regions(text, offset, line_end):
        if start < offset <= end:
            return skipped
        if start <= ws < end:
            ws, known_start = end, True

    around = _scan(text, ws, line_end)
    tokens = [t for sentence in around.sentences for t in sentence] + around.tail
    if _in_skipped(around, tokens, offset, text.rfind("\n", ws, offset) + 1 or ws):
        return skipped
    typed = _prefix_token(tokens, offset)
    prefix_start = typed.start if typed is not None else offset

    before = around if prefix_start == line_end else _scan(text, ws, prefix_start)  # at a line's end: the same scan
    if before.tail and not before.tail_closed:
        began = known_start or before.boundaries > 0
        sequence = ([BOS] if began else []) + [t.norm for t in before.tail]
    elif known_start or before.boundaries > 0 or before.tail:
        sequence = [BOS]
    else:
        sequence = []
    if max_tokens <= 0:
        context: tuple[str, ...] = ()
    else:
        over = len(sequence) - max_tokens
        cut = -(-over // stride) * stride if over > 0 else 0  # whole strides, at least `over` tokens
        context = tuple(sequence[cut:])
    return CursorContext(context, text[prefix_start:offset], prefix_start, sequence == [BOS])
