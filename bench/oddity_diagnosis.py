"""Why planted errors are missed, on development data only: the errors `bench/oddity_tuning.py` plants in
WikiText-2 *valid* (1,500 sentences, 60 of each kind), followed through the check at the current defaults.

Stages: for each planted error, the edit that undoes it (the planted sentence against the original, with difflib)
is looked for where `Engine.check` would drop it:

- no candidate: no generator proposes it (a word outside the closed sets, a name after the gap...);
- names, numbers: it would change a name, number or unknown word, or one follows it (`editable`, the neighbour rule);
- unseen pair: it makes a pair of adjacent words the model's text never has;
- gated: nothing near it is surprising enough (`gate_bits`, `insertion_gate_bits`);
- below: its gain falls short of what its kind needs;
- enough: its gain reaches what it needs (flagged unless a better edit overlaps it).

Separation: how well a score tells the undoing edits from the other candidates of the same kind and operation
(substitution, insertion, deletion) in the untouched parts of the same sentences, with gates and thresholds set
aside (candidates as `bench/oddity_tuning.py` scores them, at open settings: low gates, no seen-pair filter): the
share of a kind's 60 planted errors whose undoing edit scores above the N-th best false candidate. Scores: the
n-gram's window gain as the check uses it (frequency-normalised; within one kind and operation the insertion and
deletion bits change no ranking); the same edit under Bryant and Briscoe's length normalisation (the change in the
sentence's mean log2-probability per token, so an insertion is credited and a deletion charged the sentence's mean
surprisal); with `--neural`, the blend's whole-sentence gain (of the candidates the n-gram gives at least -2 bits
of margin, as its screen would).

    python bench/oddity_diagnosis.py [--neural lsp_server/data/default-neural.pt] [--write]

`--write` replaces the "oddity-diagnosis" section of bench/RESULTS.md (development figures; the test figures are
`bench/evaluation.py`'s).
"""

from __future__ import annotations

import argparse
import difflib
import math
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, corpora_dir, fmt, markdown_table, require_files, section_text, write_section  # noqa: E402
from bench.evaluation import PLANTED_KINDS, SEED, build_oddity_data, clean_sentences  # noqa: E402
from bench.oddity_tuning import DEV_SIZES, OPEN, Scored, score_texts  # noqa: E402
from lm_core.corrections import KINDS, Edit, edits_at  # noqa: E402
from lm_core.metrics import surprisal_bits, to_bits  # noqa: E402
from lm_core.oddities import (  # noqa: E402
    OddityConfig,
    _pairs_seen,
    _plain_neighbour,
    _unigram_bits,
    _window,
    candidate_is_gated,
    score_windows,
)
from lsp_server.engine import Engine  # noqa: E402
from lsp_server.paths import seed_from_default_model  # noqa: E402

STAGES = ("no candidate", "names, numbers", "unseen pair", "gated", "below", "enough")
FALSE_COUNTS = (5, 10, 20, 40)
SCREEN_MARGIN = -2.0  # bits: the n-gram margin (gain less the insertion / deletion bits) a blend-scored candidate has


@dataclass
class Planted:
    """One planted error: its kind, the planted sentence's position in the dev set, and the edit that undoes it."""

    kind: str
    doc: int
    edit: Edit | None  # None: the planted sentence is not one sentence, or the difference not one edit


def operation(edit: Edit) -> str:
    removed = (edit.stop - edit.start) - len(edit.tokens)
    return "deletion" if removed > 0 else "insertion" if removed < 0 else "substitution"


def undoing_edit(planted: list[str], original: list[str]) -> Edit | None:
    """The edit (in the check's terms: an insertion replaces the token after the gap with (new, token)) that turns
    the planted tokens back into the original, if the difference is one edit."""
    ops = [
        op for op in difflib.SequenceMatcher(a=planted, b=original, autojunk=False).get_opcodes() if op[0] != "equal"
    ]
    if not ops:
        return None
    i1, i2 = min(op[1] for op in ops), max(op[2] for op in ops)
    j1, j2 = min(op[3] for op in ops), max(op[4] for op in ops)
    if i2 - i1 > 2:  # not one edit of the check's kinds
        return None
    if i1 == i2:  # an insertion before token i1
        return None if i1 >= len(planted) else Edit("", i1, i1 + 1, (*original[j1:j2], planted[i1]))
    if i2 == i1 + 1 and j1 == j2 and i2 < len(planted) and planted[i1] == planted[i2]:
        i1, i2 = i2, i2 + 1  # a doubled word: the check drops the second
    return Edit("", i1, i2, tuple(original[j1:j2]))


