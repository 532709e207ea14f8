"""Finding words that read oddly, and what to write instead: language-model error correction in the manner of
Bryant and Briscoe 2018 ("Language Model Based Grammatical Error Correction without Annotated Training Data").

For each position of a sentence the generators of `lm_core.corrections` propose edits (a confusable word, another
inflection, an article or preposition substituted, inserted or deleted, a doubled word dropped, two words swapped, a
missing function word, a known word one letter away). Each edit is scored on the window of tokens whose context it
changes: log P(new window) - log P(old window), each token given the tokens before it (the rest of the sentence has
the same probability either way). The gain, in bits, is then normalised for length and frequency:

    gain = window gain - frequency_weight x (log2 P_unigram(new word) - log2 P_unigram(old word))   [substitutions]

so that a common word does not beat a rarer one merely for being common. An edit is flagged when its gain reaches
`threshold_bits` plus its kind's extra bits, plus the length normalisation: `deletion_bits` for an edit that removes
a token (every token costs bits, so dropping one always looks better by that token's cost) and `insertion_bits`
(negative: a credit) for one that adds a token, whose own cost the original window never pays (without the credit
a missing 'the', itself about 4 bits in most contexts, had to improve the words after it by the threshold plus those
4 bits, and dropped articles and missing words were nearly never found). Edits other than confusion sets, doubled
words and misspellings are tried only next to a surprising token (`gate_bits`; an insertion: before one,
`insertion_gate_bits`), which keeps a check fast; an insertion is tried before any known word, names included (the
name itself is never changed). Works with any `LanguageModel`; with a second `screen` model (the n-gram model
beside a blend) candidates are screened by the cheap model and only the survivors scored by the main one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from lm_core.corrections import (
    ARTICLE,
    CONFUSION,
    CONFUSION_SETS,
    CONFUSIONS,
    DOUBLED,
    INFLECTION,
    KINDS,
    MISSING_WORD,
    MISSPELLING,
    PREPOSITION,
    SPELLING,
    TRANSPOSITION,
    VALID_DOUBLES,
    Edit,
    Vocabulary,
    edits_at,
)
from lm_core.metrics import surprisal_bits, to_bits
from lm_core.model import LanguageModel
from lm_core.vocab import BOS, EOS, SPECIAL

UNGATED = frozenset({CONFUSION, DOUBLED, MISSPELLING})
INSERTING = frozenset({ARTICLE, PREPOSITION, MISSING_WORD})
"""The kinds that insert a word before a token (tried before names and other tokens that are never changed)."""
DEFAULT_KIND_BITS: tuple[tuple[str, float], ...] = (
    (ARTICLE, -2.0), (CONFUSION, -3.0), (DOUBLED, -9.0), (INFLECTION, 2.0), (MISSING_WORD, -3.0), (PREPOSITION, -2.0),
    (SPELLING, 4.0), (TRANSPOSITION, -4.0),
)  # fmt: skip
"""Extra bits per kind (the rest: 0). Tuned with bench/oddity_tuning.py on development data only (errors planted in
WikiText-2 valid, the first half of JFLEG dev, false alarms on clean WikiText-2 valid and Gutenberg books not in the
test, no more false alarms than before on either): with the threshold of 10 bits an article or preposition
substituted needs 8 bits, inserted 7 (with the insertion's -1), dropped 12 (with the deletion's +4); a missing
function word 6; two words swapped 6; a confusable word 7; a doubled word 5 (as before: the development data are the
same from 5 to 7); another inflection 12; a real word spelt one letter differently 14."""

__all__ = [
    "CONFUSIONS",
    "CONFUSION_SETS",
    "KINDS",
    "VALID_DOUBLES",
    "Correction",
    "Oddity",
    "OddityConfig",
    "candidate_is_gated",
    "explain",
    "find_oddities",
    "score_tokens_many",
    "score_windows",
    "select",
]


@dataclass(frozen=True)
class OddityConfig:
    threshold_bits: float = 10.0  # how much more probable (log2, after normalising) the best edit's window must be
    kinds: frozenset[str] = frozenset(KINDS)  # which generators run (see lm_core.corrections.KINDS)
    gate_bits: float = 12.0  # edits other than confusions and doubled words only next to a token this surprising
    insertion_gate_bits: float = 8.0  # insertions only before a token this surprising
    deletion_bits: float = 4.0  # extra bits an edit that removes a token needs (see the module's docstring)
    insertion_bits: float = -1.0  # extra bits an edit that adds a token needs: negative, a credit for its own cost
    frequency_weight: float = 0.2  # share of the unigram log2 ratio of a substitution taken off its gain
    kind_bits: tuple[tuple[str, float], ...] = DEFAULT_KIND_BITS  # extra bits each kind needs
    close_bits: float = 2.0  # other edits of the same words within this many bits of the best are offered too
    max_alternatives: int = 3  # alternatives reported per odd word
    screen_margin_bits: float = 3.0  # with a screen model: its gain may fall this far below the threshold
    short_margin_bits: float = 4.0  # the first look (edit + one token) may fall this far below the threshold
    short_keep: int = 4  # edits per position that go on from the first look to the full window
    seen_pairs: bool = True  # gated kinds: only edits whose new pairs of adjacent words the model's text has
    blend_bits: float = 0.0  # extra bits every edit needs when a screened model (the blend) decides (see below)

    def for_screened(self) -> OddityConfig:
        """The settings a screened model (the blend beside its n-gram screen) decides by: every threshold moved by
        `blend_bits` (the blend's gains are smaller than the n-gram's at the same rate of false alarms), the screen
        and the first look moved with it. 0 by default: on development data -1 bit let the blend flag a little more
        (planted recall 35.2 % against 33.1, precision 82.2 against 86.3, JFLEG F0.5 38.5 against 37.7) for a check
        about 2.7x slower (more candidates reach the blend), and -2 bits made it no better than the n-gram alone."""
        return replace(self, threshold_bits=self.threshold_bits + self.blend_bits, blend_bits=0.0)

    def needed(self, edit: Edit) -> float:
        """The gain, in bits, `edit` needs to be flagged."""
        if edit.kind == MISSPELLING:  # no English word: flagged whatever the model says (it ranks the corrections)
            return -math.inf
        removed = (edit.stop - edit.start) - len(edit.tokens)
        size = self.deletion_bits if removed > 0 else self.insertion_bits if removed < 0 else 0.0
        return self.threshold_bits + dict(self.kind_bits).get(edit.kind, 0.0) + size


@dataclass(frozen=True, slots=True)
class Correction:
    """Tokens to write instead of the odd ones, how many bits more probable (normalised) they make the window,
    their kind, and the raw window ratio P(new window) / P(old window) in bits."""

    tokens: tuple[str, ...]
    gain: float
    kind: str
    window_bits: float


@dataclass(frozen=True, slots=True)
class Oddity:
    """Tokens [index, stop) of the sentence read oddly; `alternatives` replace them, best first. `word` is the
    first odd token; `surprisal` its -log2 P in context (bits)."""

    index: int
    word: str
    surprisal: float
    alternatives: tuple[Correction, ...]
    stop: int = -1
    tokens: tuple[str, ...] = field(default=())

    @property
    def end(self) -> int:
        return self.stop if self.stop >= 0 else self.index + 1


Memo = dict[tuple[tuple[str, ...], str], float]
ANY_WORD = Vocabulary(known=lambda w: True, near=lambda w: ())
"""The vocabulary when none is given: any word may be proposed, none is offered as a spelling correction."""


@dataclass(frozen=True, slots=True)
class SentenceInput:
    """One sentence to check: normalised tokens ending with `</s>`; `skip[i]`: token i is never looked at
    (punctuation, ignored words); `editable[i]`: token i may be changed (callers leave out names, numbers and words
    the model does not know); `logprobs[i]`: token i's natural-log probability in context under the main model."""

    tokens: Sequence[str]
    skip: Sequence[bool]
    editable: Sequence[bool]
    logprobs: Sequence[float]


