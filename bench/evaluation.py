"""Predictive-text evaluation: next-word accuracy, keystroke savings, personal adaptation, oddity detection (beside
Harper), with charts (PNG and SVG, matplotlib: `pip install -e '.[bench]'`) under bench/plots/.

(a) Top-1/3/5 next-word accuracy of KN5 on PTB and WikiText-2 test (5-gram pretokenized stores built from train,
    as bench/perplexity.py does), over word targets only (`lm_core.evaluation`; `<unk>` targets count as misses).
(b) Keystroke savings (Presage's KSR) for k = 1, 3, 5 on a held-out PTB test slice with the PTB KN5 model.
(c) Personal adaptation: the shipped default model (WikiText-2, prose mode) seeded into a temporary store, then
    a "user's" text learned (the first 80 % of Austen's three Gutenberg books; separately, Reuters train), with
    accuracy and KSR on the rest (Austen's last 20 %; Reuters test) before and after learning.
(d) Oddity detection, beside Harper (`harper-py`) in the same run: errors of seven kinds planted (fixed seed) into
    WikiText-2 test sentences, precision / recall / F1 per kind at the defaults and a curve over the threshold; the
    learners' sentences of JFLEG dev (precision, recall, F0.5, the share of sentences with an error that get a
    correct flag, per error kind; the first half is where the defaults were tuned, the second half held out); false
    alarms per 1,000 words of clean WikiText-2 test and Gutenberg prose; the time of a cold check of 5,000 words.
    With the shipped LSTM present, the blend's rows too (`--no-blend` leaves them out).

    python bench/evaluation.py            # the full run: about 10 minutes on 2 cores, more with the blend
    python bench/evaluation.py --skip accuracy,adaptation --section evaluation-oddity   # the oddities alone
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
from collections.abc import Callable, Sequence
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
from bench.grammar_data import LearnerScore, LearnerSentence, load_jfleg, score_learner  # noqa: E402
from lm_core import tokenize  # noqa: E402
from lm_core.corrections import FUNCTION_WORDS, PREPOSITIONS, inflections  # noqa: E402
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
from lsp_server.engine import Engine, OddWord  # noqa: E402
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
THRESHOLDS = (6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 14.0, 16.0, 20.0)
ARTICLES = ("the", "a", "an")
PLANTED_KINDS = ("confusion", "doubled", "dropped article", "swapped", "inflection", "preposition", "missing word")
DROPPED_WORDS = tuple(w for w in FUNCTION_WORDS if w not in PREPOSITIONS)
NOT_WORD_LEVEL = frozenset({"Spelling", "Formatting", "Punctuation"})  # Harper lint kinds left out of its 2nd row


@dataclass
class Sizes:
    accuracy_words: int  # word targets per corpus for (a)
    ksr_words: int  # words typed for (b) and (c)
    adapt_words: int  # accuracy targets for (c)
    sentences: int  # sentences for (d)
    errors: int  # planted errors for (d)
    clean_words: int  # words of each clean text for the false alarms


FULL = Sizes(10**9, 5_000, 10_000, 1_500, 420, 20_000)  # accuracy: the whole test sets
QUICK = Sizes(1_000, 150, 300, 150, 35, 2_000)


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
            sys.exit("error: the shipped default model (lsp_server/data/default-ngram.db.gz) is missing")
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
    sentences = engine.learned_sentences()
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


def plant(
    text: str, kind: str, rng: random.Random, known: Callable[[str], bool] = bool
) -> tuple[str, tuple[int, int], str] | None:
    """Plant one error of `kind` in `text`: the new text, the error's character span in it, a description.
    `known(word)`: the model's vocabulary (an inflection is planted only as a word the model knows)."""
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
    if kind == "inflection":
        options = [(t, f) for t in words if t.surface.islower() for f in inflections(t.norm) if known(f)]
        if not options:
            return None
        t, form = rng.choice(options)
        return text[: t.start] + form + text[t.end :], (t.start, t.start + len(form)), f"{t.surface} -> {form}"
    if kind == "preposition":
        options = [t for t in words if t.norm in PREPOSITIONS and t.surface.islower()]
        if not options:
            return None
        t = rng.choice(options)
        new = rng.choice([p for p in PREPOSITIONS[:12] if p != t.norm])
        return text[: t.start] + new + text[t.end :], (t.start, t.start + len(new)), f"{t.surface} -> {new}"
    if kind == "missing word":
        options = [i for i, t in enumerate(words) if t.norm in DROPPED_WORDS and t.surface.islower()]
        options = [i for i in options if 0 < i < len(words) - 1]
        if not options:
            return None
        i = rng.choice(options)
        t, before, after = words[i], words[i - 1], words[i + 1]
        new = text[: t.start] + text[after.start :]
        gap_end = after.end - (after.start - t.start)
        return new, (before.start, gap_end), f"dropped '{t.surface}'"
    raise ValueError(kind)


