"""Personal adaptation as a model: the store's model, a user layer and a document cache, mixed linearly with weights
fit by EM on the user's own text as it arrives (before it is learned).

    P(w | h) = w_store P_store(w | h) + w_user P_user(w | h) + w_cache P_cache(w | h)

- P_store: the count store's Kneser-Ney model (its base and everything learned, counts added);
- P_user: a Kneser-Ney model over the learned text alone (`user_model`), so a person's habits keep a weight of their
  own however large the base is;
- P_cache: a document cache (Kuhn and De Mori 1990) over the words of the document being edited: a bigram of the
  cached tokens interpolated with their unigram distribution, P_cache(w | v) = (c(v w) + MU P1(w)) / (c(v) + MU),
  P1(w) = c(w) / N. Empty, it gives P_store's distribution (so its weight returns to the store's model).

The mixture is an `lm_core.blend.Blend` (the store's model is its reference: its vocabulary is the mixture's; the
user layer's own vocabulary is re-expressed over it). `HeldOut` keeps the component log-probabilities of the most
recent text the person wrote, scored before that text was learned, and `HeldOut.fit` refits the weights by EM
(`lm_core.blend.em_weights`). All logs are natural logs.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter, deque
from collections.abc import Callable, Sequence

import numpy as np

from lm_core.blend import Blend, em_weights
from lm_core.counting import count_ngrams, encode_sentences
from lm_core.metrics import split_sentences
from lm_core.model import Context
from lm_core.ngram import NgramModel
from lm_core.vocab import BOS, EOS, Vocab
from lm_core.word_lists import SHARED as SHARED_WORD_LISTS

STORE, USER, CACHE = 0, 1, 2
COMPONENTS = ("store", "user", "cache")
DEFAULT_WEIGHTS = (0.6, 0.3, 0.1)
"""Weights before any held-out text has been seen."""
MU = 1.0
"""The document cache's unigram prior strength (in tokens) under its bigram."""
CACHE_TOKENS = 4_000
"""The document cache holds at most this many of the latest tokens before the cursor."""
HELD_OUT_TOKENS = 20_000
"""EM refits on at most this many of the latest held-out tokens."""
HELD_OUT_SAMPLE_WHEN_FULL = 4
"""Once the weights have been fit on HELD_OUT_TOKENS, one sentence in this many of new text is scored for them (the
sentences `sampled` picks): a 150-word save's held-out scoring was half of its learn's CPU time, spent refining
weights already fit on 20,000 tokens; scoring a sample keeps them following the person's writing (over a longer
stretch of it) at a quarter of the cost."""
HELD_OUT_PIECE_TOKENS = 8
"""Held-out text is scored this many tokens at a time, with a pause (a yield to a waiting completion) before each."""
USER_LAYER_TOKENS = 100_000
"""The user layer is built over about this many of the latest learned tokens (the store's model keeps all of them):
its memory (about 13 MB at this size) and the cost of rebuilding it after a learn stay bounded however long the
person has written, and it follows their recent habits."""


def user_model(
    sentences: Sequence[Sequence[str]], order: int, pause: Callable[[], None] | None = None
) -> NgramModel | None:
    """Interpolated modified Kneser-Ney over `sentences` alone (each ending with `</s>`), in memory; None for none.
    `pause` is called while the words are encoded and between encoding and counting the n-grams."""
    if not any(len(s) > 1 for s in sentences):
        return None
    vocab = Vocab()
    encoded = encode_sentences(sentences, vocab, pause=pause)
    if pause is not None:
        pause()
    return NgramModel(count_ngrams(encoded, order, vocab))