def score_windows(
    model: LanguageModel, requests: Sequence[tuple[Sequence[str], Sequence[str]]], memo: Memo | None = None
) -> list[float]:
    """For each (prefix, window), the natural-log probability of the window's tokens, each given the sentence
    prefix and the window tokens before it (prefix: the sentence's tokens before the window, without `<s>`).

    The one place oddity detection asks a model for probabilities, so a batched scorer can take its place: a model
    of bounded order is asked for every (word, context) pair at once (`logprobs`, when it has it: the n-gram model
    fetches the counts in bulk), memoised in `memo` across calls; an unbounded model with `sentence_logprobs` (a
    neural model or a blend) scores each request's whole sentence in one call, or, with `score_continuations`
    (`lm_core.metrics.continuation_scores`), every request in padded batches at once."""
    continuations = getattr(model, "score_continuations", None)
    if continuations is not None:
        return [math.fsum(scores) for scores in continuations(requests)]
    batched = getattr(model, "sentence_logprobs", None)
    out: list[float] = []
    if model.order is None and batched is not None:
        for prefix, window in requests:
            logprobs = batched([*prefix, *window])
            out.append(math.fsum(logprobs[len(prefix) :]))
        return out
    memo = {} if memo is None else memo
    width = model.order - 1 if model.order is not None else None
    keys_of_requests = []
    missing: dict[tuple[tuple[str, ...], str], None] = {}
    for prefix, window in requests:
        history = [BOS, *prefix]
        keys = []
        for word in window:
            context = tuple(history if width is None else history[max(0, len(history) - width) :] if width else ())
            key = (context, word)
            if key not in memo:
                missing[key] = None
            keys.append(key)
            history.append(word)
        keys_of_requests.append(keys)
    if missing:
        wanted = [(word, context) for context, word in missing]
        many = getattr(model, "logprobs", None)
        values = many(wanted) if many is not None else [model.logprob(w, c) for w, c in wanted]
        memo.update(zip(missing, values, strict=True))
    return [sum(memo[key] for key in keys) for keys in keys_of_requests]


