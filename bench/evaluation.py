"""Predictive-text evaluation: next-word accuracy, keystroke savings, personal adaptation, oddity detection (beside
Harper), with charts (PNG and SVG, matplotlib: `pip install -e '.[bench]'`) under bench/plots/.

(a) Top-1/3/5 next-word accuracy of KN5 on PTB and WikiText-2 test (5-gram pretokenized stores built from train,
    as bench/perplexity.py does), over word targets only (`lm_core.evaluation`; `<unk>` targets count as misses).
(b) Keystroke savings (Presage's KSR) for k = 1, 3, 5 on a held-out PTB test slice with the PTB KN5 model.
(c) Personal adaptation: the shipped default model (WikiText-2, prose mode) seeded into a temporary store, then
    a "user's" text learned (the first 80 % of Austen's three Gutenberg books; separately, Reuters train), with
    accuracy and KSR on the rest (Austen's last 20 %; Reuters test) before and after learning.
(d) Oddity detection: real-word errors planted (fixed seed) into WikiText-2 test sentences (detokenized prose),
    `Engine.check` over every sentence, precision / recall / F1 at the default threshold (7 bits) and a
    precision-recall curve over the threshold; Harper (`harper-py`) on the same sentences, side by side.

    python bench/evaluation.py            # the full run: about 10 minutes on 2 cores
    python bench/evaluation.py --quick    # small slices, a smoke test (nothing written unless --results)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    base_parser,
    corpora_dir,
    fmt,
    machine,
    markdown_table,
    require_files,
    results_path,
    section_text,
    step,
    write_section,
)
from lm_core import tokenize  # noqa: E402
from lm_core.evaluation import (  # noqa: E402
    KeystrokeResult,
    Suggest,
    accuracy_from_ranks,
    f1,
    keystroke_savings,
    model_suggest,
    precision_recall,
    word_ranks,
)
from lm_core.model import LanguageModel  # noqa: E402
from lm_core.ngram import NgramModel  # noqa: E402
from lm_core.oddities import CONFUSIONS, VALID_DOUBLES, OddityConfig  # noqa: E402
from lm_core.tokenize import pretokenized_sentences  # noqa: E402
from lm_core.vocab import BOS, EOS, UNK  # noqa: E402
from lsp_server.default_model import UNK_MARKER, detokenize_wikitext  # noqa: E402
from lsp_server.engine import Engine  # noqa: E402
from lsp_server.paths import DEFAULT_NEURAL_MODEL, seed_from_default_model  # noqa: E402
from store.countstore import CountStore  # noqa: E402
from store.sqlite_counts import SqliteCounts  # noqa: E402

SECTION = "evaluation"
PLOTS = ROOT / "bench" / "plots"
KS = (1, 3, 5)
SEED = 20261129
_SPACE_BEFORE = re.compile(r" ([,.;:!?%)\]])")  # WikiText's "word , word" as prose
_SPACE_AFTER = re.compile(r"([(\[$]) ")
HARD_ET_AL = {"n-gram": (13.0, 22.1), "LSTM": (16.4, 27.0)}  # Gboard top-1 / top-3 recall, %, their data
THRESHOLDS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 14.0, 16.0, 20.0)
ARTICLES = ("the", "a", "an")
NOT_WORD_LEVEL = frozenset({"Spelling", "Formatting", "Punctuation"})  # Harper lint kinds left out of its 2nd row


@dataclass
class Sizes:
    accuracy_words: int  # word targets per corpus for (a)
    ksr_words: int  # words typed for (b) and (c)
    adapt_words: int  # accuracy targets for (c)
    sentences: int  # sentences for (d)
    errors: int  # planted errors for (d)


FULL = Sizes(10**9, 5_000, 10_000, 1_500, 300)  # accuracy: the whole test sets
QUICK = Sizes(1_000, 150, 300, 150, 30)


# --- helpers ----------------------------------------------------------------------------------------------------------
def slice_sentences(sentences: list[list[str]], words: int) -> list[list[str]]:
    """Whole sentences from the start until at least `words` word tokens."""
    kept, n = [], 0
    for sentence in sentences:
        if n >= words:
            break
        kept.append(sentence)
        n += sum(1 for t in sentence if t not in (EOS, BOS))
    return kept


def ksr_by_sentence(suggest: Suggest, sentences: Sequence[Sequence[str]]) -> dict[int, KeystrokeResult]:
    """Keystroke savings summed over sentences (each typed from a fresh sentence start)."""
    totals = {k: [0, 0, 0, 0, 0] for k in KS}
    for sentence in sentences:
        words = [t for t in sentence if t != EOS]
        if not words:
            continue
        for k, r in keystroke_savings(suggest, words, KS).items():
            for i, v in enumerate((r.typed, r.selections, r.without, r.words, r.taken)):
                totals[k][i] += v
    out = {}
    for k, (typed, sel, without, words, taken) in totals.items():
        out[k] = KeystrokeResult(
            k, 1 - (typed + sel) / without if without else math.nan, typed, sel, without, words, taken
        )
    return out


def engine_suggest(engine: Engine) -> Suggest:
    """Suggestions as the editor shows them: the Engine's display casing, capitalised at a sentence start."""
    width = engine.context_width

    def suggest(context: Sequence[str], prefix: str, k: int) -> list[str]:
        history = (BOS, *(w.casefold() for w in context))
        ctx = history[max(0, len(history) - width) :] if width > 0 else ()
        return [s.word for s in engine.next_words(ctx, k, prefix, sentence_start=not context)]

    return suggest