class DocumentCache:
    """The cache component: unigram and bigram counts of the latest `CACHE_TOKENS` tokens of one document, kept
    incrementally (a document that only grew costs only its new tokens).

    Its word list is its reference model's (the store's `NgramModel`), so it blends without re-expression; `version`
    changes with its contents (a `Blend` drops what it memoised)."""

    order = 2

    def __init__(self, reference: NgramModel, max_tokens: int = CACHE_TOKENS, mu: float = MU) -> None:
        self.reference = reference
        self.max_tokens = max_tokens
        self.mu = mu
        self.version = 0
        self._clear()

    def _clear(self) -> None:
        self._window: deque[str] = deque()
        self._seen = 0  # tokens of the document the window ends at (it holds the last max_tokens of them)
        self._unigrams: Counter[str] = Counter()
        self._followers: dict[str, Counter[str]] = {}
        self._totals: Counter[str] = Counter()
        self._dense: tuple[list[str], np.ndarray] | None = None  # (reference words, unigram counts over them)

    @property
    def tokens(self) -> tuple[str, ...]:
        """The cached tokens, oldest first."""
        return tuple(self._window)

    def set_tokens(self, tokens: Sequence[str]) -> None:
        """The document's normalised tokens before the cursor (`</s>` at sentence ends; `<s>` ignored); the cache
        keeps the latest `max_tokens`. When the document only grew since the last call, only the new tokens are
        added."""
        tokens = [t for t in tokens if t != BOS] if BOS in tokens else list(tokens)
        n, window = len(tokens), len(self._window)
        if n == self._seen and tokens[n - window :] == list(self._window):
            return
        if n > self._seen and tokens[self._seen - window : self._seen] == list(self._window):
            for token in tokens[max(self._seen, n - self.max_tokens) :]:
                self.push(token)
            self._seen = n
        else:
            self._clear()
            for token in tokens[-self.max_tokens :]:
                self.push(token)
            self._seen = n
        self.version += 1

    def push(self, token: str) -> None:
        """Add the document's next token (the oldest leaves a full window)."""
        window = self._window
        previous = BOS if not window or window[-1] == EOS else window[-1]
        self._count(previous, token, 1)
        window.append(token)
        if len(window) > self.max_tokens:
            oldest = window.popleft()
            after = BOS if oldest == EOS else oldest
            self._count(BOS, oldest, -1)  # the window's first token counted after <s>
            self._count(after, window[0], -1)  # ... its pair with the next one goes
            self._count(BOS, window[0], 1)  # ... which is now the first
            self._unigram(oldest, -1)
        self._unigram(token, 1)

    def _count(self, previous: str, token: str, delta: int) -> None:
        followers = self._followers.setdefault(previous, Counter())
        followers[token] += delta
        self._totals[previous] += delta
        if followers[token] == 0:
            del followers[token]

    def _unigram(self, token: str, delta: int) -> None:
        self._unigrams[token] += delta
        if self._unigrams[token] == 0:
            del self._unigrams[token]
        if self._dense is not None:
            at = SHARED_WORD_LISTS.index(self._dense[0]).position.get(token)  # the list the counts are over
            if at is not None:
                self._dense[1][at] += delta

    def __len__(self) -> int:
        return len(self._window)

    def logprob(self, word: str, context: Context) -> float:
        """Natural log of P_cache(word | context) (the store's model while the cache is empty)."""
        if not self._window:
            return self.reference.logprob(word, context)
        previous = context[-1] if context else BOS
        followers = self._followers.get(previous)
        unigram = self._unigrams.get(word, 0) / len(self._window)
        seen = followers.get(word, 0) if followers else 0
        p = (seen + self.mu * unigram) / (self._totals.get(previous, 0) + self.mu)
        return math.log(p) if p > 0 else -math.inf

    def vocabulary_words(self) -> list[str]:
        """The words `distribution_arrays` lists: the store model's list."""
        return self.reference.vocabulary_words()

    def distribution_arrays(self, context: Context) -> tuple[list[str], np.ndarray]:
        """(the store model's words, P_cache over them): sums to 1 over the cached words the store knows."""
        if not self._window:
            return self.reference.distribution_arrays(context)
        words = self.reference.vocabulary_words()
        index = SHARED_WORD_LISTS.index(words).position  # of this list (the counts may change on another thread)
        if self._dense is None or self._dense[0] is not words:
            counts = np.zeros(len(words))
            for word, n in self._unigrams.items():
                at = index.get(word)
                if at is not None:
                    counts[at] += n
            self._dense = (words, counts)
        p = (self.mu / len(self._window)) * self._dense[1]
        for word, n in (self._followers.get(context[-1] if context else BOS) or {}).items():
            at = index.get(word)
            if at is not None:
                p[at] += n
        total = p.sum()
        return words, p / total if total > 0 else p


BUCKET_EDGES = (1, 10, 100)
"""Context buckets by how often the user layer saw the context's last word: 0, 1-9, 10-99, 100 or more."""
BUCKET_PRIOR_TOKENS = 200
"""A bucket's own EM weights count as this many tokens against the global weights (sparse buckets stay near them)."""


def bucket_of(user: NgramModel | None, context: Context) -> int:
    """The context's bucket (see `BUCKET_EDGES`): the user layer's count of its last word (`<s>` at a start)."""
    if user is None:
        return 0
    last = context[-1] if context else BOS
    wid = user.counts.vocab.get(last)
    count = user.counts.count((wid,)) if wid is not None else 0
    return int(np.searchsorted(BUCKET_EDGES, count, side="right"))


