"""A self-contained HTML surprisal report of one document (`nextword report FILE -o report.html`).

Each scored token is one `<span>` coloured by its surprisal in bits (-log2 P(token | context)), green for
predictable through red for surprising; hovering shows the surprisal and the model's likelier words (the `title`
attribute, so no script is needed). Odd words (`Engine.check`) are underlined and listed with their alternatives
in a summary beside the document's perplexity. Inline CSS only; every piece of text goes through `html.escape`.
"""

from __future__ import annotations

import html
import math

from lm_core.vocab import BOS
from lsp_server.engine import DocumentCheck, Engine

BANDS: tuple[tuple[float, str], ...] = (
    (2.0, "#c8f0c8"),
    (4.0, "#e2f4b8"),
    (6.0, "#fbf3b0"),
    (8.0, "#fde0a8"),
    (11.0, "#fbc4a0"),
    (14.0, "#f7a199"),
    (math.inf, "#ee7d86"),
)
"""Surprisal bands in bits (upper bound, exclusive) and their background colours."""

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; line-height: 1.6; color: #222; }
.doc { white-space: pre-wrap; font-family: Georgia, serif; font-size: 1.05em; border: 1px solid #ddd;
       padding: 1em; border-radius: 4px; }
.doc span { border-radius: 3px; padding: 0 1px; cursor: help; }
.doc span.odd { text-decoration: underline wavy #b00; text-underline-offset: 3px; }
.legend i { display: inline-block; padding: 0 0.6em; margin-right: 0.3em; font-style: normal;
            border-radius: 3px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; }
"""


def colour(bits: float) -> str:
    """The background colour of a token with this surprisal (bits)."""
    for upper, shade in BANDS:
        if bits < upper:
            return shade
    return BANDS[-1][1]


def format_perplexity(value: float) -> str:
    """Perplexity as the report prints it: two decimals with thousands separators, "n/a" when there is none."""
    return "n/a" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:,.2f}")


def _bits(bits: float) -> str:
    return "inf" if math.isinf(bits) else f"{bits:.1f}"


def _alternatives(alternatives: tuple[tuple[str, float], ...]) -> str:
    return ", ".join(f"{a or '(delete)'} (+{gain:.1f} bits)" for a, gain in alternatives)


def render_report(
    engine: Engine,
    text: str,
    title: str = "nextword report",
    alternatives: int = 3,
    checked: DocumentCheck | None = None,
) -> str:
    """The HTML page for `text` under `engine`'s model; `alternatives` likelier words per token in its tooltip;
    `checked`: `engine.check(text)` when the caller has it already (else it is checked here)."""
    scored = engine.score(text)
    checked = checked if checked is not None else engine.check(text)
    odd_at = {(o.start, o.end): o for o in checked.oddities}
    esc = html.escape
    parts: list[str] = []
    pos = 0
    for w in scored.words:
        parts.append(esc(text[pos : w.start]))
        start = not w.context or w.context[-1] == BOS
        likelier = [s.word for s in engine.next_words(w.context, alternatives + 1, "", start) if s.word != w.word]
        tip = f"{_bits(w.surprisal)} bits"
        if likelier:
            tip += "; likelier: " + ", ".join(likelier[:alternatives])
        classes = ""
        odd = odd_at.get((w.start, w.end))
        if odd is not None:
            classes = ' class="odd"'
            tip += "; odd, try: " + ", ".join(a or "(delete)" for a, _ in odd.alternatives)
        parts.append(
            f'<span{classes} style="background:{colour(w.surprisal)}" title="{esc(tip)}">'
            f"{esc(text[w.start : w.end])}</span>"
        )
        pos = w.end
    parts.append(esc(text[pos:]))
    legend = " ".join(
        f'<i style="background:{shade}">{"&lt; " + format(upper, "g") if math.isfinite(upper) else "more"}</i>'
        for upper, shade in BANDS
    )
    rows = "".join(
        f"<tr><td>{text.count(chr(10), 0, o.start) + 1}</td><td>{esc(o.word)}</td><td>{_bits(o.surprisal)}</td>"
        f"<td>{esc(_alternatives(o.alternatives))}</td></tr>"
        for o in checked.oddities
    )
    odd_table = (
        f"<table><tr><th>line</th><th>word</th><th>surprisal (bits)</th><th>alternatives</th></tr>{rows}</table>"
        if rows
        else "<p>No odd words.</p>"
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title><style>{CSS}</style></head>\n'
        f"<body><h1>{esc(title)}</h1>\n"
        f'<p class="summary">Perplexity <b class="ppl">{format_perplexity(checked.perplexity)}</b> over '
        f"{checked.tokens:,} tokens (sentence ends included); {len(scored.words):,} tokens shown; "
        f"{len(checked.oddities):,} odd word(s).</p>\n"
        f'<p class="legend">Surprisal, bits (-log2 P): {legend} &#8212; hover a word for its surprisal and the '
        "likelier words; odd words are underlined.</p>\n"
        f'<div class="doc">{"".join(parts)}</div>\n'
        f"<h2>Odd words</h2>\n{odd_table}\n</body></html>\n"
    )