def pct(x: float) -> str:
    return fmt(100 * x, 1)


# --- (a) and (b): accuracy and keystroke savings on PTB and WikiText-2 ------------------------------------------------
@dataclass
class AccuracyRow:
    corpus: str
    model: str
    targets: int
    unk_share: float
    acc: dict[int, float]
    seconds: float


def accuracy_row(corpus: str, label: str, model: LanguageModel, tokens: list[str]) -> AccuracyRow:
    start = time.perf_counter()
    ranks = word_ranks(model, tokens, max(KS))
    unk = sum(1 for t in tokens if t == UNK) / len(ranks) if ranks else math.nan
    return AccuracyRow(corpus, label, len(ranks), unk, accuracy_from_ranks(ranks, KS), time.perf_counter() - start)


def neural_rows(path: Path, corpus: str, ngram: NgramModel, tokens: list[str]) -> list[AccuracyRow]:
    """The neural model and its blend with KN5 (the checkpoint's blend weight, else 0.3)."""
    import torch

    from lm_core.blend import Blend
    from lm_core.neural import NeuralLM, load_checkpoint

    torch.set_num_threads(1)
    lm = NeuralLM.load(path)
    stored = load_checkpoint(path).metrics.get("blend_weight")
    weight = float(stored) if isinstance(stored, int | float) else 0.3
    blend = Blend([ngram, lm], [1 - weight, weight])
    return [
        accuracy_row(corpus, f"neural ({path.name})", lm, tokens),
        accuracy_row(corpus, f"blend (KN5 x {1 - weight:.2f} + neural x {weight:.2f})", blend, tokens),
    ]