def find_oddities(
    model: LanguageModel,
    sentence: Sequence[str],
    config: OddityConfig | None = None,
    skip: Sequence[bool] | None = None,
    editable: Sequence[bool] | None = None,
    logprobs: Sequence[float] | None = None,
    vocab: Vocabulary | None = None,
    screen: LanguageModel | None = None,
    memo: Memo | None = None,
) -> list[Oddity]:
    """The odd words of one sentence of normalised tokens (ending with `</s>`), each with its corrections (see
    `SentenceInput` for `skip`, `editable` and `logprobs`; by default every token may change and the model scores
    them here); see `find_oddities_many` for the rest."""
    n = len(sentence)
    if logprobs is None:
        logprobs = score_tokens_of(model, sentence)
    item = SentenceInput(
        sentence,
        skip if skip is not None else [False] * n,
        editable if editable is not None else [t not in SPECIAL for t in sentence],
        logprobs,
    )
    return find_oddities_many(model, [item], config, vocab, screen, memo)[0]


@dataclass(frozen=True, slots=True)
class CheckSetup:
    """What scoring candidate edits needs besides the sentences: the `model` that decides, the `config`, what may be
    proposed (`vocab`), a cheaper `screen` model that screens candidates first so that `model` scores only the
    survivors (None: no screening), and `memo`, per-token scores kept across calls (for the model that scores
    first)."""

    model: LanguageModel
    config: OddityConfig = field(default_factory=OddityConfig)
    vocab: Vocabulary = ANY_WORD
    screen: LanguageModel | None = None
    memo: Memo | None = None


@dataclass(frozen=True, slots=True)
class _Judge:
    """One model's view of the edits: the model, its unigram log2 probabilities, its memo of per-token scores."""

    model: LanguageModel
    unigram: Callable[[str], float]
    memo: Memo | None


def score_candidates(
    setup: CheckSetup, sentences: Sequence[SentenceInput]
) -> list[list[tuple[Edit, tuple[float, float]]]]:
    """Every candidate edit of each sentence that comes near what it needs, with (normalised gain, raw window gain)
    in bits, all sentences scored in one batch (candidates far below the threshold drop out on the way). With a
    `screen` model the sentences' scores under it are computed here."""
    config, screen, memo = setup.config, setup.screen, setup.memo
    first = _Judge(screen or setup.model, _unigram_bits(screen or setup.model, memo), memo)
    jobs: list[tuple[int, Edit]] = []
    first_logprobs = []
    screened = score_tokens_many(screen, [item.tokens for item in sentences], memo) if screen is not None else None
    for k, item in enumerate(sentences):
        lps = item.logprobs if screened is None else screened[k]
        first_logprobs.append(lps)
        bits = [surprisal_bits(lp) for lp in lps]
        for i in range(len(item.tokens)):
            jobs += [(k, e) for e in _candidates(item, i, bits, setup.vocab, config)]
    if first.model.order is not None and first.model.order > 2:  # a first look at the edit and the token after it
        scored = _gains(first, sentences, first_logprobs, jobs, config, short=True)
        jobs = _survivors(jobs, scored, config, config.short_margin_bits, config.short_keep)
    scored = _gains(first, sentences, first_logprobs, jobs, config)
    if screen is not None:
        jobs = _survivors(jobs, scored, config, config.screen_margin_bits, config.max_alternatives)
        judge = _Judge(setup.model, _unigram_bits(setup.model), None)
        scored = _gains(judge, sentences, [s.logprobs for s in sentences], jobs, config)
    per_sentence: list[list[tuple[Edit, tuple[float, float]]]] = [[] for _ in sentences]
    for (k, edit), result in zip(jobs, scored, strict=True):
        per_sentence[k].append((edit, result))
    return per_sentence


