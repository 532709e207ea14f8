"""Secrets are never learned, so never suggested: every kind `store.secrets` knows, in prose and pretokenized stores,
leaves no trace in the counts, the vocabulary or the casing table, and ordinary writing loses nothing.

The sample secrets are made up at run time from a seeded generator (nothing that looks like a key is written in the
repository for scanners to trip on); each has the shape of the real thing.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import string
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lm_core import tokenize
from lsp_server.engine import Engine
from store import secrets
from store.countstore import CountStore
from store.sources import analyse
from tests.conftest import store_snapshot

_rng = random.Random(20240601)
ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "_-"
DIGITS = string.digits


def rs(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


# (kind, name of the sample, the paragraph holding the secret, the secret itself): every example of every detector
# of the one table (`secrets.DETECTORS`), made concrete with random characters
SAMPLES: list[tuple[str, str, str, str]] = []
for _detector in secrets.DETECTORS:
    for _i, _template in enumerate(_detector.examples):
        _text, _secret = secrets.fake_example(_template, _rng)
        if _text == _secret:
            _text = f"Remember that my credential is {_secret} for the account"
        SAMPLES.append((_detector.kind, f"{_detector.kind}_{_i}", _text, _secret))

INTRO = "The cat sat on the mat. The dog sat on the rug."
OUTRO = "We walked home after the rain. The house was warm."
counter = itertools.count()


def secret_tokens(secret: str) -> set[str]:
    """The words and numbers the prose tokenizer makes of the secret alone (3+ characters), and the pieces of
    whitespace-free text, that ordinary text around it does not contain."""
    ordinary = {t.norm for t in tokenize.tokenize(INTRO + " " + OUTRO)}
    tokens = {t.norm for t in tokenize.tokenize(secret) if t.kind in ("word", "number") and len(t.norm) >= 3}
    tokens |= {w for w in secret.split() if len(w) >= 3}
    return tokens - ordinary


def learned(tmp: Path, text: str, tokenizer: str = "prose") -> CountStore:
    store = CountStore.open(tmp / f"s{next(counter)}.db", order=3, tokenizer=tokenizer, create=True)
    store.learn("doc", text)
    return store


# --- the kinds ------------------------------------------------------------------------------------------------------
def test_at_least_35_kinds_each_with_an_example_and_a_guard() -> None:
    assert len(secrets.KINDS) >= 35
    assert {kind for kind, *_ in SAMPLES} == set(secrets.KINDS)
    assert all(d.examples and d.guard for d in secrets.DETECTORS)


@pytest.mark.parametrize(("kind", "name", "paragraph", "secret"), SAMPLES, ids=[s[1] for s in SAMPLES])
def test_each_kind_is_found(kind: str, name: str, paragraph: str, secret: str) -> None:
    found = secrets.find_secrets(paragraph)
    assert kind in {s.kind for s in found}, found
    start = paragraph.index(secret)
    assert any(s.start <= start and start + len(secret) <= s.end for s in found), (found, start)


@pytest.mark.parametrize(("kind", "name", "paragraph", "secret"), SAMPLES, ids=[s[1] for s in SAMPLES])
def test_a_secret_is_never_learned_nor_suggested(
    tmp_path: Path, kind: str, name: str, paragraph: str, secret: str
) -> None:
    text = f"{INTRO}\n\n{paragraph}\n\n{OUTRO}\n"
    with learned(tmp_path, text) as store, learned(tmp_path, f"{INTRO}\n\n{OUTRO}\n") as expected:
        assert store_snapshot(store) == store_snapshot(
            expected
        )  # the paragraph holding the secret added nothing at all
        vocabulary = set(store.vocab.words)
        for token in secret_tokens(secret):
            assert token not in vocabulary
            assert not any(token in word for word in vocabulary if len(word) >= 3)
        assert kind in analyse(text, "prose").secrets

        engine = Engine(store)
        before = paragraph[: paragraph.index(secret)]
        context = engine.context_of(before)
        for token in sorted(secret_tokens(secret), key=len, reverse=True)[:3]:
            for prefix in ("", token[:1], token[:3]):
                words = {s.word.casefold() for s in engine.next_words(context, 100, prefix)}
                assert not any(t in w for w in words for t in secret_tokens(secret)), (prefix, words)


@pytest.mark.parametrize(("kind", "name", "paragraph", "secret"), SAMPLES, ids=[s[1] for s in SAMPLES])
def test_a_pretokenized_store_drops_each_line_holding_a_secret(
    tmp_path: Path, kind: str, name: str, paragraph: str, secret: str
) -> None:
    text = f"{INTRO}\n\n{paragraph}\n\n{OUTRO}\n"
    start = text.index(secret)
    first, last = text.count("\n", 0, start), text.count("\n", 0, start + len(secret) - 1)
    without = "\n".join(line for i, line in enumerate(text.split("\n")) if not first <= i <= last)
    with learned(tmp_path, text, "pretokenized") as store:
        with learned(tmp_path, without, "pretokenized") as expected:
            assert store_snapshot(store) == store_snapshot(expected)
        words = set(store.vocab.words)
        assert not any(piece in word for piece in secret.split() if len(piece) >= 8 for word in words)


# --- the policy: the sentence holding a secret goes, the rest stays ------------------------------------------------
def test_only_the_sentence_holding_the_secret_is_dropped() -> None:
    key = "ghp_" + rs(ALNUM, 36)
    text = f"The first sentence stays. My token {key} is here. The third sentence stays too.\n"
    analysed = analyse(text, "prose")
    assert analysed.sentences == [
        ["the", "first", "sentence", "stays", ".", "</s>"],
        ["the", "third", "sentence", "stays", "too", ".", "</s>"],
    ]
    assert analysed.secrets == ("github_token",)


def test_a_secret_that_makes_no_tokens_still_drops_the_sentence_around_it_on_its_line() -> None:
    url = "https://admin:" + rs(ALNUM, 12) + "@example.org/admin"
    text = f"Kept before.\nThe admin page is at {url}\n\nKept after.\n"
    assert analyse(text, "prose").sentences == [["kept", "before", ".", "</s>"], ["kept", "after", ".", "</s>"]]
    code = f"Use `{'AKIA' + rs(UPPER, 16)}` here\n\nKept after.\n"  # inside inline code: no tokens of its own
    assert analyse(code, "prose").sentences == [["kept", "after", ".", "</s>"]]


def test_a_secret_in_a_code_block_drops_nothing_else() -> None:
    key = "sk_live_" + rs(ALNUM, 24)
    text = f"Before the block.\n\n```\nSTRIPE = '{key}'\n```\n\nAfter the block.\n"
    analysed = analyse(text, "prose")
    assert analysed.sentences == [["before", "the", "block", ".", "</s>"], ["after", "the", "block", ".", "</s>"]]
    assert analysed.secrets == ("stripe_key",)


def test_an_env_file_learns_only_its_harmless_lines() -> None:
    text = f"APP_NAME=notes\nDATABASE_PASSWORD={rs(ALNUM, 12)}\nAPI_TOKEN={rs(ALNUM, 30)}\nDEBUG=false\n"
    analysed = analyse(text, "pretokenized")
    assert analysed.sentences == [["APP_NAME=notes", "</s>"], ["DEBUG=false", "</s>"]]
    assert set(analysed.secrets) <= {"env_secret", "secret_assignment", "high_entropy"}


def test_relearning_without_the_secret_and_forgetting_leave_no_trace(tmp_path: Path) -> None:
    key = "xoxb-" + rs(DIGITS, 12) + "-" + rs(DIGITS, 13) + "-" + rs(ALNUM, 24)
    with learned(tmp_path, f"{INTRO} The slack token is {key} today. {OUTRO}") as store:
        store.learn("doc", f"{INTRO} {OUTRO}")
        with learned(tmp_path, f"{INTRO} {OUTRO}") as expected:
            assert store_snapshot(store) == store_snapshot(expected)
        store.forget("doc")
        assert store_snapshot(store)["ngrams"] == {}


# --- ordinary writing loses nothing ---------------------------------------------------------------------------------
PROSE = """\
# Release notes for version 2.4.1