def build_oddity_data(path: Path, sizes: Sizes, known: Callable[[str], bool]) -> OddityData:
    rng = random.Random(SEED)
    data = OddityData(clean_sentences(path, sizes.sentences))
    kinds = list(PLANTED_KINDS)  # as many of each kind
    order = list(range(len(data.sentences)))
    rng.shuffle(order)
    n = 0
    for doc in order:
        if len(data.errors) >= sizes.errors:
            break
        kind = kinds[n % len(kinds)]
        planted = plant(data.sentences[doc], kind, rng, known)
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
    kinds: list[str] = field(default_factory=list)  # per flag, where the detector says

    def at(self, threshold: float) -> list[tuple[int, int, int]]:
        return [span for span, score in self.flags if score >= threshold]


def flag_score(odd: OddWord, config: OddityConfig) -> float:
    """An Engine.check flag scored so that flags scored >= t are (nearly) those of a check at threshold t: the
    best alternative's gain less its kind's and a deletion's or an insertion's extra bits; a misspelling is always
    flagged."""
    alternative, gain = odd.alternatives[0]
    kind = odd.kinds[0] if odd.kinds else "confusion"
    if kind == "misspelling":
        return math.inf
    added = len(alternative.split()) - len(odd.word.split())
    size = config.deletion_bits if added < 0 else config.insertion_bits if added > 0 else 0.0
    return gain - dict(config.kind_bits).get(kind, 0.0) - size


def run_ours(engine: Engine, texts: Sequence[str], name: str, config: OddityConfig | None = None) -> DetectorResult:
    """Engine.check of each text on its own; each flag scored by `flag_score`."""
    config = config or OddityConfig()
    start = time.perf_counter()
    flags = []
    for doc, text in enumerate(texts):
        for odd in engine.check(text, config).oddities:
            flags.append(((doc, odd.start, odd.end), flag_score(odd, config), odd.kinds[0] if odd.kinds else ""))
    return DetectorResult(
        name, [(f, sc) for f, sc, _ in flags], time.perf_counter() - start, kinds=[k for *_, k in flags]
    )


def run_harper(texts: Sequence[str], exclude_spelling: bool) -> DetectorResult | str:
    try:
        import harper  # type: ignore[import-not-found]
    except ImportError as exc:
        return f"harper-py is not installed ({exc}); `.venv/bin/pip install harper-py`"
    linter = harper.Linter()
    start = time.perf_counter()
    flags = []
    kinds: Counter[str] = Counter()
    for doc, text in enumerate(texts):
        for lint in linter.lint(text):
            if exclude_spelling and lint.lint_kind in NOT_WORD_LEVEL:
                continue
            kinds[lint.lint_kind] += 1
            flags.append(((doc, lint.span.start, lint.span.end), 1.0))
    name = "Harper (harper-py, word-level lints)" if exclude_spelling else "Harper (harper-py, all default lints)"
    note = f"{name}: lints by kind: " + ", ".join(f"{k} {v:,}" for k, v in kinds.most_common())
    return DetectorResult(name, flags, time.perf_counter() - start, note)


# --- (e) learner sentences: JFLEG dev ---------------------------------------------------------------------------------
JFLEG_KINDS = (
    "article",
    "preposition",
    "inflection",
    "missing word",
    "spelling",
    "confusion",
    "transposition",
    "other",
)


@dataclass
class LearnerRow:
    name: str
    parts: dict[str, LearnerScore]  # "tuning half", "held-out half", "all"
    flagged_kinds: Counter[str]
    seconds: float


