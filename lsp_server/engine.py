"""The Engine: one object that suggests, scores, learns and forgets, used by both the server and the CLI.

It owns a store (a `store.base.ModelStore`: a count store, or an imported ARPA model) and the n-gram model over it,
attaches and checks neural models, turns editor text into model contexts (via the tokenizer), and turns model words
back into what a person would type (casing from the store, capitalised at a sentence start; ghost text). The CLI
and the server reach the store and the models only through it.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lm_core import tokenize
from lm_core.adaptation import COMPONENTS, DEFAULT_WEIGHTS, USER_LAYER_TOKENS, Adaptation
from lm_core.backoff import BackoffModel
from lm_core.corrections import NeighbourIndex, Speller, Vocabulary
from lm_core.evaluation import top_word_predictions
from lm_core.metrics import perplexity, perplexity_of_scores, sentence_scores, surprisal_bits
from lm_core.model import UNBOUNDED_CONTEXT, Context, LanguageModel
from lm_core.ngram import NgramConfig, NgramModel, Smoothing
from lm_core.oddities import (
    Memo,
    Oddity,
    OddityConfig,
    SentenceInput,
    explain,
    find_oddities_many,
    score_tokens_many,
    score_tokens_of,
)
from lm_core.vocab import BOS, BOS_ID, EOS, SPECIAL, UNK, UNK_ID
from lsp_server.paths import DEFAULT_BASE_NAME, default_db_path, neural_model_path, seed_from_default_model
from store import sources, streaming
from store.base import ModelStore, open_model_store
from store.countstore import LearnResult, SourceInfo

if TYPE_CHECKING:  # the neural models' code is imported only when one is attached
    from lm_core.blend import Blend
    from lm_core.inference import Network, NeuralLM
    from lm_core.sampling import SamplingConfig

LOOKBACK = 4000  # hover reads at most this many characters before the word (a long paragraph's last sentences)
LOOKAHEAD = 200  # ... and this many after it: enough to finish the word's sentence in all but the longest
DEFAULT_BLEND_WEIGHT = 0.3  # the neural model's weight when neither the caller nor the checkpoint says
OVERLAP_WORDS = 1000  # a neural model must know at least MIN_OVERLAP of the store's OVERLAP_WORDS likeliest words
MIN_OVERLAP = 0.5
ADAPTATION_KEY = "adaptation"  # the store setting holding the adaptive mixture's weights (JSON)
CACHE_CHARS = 24_000  # the document cache reads at most this many characters before the cursor
ADAPTATION_BUCKETED = False  # weights per context bucket (bench/adaptation.py decides)
PARAGRAPH_MEMO = 2_000  # paragraphs whose tokens the document cache remembers
NEURAL_CONTEXT_STRIDE = 16  # a completion context longer than the neural window loses tokens 16 at a time (its
# start, and the network's cached state after it, then stay for 16 words: see tokenize.cursor_context)
CHECK_BATCH_SENTENCES = 8  # sentences checked in one batch between two yield points (a batch takes ~10-50 ms)
HELD_OUT_PER_LEARN = 5_000  # at most about this many tokens of a learn's new text are scored for the weights
USER_LAYER_LAG = 0.01  # a learn rebuilds the user layer once the text learned since its last rebuild is this share
# of it (at its full 100,000 tokens: every ~1,000 tokens, ~7 documents of 150 words; below 15,000 tokens: every save)
SPELLING_MIN_COUNT = 20  # a spelling correction must be a word seen at least this often
MISSPELLING_MIN_COUNT = 3  # ... and a misspelling's correction (of a word no dictionary knows) this often
FOLLOWER_SETS = 20_000  # words whose follower arrays the seen-pair filter keeps at hand (per counts version)
MEMO_LIMIT = 400_000  # per-token scores kept between checks (at most; and within an eighth of the cache budget)
MEMO_ENTRY_BYTES = 250  # one kept score: its key (a context tuple and a word) and its float
DEFAULT_CACHE_BYTES = 64 * 2**20  # the memory budget of the caches (setting cacheMegabytes), split by set_cache_budget
SENTENCE_ENTRY_BYTES = 200  # a cached sentence's own objects besides its words (the entry, the result tuple)
_CLOSERS = frozenset(",.;:!?)]}%\u2026")  # written without a space before them (so is an apostrophe's clitic: 's)
_OPENERS = frozenset("([{$")  # written without a space after them


def _attaches_left(text: str) -> bool:
    """Whether `text` is written against what comes before it, with no space: closing punctuation, or a clitic
    ('s, 're)."""
    return text[:1] in _CLOSERS or text.startswith("'")


@dataclass(frozen=True, slots=True)
class AttachedNeural:
    """The neural model blended with the n-gram model (see `Engine.attach_neural`)."""

    network: Network  # the numpy network (lm_core.inference), shared by every thread's NeuralLM
    vocab: list[str]  # its words, by id
    weight: float  # its weight w in P = (1-w) P_ngram + w P_neural
    generation: int  # changes on every attach and detach: cached results of another generation are stale
    path: Path  # the checkpoint it came from

    def language_model(self) -> NeuralLM:
        """A new `NeuralLM` over the network (its own document caches)."""
        from lm_core.inference import NeuralLM

        return NeuralLM(self.network, self.vocab)


@dataclass(frozen=True, slots=True)
class ModelPerplexity:
    """One row of `Engine.compare`: a model, what it is, its perplexity (per token, sentence ends included)."""

    name: str
    description: str
    perplexity: float


@dataclass(frozen=True, slots=True)
class Suggestion:
    word: str  # as the user would type it
    prob: float  # P(word | context), a probability (not a log)


@dataclass(frozen=True, slots=True)
class Completion:
    """Suggestions for the word at a cursor; `prefix` (typed so far, from `prefix_start`) is what they replace."""

    suggestions: list[Suggestion]
    prefix: str
    prefix_start: int


@dataclass(frozen=True, slots=True)
class WordScore:
    """One scored token of a document; `surprisal` is -log2 P in bits; `context` is what the model conditioned on."""

    word: str
    start: int
    end: int
    surprisal: float
    context: Context


@dataclass(frozen=True, slots=True)
class DocumentScore:
    """Perplexity (per token, sentence ends included) and the scored words."""

    perplexity: float
    tokens: int
    words: list[WordScore]


@dataclass(frozen=True, slots=True)
class OddWord:
    """Words that read oddly, at text[start:end] (`word`: that text); alternatives to write there instead, as the
    user would type them ("" = delete it), with how many bits more probable (normalised) each makes the words
    around it; `kinds` and `reasons` (plain words) for each alternative."""

    start: int
    end: int
    word: str
    surprisal: float
    alternatives: tuple[tuple[str, float], ...]
    kinds: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DocumentCheck:
    perplexity: float  # per token, sentence ends included; nan for no tokens
    tokens: int
    oddities: list[OddWord]


@dataclass(frozen=True, slots=True)
class WordInfo:
    """One word of a document in its context: P(word | context), surprisal in bits, the likelier words."""

    word: str
    start: int
    end: int
    prob: float
    surprisal: float
    alternatives: list[Suggestion]
    odd: OddWord | None = None  # the oddity this word is part of, if the check flags one


class Engine:
    """Suggest / score / learn / forget over one store: a count store (which learns), or an imported ARPA model
    (which only scores and completes; learning raises `ImportedModelError`)."""

    def __init__(self, store: ModelStore, config: NgramConfig | None = None) -> None:
        self.store = store
        self.tokenizer = store.tokenizer
        self.ngram: NgramModel | BackoffModel = store.model(config)
        self.neural: AttachedNeural | None = None  # see attach_neural
        self._neural_generation = 0  # changes on every attach/detach (cached check results are stale)
        self._local = threading.local()  # each thread's own Blend (a neural model's caches are not thread-safe)
        self._casing: dict[str, str] = {}
        self._casing_version: int | None = None
        self._sentence_cache: OrderedDict[tuple[str, ...], tuple[float, list[Oddity]]] = OrderedDict()
        self._sentence_bytes = 0
        self.cache_bytes = 0
        self._check_version: tuple[int, int, OddityConfig] | None = None
        self.seeded = False  # this store was made from the shipped model when it was opened (see open)
        # called between small units of background work (learning, checking) so that the owner can let work a person
        # waits for (a completion) run first; the server waits there while a completion is in flight (no-op here)
        self.yield_point: Callable[[], None] = _no_wait
        self.adaptation: Adaptation | None = None  # see enable_adaptation
        self._cache_head: tuple[str, list[str]] = ("", [])  # the document cache's paragraphs above, tokenized
        self._cache_middle: tuple[str, list[str]] = ("", [])  # ... and the current paragraph's finished sentences
        self._paragraph_memo: dict[str, list[str]] = {}  # paragraph text -> its tokens (oldest first out)
        self._check_lock = threading.Lock()  # one check at a time fills the sentence cache
        self._memo: Memo = {}  # per-token n-gram scores of candidate windows, kept while the counts stay the same
        self._vocabulary: tuple[int, Vocabulary] | None = None
        self._neighbours: tuple[frozenset[str], NeighbourIndex] | None = None
        self._speller: tuple[frozenset[str], Speller] | None = None
        self.set_cache_budget(DEFAULT_CACHE_BYTES)

    def set_cache_budget(self, total_bytes: int) -> None:
        """Bound the memory of every cache by `total_bytes`: half for the n-gram reader's follower lists (and a
        quarter of that for its SQLite page cache), an eighth each for the Kneser-Ney level memos (the store's
        model's and the user layer's, a sixteenth each), the checked sentences, the per-token scores of oddity
        windows and the store connection's SQLite page cache."""
        self.cache_bytes = total_bytes
        if self._count_model is not None:
            self._count_model.memo_bytes = total_bytes // 16
        if self.adaptation is not None:
            self.adaptation.set_memo_bytes(total_bytes // 16)
        self.store.set_cache_bytes(total_bytes)
        self._trim_sentence_cache()

    @property
    def _count_model(self) -> NgramModel | None:
        """The n-gram model when it reads counts (what adaptation, bulk prefetching and the spelling vocabulary
        need); None for an imported ARPA model."""
        return self.ngram if isinstance(self.ngram, NgramModel) else None

    @property
    def sentence_cache_bytes(self) -> int:
        """Bytes the checked-sentence cache holds now (an estimate: its strings and entries)."""
        return self._sentence_bytes

    def _cache_sentence(self, norms: tuple[str, ...], result: tuple[float, list[Oddity]]) -> None:
        self._sentence_cache[norms] = result
        self._sentence_bytes += _sentence_bytes(norms, result)
        self._trim_sentence_cache()

    def _trim_sentence_cache(self) -> None:
        """Least recently checked sentences out until the cache is within an eighth of the budget."""
        while self._sentence_cache and self._sentence_bytes > self.cache_bytes // 8:
            norms, result = self._sentence_cache.popitem(last=False)
            self._sentence_bytes -= _sentence_bytes(norms, result)

    @classmethod
    def open(
        cls, db: str | Path | None = None, config: NgramConfig | None = None, create: bool = False, seed: bool = False
    ) -> Engine:
        """Open the store at `db` (default: $NEXTWORD_DB or the user's store, which is always seeded on first use).

        A store that is not there yet is made from the shipped default model with `seed` (or when no path is given),
        else empty (a prose store) with `create`; otherwise a missing store is a StoreError. `seeded` tells whether
        this call made the store from the shipped model (the CLI and the server then say so, once).
        """
        path = Path(db).expanduser() if db else default_db_path()
        seeded = (seed or db is None) and seed_from_default_model(path)
        store = open_model_store(path, create=create or seed or db is None)
        try:
            engine = cls(store, config)
        except BaseException:
            store.close()
            raise
        engine.seeded = seeded
        return engine

    def seeded_note(self) -> str | None:
        """One line saying that this store was just made from the shipped model, or None when it was not."""
        if not self.seeded:
            return None
        return (
            f"nextword: new store {self.store.path}, started from the shipped model ({DEFAULT_BASE_NAME}); "
            "'nextword serve --empty-store' (or learn --empty-store) makes an empty one instead"
        )

    @property
    def model(self) -> NgramModel | BackoffModel | Blend:
        """The model that suggests and scores: the n-gram model, or its blend with the attached neural model (one
        Blend per thread, over the same network, so the interactive and background threads never share caches)."""
        neural = self.neural
        if neural is None:
            return self.ngram
        local = self._local
        if getattr(local, "generation", None) != neural.generation:
            from lm_core.blend import Blend

            local.blend = Blend([self.ngram, neural.language_model()], [1 - neural.weight, neural.weight])
            local.generation = neural.generation
        return local.blend

    @property
    def context_width(self) -> int:
        """How many tokens of context the model reads: order - 1, or UNBOUNDED_CONTEXT for an unbounded model (the
        blend, when a neural model is attached; read without making this thread's Blend)."""
        order = None if self.neural is not None else self.ngram.order
        return UNBOUNDED_CONTEXT if order is None else order - 1

    # --- the neural model ---------------------------------------------------------------------------------------
    def attach_neural(self, path: str | Path, weight: float | None = None) -> None:
        """Blend the neural model of the checkpoint at `path` with the n-gram model: P = (1-w) P_ngram + w P_neural,
        w = `weight`, else the checkpoint's metrics["blend_weight"], else DEFAULT_BLEND_WEIGHT.

        Raises `CheckpointError` (one line) for a missing or damaged checkpoint, or one whose vocabulary knows fewer
        than MIN_OVERLAP of the n-gram model's OVERLAP_WORDS likeliest words with no context (a model trained on
        other text, or on another tokenization); the engine then keeps the model it had. The network runs in numpy
        (`lm_core.inference`): torch is never imported for it.
        """
        from lm_core.inference import CheckpointError, load_network

        path = Path(path).expanduser()
        checkpoint = load_network(path)
        if weight is None:
            stored = checkpoint.metrics.get("blend_weight")
            weight = float(stored) if isinstance(stored, int | float) else DEFAULT_BLEND_WEIGHT
        if not 0 <= weight <= 1:
            raise CheckpointError(f"{path}: blend weight {weight!r} is not between 0 and 1")
        self._check_vocabulary_overlap(path, set(checkpoint.vocab))
        self._neural_generation += 1
        self.neural = AttachedNeural(checkpoint.network, checkpoint.vocab, weight, self._neural_generation, path)

    def _check_vocabulary_overlap(self, path: Path, known: set[str]) -> None:
        """`CheckpointError` unless the checkpoint at `path`, whose words are `known`, knows MIN_OVERLAP of the
        n-gram model's OVERLAP_WORDS likeliest words with no context."""
        from lm_core.inference import CheckpointError

        common = [p.word for p in self.ngram.predict((), OVERLAP_WORDS + len(SPECIAL)) if p.word not in SPECIAL]
        common = common[:OVERLAP_WORDS]
        if not common:
            return
        overlap = sum(w in known for w in common) / len(common)
        if overlap < MIN_OVERLAP:
            raise CheckpointError(
                f"{path} knows only {overlap:.0%} of the store's {len(common):,} commonest words "
                f"(it needs {MIN_OVERLAP:.0%}): it was trained on other text or another tokenization"
            )

    def detach_neural(self) -> None:
        """Back to the n-gram model alone."""
        if self.neural is not None:
            self._neural_generation += 1
            self.neural = None

    @property
    def neural_path(self) -> Path | None:
        """The attached neural model's checkpoint, or None."""
        return self.neural.path if self.neural is not None else None

    @property
    def neural_weight(self) -> float:
        """The attached neural model's blend weight (0.0 with none attached)."""
        return self.neural.weight if self.neural is not None else 0.0

    def neural_model_path(self, setting: str) -> Path | None:
        """The checkpoint that a neuralModel setting (or a --neural option) picks for this store: a path, 'default'
        (the model retrained beside the store, else the shipped one when the store grew from the shipped model) or
        'none'; None when it picks none (see `lsp_server.paths.neural_model_path`)."""
        return neural_model_path(setting, self.store.path, self.base_sources())

    def use_neural(self, setting: str, weight: float | None = None) -> bool:
        """Attach the neural model `setting` picks (see `neural_model_path`) at `weight` (see `attach_neural`), or
        detach when it picks none; whether the model changed. Raises `CheckpointError` as `attach_neural` does."""
        path = self.neural_model_path(setting)
        if path is None:
            changed = self.neural is not None
            self.detach_neural()
            return changed
        if self.neural_path == path and weight in (None, self.neural_weight):
            return False
        self.attach_neural(path, weight)
        return True

    def version(self) -> int:
        """Changes whenever the model's counts change."""
        return self.store.version()

    def close(self) -> None:
        self.detach_neural()
        self.store.close()

    def compare(self, fit: list[str], held: list[str]) -> list[ModelPerplexity]:
        """The perplexity (per token, sentence ends included) of the token stream `held` under the n-gram model
        and, with a neural model attached, under it alone and under its blend with the n-gram model, the blend's
        weights fit by EM on `fit` (both streams of whole sentences, each ending with `</s>`)."""
        described = f"{self.ngram_kind}, order {self.ngram.order}"
        if self.neural is None:
            return [ModelPerplexity("n-gram", described, perplexity(self.ngram, held))]
        from lm_core.blend import Blend, fit_weights_em

        neural = self.neural.language_model()
        unknown = sum(neural.id_of(w) == UNK_ID for w in held) / len(held) * 100
        shape = f"{neural.config.cell} {neural.config.layers}x{neural.config.hidden_dim}"
        shape = shape if neural.order is None else "window"
        weights = fit_weights_em([self.ngram, neural], fit)
        blend = Blend([self.ngram, neural], weights)
        # each text scored once per model: the held-out rows give the n-gram's scores (its column) and the blend's
        neural_scores = neural.sentence_logprobs(held)
        rows = blend.component_rows(held, known={1: neural_scores})
        return [
            ModelPerplexity("n-gram", described, perplexity_of_scores(rows[:, 0].tolist())),
            ModelPerplexity(
                "neural",
                f"{shape}, {len(neural.words):,} words, {unknown:.1f}% <unk>",
                perplexity_of_scores(neural_scores),
            ),
            ModelPerplexity(
                "blend",
                f"{weights[0]:.2f} n-gram + {weights[1]:.2f} neural",
                perplexity_of_scores(blend.mix(rows)),
            ),
        ]

    # --- personal adaptation ---------------------------------------------------------------------------------
    def enable_adaptation(self, parts: tuple[str, ...] = ("user", "cache"), bucketed: bool | None = None) -> None:
        """Suggest from the adaptive mixture (`lm_core.adaptation`): the store's model, a user layer over what the
        store learned, and the document cache, with the weights kept in the store (refit on each learn's new text,
        scored before it is learned). Scoring and diagnostics stay on `model`; an attached neural model joins the
        mixture at its blend weight. With `bucketed` (default `ADAPTATION_BUCKETED`) the weights depend on how often
        the user layer saw the context's last word. Builds the user layer (seconds for 1M learned words) and the
        mixture's word alignments (~0.3 s for 30k words) before suggestions switch to it, so that a completion on
        another thread meanwhile is answered by `model` at once, not held up by them."""
        if not self.store.learnable or self._count_model is None:
            return  # an imported ARPA model has learned nothing to adapt to
        saved = json.loads(self.store.setting(ADAPTATION_KEY) or "{}")
        weights = saved.get("weights", list(DEFAULT_WEIGHTS))
        bucketed = ADAPTATION_BUCKETED if bucketed is None else bucketed
        adaptation = Adaptation(self._count_model, weights, int(saved.get("fitted_tokens", 0)), parts, bucketed)
        if "bucket_weights" in saved:
            adaptation.bucket_weights = np.asarray(saved["bucket_weights"], dtype=np.float64)
        if self.cache_bytes:
            adaptation.set_memo_bytes(self.cache_bytes // 16)
        adaptation.set_user_text(self.store.learned_sentences(latest_tokens=USER_LAYER_TOKENS))
        top_word_predictions(adaptation.blend, (BOS,), 1)  # the alignments of the mixture's word lists ...
        self._count_model.word_positions()  # ... and the index the document cache's distributions use
        self.adaptation = adaptation

    def disable_adaptation(self) -> None:
        self.adaptation = None

    def adaptation_weights(self) -> dict[str, float | int] | None:
        """The weights kept in the store (store, user, cache) and how many held-out tokens they were fit on."""
        saved = json.loads(self.store.setting(ADAPTATION_KEY) or "{}")
        if "weights" not in saved:
            return None
        return {**dict(zip(COMPONENTS, saved["weights"], strict=True)), "fitted_tokens": saved["fitted_tokens"]}

    def _adapt_before_learning(self, sentences: list[list[str]]) -> None:
        """Score the text's new sentences (normalised tokens; those not learned before) under each component, refit
        and keep the weights."""
        adaptation = self.adaptation
        if adaptation is None:
            return
        fresh = [s for s in sentences if not adaptation.is_learned(s)]
        while sum(map(len, fresh)) > HELD_OUT_PER_LEARN and len(fresh) > 1:
            fresh = fresh[len(fresh) // 2 :]  # the newest part of a long text is enough (and bounds the cost)
        if not fresh:
            return
        weights = adaptation.observe(fresh, self.yield_point)
        record = {
            "weights": [round(float(w), 6) for w in weights],
            "bucket_weights": np.round(adaptation.bucket_weights, 6).tolist(),
            "fitted_tokens": adaptation.fitted_tokens,
        }
        self.store.save_setting(ADAPTATION_KEY, json.dumps(record))

    def _adapt_after_learning(
        self, learned_tokens: int | None = None, sentences: list[list[str]] | None = None
    ) -> None:
        """After the store changed: warm what suggesting derives, then rebuild the user layer, at once after a
        forget (`learned_tokens` None: the forgotten text must leave it now) or once the text learned since its last
        rebuild reaches USER_LAYER_LAG of it (rebuilding a full layer costs ~0.15 s of CPU, after every save of a
        150-word document it doubled a learn's work; the store's model and the document cache have the new text at
        once). `sentences`: what was learned (normalised tokens), held out no more until the rebuild."""
        self._warm_after_learning()  # first: the counts have changed already
        adaptation = self.adaptation
        if adaptation is None:
            return
        if learned_tokens is not None:
            adaptation.note_learned(sentences or [], learned_tokens)
            if adaptation.tokens_since_rebuild < USER_LAYER_LAG * adaptation.user_tokens:
                return
        self.yield_point()
        latest = self.store.learned_sentences(latest_tokens=USER_LAYER_TOKENS, pause=self.yield_point)
        self.yield_point()
        adaptation.set_user_text(latest, self.yield_point)

    def _fill_cache(self, text: str, end: int) -> None:
        """The document cache: the tokens of `text` before character `end` (the start of the word being typed),
        at most CACHE_CHARS of it; the part above the current paragraph is tokenized only when it changes."""
        if self.adaptation is None or "cache" not in self.adaptation.parts:
            return
        nominal = max(0, end - CACHE_CHARS)
        start = text.find("\n\n", nominal, end) if nominal else 0  # whole paragraphs only
        start = nominal if start < 0 else start
        paragraph = max(start, text.rfind("\n\n", start, end))
        sentence = max(paragraph, *(text.rfind(f"{stop} ", paragraph, end) + 1 for stop in ".!?"))
        # the paragraphs above change rarely (each one tokenized once, then remembered), the current paragraph's
        # finished sentences once a sentence
        if text[start:paragraph] != self._cache_head[0]:
            chunks = text[start:paragraph].split("\n\n")
            self._cache_head = (text[start:paragraph], [t for c in chunks if c.strip() for t in self._paragraph(c)])
        head = self._cache_head[1]
        middle = self._tokens_memo(self._cache_middle, text[paragraph:sentence])
        self._cache_middle = (text[paragraph:sentence], middle)
        tail = [t.norm for s in self._sentences(text[sentence:end]) for t in s]
        if tail and tail[-1] == EOS:
            tail.pop()  # the sentence being written has not ended
        self.adaptation.cache.set_tokens([*head, *middle, *tail])

    def _paragraph(self, text: str) -> list[str]:
        """The normalised tokens of one paragraph, remembered (at most PARAGRAPH_MEMO of them)."""
        memo = self._paragraph_memo
        tokens = memo.get(text)
        if tokens is None:
            tokens = memo[text] = [t.norm for s in self._sentences(text) for t in s]
            if len(memo) > PARAGRAPH_MEMO:
                memo.pop(next(iter(memo)))
        return tokens

    def _tokens_memo(self, memo: tuple[str, list[str]], text: str) -> list[str]:
        """The normalised tokens of `text` (from `memo` when it is the same text)."""
        return memo[1] if memo[0] == text else [t.norm for s in self._sentences(text) for t in s]

    def _suggester(self) -> LanguageModel:
        """What suggests: the adaptive mixture (with the neural model as one more component, at its blend weight,
        when one is attached), else `model`."""
        adaptation = self.adaptation
        if adaptation is None:
            return self.model
        mixture = adaptation.blend
        if self.neural is None:
            return mixture
        local = self._local
        key = (mixture, self._neural_generation)
        if getattr(local, "adaptive_key", None) != key:
            from lm_core.blend import Blend

            weight = self.neural.weight
            weights = [*(float(w) * (1 - weight) for w in mixture.weights), weight]
            local.adaptive = Blend([*mixture.models, self._thread_neural_lm()], weights)
            local.adaptive_key = key
        return local.adaptive

    def _thread_neural_lm(self) -> LanguageModel:
        """This thread's `NeuralLM` over the attached network, kept across mixtures (its states stay warm)."""
        assert self.neural is not None
        local = self._local
        if getattr(local, "neural_lm_generation", None) != self._neural_generation:
            local.neural_lm = self.neural.language_model()
            local.neural_lm_generation = self._neural_generation
        return local.neural_lm

    def _warm_after_learning(self) -> None:
        """Derive, on the thread that learned, what the first suggestion after a learn would otherwise derive on the
        interactive thread (15-40 ms of CPU there, the slowest 1 % of completions): the counts' new version (the
        long follower lists the learn changed patched with its rows, the short ones dropped, the unigram level
        patched), the models' word lists, Kneser-Ney's
        unigram level over them, the mixture's word alignments and indexes; all of it is shared by the threads.
        The document cache is left out (the interactive thread fills it while this runs); a new user layer readies
        itself before it is used (`Adaptation.set_user_text`)."""
        self.yield_point()
        self.version()  # the counts' new version first (the reader drops and patches what the learn changed)
        adaptation = self.adaptation
        counted = (
            [self.ngram] if adaptation is None else [m for m in adaptation.blend.models if m is not adaptation.cache]
        )
        for model in counted:  # each model's own tables, a yield point between (each is milliseconds of work)
            if isinstance(model, NgramModel):
                model.warm(self.yield_point)
            else:
                self.yield_point()
                top_word_predictions(model, (BOS,), 1)
        self.yield_point()
        if adaptation is None:
            top_word_predictions(self.model, (BOS,), 1)  # the blend's alignment, when a neural model is attached
            return
        from lm_core.blend import Blend

        models: list[LanguageModel] = list(counted)
        if self.neural is not None:
            models.append(self._thread_neural_lm())
        top_word_predictions(Blend(models), (BOS,), 1)

    # --- suggestions ---------------------------------------------------------------------------------------
    def next_words(
        self, context: Context, k: int = 10, prefix: str = "", sentence_start: bool = False
    ) -> list[Suggestion]:
        """The k most probable next words (not punctuation or special tokens) after `context`, for display (from the
        adaptive mixture when adaptation is on)."""
        return self.next_words_from(self._suggester(), context, k, prefix, sentence_start)

    def next_words_from(
        self,
        model: LanguageModel,
        context: Context,
        k: int = 10,
        prefix: str = "",
        sentence_start: bool = False,
        display: bool = True,
    ) -> list[Suggestion]:
        """`next_words` from a given model (with `display` False, the normalised words, not their display form)."""
        words = top_word_predictions(model, context, k, prefix.casefold())
        if not display:
            return [Suggestion(p.word, p.prob) for p in words]
        return [Suggestion(self.display(p.word, sentence_start, prefix), p.prob) for p in words]

    def complete_at(self, text: str, offset: int, k: int = 10) -> Completion:
        """Suggestions for the word at character `offset` of `text` (the next word after a space, or the rest of
        the word being typed)."""
        width = self.context_width
        stride = NEURAL_CONTEXT_STRIDE if width == UNBOUNDED_CONTEXT else 1
        cursor = tokenize.cursor_context(text, offset, max_tokens=width, stride=stride)
        if cursor.skipped:
            return Completion([], cursor.prefix, cursor.prefix_start)
        self._fill_cache(text, cursor.prefix_start)
        suggestions = self.next_words(cursor.context, k, cursor.prefix, cursor.sentence_start)
        return Completion(suggestions, cursor.prefix, cursor.prefix_start)

    def continue_at(self, text: str, offset: int, max_words: int = 6) -> Completion | None:
        """Ghost text at character `offset` of `text`: the likeliest continuation of up to `max_words` words, as one
        suggestion (probability nan) whose `word` replaces `text[prefix_start:offset]`; None when there is none.

        The typed part of the word is kept exactly as typed (only its rest is added, never a re-cased copy); a space
        comes first when the cursor is right after a word or a sentence end; a quotation mark or an opening bracket
        that the continuation would leave unmatched (with the paragraph before the cursor) ends it just before.
        """
        from lm_core.sampling import BeamConfig, beam_continuation

        cursor = tokenize.cursor_context(text, offset, max_tokens=self.context_width)
        if cursor.skipped:
            return None
        config = BeamConfig(max_words=max_words)
        words = beam_continuation(self.model, cursor.context, config, cursor.prefix.casefold())
        if not words:
            return None
        first = self.display(words[0], cursor.sentence_start, cursor.prefix)
        rest = self.render(words[1:], sentence_start=False) if len(words) > 1 else ""
        glue = "" if not rest or _attaches_left(rest) else " "
        typed = text[cursor.prefix_start : offset]
        ghost = typed + first[len(typed) :] + glue + rest
        paragraph = text[max(text.rfind("\n\n", 0, offset), 0) : cursor.prefix_start]
        ghost = _balanced(ghost, paragraph)
        if len(ghost) <= len(typed):
            return None
        before = text[cursor.prefix_start - 1] if cursor.prefix_start > 0 else "\n"
        after_opener = before in _OPENERS or (before == '"' and paragraph.count('"') % 2 == 1)
        if not typed and not before.isspace() and not after_opener and not _attaches_left(ghost):
            ghost = " " + ghost
        suggestion = Suggestion(ghost, math.nan)
        return Completion([suggestion], typed, cursor.prefix_start)

    def generate(self, seed: str, n: int, config: SamplingConfig) -> str:
        """`n` tokens sampled from the model after the text `seed` (see `lm_core.sampling.generate`), as prose
        (`render`; capitalised first when `seed` is blank)."""
        from lm_core.sampling import generate

        context = list(self.context_of(seed))
        seed_tokens = context[1:] if context[:1] == [BOS] else context
        words = generate(self.model, seed_tokens, n, config)
        return self.render(words, sentence_start=not seed.strip())

    def context_of(self, text: str) -> Context:
        """The model context after all of `text` (as if a space followed it)."""
        if self.tokenizer == "pretokenized":
            width = self.context_width
            return (BOS, *text.split())[-width:] if width > 0 else ()
        return tokenize.cursor_context(text + " ", len(text) + 1, max_tokens=self.context_width).context

    def display(self, word: str, sentence_start: bool, typed: str = "") -> str:
        """How a person would type `word`: its most frequent surface form, capitalised at a sentence start or
        when the typed prefix is; all capitals when the typed prefix (2+ letters) is."""
        surface = self._surface(word)
        if len(typed) > 1 and typed.isupper():
            return surface.upper()
        if (typed[:1].isupper() or (sentence_start and not typed)) and surface[:1].islower():
            return surface[:1].upper() + surface[1:]
        return surface

    def render(self, words: list[str], sentence_start: bool = True) -> str:
        """Generated tokens as prose: display casing, sentences capitalised, no space before closing punctuation,
        a new line after each sentence end."""
        out: list[str] = []
        for word in words:
            if word == EOS:
                out.append("\n")
                sentence_start = True
                continue
            text = self.display(word, sentence_start)
            glue = not out or out[-1] == "\n" or out[-1].strip() in _OPENERS or text in _CLOSERS or _attaches_left(text)
            out.append(text if glue else " " + text)
            sentence_start = False
        return "".join(out).replace(" \n", "\n").strip()

    def _surface(self, word: str) -> str:
        """The store's most frequent surface form of `word`, remembered while the counts stay the same."""
        version = self.version()
        if version != self._casing_version:
            self._casing.clear()
            self._casing_version = version
        surface = self._casing.get(word)
        if surface is None:
            surface = self._casing[word] = self.store.surface_of(word)
        return surface

    # --- scoring ---------------------------------------------------------------------------------------------
    def score(self, text: str) -> DocumentScore:
        """Score every token of `text`: the perplexity and each word's surprisal."""
        return self.score_sentences(self._sentences(text))

    def score_sentences(self, sentences: list[list[tokenize.Token]]) -> DocumentScore:
        """`score` of a text's prose sentences (`store.streaming` gives a large file's in batches)."""
        scored: list[WordScore] = []
        logprobs = sentence_scores(self.model, [token.norm for sentence in sentences for token in sentence])
        width = self.context_width
        position = 0
        for sentence in sentences:
            history: list[str] = [BOS]
            for token in sentence:
                context = tuple(history[-width:]) if width > 0 else ()
                logprob = logprobs[position]
                position += 1
                if token.kind != "eos":
                    bits = surprisal_bits(logprob)
                    scored.append(WordScore(token.surface, token.start, token.end, bits, context))
                history.append(token.norm)
        return DocumentScore(perplexity_of_scores(logprobs), len(logprobs), scored)

    def _sentences(self, text: str) -> list[list[tokenize.Token]]:
        if self.tokenizer == "prose":
            return tokenize.sentences(text)
        out, offset = [], 0
        for line in text.split("\n"):
            tokens, pos = [], 0
            for word in line.split():
                pos = line.index(word, pos)
                tokens.append(tokenize.Token(word, word, offset + pos, offset + pos + len(word), "word"))
                pos += len(word)
            end = offset + len(line)
            out.append([*tokens, tokenize.Token("", EOS, end, end, "eos")])
            offset = end + 1
        if text.endswith("\n"):
            out.pop()
        return out

    def check(
        self, text: str, config: OddityConfig | None = None, ignored: frozenset[str] = frozenset()
    ) -> DocumentCheck:
        """The document's perplexity and its odd words. Sentences are scored once per model version and kept, so
        re-checking an edited document only scores the sentences that changed."""
        config = config or OddityConfig()
        total, count, found = 0.0, 0, []
        sentences = self._sentences(text)
        with self._check_lock:
            results = self._checked(sentences, config)
        for sentence in sentences:
            logprob, oddities = results[tuple(t.norm for t in sentence)]
            total, count = total + logprob, count + len(sentence)
            for odd in oddities:
                if any(t.norm in ignored or t.surface in ignored for t in sentence[odd.index : odd.end]):
                    continue
                found.append(self._odd_word(text, sentence, odd))
        perplexity = math.exp(-total / count) if count else math.nan
        return DocumentCheck(perplexity, count, found)

    def _checked(
        self, sentences: list[list[tokenize.Token]], config: OddityConfig
    ) -> dict[tuple[str, ...], tuple[float, list[Oddity]]]:
        """Each sentence's log-probability and oddities: from the sentence cache (least recently used out, within
        its byte budget), or checked now under this model version and config (counts fetched in bulk) and cached;
        the caller holds `_check_lock`."""
        if self._check_version != (self.version(), self._neural_generation, config):
            if self._check_version is None or self._check_version[0] != self.version():
                self._memo = {}
            self._sentence_cache.clear()
            self._sentence_bytes = 0
            self._check_version = (self.version(), self._neural_generation, config)
        if len(self._memo) > min(MEMO_LIMIT, self.cache_bytes // 8 // MEMO_ENTRY_BYTES):  # within the budget too
            self._memo = {}
        results: dict[tuple[str, ...], tuple[float, list[Oddity]]] = {}
        todo: dict[tuple[str, ...], list[tokenize.Token]] = {}
        for sentence in sentences:
            norms = tuple(t.norm for t in sentence)
            cached = self._sentence_cache.get(norms)
            if cached is not None:
                self._sentence_cache.move_to_end(norms)
                results[norms] = cached
            elif norms not in results:
                todo.setdefault(norms, sentence)
        batch = list(todo.values())
        for start in range(0, len(batch), CHECK_BATCH_SENTENCES):
            self.yield_point()
            part = batch[start : start + CHECK_BATCH_SENTENCES]
            for norms, result in self._find(part, config, self._memo).items():
                results[norms] = result
                self._cache_sentence(norms, result)
        return results

    def _find(
        self, sentences: list[list[tokenize.Token]], config: OddityConfig, memo: Memo
    ) -> dict[tuple[str, ...], tuple[float, list[Oddity]]]:
        """Each sentence's log-probability (natural log) and oddities, all candidates scored in one batch."""
        model = self.model
        screen = self.ngram if model is not self.ngram else None
        norms = [[t.norm for t in sentence] for sentence in sentences]
        if model is self.ngram:  # every sentence's tokens in one batch (counts fetched in one round per order)
            scores = score_tokens_many(model, norms, memo)
            inputs = [self._sentence_input(s, model, lps) for s, lps in zip(sentences, scores, strict=True)]
        else:  # every sentence in one batched call (a neural model: padded batches)
            flat = self._blend_scores(model, norms, memo)
            inputs, start = [], 0
            for sentence in sentences:
                inputs.append(self._sentence_input(sentence, model, flat[start : start + len(sentence)]))
                start += len(sentence)
        found = find_oddities_many(model, inputs, config, self.oddity_vocabulary(), screen, memo)
        return {tuple(item.tokens): (math.fsum(item.logprobs), odd) for item, odd in zip(inputs, found, strict=True)}

    def _blend_scores(self, model: Any, sentences: list[list[str]], memo: Memo) -> list[float]:
        """Natural-log P of every token of the sentences under `model` (a blend, or any model scored whole). The
        blend of this n-gram model (its first component) takes the n-gram's scores from `score_tokens_many`, kept in
        `memo`, where the screen of the candidates finds them next, instead of scoring them a second time."""
        flat_tokens = [token for sentence in sentences for token in sentence]
        models = getattr(model, "models", None)
        if not models or models[0] is not self.ngram or not hasattr(model, "component_rows"):
            return sentence_scores(model, flat_tokens)
        ngram = [score for scores in score_tokens_many(self.ngram, sentences, memo) for score in scores]
        return model.mix(model.component_rows(flat_tokens, known={0: ngram})).tolist()

    def _odd_word(self, text: str, sentence: list[tokenize.Token], odd: Oddity) -> OddWord:
        """An oddity of a sentence as the user sees it: its span of the text, alternatives as they would type them."""
        span = sentence[odd.index : odd.end]
        start, end = span[0].start, span[-1].end
        at_start = odd.index == 0
        alternatives, kinds, reasons = [], [], []
        for correction in odd.alternatives:
            words = []
            for k, word in enumerate(correction.tokens):
                same = [t.surface for t in span if t.norm == word and not (at_start and t is span[0])]
                if same and not (k == 0 and at_start):
                    words.append(same[0])
                else:
                    words.append(_cased(self.display(word, False), at_start and k == 0, span[0].surface))
            written = " ".join(words)
            alternatives.append((written, correction.gain))
            kinds.append(correction.kind)
            reasons.append(explain(text[start:end], written, correction))
        return OddWord(start, end, text[start:end], odd.surprisal, tuple(alternatives), tuple(kinds), tuple(reasons))

    def word_info(self, text: str, offset: int, k: int = 5, config: OddityConfig | None = None) -> WordInfo | None:
        """The word at character `offset` (None if there is none), scored in its sentence, with the oddity it is
        part of under `config` (if any; a check of that one sentence, kept like `check`'s). Looks back at most
        `LOOKBACK` characters, so it is cheap on any document."""
        begin = max(0, offset - LOOKBACK)
        paragraph = text.rfind("\n\n", begin, offset)
        begin = paragraph + 2 if paragraph >= 0 else begin
        segment = text[begin : offset + LOOKAHEAD]
        for sentence in self._sentences(segment):
            for i, token in enumerate(sentence):
                if token.kind in ("word", "number") and begin + token.start <= offset <= begin + token.end:
                    history = (BOS, *(t.norm for t in sentence[:i]))
                    width = self.context_width
                    context = history[max(0, len(history) - width) :] if width else ()
                    logprob = self.model.logprob(token.norm, context)
                    prob = math.exp(logprob) if logprob > -math.inf else 0.0
                    bits = surprisal_bits(logprob)
                    alternatives = [a for a in self.next_words(context, k + 1, "", i == 0) if a.word != token.surface]
                    odd = self._oddity_at(segment, sentence, i, config or OddityConfig(), begin)
                    start, end = begin + token.start, begin + token.end
                    return WordInfo(token.surface, start, end, prob, bits, alternatives[:k], odd)
        return None

    def _oddity_at(
        self, segment: str, sentence: list[tokenize.Token], i: int, config: OddityConfig, begin: int
    ) -> OddWord | None:
        """The oddity covering token i of a sentence of `segment` (which starts at character `begin`), if any: from
        the last check's results, else checked here without touching them (hover runs beside a check)."""
        norms = tuple(t.norm for t in sentence)
        fresh = self._check_version == (self.version(), self._neural_generation, config)
        result = self._sentence_cache.get(norms) if fresh else None
        if result is None:
            result = self._find([sentence], config, {})[norms]
        for odd in result[1]:
            if odd.index <= i < odd.end:
                found = self._odd_word(segment, sentence, odd)
                return OddWord(
                    begin + found.start, begin + found.end, found.word, found.surprisal, found.alternatives,
                    found.kinds, found.reasons,
                )  # fmt: skip
        return None

    def _sentence_input(
        self, sentence: list[tokenize.Token], model: Any, logprobs: list[float] | None = None
    ) -> SentenceInput:
        """A sentence as oddity detection reads it: which tokens to look at and which may change (lower-case words:
        not names, acronyms or numbers; words the model does not know only as misspellings), each token's score."""
        norms = [t.norm for t in sentence]
        skip = [t.kind not in ("word", "number") for t in sentence]
        editable = [t.kind == "word" and _is_common_casing(t.surface, i) for i, t in enumerate(sentence)]
        if logprobs is None:
            logprobs = (
                score_tokens_of(model, norms, self._memo) if model is self.ngram else sentence_scores(model, norms)
            )
        return SentenceInput(norms, skip, editable, logprobs)

    def oddity_vocabulary(self) -> Vocabulary:
        """What oddity detection may propose: words of the n-gram model's vocabulary (learned words included), and
        for spelling corrections words seen at least SPELLING_MIN_COUNT times."""
        version = self.version()
        if self._vocabulary is None or self._vocabulary[0] != version:
            self._vocabulary = (version, self._make_vocabulary())
        return self._vocabulary[1]

    def _neighbour_index(self, words: list[str]) -> NeighbourIndex:
        """The spelling neighbours of `words`, kept while the words stay the same (learning rarely changes them) and
        extended when words were only added (a word reached the spelling count), rebuilt otherwise (forgetting)."""
        key = frozenset(words)
        if self._neighbours is not None:
            old, index = self._neighbours
            if key == old:
                return index
            if old <= key:
                index.add(sorted(key - old))
                self._neighbours = (key, index)
                return index
        self._neighbours = (key, NeighbourIndex(words))
        return self._neighbours[1]

    def _spelling_list(self, words: list[str]) -> Speller:
        """The corrections of misspelt words among `words`, kept while the list stays the same."""
        key = frozenset(words)
        if self._speller is None or self._speller[0] != key:
            self._speller = (key, Speller(words))
        return self._speller[1]

    def _make_vocabulary(self) -> Vocabulary:
        if self._count_model is not None:
            counts = self._count_model.counts
            unigrams = counts.level(())
            words = counts.vocab.words
            pairs = zip(unigrams.ids.tolist(), unigrams.count.tolist(), strict=True)
            counted = [(words[i], c) for i, c in pairs if c >= MISSPELLING_MIN_COUNT and words[i].isalpha()]
            counted.sort(key=lambda wc: -wc[1])  # commonest first: a misspelling's corrections in this order
            frequent = [w for w, c in counted if c >= SPELLING_MIN_COUNT]
            id_of = counts.vocab.id_of
            level = counts.level

            # word id -> the ids seen after it, ascending (for this version): the reader's own array, searched (a
            # frozenset of Python ints took ~10x the memory: 21 MB after a cold check of 5,000 words)
            followers: dict[int, np.ndarray] = {}

            def seen_pair(a: str, b: str) -> bool:
                aid = BOS_ID if a == BOS else id_of(a)
                after = followers.get(aid)
                if after is None:
                    if len(followers) > FOLLOWER_SETS:
                        followers.clear()
                    after = followers[aid] = level((aid,)).ids
                bid = id_of(b)
                at = int(after.searchsorted(bid))
                return at < len(after) and int(after[at]) == bid

            known = frozenset(words).difference((UNK,))  # a C-level membership test: called ~50 times a word
            speller = self._spelling_list([w for w, _ in counted])
            return Vocabulary(known.__contains__, self._neighbour_index(frequent), seen_pair, speller)
        ngram = self.ngram
        return Vocabulary(known=lambda w: ngram.logprob(w, ()) > ngram.logprob(UNK, ()), near=lambda w: ())

    # --- learning ---------------------------------------------------------------------------------------------
    def learn(self, source: str, text: str, kind: str = "document") -> LearnResult:
        """Learn `text` as `source` (a "document" or a "file"); with adaptation on, its new sentences first refit
        the mixture's weights. `ImportedModelError` for an imported ARPA model.

        The text is analysed once, as the store learns it (secrets dropped; a long prose text in pieces, with a
        yield point after each), and the adaptive mixture's held-out text and the casing read the same sentences."""
        return self.learn_many([(source, text)], kind)[0]

    def learn_many(self, documents: Sequence[tuple[str, str]], kind: str = "document") -> list[LearnResult]:
        """`learn` of several texts, each given as (source, text), at once: their new sentences scored together for
        the weights, one count update and one commit (`CountStore.learn_many_analysed`), and one warm-up after it,
        so what every suggestion derives from the counts changes once, not once a text (the server learns the
        documents saved while a person types together). A source named twice: `ValueError`."""
        if not self.store.learnable:
            return [self.store.learn(source, text, kind) for source, text in documents]  # says why it cannot
        if not documents:
            return []
        pause = None if self.yield_point is _no_wait else self.yield_point  # nothing to yield to: learn at once
        analyses = []
        for _, text in documents:
            analyses.append(streaming.analyse_pausing(text, self.tokenizer, pause))
            self.yield_point()
        sentences = [sentence for analysed in analyses for sentence in analysed.sentences]
        self._adapt_before_learning(sentences)
        self.yield_point()
        before = self.version()
        analysed_documents = [
            (source, analysed, sources.sha256(text))
            for (source, text), analysed in zip(documents, analyses, strict=True)
        ]
        results = self.store.learn_many_analysed(analysed_documents, kind, pause)
        self._take_in_commit()
        self.yield_point()
        self._keep_casing(before, sentences)
        self._adapt_after_learning(sum(r.tokens for r in results), sentences)
        return results

    def _take_in_commit(self) -> None:
        """Right after this engine's own commit, before any yield point: the reader drops or patches what the commit
        changed and patches its unigram level (~2 ms), so the completion typed right after a save finds that done
        instead of doing it on the interactive thread (the rest is warmed step by step, `_warm_after_learning`)."""
        model = self._count_model
        if model is not None:
            model.counts.level(())  # the version first (drops and patches), then the unigram level's patch

    def _keep_casing(self, before: int, sentences: list[list[str]]) -> None:
        """After this engine's own learn of `sentences` (normalised tokens; the counts at version `before` until
        then), forget only the display casing of the words they hold, so the next suggestions do not read every
        word's casing again."""
        if self._casing_version != before:
            return
        for sentence in sentences:
            for norm in sentence:
                self._casing.pop(norm, None)
        self._casing_version = self.version()

    def learn_analysed(
        self, source: str, analysed: sources.Analysed, digest: str, kind: str = "document"
    ) -> LearnResult:
        """`learn` of a text already analysed with the store's tokenizer (`store.streaming` reads large files in
        pieces; `digest`: the text's `sources.sha256`); adaptation's weights are not refit on it (its text is not
        at hand), its user layer is updated. `ImportedModelError` for an imported ARPA model."""
        result = self.store.learn_analysed(source, analysed, digest, kind)
        self._adapt_after_learning(result.tokens)
        return result

    def learn_file(self, path: str | Path) -> LearnResult:
        result = self.store.learn_file(path)
        self._adapt_after_learning(result.tokens)
        return result

    def forget(self, source: str) -> LearnResult:
        result = self.store.forget(source)
        self._adapt_after_learning()
        return result

    def sources(self) -> list[SourceInfo]:
        """What the store learned from, oldest first (none for an imported ARPA model)."""
        return self.store.sources()

    def base_sources(self) -> list[str]:
        """Names of the store's base sources (a store seeded from the shipped model has DEFAULT_BASE_NAME)."""
        return [s.name for s in self.sources() if s.kind == "base"]

    def learned_sentences(self) -> list[list[str]]:
        """The sentences (normalised tokens, each ending with `</s>`) of every document and file the store learned,
        oldest first: what a neural model is trained on."""
        return self.store.learned_sentences()

    def export_arpa(self, path: str | Path, order: int | None = None) -> dict[int, int]:
        """Write the store's Kneser-Ney model (of `order`, default the store's) as an ARPA file (log10); the n-grams
        written per order. `ImportedModelError` for an imported ARPA model."""
        return self.store.export_arpa(path, order)

    def defer_checkpoints(self) -> None:
        """Leave the store's write-ahead-log checkpoints to `checkpoint` (see `CountStore.defer_checkpoints`)."""
        self.store.defer_checkpoints()

    def checkpoint(self) -> int:
        """Checkpoint the store's write-ahead log now (see `CountStore.checkpoint`)."""
        return self.store.checkpoint()

    @property
    def ngram_kind(self) -> str:
        """How the n-gram model estimates: its smoothing, or "ARPA backoff" for an imported model."""
        return str(self._count_model.smoothing) if self._count_model is not None else "ARPA backoff"

    def stats(self) -> dict[str, object]:
        stats: dict[str, object] = {
            **self.store.stats(),
            "smoothing": self.ngram_kind,
            "model_order": self.ngram.order,
        }
        if self.neural_path is not None:
            stats.update(neural_model=str(self.neural_path), blend_weight=self.neural_weight)
        weights = self.adaptation_weights()
        if self.adaptation is not None:  # the live weights (what suggests now)
            weights = {
                **dict(zip(COMPONENTS, self.adaptation.weights.tolist(), strict=True)),
                "fitted_tokens": self.adaptation.fitted_tokens,
            }
        if weights is not None:
            state = "on" if self.adaptation is not None else "off"
            parts = [f"{name} {weights[name]:.3f}" for name in COMPONENTS]
            stats["adaptation"] = ", ".join([state, *parts, f"fit on {weights['fitted_tokens']:,} held-out tokens"])
        elif self.adaptation is not None:
            stats["adaptation"] = "on, no held-out text yet"
        return stats


def _no_wait() -> None:
    """The default `Engine.yield_point`: nothing waits."""


def _cased(word: str, sentence_start: bool, like: str) -> str:
    """A correction written as the user would: lower case when the word it replaces is (a name keeps the store's
    capitals only if the replaced word had them too), capitalised at a sentence start."""
    if like.islower() and word[:1].isupper() and word[1:].islower():
        word = word.lower()
    if sentence_start and like[:1].isupper():
        word = word[:1].upper() + word[1:]
    return word


def _is_common_casing(surface: str, index: int) -> bool:
    """Not a name or an acronym: lower case, or capitalised only at a sentence start; 'I'."""
    if surface.islower() or surface == "I":
        return True
    return index == 0 and surface[:1].isupper() and surface[1:].islower()


def _sentence_bytes(norms: tuple[str, ...], result: tuple[float, list[Oddity]]) -> int:
    """What one checked sentence costs in the cache, in bytes (its key's strings and tuple, its oddities)."""
    return sys.getsizeof(norms) + sum(sys.getsizeof(w) for w in norms) + SENTENCE_ENTRY_BYTES * (1 + len(result[1]))


__all__ = [
    "AttachedNeural",
    "Completion",
    "DocumentScore",
    "Engine",
    "ModelPerplexity",
    "Smoothing",
    "Suggestion",
    "WordScore",
]


def _balanced(ghost: str, before: str) -> str:
    """`ghost` cut just before the first quotation mark or bracket it would leave unmatched: its last `"` when the
    count in `before` + `ghost` is odd, an opening bracket it does not close; trailing spaces removed."""
    cut = len(ghost)
    if '"' in ghost and (before.count('"') + ghost.count('"')) % 2 == 1:
        cut = ghost.rfind('"')
    for opener, closer in ("()", "[]", "{}"):
        unmatched: list[int] = []
        for i, ch in enumerate(ghost):
            if ch == opener:
                unmatched.append(i)
            elif ch == closer and unmatched:
                unmatched.pop()
        if unmatched:
            cut = min(cut, unmatched[0])
    return ghost[:cut].rstrip()