class BucketBlend(Blend):
    """A `Blend` whose weights depend on the context's bucket (`bucket_of`): still a mixture in every context."""

    def __init__(self, models: Sequence, weights: np.ndarray, user: NgramModel | None) -> None:
        super().__init__(models, weights[0].tolist())
        self.bucket_weights = weights
        self.user = user

    def _for(self, context: Context) -> None:
        self.weights = self.bucket_weights[bucket_of(self.user, context)]

    def logprob(self, word: str, context: Context) -> float:
        self._for(context)
        return super().logprob(word, context)

    def predict(self, context: Context, k: int = 10, prefix: str = "") -> list:
        self._for(context)
        return super().predict(context, k, prefix)

    def distribution(self, context: Context) -> dict[str, float]:
        self._for(context)
        return super().distribution(context)


class HeldOut:
    """Component log-probabilities of held-out tokens (text scored before it was learned) and their contexts'
    buckets, the latest kept."""

    def __init__(self, limit: int = HELD_OUT_TOKENS) -> None:
        self.limit = limit
        self.rows = np.zeros((0, len(COMPONENTS)))
        self.buckets = np.zeros(0, np.int64)

    def add(self, rows: np.ndarray, buckets: np.ndarray | None = None) -> None:
        buckets = np.zeros(len(rows), np.int64) if buckets is None else np.asarray(buckets, np.int64)
        self.rows = np.vstack([self.rows, rows])[-self.limit :]
        self.buckets = np.concatenate([self.buckets, buckets])[-self.limit :]

    def fit(self, prior: Sequence[float], prior_tokens: int, pause: Callable[[], None] | None = None) -> np.ndarray:
        """EM weights on the held-out rows, averaged with `prior` (fitted on `prior_tokens` earlier tokens, at most
        `limit` of them counted) by token counts; `pause` is called between EM iterations."""
        if len(self.rows) == 0:
            return np.asarray(prior, dtype=np.float64)
        fitted = em_weights(self.rows, pause=pause)
        old = min(prior_tokens, self.limit)
        weights = (old * np.asarray(prior) + len(self.rows) * fitted) / (old + len(self.rows))
        return weights / weights.sum()


def sampled(sentence: Sequence[str], every: int) -> bool:
    """Whether `sentence` is in the sample of one sentence in `every` (by a checksum of its tokens: the same
    sentence is always in or always out, whatever process asks)."""
    return every <= 1 or zlib.crc32("\x1f".join(sentence).encode("utf-8", "surrogatepass")) % every == 0


