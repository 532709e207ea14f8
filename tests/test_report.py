"""The HTML surprisal report (`lsp_server.report`, `nextword report`) on a small prose store of its own."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lsp_server.engine import Engine
from lsp_server.report import format_perplexity, render_report
from tests.conftest import error_of, ok

pytestmark = pytest.mark.usefixtures("private_data_dir")

TRAINING = (
    "The cat sat on the mat. The dog sat on the log. There is a cat on the mat.\n"
    "Their dog is on the log. The cat is there. It is their cat.\n"
)
DOCUMENT = 'The cat sat on the log. Their is a dog on the mat.\n<script>alert(1)</script> & the "end".\n'
VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "small.db"
    engine = Engine.open(path, create=True)
    engine.learn("training", TRAINING)
    engine.close()
    return path


@pytest.fixture
def engine(db: Path) -> Iterator[Engine]:
    engine = Engine.open(db)
    yield engine
    engine.close()


class StrictParser(HTMLParser):
    """Checks that every non-void tag is closed in order; counts spans and collects the text of each."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.spans: list[str] = []
        self.in_span = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "span":
            self.spans.append("")
            self.in_span = True
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        if tag == "span":
            self.in_span = False

    def handle_data(self, data: str) -> None:
        if self.in_span:
            self.spans[-1] += data


def parse(page: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], f"unclosed tags: {parser.stack}"
    return parser


def test_report_is_balanced_html_with_one_span_per_token(engine: Engine) -> None:
    page = render_report(engine, DOCUMENT)
    assert page.startswith("<!DOCTYPE html>")
    parsed = parse(page)
    words = engine.score(DOCUMENT).words
    assert len(parsed.spans) == len(words) > 10
    assert parsed.spans == [DOCUMENT[w.start : w.end] for w in words]


def test_report_escapes_the_document(engine: Engine) -> None:
    page = render_report(engine, DOCUMENT, title="<b>x</b>")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page or "&lt;" in page
    assert "script" not in parse(page).tags
    assert "<b>x</b>" not in page
    assert "&amp;" in page


def test_report_shows_the_checked_perplexity_and_oddities(engine: Engine) -> None:
    page = render_report(engine, DOCUMENT)
    checked = engine.check(DOCUMENT)
    assert f'<b class="ppl">{format_perplexity(checked.perplexity)}</b>' in page
    assert page.count('class="odd"') == len(checked.oddities)
    assert 'title="' in page and "bits" in page


def test_report_command_writes_the_page(db: Path, tmp_path: Path) -> None:
    doc = tmp_path / "doc.txt"
    doc.write_text(DOCUMENT, encoding="utf-8")
    out = tmp_path / "out.html"
    assert "perplexity" in ok("report", doc, "-o", out, "--db", db)
    parse(out.read_text(encoding="utf-8"))
    assert error_of("report", tmp_path / "nope.txt", "--db", db) == f"{tmp_path / 'nope.txt'}: no such file"