def run_accuracy(
    corpora: Path, sizes: Sizes, workdir: Path, neural: dict[str, Path]
) -> tuple[list[AccuracyRow], dict[int, KeystrokeResult], list[str]]:
    rows: list[AccuracyRow] = []
    notes: list[str] = []
    ksr: dict[int, KeystrokeResult] = {}
    for name, train, test in (
        ("PTB", "ptb/ptb.train.txt", "ptb/ptb.test.txt"),
        ("WikiText-2", "wikitext-2/wiki.train.tokens", "wikitext-2/wiki.test.tokens"),
    ):
        train_path, test_path = require_files(corpora, [train, test])
        with step(f"{name}: building a 5-gram pretokenized store") as sw:
            store = CountStore.open(workdir / f"{name}.db", order=5, tokenizer="pretokenized", create=True)
            store.build([train_path])
        notes.append(f"{name} 5-gram store from {train_path.name} built in {sw.seconds:.0f} s")
        counts = SqliteCounts(store)
        model = NgramModel(counts)
        sentences = [s for s in pretokenized_sentences(test_path.read_text(encoding="utf-8")) if len(s) > 1]
        tokens = [t for s in slice_sentences(sentences, sizes.accuracy_words) for t in s]
        with step(f"{name}: KN5 accuracy"):
            rows.append(accuracy_row(name, "KN5", model, tokens))
        if name in neural:
            with step(f"{name}: neural and blend accuracy"):
                rows += neural_rows(neural[name], name, model, tokens)
        if name == "PTB":
            held = slice_sentences(sentences[len(sentences) // 2 :], sizes.ksr_words)
            with step(f"PTB: keystroke savings on {sum(len(s) - 1 for s in held):,} words"):
                ksr = ksr_by_sentence(model_suggest(model), held)
        close = getattr(counts, "close", None)
        if close:
            close()
        store.close()
    return rows, ksr, notes


# --- (c) personal adaptation -----------------------------------------------------------------------------------------
@dataclass
class AdaptRow:
    user: str
    stage: str
    targets: int
    acc: dict[int, float]
    ksr: dict[int, KeystrokeResult]
    learn_s: float = math.nan


def prose_slice(text: str, words: int) -> list[list[tokenize.Token]]:
    out, n = [], 0
    for sentence in tokenize.sentences(text):
        if n >= words:
            break
        if len(sentence) > 2:
            out.append(sentence)
            n += sum(1 for t in sentence if t.kind in ("word", "number"))
    return out


def evaluate_engine(
    engine: Engine, held: str, sizes: Sizes
) -> tuple[int, dict[int, float], dict[int, KeystrokeResult]]:
    acc_sentences = prose_slice(held, sizes.adapt_words)
    tokens = [t.norm for s in acc_sentences for t in s]
    ranks = word_ranks(engine.model, tokens, max(KS))
    ksr_sentences = [[t.surface for t in s if t.kind != "eos"] for s in prose_slice(held, sizes.ksr_words)]
    ksr = ksr_by_sentence(engine_suggest(engine), ksr_sentences)
    return len(ranks), accuracy_from_ranks(ranks, KS), ksr


def run_adaptation(
    corpora: Path, sizes: Sizes, workdir: Path, retrain_minutes: float
) -> tuple[list[AdaptRow], list[str]]:
    austen = require_files(corpora, [f"gutenberg/austen-{b}.txt" for b in ("emma", "persuasion", "sense")])
    reuters = require_files(corpora, ["reuters/reuters.train.txt", "reuters/reuters.test.txt"])
    text = "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in austen)
    cut = text.rfind("\n\n", 0, int(len(text) * 0.8))
    users = [
        ("Austen (first 80 % of 3 books)", text[:cut], text[cut:]),
        ("Reuters (train -> test)", reuters[0].read_text(encoding="utf-8", errors="replace"),
         reuters[1].read_text(encoding="utf-8", errors="replace")),
    ]  # fmt: skip
    if sizes is QUICK:
        users = [(u, learn[: len(learn) // 10], held) for u, learn, held in users]
    neural = DEFAULT_NEURAL_MODEL if DEFAULT_NEURAL_MODEL.exists() and retrain_minutes > 0 else None
    rows: list[AdaptRow] = []
    notes = []
    for user, learn, held in users:
        db = workdir / f"user-{len(rows)}.db"
        if not seed_from_default_model(db):
            sys.exit("error: the shipped default model (lsp_server/data/default-ngram.db.xz) is missing")
        engine = Engine.open(db)
        with step(f"{user}: before learning"):
            rows.append(AdaptRow(user, "default model", *evaluate_engine(engine, held, sizes)))
        if neural is not None:
            engine.attach_neural(neural)
            with step(f"{user}: before learning, blend"):
                rows.append(AdaptRow(user, "default model + shipped LSTM", *evaluate_engine(engine, held, sizes)))
            engine.detach_neural()
        with step(f"{user}: learning {len(learn.split()):,} words") as sw:
            engine.learn("user", learn)
        with step(f"{user}: after learning"):
            rows.append(AdaptRow(user, "after learning", *evaluate_engine(engine, held, sizes), learn_s=sw.seconds))
        notes.append(f"{user}: learned {len(learn.split()):,} whitespace words in {sw.seconds:.0f} s")
        if neural is not None:
            rows += adapt_neural(engine, user, held, sizes, neural, workdir / f"user-{len(rows)}.pt", retrain_minutes)
            notes.append(f"{user}: {rows[-1].stage}")
        engine.close()
        db.unlink(missing_ok=True)
    return rows, notes


def adapt_neural(
    engine: Engine, user: str, held: str, sizes: Sizes, shipped: Path, output: Path, minutes: float
) -> list[AdaptRow]:
    """The learned store blended with the shipped LSTM, then with the LSTM fine-tuned on the learned text (what
    nextword.retrainNeural does, on a time budget)."""
    import torch

    from lm_core import neural, training

    engine.attach_neural(shipped)
    with step(f"{user}: after learning, blend with the shipped LSTM"):
        rows = [AdaptRow(user, "after learning + shipped LSTM", *evaluate_engine(engine, held, sizes))]
    torch.set_num_threads(2)
    sentences = engine.counts_store.learned_sentences()
    config = training.TrainConfig(epochs=20, max_minutes=minutes, log_every=100)
    with step(f"{user}: fine-tuning the LSTM for {minutes:g} min") as sw:
        result = training.train_on_sentences(sentences, output, neural.load_checkpoint(shipped), config)
    torch.set_num_threads(1)
    engine.attach_neural(output)
    with step(f"{user}: after neural retraining"):
        rows.append(AdaptRow(user, "after learning + LSTM retrained", *evaluate_engine(engine, held, sizes)))
    engine.detach_neural()
    rows[-1].learn_s = sw.seconds
    rows[
        -1
    ].stage += (
        f" ({result.epochs_run} epoch(s), {sw.seconds:.0f} s, valid perplexity {result.best_valid_perplexity:.1f})"
    )
    return rows


# --- (d) oddity detection --------------------------------------------------------------------------------------------
@dataclass
class Planted:
    doc: int
    kind: str
    text: str  # the sentence as changed
    span: tuple[int, int]  # where the error is (characters of `text`)
    detail: str


@dataclass
class OddityData:
    sentences: list[str]
    errors: list[Planted] = field(default_factory=list)


def clean_sentences(path: Path, count: int) -> list[str]:
    """Sentences of WikiText-2 test as prose (8 to 40 words, no <unk>, no headings), in order."""
    out: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.strip().startswith("="):
            continue
        prose = detokenize_wikitext(line)
        for sentence in tokenize.sentences(prose):
            words = [t for t in sentence if t.kind == "word"]
            text = _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", prose[sentence[0].start : sentence[-1].end]))
            if 8 <= len(words) <= 40 and UNK_MARKER not in text and "\n" not in text:
                out.append(text)
                if len(out) >= count:
                    return out
    return out


def _match_case(word: str, like: str) -> str:
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def plant(text: str, kind: str, rng: random.Random) -> tuple[str, tuple[int, int], str] | None:
    """Plant one error of `kind` in `text`: the new text, the error's character span in it, a description."""
    words = [t for s in tokenize.sentences(text) for t in s if t.kind == "word"]
    if kind == "confusion":
        options = [t for t in words if t.norm in CONFUSIONS]
        if not options:
            return None
        t = rng.choice(options)
        new = _match_case(rng.choice(CONFUSIONS[t.norm]), t.surface)
        return text[: t.start] + new + text[t.end :], (t.start, t.start + len(new)), f"{t.surface} -> {new}"
    if kind == "doubled":
        options = [t for t in words if t.norm not in VALID_DOUBLES and t.surface.isalpha()]
        if not options:
            return None
        t = rng.choice(options)
        new = text[: t.end] + " " + t.surface + text[t.end :]
        return new, (t.start, t.end + 1 + len(t.surface)), f"{t.surface} {t.surface}"
    if kind == "dropped article":
        options = [i for i, t in enumerate(words) if t.norm in ARTICLES and 0 < i < len(words) - 1]
        if not options:
            return None
        i = rng.choice(options)
        t, before, after = words[i], words[i - 1], words[i + 1]
        new = text[: t.start] + text[after.start :]
        gap_end = after.end - (after.start - t.start)
        return new, (before.start, gap_end), f"dropped '{t.surface}'"
    if kind == "swapped":
        pairs = [
            (a, b)
            for a, b in itertools.pairwise(words)
            if a.end + 1 == b.start and a.surface.isalpha() and b.surface.isalpha() and a.norm != b.norm
            and a.surface.islower() and b.surface.islower()
        ]  # fmt: skip
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        new = text[: a.start] + b.surface + " " + a.surface + text[b.end :]
        return new, (a.start, b.end), f"{a.surface} {b.surface} -> {b.surface} {a.surface}"
    raise ValueError(kind)


def build_oddity_data(path: Path, sizes: Sizes) -> OddityData:
    rng = random.Random(SEED)
    data = OddityData(clean_sentences(path, sizes.sentences))
    kinds = ["confusion"] * 2 + ["doubled", "dropped article", "swapped"]  # 40 % confusions, 20 % each other kind
    order = list(range(len(data.sentences)))
    rng.shuffle(order)
    n = 0
    for doc in order:
        if len(data.errors) >= sizes.errors:
            break
        kind = kinds[n % len(kinds)]
        planted = plant(data.sentences[doc], kind, rng)
        if planted is None:
            continue
        n += 1
        data.sentences[doc] = planted[0]
        data.errors.append(Planted(doc, kind, planted[0], planted[1], planted[2]))
    return data


@dataclass
class DetectorResult:
    name: str
    flags: list[tuple[tuple[int, int, int], float]]  # ((doc, start, end), score) per flagged word
    seconds: float
    note: str = ""

    def at(self, threshold: float) -> list[tuple[int, int, int]]:
        return [span for span, score in self.flags if score >= threshold]


def run_ours(engine: Engine, data: OddityData) -> DetectorResult:
    """Engine.check at threshold 0; each flag scored by its best alternative's gain (bits), so flagging the words
    scored >= t is exactly Engine.check at threshold t (the model's own guesses are off by default)."""
    config = OddityConfig(threshold_bits=0.0)
    start = time.perf_counter()
    flags = []
    for doc, text in enumerate(data.sentences):
        for odd in engine.check(text, config).oddities:
            flags.append(((doc, odd.start, odd.end), odd.alternatives[0][1]))
    return DetectorResult("nextword (Engine.check, shipped model)", flags, time.perf_counter() - start)


def run_harper(data: OddityData, exclude_spelling: bool) -> DetectorResult | str:
    try:
        import harper  # type: ignore[import-not-found]
    except ImportError as exc:
        return f"harper-py is not installed ({exc}); `.venv/bin/pip install harper-py`"
    linter = harper.Linter()
    start = time.perf_counter()
    flags = []
    kinds: Counter[str] = Counter()
    for doc, text in enumerate(data.sentences):
        for lint in linter.lint(text):
            if exclude_spelling and lint.lint_kind in NOT_WORD_LEVEL:
                continue
            kinds[lint.lint_kind] += 1
            flags.append(((doc, lint.span.start, lint.span.end), 1.0))
    name = "Harper (harper-py, word-level lints)" if exclude_spelling else "Harper (harper-py, all default lints)"
    note = f"{name}: lints by kind: " + ", ".join(f"{k} {v:,}" for k, v in kinds.most_common())
    return DetectorResult(name, flags, time.perf_counter() - start, note)


def harper_version() -> str:
    from bench.common import package_version

    return package_version("harper-py") or "not installed"


# --- the report -------------------------------------------------------------------------------------------------------
def accuracy_table(rows: list[AccuracyRow], neural_given: bool) -> str:
    body = [
        [r.corpus, r.model, fmt(r.targets), pct(r.unk_share), *(pct(r.acc[k]) for k in KS), fmt(r.seconds, 0)]
        for r in rows
    ]
    if not neural_given:
        for corpus in dict.fromkeys(r.corpus for r in rows):
            body += [[corpus, "neural", "-", "-", *["n/a (no neural checkpoint given)"] * len(KS), "-"]]
            body += [[corpus, "blend", "-", "-", *["n/a (no neural checkpoint given)"] * len(KS), "-"]]
    header = ["Corpus", "Model", "Word targets", "<unk> targets %", *(f"top-{k} %" for k in KS), "s"]
    return markdown_table(header, body)


def ksr_table(ksr: dict[int, KeystrokeResult]) -> str:
    body = [
        [str(k), pct(r.ksr), pct(charged(r)), fmt(r.words), fmt(r.taken), fmt(r.typed), fmt(r.selections),
         fmt(r.without)]
        for k, r in ksr.items()
    ]  # fmt: skip
    header = ["k shown", "KSR %", "KSR % if the space after a selection is typed too", "words",
              "taken from suggestions", "keys typed", "selections", "keys without"]  # fmt: skip
    return markdown_table(header, body)


def charged(r: KeystrokeResult) -> float:
    """KSR had the person typed the space after a taken suggestion too (`auto_space=False`)."""
    return 1 - (r.typed + 2 * r.selections) / r.without if r.without else math.nan


def adaptation_table(rows: list[AdaptRow]) -> str:
    body = [
        [r.user, r.stage, fmt(r.targets), *(pct(r.acc[k]) for k in KS), *(pct(r.ksr[k].ksr) for k in KS),
         pct(charged(r.ksr[3])), fmt(r.ksr[3].words)]
        for r in rows
    ]  # fmt: skip
    header = ["User text", "Model", "Word targets", *(f"top-{k} %" for k in KS), *(f"KSR k={k} %" for k in KS),
              "KSR k=3 %, space after a selection typed", "KSR words"]  # fmt: skip
    return markdown_table(header, body)


def oddity_tables(data: OddityData, results: list[DetectorResult], harper_notes: list[str]) -> tuple[str, str]:
    truth = [(e.doc, *e.span) for e in data.errors]
    body = []
    for r in results:
        t = OddityConfig().threshold_bits if r.name.startswith("nextword") else 0.0
        predicted = r.at(t)
        p, rc = precision_recall(predicted, truth)
        per_kind = []
        for kind in ("confusion", "doubled", "dropped article", "swapped"):
            kt = [(e.doc, *e.span) for e in data.errors if e.kind == kind]
            per_kind.append(pct(precision_recall(predicted, kt)[1]) if kt else "-")
        label = f"{r.name}, {t:g} bits" if r.name.startswith("nextword") else r.name
        body.append([label, fmt(len(predicted)), pct(p), pct(rc), pct(f1(p, rc)), *per_kind, fmt(r.seconds, 1)])
    for note in harper_notes:
        body.append([f"Harper: {note}", *["-"] * 9])
    header = ["Detector", "flags", "precision %", "recall %", "F1 %", "recall: confusion %", "doubled %",
              "dropped article %", "swapped %", "s"]  # fmt: skip
    main = markdown_table(header, body)
    ours = results[0]
    curve = []
    for t in THRESHOLDS:
        p, rc = precision_recall(ours.at(t), truth)
        curve.append([fmt(t, 0), fmt(len(ours.at(t))), pct(p), pct(rc), pct(f1(p, rc))])
    return main, markdown_table(["threshold bits", "flags", "precision %", "recall %", "F1 %"], curve)


# --- plots (lsp_server.plots, matplotlib) ----------------------------------------------------------------------------
Series = list[tuple[str, list[tuple[float, float]]]]


@dataclass
class Charts:
    """What the three charts show, in percent: accuracy and KSR against k, adaptation by stage (with the stages'
    names), and oddity precision against recall (nextword's curve over the threshold, Harper's single points).
    bench/replot.py fills it from the tables in RESULTS.md."""

    accuracy_ksr: Series = field(default_factory=list)
    adaptation: Series = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    oddity: Series = field(default_factory=list)


STAGE_NAMES = {
    "default model": "default",
    "default model + shipped LSTM": "default\n+ LSTM",
    "after learning": "learned",
    "after learning + shipped LSTM": "learned\n+ LSTM",
    "after learning + LSTM retrained": "learned\n+ LSTM retrained",
}


def stage_name(stage: str) -> str:
    """A stage's short name for the chart's axis ("after learning + LSTM retrained (1 epoch(s), ...)" included)."""
    return STAGE_NAMES.get(stage.split(" (")[0], stage)


def charts_of(
    acc: list[AccuracyRow], ksr: dict[int, float], adapt: list[AdaptRow], pr: list[tuple[float, float]],
    harper_points: list[tuple[str, float, float]],
) -> Charts:  # fmt: skip
    """The charts' series from a run's rows (fractions in, percent out); `ksr` maps k to the KSR fraction."""
    charts = Charts()
    charts.accuracy_ksr = [(f"{r.corpus} {r.model}: top-k accuracy", [(k, 100 * r.acc[k]) for k in KS]) for r in acc]
    if ksr:
        charts.accuracy_ksr.append(("PTB KN5: keystroke savings", [(k, 100 * v) for k, v in sorted(ksr.items())]))
    for user in dict.fromkeys(r.user for r in adapt):
        mine = [r for r in adapt if r.user == user]
        short = user.split(" ")[0]
        charts.adaptation.append((f"{short}: KSR, 3 shown", [(i, 100 * r.ksr[3].ksr) for i, r in enumerate(mine)]))
        charts.adaptation.append((f"{short}: top-3 accuracy", [(i, 100 * r.acc[3]) for i, r in enumerate(mine)]))
        if len(mine) > len(charts.stages):
            charts.stages = [stage_name(r.stage) for r in mine]
    if pr:
        charts.oddity.append(("nextword, threshold 0-20 bits", [(100 * r, 100 * p) for p, r in pr]))
    charts.oddity += [(name, [(100 * r, 100 * p)]) for name, p, r in harper_points]
    return charts


def make_plots(charts: Charts, out: Path) -> list[Path]:
    """The charts that have data, each as PNG and SVG under `out`; returns the PNGs' paths."""
    from lsp_server import plots

    drawn: list[Path] = []

    def draw(name: str, series: Series, title: str, x_label: str, y_label: str, **axes: Any) -> None:
        for suffix in (".svg", ".png"):
            path = plots.line_chart(series, out / f"{name}{suffix}", title, x_label, y_label, **axes)
        drawn.append(path)

    if charts.accuracy_ksr:
        title = "Next-word accuracy and keystroke savings against suggestions shown"
        draw("accuracy_ksr_vs_k", charts.accuracy_ksr, title, "k: suggestions shown", "%", x_ticks=KS)
    if charts.adaptation:
        title = "Personal adaptation: the shipped model, then the user's text learned"
        stages = {"x_ticks": range(len(charts.stages)), "x_tick_labels": charts.stages}
        draw("adaptation", charts.adaptation, title, "stage", "%", **stages)
    if charts.oddity:
        title = "Oddity detection on planted real-word errors"
        draw("oddity_pr_curve", charts.oddity, title, "recall %", "precision %", x_ticks=(0, 20, 40, 60, 80, 100))
    return drawn


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument(
        "--neural",
        action="append",
        default=[],
        metavar="CORPUS=CHECKPOINT",
        help="a neural checkpoint for PTB or WikiText-2 (e.g. PTB=ptb-lstm.pt); adds neural and blend rows",
    )
    parser.add_argument(
        "--plots", type=Path, default=None, help=f"where the charts go (default {PLOTS}; quick: a temp dir)"
    )
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: accuracy,adaptation,oddity")
    parser.add_argument(
        "--section", default=SECTION, help=f"the results section to write (default {SECTION}; others for partial runs)"
    )
    parser.add_argument(
        "--accuracy-words",
        type=int,
        default=None,
        help="next-word accuracy on the first N words (whole lines) of each test set (default: all)",
    )
    parser.add_argument(
        "--retrain-minutes",
        type=float,
        default=5.0,
        help="adaptation: fine-tune the shipped LSTM on the user's text this long (0: no neural rows)",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.accuracy_words is not None:
        sizes = dataclasses.replace(sizes, accuracy_words=args.accuracy_words)
    corpora = corpora_dir(args.corpora)
    skip = set(filter(None, args.skip.split(",")))
    neural = {}
    for item in args.neural:
        corpus, _, path = item.partition("=")
        neural[corpus] = Path(path)
    print(f"machine: {machine(['harper-py'])}", flush=True)
    start = time.perf_counter()
    acc: list[AccuracyRow] = []
    ksr: dict[int, KeystrokeResult] = {}
    adapt: list[AdaptRow] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nextword-bench-eval-") as tmp:
        work = Path(tmp)
        if "accuracy" not in skip:
            acc, ksr, more = run_accuracy(corpora, sizes, work, neural)
            notes += more
        if "adaptation" not in skip:
            adapt, more = run_adaptation(corpora, sizes, work, args.retrain_minutes)
            notes += more
        results: list[DetectorResult] = []
        harper_notes: list[str] = []
        data = None
        if "oddity" not in skip:
            (wiki_test,) = require_files(corpora, ["wikitext-2/wiki.test.tokens"])
            data = build_oddity_data(wiki_test, sizes)
            db = work / "odd.db"
            seed_from_default_model(db)
            engine = Engine.open(db)
            with step(f"oddities: Engine.check over {len(data.sentences):,} sentences"):
                results.append(run_ours(engine, data))
            if DEFAULT_NEURAL_MODEL.exists():  # what the server checks with by default: the blend
                engine.attach_neural(DEFAULT_NEURAL_MODEL)
                with step(f"oddities: Engine.check with the shipped LSTM over {len(data.sentences):,} sentences"):
                    blended = run_ours(engine, data)
                results.append(dataclasses.replace(blended, name="nextword (Engine.check, shipped model + LSTM)"))
            engine.close()
            for exclude in (False, True):
                with step("oddities: Harper"):
                    h = run_harper(data, exclude)
                if isinstance(h, str):
                    harper_notes = [h]
                    break
                results.append(h)
                notes.append(h.note)
    runtime = time.perf_counter() - start
    out_dir = args.plots or (Path(tempfile.mkdtemp(prefix="nextword-plots-")) if args.quick else PLOTS)
    parts = [
        "Words: tokens with a letter or digit, not `<s>`, `</s>`, `<unk>` (`lm_core.evaluation.is_word`); "
        "predictions are filtered to words before the top k are taken; `<unk>` targets count as misses (their share "
        "is shown). Contexts restart at `<s>` each sentence (test line).",
        "",
    ]
    pr_points: list[tuple[float, float]] = []
    harper_points: list[tuple[str, float, float]] = []
    if acc:
        scope = (
            "the whole"
            if sizes.accuracy_words >= FULL.accuracy_words
            else (f"the first {sizes.accuracy_words:,} words (whole lines) of each")
        )
        parts += [
            f"### Next-word accuracy (top-k, %) on {scope} test set",
            "",
            "KN5: interpolated modified Kneser-Ney over a 5-gram pretokenized store built from the corpus's train "
            "split (as in the perplexity section). For reference, Hard et al. 2018 (Gboard, their own data) report "
            f"top-1 / top-3 recall of {HARD_ET_AL['n-gram'][0]} / {HARD_ET_AL['n-gram'][1]} % for an n-gram model and "
            f"{HARD_ET_AL['LSTM'][0]} / {HARD_ET_AL['LSTM'][1]} % for an LSTM.",
            "",
            accuracy_table(acc, bool(neural)),
            "",
        ]
        kn5 = {r.corpus: r.acc[3] for r in acc if r.model == "KN5"}
        blends = [r for r in acc if r.model.startswith("blend")]
        if blends:
            for b in blends:
                ratio = b.acc[3] / kn5[b.corpus] if kn5.get(b.corpus) else math.nan
                verdict = "met" if ratio >= 1.2 else "NOT met"
                parts.append(f"Aim (blend top-3 >= 1.2 x KN5's) on {b.corpus}: {verdict} ({ratio:.2f}x).")
        else:
            parts.append("Aim (blend top-3 >= 1.2 x KN5's): not judged - no neural checkpoint given (`--neural`).")
        parts.append("")
    if ksr:
        parts += [
            f"### Keystroke savings, PTB KN5, about {sizes.ksr_words:,} words of the second half of PTB test",
            "",
            "Presage's formula, KSR = 1 - (keys typed + selections) / keys without prediction. The simulated person "
            "types each sentence's words letter by letter, one space after each word (a keystroke, in both totals); "
            "before each letter the model's top k words for the typed prefix are shown, and the word is taken as "
            "soon as it is among them (one keystroke; the space comes with it). `<unk>` is typed in full (5 keys).",
            "",
            ksr_table(ksr),
            "",
        ]
    if adapt:
        parts += [
            "### Personal adaptation (shipped default model, prose mode, through the Engine)",
            "",
            "The shipped WikiText-2 model is seeded into a temporary store; the user's text is learned with "
            "`Engine.learn`; accuracy (the model's normalised tokens, punctuation kept in the context but not a "
            f"target) on about {sizes.adapt_words:,} held-out words and KSR on about {sizes.ksr_words:,} held-out "
            "words, typed with the Engine's display casing (sentence starts capitalised, names as the store cases "
            "them; punctuation tokens typed in full, counted in both totals). Austen: the three Gutenberg books "
            "(Emma, Persuasion, Sense and Sensibility) joined, the first 80 % (by characters, cut at a paragraph) "
            "learned, the rest held out (the end of Sense and Sensibility). Reuters: `reuters.train.txt` learned, "
            "`reuters.test.txt` held out.",
            "",
            adaptation_table(adapt),
            "",
        ]
        best = max((r.ksr[3].ksr for r in adapt if r.stage.startswith("after learning")), default=math.nan)
        verdict = "met" if best >= 0.5 else "NOT met"
        strict = max((charged(r.ksr[3]) for r in adapt if r.stage.startswith("after learning")), default=math.nan)
        parts += [
            f"Aim (KSR >= 50 % with 3 suggestions after adaptation): {verdict} (best {pct(best)} %, with the space "
            f"coming with a taken suggestion; {pct(strict)} % if the person typed that space too).",
            "",
        ]
    if data is not None and results:
        truth = [(e.doc, *e.span) for e in data.errors]
        ours = results[0]
        pr_points = [precision_recall(ours.at(t), truth) for t in THRESHOLDS]
        for r in results:
            if r.name.startswith("nextword"):
                continue
            p, rc = precision_recall(r.at(0.0), truth)
            harper_points.append((r.name.replace("harper-py, ", ""), p, rc))
        main_table, curve_table = oddity_tables(data, results, harper_notes)
        counts = {
            k: sum(e.kind == k for e in data.errors) for k in ("confusion", "doubled", "dropped article", "swapped")
        }
        parts += [
            "### Oddity detection: planted real-word errors",
            "",
            f"{len(data.errors)} errors planted (seed {SEED}, one per sentence) in {len(data.sentences):,} sentences "
            "of WikiText-2 test detokenized to prose (`detokenize_wikitext`; 8 to 40 words, no `<unk>`): "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + ". Confusions swap a word for another of its set in `lm_core.oddities.CONFUSION_SETS` (their/there/"
            "they're, its/it's, then/than, to/too/two, your/you're, affect/effect, lose/loose, ...); a doubled word "
            "repeats one; a dropped article removes the/a/an (the error spans the words either side of the gap); "
            "swapped exchanges two adjacent lower-case words (the error spans both). Every sentence is checked on "
            "its own. A flag is correct when it overlaps a planted error's span; precision = correct flags / flags, "
            "recall = errors with a flag / errors. Untouched sentences may hold real errors of WikiText itself, "
            "counted here as false alarms for both detectors. nextword: `Engine.check` with the shipped model. "
            f"Harper: harper-py {harper_version()} (`harper.Linter().lint(text)`, American English, default rules, "
            "offline) on the same sentences; shown with all its lints, and with its word-level lints only (leaving "
            "out its Spelling lints, on names and rare words of WikiText, and its Formatting and Punctuation lints, "
            "mostly on WikiText's spacing around quotes and brackets that the detokenizer keeps). Spaces before "
            "`, . ; : ! ? % ) ]` and after `( [ $` are removed from the sentences first.",
            "",
            main_table,
            "",
            "Precision and recall of nextword against the threshold (bits by which the best alternative's window "
            "must be more probable):",
            "",
            curve_table,
            "",
        ]
    plots = make_plots(charts_of(acc, {k: r.ksr for k, r in ksr.items()}, adapt, pr_points, harper_points), out_dir)
    rel = [p.relative_to(ROOT / "bench") if p.is_relative_to(ROOT / "bench") else p for p in plots]
    parts += [
        "Plots: " + ", ".join(f"[{p.name}]({p})" for p in rel),
        "",
        *(f"- {n}" for n in notes),
    ]
    body = "\n".join(parts)
    print("\n" + body)
    print(f"\nruntime {runtime:.0f} s; plots in {out_dir}")
    out = results_path(args)
    if out is not None:
        title = "Evaluation (`bench/evaluation.py`)" + (f": {args.section}" if args.section != SECTION else "")
        write_section(out, args.section, section_text(title, body, runtime, ["harper-py"]))


if __name__ == "__main__":
    main()