We shipped the new editor on 2024-03-15 at 09:30 UTC, two weeks after the beta. Thanks to everyone who tested it!
The colour scheme now uses #1e90ff for links and #ff8800 for warnings; see https://example.com/docs/colours?theme=dark
for the full palette, or read [the design notes](https://github.com/example/editor/blob/main/docs/DESIGN.md).

Commit 3f2c9a1b7e4d5c6f8a9b0c1d2e3f4a5b6c7d8e9f fixed the crash reported in issue #4521, and the request
de305d54-75b4-431b-adb2-eb6b9e546014 in the server log shows it. Dr. Smith measured a 12.5% speed-up, from 340 ms
to 297 ms, on a 2.3 GHz laptop with 16 GB of memory. Mail support@example.com or call +1 (555) 010-2233.

## Settings

- `tokenizer: prose` is the default; set the key `maxSuggestions` to 20 for longer lists.
- The word "password" appears in the login form, and the token count is shown in the status bar.
- Secret: keep your notes short. Passwords are never shown. The API key page explains how to rotate keys.
- Use AbstractSingletonProxyFactoryBean2 or getElementsByTagName, and the x86_64-unknown-linux-gnu target.
- Files live in /Users/JohnSmith/Documents/Report2023/final_version_2.docx and C:\\Program Files\\Editor.

The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times. Call me Ishmael.
In 1984, the population was 1,234,567; by 2020 it had grown to 2.5 million (an increase of 102.5%). Q3 revenue
was $4.2M, up from €3.9M, and the ISBN is 978-3-16-148410-0. Meet me at 10:45 on 12/03/2024 near Route 66.
Our token economy is simple: one token per word. Keys are stored in a drawer; the secret is patience.
A pass mark of 50 is needed, bypass=true skips the check, and the password field may be empty.
The password is correct, the token is valid, and the secret is out. My password was too short, so I changed it.
Das Passwort ist zu kurz. Use the --password option, or --password-stdin, to give it; mysql -p asks for it.
The machine learning course covers login pages. Bearer bonds and the ring bearer were the topics of the talk.
The Authorization header is described in RFC 6750. Meet at https://example.com:8080/users/@ann for details.
Password: see the vault, user: admin. Secret: keep calm, carry on. Token: 3D-printing costs 12 tokens.
"""


def test_ordinary_prose_loses_nothing() -> None:
    assert secrets.find_secrets(PROSE) == []
    analysed = analyse(PROSE, "prose")
    assert analysed.sentences == tokenize.prose_sentences(PROSE)
    assert analysed.secrets == ()


@pytest.mark.parametrize(
    "text",
    [
        "3f2c9a1b7e4d5c6f8a9b0c1d2e3f4a5b6c7d8e9f",  # a git commit SHA: public, quoted in commit messages
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "de305d54-75b4-431b-adb2-eb6b9e546014",  # a UUID
        "colours #ff8800 and #1E90FF",
        "2024-03-15T09:30:00Z",
        "AbstractSingletonProxyFactoryBean",
        "UTF8String_to_UTF16LE_converter",
        "WikiText2_PTB_Reuters_2024Q3",
        "/Users/JohnSmith/Documents/Report2023",
        "sklearn.model_selection.train_test_split",
        "node_modules/lodash/fp/placeholder.js",
        "Token: a unit of text.",
        "Password: use the one from the vault.",
        "the secret is patience",
        "bypass=true",
        "token = None",
        "an internationalization-friendly approach",
        "https://example.com/path/to/page?query=value&sort=asc",
        "https://user@example.com/repo.git",
        "mailto:ann@example.com",
        "risk-averse ask-me-anything desk-bound",
        "sk-learn-tutorial-for-absolute-beginners",
        "the password field",
        "the token economy",
        "a token of appreciation was the password to her heart",
        "the password is correct",
        "machine learning: login with a password",
        "Bearer tokens are described in RFC 6750",
        "http://localhost:3000/@ann",
        "use --password option",
        "docker login --password-stdin",
        "mysql -p",
        "Passwort: bitte im Tresor nachsehen",
    ],
)
def test_things_that_are_not_secrets(text: str) -> None:
    assert secrets.find_secrets(text) == []


@pytest.mark.parametrize(
    "name",
    [".env", ".env.local", "prod.env", "id_rsa", "id_ed25519", "server.pem", "tls.key", ".netrc", ".npmrc", ".pypirc"],
)
def test_secret_files_are_named(name: str) -> None:
    assert secrets.is_secret_file(name)
    assert secrets.is_secret_file(Path("/home/ann/project") / name)


@pytest.mark.parametrize("name", ["notes.md", "environment.md", "README", "keys.txt", "envelope.txt", "id_rsa.md"])
def test_ordinary_files_are_not_secret_files(name: str) -> None:
    assert not secrets.is_secret_file(name)


# --- any text -------------------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_scanned_without_error(text: str) -> None:
    found = secrets.find_secrets(text)
    assert all(0 <= s.start < s.end <= len(text) and s.kind in secrets.KINDS for s in found)
    assert found == sorted(found, key=lambda s: (s.start, s.end))
    analysed = analyse(text, "prose")
    assert all(sentence[-1] == "</s>" for sentence in analysed.sentences)


CONTEXTUAL = (  # kinds that are secrets only with the words around them
    "secret_assignment",
    "env_secret",
    "url_credentials",
    "gcp_service_account_key",
    "heroku_key_1",
    "password_in_prose",
    "command_line_password",
    "netrc_credentials",
    "authorization_header",
    "private_key_block_5",
    "aws_secret_access_key",
)
KEYS = [s for s in SAMPLES if s[0] not in CONTEXTUAL and s[1] not in CONTEXTUAL]  # secrets without their key name


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=st.text(max_size=80),
    after=st.text(max_size=80),
    index=st.integers(0, len(KEYS) - 1),
    tokenizer=st.sampled_from(["prose", "pretokenized"]),
)
def test_a_key_in_any_surroundings_is_never_learned(before: str, after: str, index: int, tokenizer: str) -> None:
    secret = KEYS[index][3]
    analysed = analyse(f"{before} {secret} {after}", tokenizer)
    learned_words = {w for sentence in analysed.sentences for w in sentence}
    pieces = {p for p in secret_tokens(secret) if len(p) >= 8}
    assert not any(piece in word for piece in pieces for word in learned_words)


# --- cost -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("unit", ["pwd=", "=", "a", "Ab3+/", "The cat sat on the mat. "])
def test_scanning_is_linear_even_on_pathological_text(unit: str) -> None:
    text = unit * (1_000_000 // len(unit))
    start = time.perf_counter()
    secrets.find_secrets(text)
    assert time.perf_counter() - start < 5.0
