"""Linear interpolation of language models (an n-gram and a neural model), with the weights fit by EM.

    P(w | h) = sum_m  weights[m] * P'_m(w | h)

The first model is the reference: the blend's vocabulary V is the reference's (the words its `distribution`
lists), so the blend sums to 1 over V as the reference does, and a word outside V is scored as V's `<unk>`.
Every other model m has a vocabulary W_m of its own (a neural model's fixed word list); P'_m re-expresses its
distribution over V, moving no mass in or out:

- a word of V that m knows (not `<unk>`): P'_m(w) = P_m(w);
- m's `<unk>` mass U = P_m(<unk> | h) is shared among the words of V that m does not know, and V's `<unk>`, in
  proportion to the reference's probabilities of them in the same context:
  P'_m(w) = U * P_ref(w | h) / Z  with  Z = P_ref(<unk> | h) + sum of P_ref(v | h) over the v in V outside W_m
  (if Z = 0, U goes to V's `<unk>`);
- the mass m gives to words the reference does not know (outside V) goes to V's `<unk>`, which is how the reference
  itself scores such words.

So sum over V of P'_m = sum over W_m of P_m = 1, and the blend sums to 1 whenever its weights do. A component needs
`logprob` and a full distribution: `distribution_arrays(context) -> (words, probs)` if it has one (`NeuralLM`),
else `distribution(context) -> dict` (`NgramModel`, `BackoffModel`). All logs are natural logs.

`fit_weights_em` fits the weights on held-out tokens by expectation-maximisation: the weights that maximise the
held-out likelihood of the mixture (a concave problem, so EM's fixed point is the optimum).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lm_core.metrics import Continuation, continuation_scores, split_sentences
from lm_core.model import Context, LanguageModel, Prediction, rank_top_k
from lm_core.vocab import BOS, UNK
from lm_core.word_lists import SHARED as SHARED_WORD_LISTS
from lm_core.word_lists import WordListIndex, build_index


@dataclass
class _Alignment:
    """How one component's vocabulary maps onto the reference's (positions in each one's word list)."""

    both_ref: np.ndarray  # positions in V of the words both know (not <unk>)
    both_m: np.ndarray  # ... and the same words' positions in the component's list
    pool_ref: np.ndarray  # positions in V that share the component's <unk> mass (V's <unk> included)
    unk_m: int | None  # the component's <unk>
    extra_m: np.ndarray  # positions of the component's words outside V (their mass goes to V's <unk>)
    in_ref: np.ndarray  # each component word's position in V, -1 when V lacks it
    _pool_mask: np.ndarray | None = None

    def pool_mask(self, ref_length: int) -> np.ndarray:
        """1.0 at the positions of V in the pool, else 0.0 (float64, length |V|; made once)."""
        if self._pool_mask is None:
            mask = np.zeros(ref_length)
            mask[self.pool_ref] = 1.0
            self._pool_mask = mask
        return self._pool_mask


def _alignment_from(in_ref: np.ndarray, ref_length: int, ref_unk: int | None, unk_m: int | None) -> _Alignment:
    """The alignment given where each component word sits in V (-1: not there), in the order a word-by-word scan
    would give."""
    found = in_ref >= 0
    in_m = np.full(ref_length, -1, dtype=np.int64)
    in_m[in_ref[found]] = np.flatnonzero(found)  # both lists hold distinct words: a one-to-one map
    shared = in_m >= 0
    if ref_unk is not None:
        shared[ref_unk] = False  # <unk> is never a word both know: it is in the pool
    outside = ~found
    if unk_m is not None:
        outside[unk_m] = False
    both_ref = np.flatnonzero(shared)
    return _Alignment(both_ref, in_m[both_ref], np.flatnonzero(~shared), unk_m, np.flatnonzero(outside), in_ref)


def _extended_alignment(
    old: _Alignment, old_ref_length: int, ref: list[str], ref_unk: int | None, words_m: list[str]
) -> _Alignment:
    """The alignment of `words_m` onto `ref`, which extends the reference list `old` was made for (its first
    `old_ref_length` words): only the reference's new words are looked up."""
    in_ref = old.in_ref.copy()
    index_m = SHARED_WORD_LISTS.index(words_m).position
    for at, word in enumerate(ref[old_ref_length:], start=old_ref_length):
        j = index_m.get(word)
        if j is not None:
            in_ref[j] = at
    return _alignment_from(in_ref, len(ref), ref_unk, old.unk_m)


SHARED_ALIGNMENTS = 3
"""Alignments every Blend shares (the latest: the current vocabulary's and the one before, while the two threads may
differ for a moment)."""


class _SharedAlignments:
    """Alignments of a component's word list onto a reference list, kept by the lists' identity and shared by every
    Blend: a mixture rebuilt after a learn (new Blend objects over the same models' lists) finds them instead of
    deriving them again. Lists are held (so their ids stay theirs) and checked by length too (a list grown in place
    is new)."""

    def __init__(self, size: int = SHARED_ALIGNMENTS) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._alignments: OrderedDict[tuple[int, int], tuple[list[str], list[str], int, int, _Alignment]] = (
            OrderedDict()
        )

    def alignment(
        self, ref: list[str], words: list[str], ref_unk: int | None, make: Callable[[list[str]], _Alignment]
    ) -> _Alignment:
        """The alignment of `words` onto `ref` (whose `<unk>` is at `ref_unk`): kept, or extended from the alignment
        of the same `words` onto a list `ref` extends (a store's vocabulary after a learn added words), or made by
        `make(words)` (which aligns onto `ref`)."""
        key = (id(ref), id(words))
        with self._lock:
            entry = self._alignments.get(key)
            if entry is not None and entry[0] is ref and entry[1] is words and entry[2:4] == (len(ref), len(words)):
                self._alignments.move_to_end(key)
                return entry[4]
            base = self._extendable(ref, words)
        alignment = make(words) if base is None else _extended_alignment(base[1], base[0], ref, ref_unk, words)
        with self._lock:
            self._alignments[key] = (ref, words, len(ref), len(words), alignment)
            self._alignments.move_to_end(key)
            while len(self._alignments) > self.size:
                self._alignments.popitem(last=False)
        return alignment

    def _extendable(self, ref: list[str], words: list[str]) -> tuple[int, _Alignment] | None:
        """(the reference length, the alignment) of the same `words` onto the longest kept list `ref` extends."""
        best = None
        for old_ref, old_words, ref_length, words_length, alignment in self._alignments.values():
            if old_words is not words or words_length != len(words) or ref_length >= len(ref):
                continue
            if (best is None or ref_length > best[0]) and ref[:ref_length] == old_ref[:ref_length]:
                best = (ref_length, alignment)
        return best


_ALIGNMENTS = _SharedAlignments()


class Blend:
    """A `LanguageModel` interpolating `models` linearly with `weights` (non-negative, summing to 1; default
    uniform). See the module docstring for how vocabularies are reconciled. `order` is None when any component's
    is (a neural model's unbounded context), else the largest."""

    def __init__(self, models: Sequence[LanguageModel], weights: Sequence[float] | None = None) -> None:
        if not models:
            raise ValueError("a blend needs at least one model")
        self.models = list(models)
        self.weights = _check_weights(weights, len(self.models))
        orders = [m.order for m in self.models]
        self.order: int | None = None if None in orders else max(o for o in orders if o is not None)
        self._ref_words: list[str] | None = None
        self._ref_index: dict[str, int] = {}
        self._ref_lists: WordListIndex = build_index([])
        self._alignments: dict[int, tuple[list[str], _Alignment]] = {}
        self._known: list[dict[str, int] | None] = [None] * len(self.models)
        self._known_key: object = object()
        self._memo: tuple[object, Context, np.ndarray] | None = None
        self._blended_memo: tuple[object, np.ndarray] | None = None

    # --- the LanguageModel interface --------------------------------------------------------------------------------
    def align(self, pause: Callable[[], None] | None = None) -> None:
        """Derive now how each component's word list maps onto the reference's (what the first distribution would
        derive: ~10,000 dictionary lookups a component), `pause` called before each component (the server's
        background thread lets a waiting completion go first). Shared with every Blend over the same lists."""
        self._set_reference(_word_list(self.models[0]))
        for m, model in enumerate(self.models[1:], start=1):
            if pause is not None:
                pause()
            words_m = _word_list(model)
            if words_m is not self._ref_words:
                self._alignment(m, words_m)

    def logprob(self, word: str, context: Context) -> float:
        """Natural log of the blended P(word | context); a word outside V is scored as `<unk>`; -inf for `<s>`."""
        lps = self.component_logprobs(word, context)
        with np.errstate(divide="ignore"):
            terms = np.log(self.weights) + lps
        return float(np.logaddexp.reduce(terms)) if np.isfinite(terms).any() else -math.inf

    def predict(self, context: Context, k: int = 10, prefix: str = "") -> list[Prediction]:
        """The k most probable next words starting with `prefix`, most probable first (ties by word). Exact: the
        whole blended distribution is computed (numpy, one row per component) and ranked."""
        if k <= 0:
            return []
        words, blended = self.blended_arrays(context)
        if prefix:
            positions = self._prefix_positions(prefix)
            ranked = rank_top_k(blended[positions], positions, words, k)
        else:  # every word: no gather of the whole array
            ranked = rank_top_k(blended, None, words, k)
        return [Prediction(words[i], p) for p, i in ranked if p > 0]

    def distribution(self, context: Context) -> dict[str, float]:
        """The blended P(w | context) for every w in V (sums to 1 when the components do)."""
        words, blended = self.blended_arrays(context)
        return dict(zip(words, blended.tolist(), strict=True))

    def blended_arrays(self, context: Context) -> tuple[list[str], np.ndarray]:
        """(V's words, the blended P(w | context) for each, float64; do not modify it): the components' rows of
        `component_arrays` weighted and summed one at a time into one array (no (M, |V|) array is made; a component
        of weight 0 is not asked), kept for the context while nothing changes (a person typing a word asks again
        with a longer prefix)."""
        key = (self._version(), tuple(context), self.weights.tobytes())
        memo = self._blended_memo
        if memo is not None and memo[0] == key and self._ref_words:
            return self._ref_words, memo[1]
        ref_words, p_ref = _arrays(self.models[0], context)
        self._set_reference(ref_words)
        blended = self.weights[0] * p_ref
        for m, model in enumerate(self.models[1:], start=1):
            if self.weights[m] > 0:
                words_m, p_m = _arrays(model, context)
                self._add_reexpressed(blended, float(self.weights[m]), m, words_m, p_m, p_ref)
        blended.flags.writeable = False
        self._blended_memo = (key, blended)
        return ref_words, blended

    def sentence_logprobs(self, tokens: Sequence[str]) -> list[float]:
        """Natural-log P of every token of a flat sequence with `</s>` at sentence ends, each sentence read from
        `<s>` (the numbers `score_tokens` gives, up to float rounding), from `component_rows`."""
        return self.mix(self.component_rows(tokens)).tolist()

    def score_continuations(self, requests: Sequence[Continuation]) -> list[list[float]]:
        """Natural-log blended P of each token of each request's `after` (`lm_core.metrics.Continuation`), from
        `component_continuations`."""
        return [self.mix(rows).tolist() for rows in self.component_continuations(requests)]

    def mix(self, rows: np.ndarray) -> np.ndarray:
        """The blend's natural-log probabilities, log sum_m w_m P'_m, for rows (T, M) of log P'_m (as
        `component_rows` gives them)."""
        log_weights = np.log(self.weights, where=self.weights > 0, out=np.full(len(self.weights), -math.inf))
        terms = rows + log_weights
        with np.errstate(invalid="ignore"):
            out = np.logaddexp.reduce(terms, axis=1) if len(terms) else np.zeros(0)
        out[~np.isfinite(terms).any(axis=1)] = -math.inf
        return out

    def component_rows(self, tokens: Sequence[str], known: dict[int, Sequence[float]] | None = None) -> np.ndarray:
        """log P'_m of every token of a flat sequence (as `sentence_logprobs` reads it) under each component m, a
        (T, M) array of natural logs (see `component_continuations`); `known[m]`: component m's own scores of
        `tokens`, when the caller has them already (they are not computed again)."""
        sentences = split_sentences(tokens)
        given = {}
        for m, scores in (known or {}).items():
            given[m], start = [], 0
            for sentence in sentences:
                given[m].append(list(scores[start : start + len(sentence)]))
                start += len(sentence)
        rows = self.component_continuations([((), sentence) for sentence in sentences], given)
        return np.vstack(rows) if rows else np.zeros((0, len(self.models)))

    def component_continuations(
        self, requests: Sequence[Continuation], given: dict[int, list[list[float]]] | None = None
    ) -> list[np.ndarray]:
        """For each request (before, after): log P'_m of each token of `after` under each component m, an
        (len(after), M) array of natural logs. A component that scores many requests at once (`NeuralLM`:
        padded batches, not one network call per token) does so, the others token by token. A word the reference
        (first) model knows but another component does not gets that component's `<unk>` share from the reference
        distribution (one reference distribution, no extra network call), and so does `<unk>` when every word of
        that component is in the reference's vocabulary; `<s>` and words the reference does not know take the
        per-word path. `given[m]`: component m's own scores of the requests, when the caller has them."""
        given = given or {}
        columns = [given.get(m) or continuation_scores(model, requests) for m, model in enumerate(self.models)]
        m = len(self.models)
        out = [np.asarray(rows, dtype=np.float64).T.reshape(-1, m) for rows in zip(*columns, strict=True)]
        self._refresh_known()
        width = None if self.order is None else self.order - 1
        for (before, after), rows in zip(requests, out, strict=True):
            history = [BOS, *before]
            for t, word in enumerate(after):
                if word in (BOS, UNK) or not all(known is not None and word in known for known in self._known):
                    context = tuple(history if width is None else history[max(0, len(history) - width) :])
                    rows[t] = self._unknown_word_logprobs(word, context, rows[t])
                history.append(word)
        return out

    def _unknown_word_logprobs(self, word: str, context: Context, row: np.ndarray) -> np.ndarray:
        """log P'_m(word | context) for a word some component does not know (`row`: each component's own score,
        which for a word it does not know is its `<unk>` log-probability). P'_m = P_m(<unk>) P_ref(word) / Z, Z the
        reference's mass over the pool (the module docstring); a reference that sums its probability over a set of
        words (`mass_over`: an n-gram model) gives Z from its follower lists, without its whole distribution."""
        known = self._known
        cheap = word != BOS and known[0] is not None and word in known[0]
        cheap = cheap and all(
            m in self._alignments
            and (hasattr(model, "score_continuations") or getattr(model, "scores_unknown_words_as_unk", False))
            and (word != UNK or self._lacks_no_words(m))  # <unk> also gets the mass of the words V lacks
            for m, model in enumerate(self.models)
            if m > 0 and (word == UNK or not (known[m] is not None and word in known[m]))
        )
        if not cheap:
            return self.component_logprobs(word, context)
        reference = self.models[0]
        mass_over = getattr(reference, "mass_over", None)
        if mass_over is not None:
            ref_words, p_ref = reference.vocabulary_words(), None
            p_word = math.exp(reference.logprob(word, context))
        else:
            ref_words, p_ref = _arrays(reference, context)
            p_word = float(p_ref[self._ref_index[word]])
        if ref_words is not self._ref_words and ref_words != self._ref_words:
            return self.component_logprobs(word, context)
        out = row.copy()
        for m in range(1, len(self.models)):
            if word != UNK and known[m] is not None and word in known[m]:
                continue
            a = self._alignments[m][1]
            z = mass_over(context, a.pool_mask(len(ref_words))) if p_ref is None else float(p_ref[a.pool_ref].sum())
            if z <= 0 or a.unk_m is None or p_word <= 0:
                return self.component_logprobs(word, context)
            out[m] = row[m] + math.log(p_word) - math.log(z)  # P_m(<unk>) * P_ref(word) / z
        return out

    def _lacks_no_words(self, m: int) -> bool:
        """Whether V knows every word component m can predict (`<s>` is never predicted)."""
        words_m, alignment = self._alignments[m]
        return all(words_m[j] == BOS for j in alignment.extra_m.tolist())

    # --- per-component probabilities --------------------------------------------------------------------------------
    def component_logprobs(self, word: str, context: Context) -> np.ndarray:
        """log P'_m(word | context) for each component m (natural logs), as blended (see the module docstring).

        A word every component knows costs one `logprob` per component; any other word needs the components'
        full distributions (its probability depends on how `<unk>` mass is shared)."""
        if word == BOS:
            return np.full(len(self.models), -math.inf)
        self._refresh_known()
        if word != UNK and all(known is not None and word in known for known in self._known):
            return np.asarray([m.logprob(word, context) for m in self.models], dtype=np.float64)
        _, probs = self.component_arrays(context)
        i = self._ref_index.get(word, self._ref_index.get(UNK))
        if i is None:  # the reference knows neither the word nor <unk>: it gives the word nothing
            return np.full(len(self.models), -math.inf)
        with np.errstate(divide="ignore"):
            return np.log(probs[:, i])

    def component_arrays(self, context: Context) -> tuple[list[str], np.ndarray]:
        """(V's words, an (M, |V|) array of P'_m(w | context)): each row sums to 1 when its model's does."""
        key = self._version()
        if self._memo is not None and self._memo[0] == key and self._memo[1] == context and self._ref_words:
            return self._ref_words, self._memo[2]
        ref_words, p_ref = _arrays(self.models[0], context)
        self._set_reference(ref_words)
        rows = [p_ref]
        for m, model in enumerate(self.models[1:], start=1):
            words_m, p_m = _arrays(model, context)
            rows.append(self._reexpress(m, words_m, p_m, p_ref))
        probs = np.vstack(rows)
        self._memo = (key, tuple(context), probs)
        return ref_words, probs

    def _reexpress(self, m: int, words_m: list[str], p_m: np.ndarray, p_ref: np.ndarray) -> np.ndarray:
        """Component m's distribution over V (the mapping of the module docstring); a component over V's own word
        list (a document cache) is already expressed over V."""
        if words_m is self._ref_words:
            return p_m
        a = self._alignment(m, words_m)
        row = np.zeros(len(p_ref))
        row[a.both_ref] = p_m[a.both_m]
        unknown_mass = float(p_m[a.unk_m]) if a.unk_m is not None else 0.0
        extra_mass = float(p_m[a.extra_m].sum())
        unk_ref = self._ref_index.get(UNK)
        share = p_ref[a.pool_ref]
        z = float(share.sum())
        if z > 0:
            row[a.pool_ref] += unknown_mass * share / z
        elif unk_ref is not None:
            row[unk_ref] += unknown_mass
        elif len(a.pool_ref):
            row[a.pool_ref] += unknown_mass / len(a.pool_ref)
        if unk_ref is not None:
            row[unk_ref] += extra_mass
        elif z > 0:  # no <unk> in V: words V cannot name share the unknown-word pool too
            row[a.pool_ref] += extra_mass * share / z
        return row

    def _add_reexpressed(
        self, out: np.ndarray, weight: float, m: int, words_m: list[str], p_m: np.ndarray, p_ref: np.ndarray
    ) -> None:
        """out += weight * (component m's distribution over V), `_reexpress`'s mapping without its row: the pool's
        share of the component's `<unk>` mass is added as a dense product with the pool's 0/1 mask (faster than
        gathering and scattering the pool's positions)."""
        if words_m is self._ref_words:
            out += weight * p_m
            return
        a = self._alignment(m, words_m)
        out[a.both_ref] += weight * p_m[a.both_m]
        unknown_mass = float(p_m[a.unk_m]) if a.unk_m is not None else 0.0
        extra_mass = float(p_m[a.extra_m].sum())
        unk_ref = self._ref_index.get(UNK)
        mask = a.pool_mask(len(p_ref))
        pool = p_ref * mask
        z = float(pool.sum())
        if z > 0:
            out += (weight * unknown_mass / z) * pool
        elif unk_ref is not None:
            out[unk_ref] += weight * unknown_mass
        elif len(a.pool_ref):
            out += (weight * unknown_mass / len(a.pool_ref)) * mask
        if unk_ref is not None:
            out[unk_ref] += weight * extra_mass
        elif z > 0:  # no <unk> in V: words V cannot name share the unknown-word pool too
            out += (weight * extra_mass / z) * pool

    # --- vocabularies -----------------------------------------------------------------------------------------------
    def _set_reference(self, ref_words: list[str]) -> None:
        if ref_words is self._ref_words or ref_words == self._ref_words:
            self._ref_words = ref_words
            return
        self._ref_words = ref_words
        self._ref_lists = SHARED_WORD_LISTS.index(ref_words)
        self._ref_index = self._ref_lists.position
        self._alignments.clear()

    def _alignment(self, m: int, words_m: list[str]) -> _Alignment:
        cached = self._alignments.get(m)
        if cached is not None and (cached[0] is words_m or cached[0] == words_m):
            return cached[1]
        ref_unk = self._ref_index.get(UNK)
        alignment = _ALIGNMENTS.alignment(self._ref_words or [], words_m, ref_unk, self._make_alignment)
        self._alignments[m] = (list(words_m), alignment)
        return alignment

    def _make_alignment(self, words_m: list[str]) -> _Alignment:
        """Where each of the component's words sits in the reference's list, found in bulk (one dict lookup per
        component word), and the rest from that (numpy)."""
        in_ref = np.fromiter(
            map(self._ref_index.get, words_m, itertools.repeat(-1)), dtype=np.int64, count=len(words_m)
        )
        ref_unk = self._ref_index.get(UNK)
        return _alignment_from(in_ref, len(self._ref_words or []), ref_unk, _position(words_m, UNK))

    def _prefix_positions(self, prefix: str) -> np.ndarray:
        return self._ref_lists.with_prefix(prefix)

    def _version(self) -> tuple[object, ...]:
        """Changes when a component's counts change (an n-gram store that learned), or a component with a `version`
        of its own changes (a document cache): cached vocabularies and distributions are stale."""
        return tuple(
            (getattr(getattr(m, "counts", None), "version", None), getattr(m, "version", None)) for m in self.models
        )

    def _refresh_known(self) -> None:
        """The word sets that decide whether a word can take the cheap path (read from full distributions)."""
        key = self._version()
        if key == self._known_key:
            return
        for m, model in enumerate(self.models):
            self._known[m] = SHARED_WORD_LISTS.index(_word_list(model)).position  # callers never ask about <s>
        self._known_key = key


def _word_list(model: LanguageModel) -> list[str]:
    """The words a model's full distribution lists (the list itself, kept while the model's vocabulary is)."""
    words = getattr(model, "vocabulary_words", None)
    if callable(words):
        return words()
    return _arrays(model, (BOS,))[0]


def _position(words: list[str], word: str) -> int | None:
    """Where `word` is in `words`; None when it is not there."""
    try:
        return words.index(word)
    except ValueError:
        return None


def _arrays(model: LanguageModel, context: Context) -> tuple[list[str], np.ndarray]:
    """A model's full distribution as (words, float64 probabilities)."""
    arrays = getattr(model, "distribution_arrays", None)
    if arrays is not None:
        words, probs = arrays(context)
        return words, np.asarray(probs, dtype=np.float64)
    distribution = getattr(model, "distribution", None)
    if distribution is None:
        raise TypeError(f"{type(model).__name__} cannot be blended: it has no distribution(context)")
    d = distribution(context)
    return list(d), np.fromiter(d.values(), dtype=np.float64, count=len(d))


def _check_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{n} models need {n} weights, not {len(w)}")
    if (w < 0).any() or not math.isclose(float(w.sum()), 1.0, abs_tol=1e-9):
        raise ValueError(f"blend weights must be non-negative and sum to 1, not {w.tolist()}")
    return w


# --- fitting the weights --------------------------------------------------------------------------------------------
def em_weights(
    logprobs: np.ndarray, iterations: int = 200, tol: float = 1e-9, pause: Callable[[], None] | None = None
) -> np.ndarray:
    """Mixture weights maximising the mean log-likelihood of the rows of `logprobs` (T tokens x M components,
    natural logs), by EM from uniform weights. Stops after `iterations` or when an iteration gains less than `tol`
    nats per token. Tokens that every component gives probability 0 are left out. `pause` is called before each
    iteration (the server lets a waiting completion go first).

    Each row is scaled by its largest probability once, so an iteration is two (T x M) products instead of a
    log-sum-exp over the whole matrix (20,000 x 3 rows: ~8 ms instead of ~100); a component whose probability is
    below e^-745 of the row's best counts as 0 there."""
    lp = np.asarray(logprobs, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[1] == 0:
        raise ValueError("logprobs must be a (tokens, models) array")
    lp = lp[np.isfinite(lp).any(axis=1)]
    m = lp.shape[1]
    w = np.full(m, 1.0 / m)
    if len(lp) == 0:
        return w
    best = lp.max(axis=1)
    scaled = np.exp(lp - best[:, None])  # (T, M): P_m(token) / max_m P_m(token), in (0, 1]
    shift = float(best.mean())
    previous = -math.inf
    for _ in range(iterations):
        if pause is not None:
            pause()
        mixture = np.maximum(scaled @ w, np.finfo(np.float64).tiny)  # (T,): the mixture's scaled probability
        w = w * (scaled.T @ (1.0 / mixture)) / len(scaled)  # E step (responsibilities) and M step (their means)
        w /= w.sum()
        likelihood = float(np.log(mixture).mean()) + shift
        if likelihood - previous < tol:
            break
        previous = likelihood
    return w


def fit_weights_em(
    models: Sequence[LanguageModel], tokens: Sequence[str], iterations: int = 200, tol: float = 1e-9
) -> list[float]:
    """Blend weights for `models` fit by EM on held-out `tokens` (a flat sequence with `</s>` at sentence ends;
    contexts restart with `<s>` after each, as in `lm_core.metrics`). Each component's probabilities are those
    the blend uses (P'_m), so the fitted weights maximise the blend's held-out likelihood."""
    rows = Blend(models).component_rows(tokens)
    if not len(rows):
        raise ValueError("no held-out tokens to fit the blend weights on")
    return em_weights(rows, iterations, tol).tolist()