def held_out_rows(
    pair: Blend,
    cache: DocumentCache,
    sentences: Sequence[Sequence[str]],
    user: NgramModel | None = None,
    pause: Callable[[], None] | None = None,
    sample_every: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Each token's component log-probabilities (T x 3: store, user as blended, cache) before the text is learned,
    the cache (a fresh one, filled as the text goes) holding the document's tokens before each one (as it did
    while the person typed), and each token's context bucket under `user`. `pair` is the Blend of the store's model
    and the user layer; it scores a sentence at a time (`Blend.component_continuations`: a word the user layer does
    not know costs the store's mass over the words it lacks, not two whole distributions). `pause` is called before
    each piece of `HELD_OUT_PIECE_TOKENS` tokens (the server lets a waiting completion go first). Contexts restart at
    `<s>` after each `</s>`. With `sample_every` > 1 only the sentences `sampled` picks are scored (the cache still
    reads every one, as the document held them)."""
    tokens = [t for s in sentences for t in s]
    width = None if pair.order is None else pair.order - 1
    picked = [(sentence, sampled(sentence, sample_every)) for sentence in split_sentences(tokens)]
    _prefetch(pair.models[0], [sentence for sentence, scored in picked if scored], width, pause)
    rows, buckets = [], []
    for sentence, scored in picked:
        if not scored:
            for word in sentence:
                cache.push(word)
            continue
        for start in range(0, len(sentence), HELD_OUT_PIECE_TOKENS):
            if pause is not None:
                pause()
            piece = sentence[start : start + HELD_OUT_PIECE_TOKENS]
            (scored,) = pair.component_continuations([(tuple(sentence[:start]), piece)])
            for t, (word, components) in enumerate(zip(piece, scored, strict=True), start=start):
                history = [BOS, *sentence[:t]]
                context = tuple(history if width is None else history[max(0, len(history) - width) :])
                rows.append([*components, cache.logprob(word, context)])
                buckets.append(bucket_of(user, context))
                cache.push(word)  # the document so far, one token more
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(COMPONENTS)), np.asarray(buckets, dtype=np.int64)


def _prefetch(
    model: object, sentences: Sequence[Sequence[str]], width: int | None, pause: Callable[[], None] | None
) -> None:
    """Read the follower lists of every context of `sentences` at once, when `model` reads counts in bulk (the
    store's model: one query per order, instead of one round per order for each piece of the text)."""
    prefetch = getattr(model, "prefetch", None)
    if prefetch is None:
        return
    contexts = []
    for sentence in sentences:
        history = [BOS]
        for word in sentence:
            contexts.append(tuple(history if width is None else history[max(0, len(history) - width) :]))
            history.append(word)
    if pause is not None:
        pause()
    prefetch(contexts, pause)


def make_blend(store: NgramModel, user: NgramModel | None, cache: DocumentCache, weights: Sequence[float]) -> Blend:
    """The mixture; without a user layer (nothing learned) the store's model stands in for it."""
    return Blend([store, user if user is not None else store, cache], list(weights))


def ready(store: NgramModel, user: NgramModel, pause: Callable[[], None] | None = None) -> None:
    """Derive what a suggestion from a mixture of `store` and `user` first needs (their word lists, Kneser-Ney's
    unigram level over each, the user layer's alignment onto the store's words): kept by the models and shared by
    every Blend over them. `pause` is called between the steps."""
    user.warm(pause)
    store.warm(pause)
    pair = Blend([store, user])
    pair.align(pause)
    if pause is not None:
        pause()
    pair.predict((BOS,), 1)


def pair_blend(store: NgramModel, user: NgramModel | None) -> Blend:
    """The store's model and the user layer, for scoring held-out text (weights unused)."""
    return Blend([store, user if user is not None else store])


class Adaptation:
    """The adaptive mixture's state: the store's model, the user layer, the document cache, the weights, and the
    held-out rows they were fit on. `parts` says which of "user" and "cache" take part (a part left out has weight
    0). `blend` and `cache` belong to the one thread that suggests; `observe` and `set_user_text` (another thread)
    only replace attributes whole, and score held-out text with a cache of their own."""

    def __init__(
        self,
        store: NgramModel,
        weights: Sequence[float] = DEFAULT_WEIGHTS,
        fitted_tokens: int = 0,
        parts: Sequence[str] = ("user", "cache"),
        bucketed: bool = False,
    ) -> None:
        unknown = set(parts) - {"user", "cache"}
        if unknown:
            raise ValueError(f"adaptation parts are user and cache, not {sorted(unknown)}")
        self.store = store
        self.parts = tuple(parts)
        self.user: NgramModel | None = None
        self.user_tokens = 0
        self.user_sentences: frozenset[int] = frozenset()  # hashes of the user layer's sentences (word tuples)
        self.tokens_since_rebuild = 0  # learned since the user layer was built (see `note_learned`)
        self.cache = DocumentCache(store)
        self.held_out = HeldOut()
        self.fitted_tokens = fitted_tokens
        self.weights = self._masked(np.asarray(weights, dtype=np.float64))
        self.bucketed = bucketed
        self.bucket_weights = np.tile(self.weights, (len(BUCKET_EDGES) + 1, 1))
        self._blend: Blend | None = None
        self.memo_bytes: int | None = None  # the user layer's Kneser-Ney memo bound (None: the model's default)

    def set_memo_bytes(self, memo_bytes: int) -> None:
        """Bound the user layer's Kneser-Ney level memo (this one and those built after)."""
        self.memo_bytes = memo_bytes
        if self.user is not None:
            self.user.memo_bytes = memo_bytes

    def _mask(self) -> np.ndarray:
        return np.asarray([True, "user" in self.parts, "cache" in self.parts])

    def _masked(self, weights: np.ndarray) -> np.ndarray:
        w = np.where(self._mask(), weights, 0.0)
        return w / w.sum() if w.sum() > 0 else np.asarray([1.0, 0.0, 0.0])

    @property
    def blend(self) -> Blend:
        """The mixture as a `LanguageModel` (rebuilt when the user layer or the weights change)."""
        if self._blend is None:
            if self.bucketed:
                models = [self.store, self.user if self.user is not None else self.store, self.cache]
                self._blend = BucketBlend(models, self.bucket_weights, self.user)
            else:
                self._blend = make_blend(self.store, self.user, self.cache, self.weights.tolist())
        return self._blend

    def set_user_text(self, sentences: Sequence[Sequence[str]], pause: Callable[[], None] | None = None) -> None:
        """Rebuild the user layer from the learned text (sentences ending with `</s>`; the caller passes about the
        latest `USER_LAYER_TOKENS`). The new layer is readied before it replaces the old one (see `ready`), so the
        thread that suggests never derives its tables. `pause` is called between the steps."""
        user = user_model(sentences, self.store.order, pause) if "user" in self.parts else None
        if user is not None:
            if self.memo_bytes is not None:
                user.memo_bytes = self.memo_bytes
            ready(self.store, user, pause)
        if pause is not None:
            pause()
        self.user = user
        self.user_tokens = sum(len(s) for s in sentences)
        self.user_sentences = frozenset(hash(tuple(s)) for s in sentences)
        self.tokens_since_rebuild = 0
        self._blend = None

    def note_learned(self, sentences: Sequence[Sequence[str]], tokens: int) -> None:
        """Text learned since the user layer was built (`tokens` of it; its `sentences` when at hand): held out no
        more (`is_learned`), though the layer gets it only at its next rebuild; counted in `tokens_since_rebuild`."""
        self.user_sentences = self.user_sentences | {hash(tuple(s)) for s in sentences}
        self.tokens_since_rebuild += tokens

    def is_learned(self, sentence: Sequence[str]) -> bool:
        """Whether the user layer holds this sentence already (text saved again is not held out twice)."""
        return hash(tuple(sentence)) in self.user_sentences

    def observe(self, sentences: Sequence[Sequence[str]], pause: Callable[[], None] | None = None) -> np.ndarray:
        """Score text the person wrote before it is learned (held out), refit the weights by EM; the new weights.
        Before anything was learned there is no user layer to weigh: the weights stay. Once the weights were fit on
        the held-out window's worth of tokens, one sentence in HELD_OUT_SAMPLE_WHEN_FULL is scored. `pause` is
        called before each piece of text is scored."""
        if self.user is None and "user" in self.parts:
            return self.weights
        pair, cache = pair_blend(self.store, self.user), DocumentCache(self.store)
        every = HELD_OUT_SAMPLE_WHEN_FULL if self.fitted_tokens >= self.held_out.limit else 1
        # contexts' buckets only where weights per bucket are used (finding them is a count lookup per token)
        rows, buckets = held_out_rows(pair, cache, sentences, self.user if self.bucketed else None, pause, every)
        if len(rows) == 0:
            return self.weights
        self.held_out.add(rows, buckets)
        self.fitted_tokens += len(rows)
        self.weights = self.fit(self.parts, pause)
        if self.bucketed:
            self.bucket_weights = self.fit_buckets(self.parts, pause)
        else:  # weights per bucket are not used: each bucket keeps the overall ones (fitting them costs EM runs)
            self.bucket_weights = np.tile(self.weights, (len(BUCKET_EDGES) + 1, 1))
        self._blend = None
        return self.weights

    def fit_buckets(self, parts: Sequence[str], pause: Callable[[], None] | None = None) -> np.ndarray:
        """Per context bucket: EM weights on that bucket's held-out rows, drawn towards the global weights
        (`BUCKET_PRIOR_TOKENS`); (buckets x 3). `pause` is called between EM iterations."""
        mask = np.asarray([True, "user" in parts, "cache" in parts])
        overall = self.fit(parts, pause)
        out = np.tile(overall, (len(BUCKET_EDGES) + 1, 1))
        for b in range(len(out)):
            rows = self.held_out.rows[self.held_out.buckets == b][:, mask]
            if len(rows) == 0:
                continue
            mixed = (len(rows) * em_weights(rows, pause=pause) + BUCKET_PRIOR_TOKENS * overall[mask]) / (
                len(rows) + BUCKET_PRIOR_TOKENS
            )
            out[b] = 0.0
            out[b, mask] = mixed / mixed.sum()
        return out

    def fit(self, parts: Sequence[str], pause: Callable[[], None] | None = None) -> np.ndarray:
        """EM weights over the held-out rows for the components in `parts` (the store's model always), blended with
        the weights fitted before (by token counts); `pause` is called between EM iterations."""
        mask = np.asarray([True, "user" in parts, "cache" in parts])
        rows = self.held_out.rows[:, mask]
        prior = self.weights[mask]
        prior = prior / prior.sum() if prior.sum() > 0 else np.full(int(mask.sum()), 1.0 / mask.sum())
        held = HeldOut(self.held_out.limit)
        held.rows = rows
        earlier = max(0, self.fitted_tokens - len(self.held_out.rows))
        fitted = held.fit(prior, earlier, pause)
        out = np.zeros(len(COMPONENTS))
        out[mask] = fitted
        return out