def find_oddities_many(
    model: LanguageModel,
    sentences: Sequence[SentenceInput],
    config: OddityConfig | None = None,
    vocab: Vocabulary | None = None,
    screen: LanguageModel | None = None,
    memo: Memo | None = None,
) -> list[list[Oddity]]:
    """The odd words of each sentence, every candidate of every sentence scored in one batch (see `CheckSetup` for
    the arguments; `vocab` None: any word may be proposed)."""
    config = config or OddityConfig()
    if screen is not None:
        config = config.for_screened()
    per_sentence = score_candidates(CheckSetup(model, config, vocab or ANY_WORD, screen, memo), sentences)
    out = []
    for item, found in zip(sentences, per_sentence, strict=True):
        surprisal = [surprisal_bits(lp) for lp in item.logprobs]
        out.append(select(item.tokens, found, config, surprisal) if found else [])
    return out


def _survivors(
    jobs: Sequence[tuple[int, Edit]],
    scored: Sequence[tuple[float, float]],
    config: OddityConfig,
    margin: float,
    keep: int,
) -> list[tuple[int, Edit]]:
    """The edits whose gain comes within `margin` bits of what their kind needs, at most `keep` per position."""
    best: dict[tuple[int, int], list[tuple[float, int]]] = {}
    for n, ((k, edit), (gain, _)) in enumerate(zip(jobs, scored, strict=True)):
        if gain >= config.needed(edit) - margin:
            best.setdefault((k, edit.start), []).append((gain, n))
    chosen = sorted(n for group in best.values() for _, n in sorted(group, reverse=True)[:keep])
    return [jobs[n] for n in chosen]


def score_tokens_of(model: LanguageModel, sentence: Sequence[str], memo: Memo | None = None) -> list[float]:
    """Each token's natural-log probability given the tokens before it (from `<s>`)."""
    return score_tokens_many(model, [sentence], memo)[0]


def score_tokens_many(
    model: LanguageModel, sentences: Sequence[Sequence[str]], memo: Memo | None = None
) -> list[list[float]]:
    """`score_tokens_of` for each sentence, all of them in one batch (one `score_windows` call, so an n-gram
    model fetches the counts of every sentence in one round per order; an unbounded model with
    `sentence_logprobs` scores each sentence whole)."""
    batched = getattr(model, "sentence_logprobs", None)
    if model.order is None and batched is not None:
        return [list(batched(sentence)) for sentence in sentences]
    requests = [(sentence[:i], (sentence[i],)) for sentence in sentences for i in range(len(sentence))]
    flat = score_windows(model, requests, memo)
    out, start = [], 0
    for sentence in sentences:
        out.append(flat[start : start + len(sentence)])
        start += len(sentence)
    return out


def _candidates(
    item: SentenceInput, i: int, bits: Sequence[float], vocab: Vocabulary, config: OddityConfig
) -> list[Edit]:
    """The edits at token i of the sentence worth scoring (`bits`: each token's surprisal)."""
    sentence, skip, editable = item.tokens, item.skip, item.editable
    if sentence[i] == EOS or skip[i]:
        return []
    kinds = config.kinds if editable[i] else config.kinds & INSERTING  # before a name: a word inserted, if any
    if max(bits[i : i + 3]) < config.gate_bits and bits[i] < config.insertion_gate_bits:
        kinds = kinds & UNGATED  # nothing surprising here: only confusable and doubled words are looked at
    out = []
    last = len(sentence) - 1
    known = vocab.known
    # an insertion before token i is tried only when token i is surprising enough (`candidate_is_gated`): below
    # that, none is made (most of the edits at a token are insertions: ~45 common words)
    insertions = bits[i] >= config.insertion_gate_bits
    for edit in edits_at(sentence, i, vocab, kinds, insertions):
        start, stop = edit.start, edit.stop
        if stop > last + (edit.kind == DOUBLED):
            continue
        inserts = _inserts(sentence, edit)
        if not inserts and not all(editable[start:stop]):
            continue  # it would change a token that may not change
        gated = edit.kind not in UNGATED
        if gated and _below_gate(inserts, start, stop, bits, config):
            continue  # the cheapest test first (the tests are independent: their order does not change the result)
        if any(t not in SPECIAL and not known(t) for t in edit.tokens):
            continue
        if gated:
            if not all(map(known, sentence[start:stop])):
                continue  # only confusion sets and doubled words judge a word the model does not know
            if not _plain_neighbour(sentence, skip, editable, stop, vocab) or (
                config.seen_pairs and not _pairs_seen(sentence, edit, vocab)
            ):
                continue  # names and numbers swing the window; unseen pairs are unlikely corrections
        out.append(edit)
    return out