def planted_errors(engine: Engine, corpora: Path) -> tuple[list[str], list[Planted]]:
    (valid,) = require_files(corpora, ["wikitext-2/wiki.valid.tokens"])
    originals = clean_sentences(valid, DEV_SIZES.sentences)
    random.seed(SEED)
    data = build_oddity_data(valid, DEV_SIZES, engine.oddity_vocabulary().known)
    out = []
    for error in data.errors:
        sentences = engine._sentences(error.text)
        before = engine._sentences(originals[error.doc])
        edit = None
        if len(sentences) == 1 and len(before) == 1:
            edit = undoing_edit([t.norm for t in sentences[0]], [t.norm for t in before[0]])
        out.append(Planted(error.kind, error.doc, edit))
    return data.sentences, out


def stage_of(engine: Engine, text: str, edit: Edit | None, config: OddityConfig) -> tuple[str, float, float]:
    """Where the check drops the undoing edit, its gain (bits) and what it needs (bits)."""
    if edit is None:
        return "no candidate", math.nan, math.nan
    model, vocab = engine.ngram, engine.oddity_vocabulary()
    (sentence,) = engine._sentences(text)
    item = engine._sentence_input(sentence, model)
    tokens = list(item.tokens)
    proposed = [e for e in edits_at(tokens, edit.start, vocab, KINDS) if (e.stop, e.tokens) == (edit.stop, edit.tokens)]
    if not proposed:
        return "no candidate", math.nan, math.nan
    edit = proposed[0]
    start, stop = _window(model, tokens, edit)
    [new] = score_windows(model, [(tokens[:start], (*edit.tokens, *tokens[edit.stop : stop]))], engine._memo)
    gain = to_bits(new - math.fsum(item.logprobs[start:stop]))
    if len(edit.tokens) == 1 and edit.stop - edit.start == 1:
        unigram = _unigram_bits(model, engine._memo)
        gain -= config.frequency_weight * (unigram(edit.tokens[0]) - unigram(tokens[edit.start]))
    needed = config.needed(edit)
    changed = range(edit.start, edit.start) if operation(edit) == "insertion" else range(edit.start, edit.stop)
    bits = [surprisal_bits(lp) for lp in item.logprobs]
    if edit.kind not in ("confusion", "doubled", "misspelling"):
        if not all(item.editable[j] for j in changed) or not _plain_neighbour(
            tokens, item.skip, item.editable, edit.stop, vocab
        ):
            return "names, numbers", gain, needed
        if not _pairs_seen(tokens, edit, vocab):
            return "unseen pair", gain, needed
        if candidate_is_gated(tokens, edit, bits, config):
            return "gated", gain, needed
    return ("enough" if gain >= needed else "below"), gain, needed


def stage_table(rows: list[tuple[str, str, float, float]]) -> str:
    body = []
    for kind in PLANTED_KINDS:
        mine = [r for r in rows if r[0] == kind]
        stages = Counter(r[1] for r in mine)
        gains = [r[2] for r in mine if not math.isnan(r[2])]
        needs = [r[3] for r in mine if not math.isnan(r[3])]
        body.append(
            [
                kind,
                *(fmt(stages[s]) for s in STAGES),
                fmt(statistics.median(gains), 1) if gains else "-",
                fmt(statistics.median(needs), 1) if needs else "-",
            ]
        )
    return markdown_table(["planted kind", *STAGES, "median gain (bits)", "median needed (bits)"], body)


def length_normalised(gain: float, edit: Edit, bits: list[float]) -> float:
    """Bryant and Briscoe's comparison: the change in the sentence's mean log2-probability per token (bits per
    token) when `edit` (whose window gain is `gain` bits) is made; `bits` are the sentence's token surprisals."""
    n = len(bits)
    mean = sum(bits) / n
    added = len(edit.tokens) - (edit.stop - edit.start)
    return (gain - n * mean) / (n + added) + mean


def separation(engine: Engine, texts: list[str], planted: list[Planted], neural: Path | None) -> str:
    """Recall at N false candidates per planted kind and score (see the module docstring)."""
    scored = score_texts(engine, texts, OPEN)
    error_docs = {p.doc: p for p in planted}
    config = OddityConfig()
    scores: list[tuple[Scored, Edit, float, dict[str, float]]] = []
    for s in scored:
        for edit, (gain, _) in s.found:  # gain: the window gain, frequency-normalised
            values = {"n-gram": gain, "length-normalised": length_normalised(gain, edit, s.bits)}
            scores.append((s, edit, gain - size_bits(config, edit), values))
    if neural is not None:
        _add_blend_scores(engine, scores, neural)
    names = ["n-gram", "length-normalised", *(["blend"] if neural is not None else [])]
    true: dict[tuple[str, str], dict[int, dict[str, float]]] = defaultdict(dict)
    false: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for s, edit, _, values in scores:
        p = error_docs.get(s.doc)
        undoes = p is not None and p.edit is not None and (edit.start, edit.stop, edit.tokens) == (
            p.edit.start, p.edit.stop, p.edit.tokens,
        )  # fmt: skip
        key = (edit.kind, operation(edit))
        if undoes:
            true[(p.kind, *key)][p.doc] = values
        elif p is None or not _touches(s, edit, p):
            for name in names:
                if name in values:
                    false[(*key, name)].append(values[name])
    body = []
    for (kind, edit_kind, op), found in sorted(true.items(), key=lambda kv: (PLANTED_KINDS.index(kv[0][0]), kv[0])):
        if len(found) < 5:
            continue
        for name in names:
            falses = sorted(false[(edit_kind, op, name)], reverse=True)
            cells = []
            for n in FALSE_COUNTS:
                bar = falses[n] if n < len(falses) else -math.inf
                hits = sum(1 for v in found.values() if v.get(name, -math.inf) > bar)
                cells.append(pct_of(hits, 60))
            body.append([kind, f"{edit_kind} {op}", name, fmt(len(found)), fmt(len(falses)), *cells])
    header = ["planted kind", "edit", "score", "undoing edits scored", "false candidates",
              *(f"recall at {n} false %" for n in FALSE_COUNTS)]  # fmt: skip
    return markdown_table(header, body)