def learner_row(result: DetectorResult, data: list[LearnerSentence], threshold: float | None) -> LearnerRow:
    """Score a detector's flags on JFLEG: the first half of the sentences (where nextword's defaults were tuned),
    the second half (held out), and all."""
    per_doc: list[list[tuple[int, int]]] = [[] for _ in data]
    kinds: Counter[str] = Counter()
    for n, ((doc, start, end), score) in enumerate(result.flags):
        if threshold is None or score >= threshold:
            per_doc[doc].append((start, end))
            if result.kinds:
                kinds[result.kinds[n]] += 1
    half = len(data) // 2
    parts = {
        "tuning half": score_learner(data[:half], per_doc[:half]),
        "held-out half": score_learner(data[half:], per_doc[half:]),
        "all": score_learner(data, per_doc),
    }
    return LearnerRow(result.name, parts, kinds, result.seconds)


def learner_tables(rows: list[LearnerRow], data: list[LearnerSentence]) -> tuple[str, str]:
    body = []
    for r in rows:
        for part, sc in r.parts.items():
            body.append([r.name, part, fmt(sc.flags), pct(sc.precision), pct(sc.recall), pct(sc.f05),
                         pct(sc.sentence_rate), fmt(sc.sentences_found), fmt(sc.sentences_with_error)])  # fmt: skip
    header = ["Detector", "sentences", "flags", "precision %", "recall %", "F0.5 %", "sentences with an error that "
              "got a correct flag %", "such sentences", "sentences with an error"]  # fmt: skip
    main = markdown_table(header, body)
    counts = Counter(k for s in data for k in s.kinds if k)
    kind_body = []
    for r in rows:
        sc = r.parts["all"]
        kind_body.append([r.name, *(pct(sc.per_kind[k][1] / sc.per_kind[k][0]) if sc.per_kind.get(k, (0, 0))[0] else "-"
                                    for k in JFLEG_KINDS)])  # fmt: skip
    kind_header = ["Detector (recall per kind of error token, all sentences)",
                   *(f"{k} ({counts.get(k, 0):,})" for k in JFLEG_KINDS)]  # fmt: skip
    return main, markdown_table(kind_header, kind_body)


# --- (f) false alarms on clean text and the time of a cold check ----------------------------------------------------
def clean_paragraphs(corpora: Path, words: int, wiki_split: str = "test") -> dict[str, list[str]]:
    """Clean prose: WikiText-2 paragraphs (of `wiki_split`) without <unk> (detokenized), and Gutenberg books
    (Austen, Carroll, Chesterton; paragraphs after the first 200), about `words` words each."""
    (wiki,) = require_files(corpora, [f"wikitext-2/wiki.{wiki_split}.tokens"])
    books = require_files(corpora, ["gutenberg/austen-persuasion.txt", "gutenberg/carroll-alice.txt",
                                    "gutenberg/chesterton-brown.txt"])  # fmt: skip
    name = f"WikiText-2 {wiki_split}"
    out: dict[str, list[str]] = {name: [], "Gutenberg (Austen, Carroll, Chesterton)": []}
    n = 0
    for line in wiki.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.strip().startswith("=") and "<unk>" not in line and n < words:
            prose = _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", detokenize_wikitext(line)))
            out[name].append(prose)
            n += len(prose.split())
    share = words // len(books)
    for book in books:
        n = 0
        paragraphs = [" ".join(p.split()) for p in book.read_text(encoding="utf-8", errors="replace").split("\n\n")]
        for paragraph in paragraphs[200:]:
            if n >= share:
                break
            if len(paragraph.split()) >= 8:
                out["Gutenberg (Austen, Carroll, Chesterton)"].append(paragraph)
                n += len(paragraph.split())
    return out


def false_alarm_rows(detectors: list[tuple[str, Any]], clean: dict[str, list[str]]) -> list[list[str]]:
    """Flags per 1,000 words (whitespace-separated) of clean text, for each detector (name, texts -> flags)."""
    rows = []
    for corpus, texts in clean.items():
        words = sum(len(t.split()) for t in texts)
        for _, run in detectors:
            result = run(texts)
            if isinstance(result, str):
                continue
            rows.append(
                [corpus, result.name, fmt(words), fmt(len(result.flags)), fmt(1000 * len(result.flags) / words, 2)]
            )
    return rows


def document_of(paragraphs: list[str], words: int) -> str:
    out, n = [], 0
    for p in paragraphs:
        if n >= words:
            break
        out.append(p)
        n += len(p.split())
    return "\n\n".join(out)