def candidate_is_gated(sentence: Sequence[str], edit: Edit, bits: Sequence[float], config: OddityConfig) -> bool:
    """The edit is not tried: nothing near it is surprising enough (`bits`: each token's surprisal). Confusion
    sets, doubled words and misspellings are always tried; an insertion needs the word after the gap to reach
    `insertion_gate_bits`, any other edit a token it changes or the one after to reach `gate_bits`."""
    if edit.kind in UNGATED:
        return False
    return _below_gate(_inserts(sentence, edit), edit.start, edit.stop, bits, config)


def _below_gate(inserts: bool, start: int, stop: int, bits: Sequence[float], config: OddityConfig) -> bool:
    """`candidate_is_gated` for an edit of a gated kind over tokens [start, stop) (`inserts`: see `_inserts`)."""
    if inserts:
        return bits[start] < config.insertion_gate_bits
    return max(bits[start : stop + 1]) < config.gate_bits


def _inserts(sentence: Sequence[str], edit: Edit) -> bool:
    """The edit inserts words before the tokens it names and leaves those tokens as they are."""
    kept = edit.stop - edit.start
    return len(edit.tokens) > kept and tuple(edit.tokens[len(edit.tokens) - kept :]) == tuple(
        sentence[edit.start : edit.stop]
    )


def _pairs_seen(sentence: Sequence[str], edit: Edit, vocab: Vocabulary) -> bool:
    """Every pair of adjacent words the edit makes was seen in the model's text (a cheap first filter: a writer's
    slip usually makes an unseen pair, and its correction seen ones). Pairs the sentence already has where the
    edit leaves them (the kept word of an insertion and the word after it) are not the edit's to answer for."""
    if vocab.seen_pair is None:
        return True
    before = sentence[edit.start - 1] if edit.start > 0 else BOS
    after = [sentence[edit.stop]] if edit.stop < len(sentence) else []
    old = set(itertools.pairwise([before, *sentence[edit.start : edit.stop], *after]))
    made = itertools.pairwise([before, *edit.tokens, *after])
    return all(vocab.seen_pair(a, b) for a, b in made if (a, b) not in old)


def _plain_neighbour(
    sentence: Sequence[str], skip: Sequence[bool], editable: Sequence[bool], i: int, vocab: Vocabulary
) -> bool:
    """Token i is an ordinary word, punctuation or the sentence end (not a name, a number, an unknown word)."""
    if i >= len(sentence) or sentence[i] == EOS:
        return True
    return (editable[i] and vocab.known(sentence[i])) or (skip[i] and sentence[i] not in SPECIAL)


def _window(model: LanguageModel, sentence: Sequence[str], edit: Edit, short: bool = False) -> tuple[int, int]:
    """The original tokens [start, stop) whose probabilities the edit can change (`short`: the first after it)."""
    if short:
        return edit.start, min(len(sentence), edit.stop + 1)
    stop = len(sentence) if model.order is None else min(len(sentence), edit.stop + model.order - 1)
    return edit.start, stop