def _touches(s: Scored, edit: Edit, p: Planted) -> bool:
    """The candidate overlaps the planted error's tokens (neither an undoing edit nor a false candidate)."""
    if p.edit is None:
        return True
    return edit.start < p.edit.stop + 1 and p.edit.start - 1 < edit.stop


def _add_blend_scores(engine: Engine, scores: list, neural: Path) -> None:
    """The blend's whole-sentence gain (frequency-normalised as the check does, less the insertion / deletion bits)
    of every candidate the n-gram gives at least `SCREEN_MARGIN` bits of margin."""
    engine.attach_neural(neural)
    blend = engine.model
    sentences = {id(s): s for s, *_ in scores}
    order = list(sentences.values())
    flat = engine._blend_scores(blend, [list(s.norms) for s in order], {})
    logprobs, k = {}, 0
    for s in order:
        logprobs[id(s)] = flat[k : k + len(s.norms)]
        k += len(s.norms)
    jobs = [(n, s, edit) for n, (s, edit, margin, _) in enumerate(scores) if margin >= SCREEN_MARGIN]
    requests = [(list(s.norms[: edit.start]), (*edit.tokens, *s.norms[edit.stop :])) for _, s, edit in jobs]
    unigram = _unigram_bits(blend)
    config = OddityConfig()
    for (n, s, edit), new in zip(jobs, score_windows(blend, requests), strict=True):
        gain = to_bits(new - math.fsum(logprobs[id(s)][edit.start :]))
        if len(edit.tokens) == 1 and edit.stop - edit.start == 1:
            gain -= config.frequency_weight * (unigram(edit.tokens[0]) - unigram(s.norms[edit.start]))
        scores[n][3]["blend"] = gain


def size_bits(config: OddityConfig, edit: Edit) -> float:
    """The bits `config` adds to what `edit` needs for the tokens it adds or removes (insertion or deletion bits)."""
    return config.needed(edit) - config.threshold_bits - dict(config.kind_bits).get(edit.kind, 0.0)


def pct_of(part: int, whole: int) -> str:
    return fmt(100 * part / whole, 1) if whole else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", type=Path, default=None)
    parser.add_argument("--db", type=Path, default=Path("/tmp/nextword-oddity-diagnosis.db"))
    parser.add_argument("--neural", type=Path, default=None, help="a checkpoint: the blend's separation too")
    parser.add_argument("--write", action="store_true", help="replace the oddity-diagnosis section of RESULTS.md")
    args = parser.parse_args()
    start = time.perf_counter()
    corpora = corpora_dir(args.corpora)
    if not args.db.exists():
        seed_from_default_model(args.db)
    engine = Engine.open(args.db)
    texts, planted = planted_errors(engine, corpora)
    config = OddityConfig()
    rows = [(p.kind, *stage_of(engine, texts[p.doc], p.edit, config)) for p in planted]
    stages = stage_table(rows)
    print(stages, flush=True)
    separated = separation(engine, texts, planted, args.neural)
    print(separated)
    engine.close()
    if args.write:
        body = "\n\n".join(
            [
                "Development data only: the errors `bench/oddity_tuning.py` plants in WikiText-2 *valid* (1,500 "
                "sentences, 60 of each kind), shipped n-gram model, current defaults. Where the check drops the edit "
                "that undoes each error (see the script's docstring for the stages):",
                stages,
                "How well each score separates the undoing edits from the other candidates of the same kind and "
                "operation in the untouched parts of the sentences (gates and thresholds aside): the share of a "
                "kind's 60 errors whose undoing edit scores above the N-th best false candidate.",
                separated,
            ]
        )
        title = "Why planted errors are missed, on development data (`bench/oddity_diagnosis.py`)"
        write_section(RESULTS, "oddity-diagnosis", section_text(title, body, time.perf_counter() - start))


if __name__ == "__main__":
    main()