def check_times(db: Path, document: str, neural: Path | None) -> list[list[str]]:
    """Cold check of `document` on a freshly opened store (lemminflect's tables and the spelling index built
    beforehand, as the server does at its start), then a re-check after one word in the middle changed; the
    reference is the same document checked for confusion sets and doubled words only (what nextword looked for
    before), in the same run."""
    from lm_core import corrections

    corrections.warm()
    middle = len(document) // 2
    cut = document.index(" ", middle)
    edited = document[:cut] + " very" + document[cut:]
    rows = []
    setups = [("n-gram, confusion sets and doubled words only (reference)", None,
               OddityConfig(kinds=frozenset({"confusion", "doubled"}))),
              ("n-gram, all kinds", None, OddityConfig())]  # fmt: skip
    if neural is not None:
        setups.append(("blend (shipped LSTM), all kinds", neural, OddityConfig()))
    reference = math.nan
    for label, checkpoint, config in setups:
        engine = Engine.open(db)
        if checkpoint is not None:
            engine.attach_neural(checkpoint)
        engine.oddity_vocabulary()  # built at the server's start, on its background thread
        start = time.perf_counter()
        checked = engine.check(document, config)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        engine.check(edited, config)
        warm = time.perf_counter() - start
        engine.close()
        if math.isnan(reference):
            reference = cold
        rows.append([label, fmt(len(document.split())), fmt(len(checked.oddities)), fmt(1000 * cold, 0),
                     f"{cold / reference:.2f}x", fmt(1000 * warm, 1)])  # fmt: skip
    return rows


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
        predicted = r.at(OddityConfig().threshold_bits if r.name.startswith("nextword") else 0.0)
        p, rc = precision_recall(predicted, truth)
        per_kind = []
        for kind in PLANTED_KINDS:
            kt = [(e.doc, *e.span) for e in data.errors if e.kind == kind]
            per_kind.append(pct(precision_recall(predicted, kt)[1]) if kt else "-")
        body.append([r.name, fmt(len(predicted)), pct(p), pct(rc), pct(f1(p, rc)), *per_kind, fmt(r.seconds, 1)])
    for note in harper_notes:
        body.append([f"Harper: {note}", *["-"] * (5 + len(PLANTED_KINDS))])
    header = ["Detector", "flags", "precision %", "recall %", "F1 %", *(f"recall: {k} %" for k in PLANTED_KINDS), "s"]
    main = markdown_table(header, body)
    ours = results[0]
    curve = []
    for t in THRESHOLDS:
        p, rc = precision_recall(ours.at(t), truth)
        per_kind = []
        for kind in PLANTED_KINDS:
            kt = [(e.doc, *e.span) for e in data.errors if e.kind == kind]
            per_kind.append(pct(precision_recall(ours.at(t), kt)[1]))
        curve.append([fmt(t, 0), fmt(len(ours.at(t))), pct(p), pct(rc), pct(f1(p, rc)), *per_kind])
    curve_header = ["threshold bits", "flags", "precision %", "recall %", "F1 %", *(f"{k} %" for k in PLANTED_KINDS)]
    return main, markdown_table(curve_header, curve)


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
        name = f"nextword, threshold {THRESHOLDS[0]:g}-{THRESHOLDS[-1]:g} bits"
        charts.oddity.append((name, [(100 * r, 100 * p) for p, r in pr]))
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
        title = "Oddity detection on planted errors"
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
    parser.add_argument("--no-blend", action="store_true", help="oddities: leave out the blend with the shipped LSTM")
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
        learner: list[LearnerRow] = []
        jfleg: list[LearnerSentence] = []
        alarms: list[list[str]] = []
        times: list[list[str]] = []
        if "oddity" not in skip:
            db = work / "odd.db"
            seed_from_default_model(db)
            engine = Engine.open(db)
            shipped = DEFAULT_NEURAL_MODEL if DEFAULT_NEURAL_MODEL.exists() and not args.no_blend else None
            known = engine.oddity_vocabulary().known
            (wiki_test,) = require_files(corpora, ["wikitext-2/wiki.test.tokens"])
            data = build_oddity_data(wiki_test, sizes, known)
            with step(f"oddities: Engine.check over {len(data.sentences):,} planted-error sentences"):
                results.append(run_ours(engine, data.sentences, "nextword (n-gram)"))
            with step("oddities: the same at the lowest threshold of the curve"):
                low = run_ours(engine, data.sentences, "nextword (n-gram)", OddityConfig(threshold_bits=THRESHOLDS[0]))
            (jfleg_src,) = require_files(corpora, ["jfleg-dev/dev.src"])
            jfleg = load_jfleg(jfleg_src.parent, frozenset(w for w in engine.ngram.counts.vocab.words))
            if sizes is QUICK:
                jfleg = jfleg[:60]
            texts = [s.text for s in jfleg]
            with step(f"JFLEG: Engine.check over {len(texts)} learner sentences"):
                learner.append(learner_row(run_ours(engine, texts, "nextword (n-gram)"), jfleg, None))
            ours_without = OddityConfig(kinds=frozenset(k for k in OddityConfig().kinds if k != "misspelling"))
            with step("JFLEG: without misspellings"):
                row = run_ours(engine, texts, "nextword (n-gram), misspellings left out", ours_without)
                learner.append(learner_row(row, jfleg, None))
            clean = clean_paragraphs(corpora, sizes.clean_words)
            detectors: list[tuple[str, Any]] = [("ours", lambda t: run_ours(engine, t, "nextword (n-gram)"))]
            for exclude in (False, True):
                with step("oddities: Harper"):
                    h = run_harper(data.sentences, exclude)
                if isinstance(h, str):
                    harper_notes = [h]
                    break
                results.append(h)
                notes.append("planted: " + h.note)
                hj = run_harper(texts, exclude)
                if not isinstance(hj, str):
                    learner.append(learner_row(hj, jfleg, None))
                    notes.append("JFLEG: " + hj.note)
                detectors.append(("harper", lambda t, e=exclude: run_harper(t, e)))
            with step("false alarms on clean text"):
                alarms = false_alarm_rows(detectors, clean)
            document = document_of(clean["WikiText-2 test"], 5_000)
            engine.close()
            if shipped is not None:  # what the server checks with by default: the blend
                engine = Engine.open(db)
                engine.attach_neural(shipped)
                name = "nextword (blend: n-gram + shipped LSTM)"
                with step(f"oddities: Engine.check with the blend over {len(data.sentences):,} sentences"):
                    results.insert(1, run_ours(engine, data.sentences, name))
                with step("JFLEG: with the blend"):
                    learner.insert(1, learner_row(run_ours(engine, texts, name), jfleg, None))
                with step("false alarms on clean text, blend"):
                    alarms += false_alarm_rows([("blend", lambda t: run_ours(engine, t, name))], clean)
                engine.close()
            with step("time of a cold check of 5,000 words"):
                times = check_times(db, document, shipped)
            results_low = low
    runtime = time.perf_counter() - start
    out_dir = args.plots or (Path(tempfile.mkdtemp(prefix="nextword-plots-")) if args.quick else PLOTS)
    parts = [
        "Words: tokens with a letter or digit, not `<s>`, `</s>`, `<unk>` (`lm_core.vocab.is_word`); "
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
        pr_points = [precision_recall(results_low.at(t), truth) for t in THRESHOLDS]
        for r in results:
            if r.name.startswith("nextword"):
                continue
            p, rc = precision_recall(r.at(0.0), truth)
            harper_points.append((r.name.replace("harper-py, ", ""), p, rc))
        main_table, _ = oddity_tables(data, results, harper_notes)
        _, curve_table = oddity_tables(data, [results_low], [])
        counts = {k: sum(e.kind == k for e in data.errors) for k in PLANTED_KINDS}
        config = OddityConfig()
        parts += [
            "### Oddity detection: planted errors",
            "",
            f"{len(data.errors)} errors planted (seed {SEED}, one per sentence) in {len(data.sentences):,} sentences "
            "of WikiText-2 test detokenized to prose (`detokenize_wikitext`; 8 to 40 words, no `<unk>`): "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + ". Confusions swap a word for another of its set in `lm_core.corrections.CONFUSION_SETS` (their/there/"
            "they're, its/it's, then/than, to/too/two, ...); a doubled word repeats one; a dropped article removes "
            "the/a/an and a missing word one of the function words of `lm_core.corrections.FUNCTION_WORDS` (the "
            "error spans the words either side of the gap); swapped exchanges two adjacent lower-case words (the "
            "error spans both); inflection puts another form of a word's lemma (lemminflect) that the model knows; "
            "preposition swaps one of `PREPOSITIONS` for another of the twelve commonest. Every sentence is checked on "
            "its own. A flag is correct when it overlaps a planted error's span; precision = correct flags / flags, "
            "recall = errors with a flag / errors. Untouched sentences may hold real errors of WikiText itself, "
            "counted here as false alarms for every detector. nextword: `Engine.check` with the shipped model at its "
            f"defaults ({config.threshold_bits:g} bits; per kind: "
            + ", ".join(f"{k} {b:+g}" for k, b in config.kind_bits)
            + f"; deletions {config.deletion_bits:+g}, insertions {config.insertion_bits:+g}; gates "
            f"{config.gate_bits:g} bits, insertions {config.insertion_gate_bits:g}), tuned with "
            "`bench/oddity_tuning.py` on development data only (the first half of JFLEG dev, errors planted the "
            "same way in WikiText-2 valid, false alarms in WikiText-2 valid), never on these sentences. "
            f"Harper: harper-py {harper_version()} (`harper.Linter().lint(text)`, American English, default rules, "
            "offline) on the same sentences; shown with all its lints, and with its word-level lints only (leaving "
            "out its Spelling, Formatting and Punctuation lints). Spaces before `, . ; : ! ? % ) ]` and after `( [ $` "
            "are removed from the sentences first.",
            "",
            main_table,
            "",
            "Precision and recall of nextword (n-gram) against the threshold (per-kind offsets kept; scored from one "
            f"check at {THRESHOLDS[0]:g} bits, so a row is close to, not exactly, a check at that threshold):",
            "",
            curve_table,
            "",
        ]
    if learner:
        main_table, kind_table = learner_tables(learner, jfleg)
        parts += [
            "### Oddity detection: learners' sentences (JFLEG dev)",
            "",
            f"{len(jfleg)} sentences of JFLEG dev (`dev.src`, written by learners of English; tokens joined as prose). "
            "A token is an error when at least 2 of the 4 corrections change it (an insertion marks the tokens on "
            "either side); a flag is correct when it touches an error token; recall = error tokens touched / error "
            "tokens; F0.5 from these. The first half of the sentences is where nextword's thresholds were tuned (with "
            "WikiText-2 valid for false alarms); the second half is held out. An error token's kind is read from the "
            "corrections (`bench/grammar_data.py`): spelling includes words the model does not know. Misspellings "
            "(words neither the model nor lemminflect's dictionary knows, within one edit of a known word, or two for "
            "one of 6+ letters) are a spell checker's finding; the row without them compares like with like against "
            "Harper's word-level lints, which leave out Harper's Spelling lints.",
            "",
            main_table,
            "",
            kind_table,
            "",
        ]
        for r in learner:
            if r.flagged_kinds:
                notes.append(
                    f"JFLEG, {r.name}: flags by kind: "
                    + ", ".join(f"{k} {v}" for k, v in r.flagged_kinds.most_common())
                )
    if alarms:
        parts += [
            "### False alarms on clean prose",
            "",
            "Flags per 1,000 words (whitespace-separated) on clean text, each paragraph checked on its own: WikiText-2 "
            "test paragraphs without `<unk>` (held out from the model, which was built from WikiText-2 train) and "
            "paragraphs of three Gutenberg books (Persuasion, Alice, The Innocence of Father Brown; after their first "
            "200 paragraphs). Every flag here is a false alarm unless the text itself errs.",
            "",
            markdown_table(["Text", "Detector", "words", "flags", "flags per 1,000 words"], alarms),
            "",
        ]
    if times:
        parts += [
            "### Time of a cold check",
            "",
            "`Engine.check` of about 5,000 words of WikiText-2 test paragraphs as one document on a freshly opened "
            "store (the count caches empty; lemminflect's tables and the spelling index built beforehand, as the "
            "server does at its start), then of the same document after one word was inserted in the middle. The "
            "machine was shared with other work, so the ratio to the reference measured in the same run says more "
            "than the milliseconds.",
            "",
            markdown_table(
                ["Check", "words", "flags", "cold ms", "cold / reference", "after a one-word edit ms"], times
            ),
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