def _gains(
    judge: _Judge,
    sentences: Sequence[SentenceInput],
    logprobs: Sequence[Sequence[float]],
    jobs: Sequence[tuple[int, Edit]],
    config: OddityConfig,
    short: bool = False,
) -> list[tuple[float, float]]:
    """(normalised gain, raw window gain) in bits for each (sentence number, edit) under the judge's model, given
    each sentence's per-token `logprobs` under it; `short`: over the edit and the token after it only."""
    model, unigram = judge.model, judge.unigram
    requests = []
    olds = []
    for k, edit in jobs:
        sentence = sentences[k].tokens
        start, stop = _window(model, sentence, edit, short)
        requests.append((sentence[:start], (*edit.tokens, *sentence[edit.stop : stop])))
        olds.append(math.fsum(logprobs[k][start:stop]))
    news = score_windows(model, requests, judge.memo)
    out = []
    for (k, edit), old, new in zip(jobs, olds, news, strict=True):
        raw = to_bits(new - old) if new > -math.inf else -math.inf
        gain = raw
        if config.frequency_weight and len(edit.tokens) == 1 and edit.stop - edit.start == 1:
            gain -= config.frequency_weight * (unigram(edit.tokens[0]) - unigram(sentences[k].tokens[edit.start]))
        out.append((gain, raw))
    return out


def _unigram_bits(model: LanguageModel, memo: Memo | None = None) -> Callable[[str], float]:
    """log2 P(word) with no context (the model's unigram level)."""

    def bits(word: str) -> float:
        key = ((), word)
        if memo is not None and key in memo:
            return to_bits(memo[key])
        value = model.logprob(word, () if model.order is not None else (BOS,))
        if memo is not None:
            memo[key] = value
        return to_bits(value) if value > -math.inf else -1e9

    return bits


def select(
    sentence: Sequence[str],
    found: Sequence[tuple[Edit, tuple[float, float]]],
    config: OddityConfig,
    surprisal: Sequence[float],
) -> list[Oddity]:
    """The flagged edits: grouped by the tokens they replace, best group first, groups that overlap a better one or
    give the same sentence (dropping either 'the' of 'the the') dropped."""
    groups: dict[tuple[int, int], list[Correction]] = {}
    for edit, (gain, raw) in found:
        if gain >= config.needed(edit):
            groups.setdefault((edit.start, edit.stop), []).append(Correction(edit.tokens, gain, edit.kind, raw))
    taken: list[Oddity] = []
    used: set[int] = set()
    results: set[tuple[str, ...]] = set()
    order = sorted(groups.items(), key=lambda kv: (-max(c.gain for c in kv[1]), -kv[0][0]))
    for (start, stop), corrections in order:
        best_result = (*sentence[:start], *max(corrections, key=lambda c: c.gain).tokens, *sentence[stop:])
        if used.intersection(range(start, stop)) or best_result in results:
            continue
        results.add(best_result)
        corrections.sort(key=lambda c: -c.gain)
        best = corrections[0].gain
        close = [c for c in corrections if c.gain >= best - config.close_bits][: config.max_alternatives]
        used.update(range(start, stop))
        taken.append(Oddity(start, sentence[start], surprisal[start], tuple(close), stop, tuple(sentence[start:stop])))
    taken.sort(key=lambda o: o.index)
    return taken


def explain(before: str, after: str, correction: Correction) -> str:
    """Why `after` (the correction as written; "" to delete) is offered for `before` (the words it replaces), in
    plain words: the kind's rule where there is one, and how much likelier the model finds the corrected words
    (e.g. "the model finds 'information' 300x likelier than 'informations' here")."""
    odd = before.casefold().split()
    after = after or "(nothing)"
    ratio = 2.0 ** min(correction.window_bits, 60.0)
    times = f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"
    odds = f"the model finds '{after}' {times} likelier than '{before}' here"
    kind = correction.kind
    if kind == MISSPELLING:  # the model cannot compare a word it does not know
        return f"'{before}' is not a word the model or the dictionary knows; perhaps '{after}'"
    if kind == CONFUSION and {*odd, *correction.tokens} == {"a", "an"}:
        sound = "vowel" if correction.tokens == ("an",) else "consonant"
        return f"'{after}' before a {sound} sound; {odds}"
    rule = {
        CONFUSION: f"'{before}' is often confused with '{after}'",
        DOUBLED: f"'{before}' is repeated",
        ARTICLE: "an article or determiner may be missing, extra or wrong",
        PREPOSITION: "a preposition may be missing, extra or wrong",
        INFLECTION: f"another form of the same word: '{after}'",
        TRANSPOSITION: "two words may be in the wrong order",
        MISSING_WORD: "a word may be missing",
        SPELLING: f"'{after}' is spelt one letter differently",
    }.get(kind, "")
    return f"{rule}; {odds}" if rule else odds
