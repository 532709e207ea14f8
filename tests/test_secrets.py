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
from tests.test_store_invariant import snapshot

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


def pem(label: str) -> str:
    body = "\n".join(rs(B64, 64) for _ in range(5))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


# (kind, name of the sample, the paragraph holding the secret, the secret itself)
SAMPLES: list[tuple[str, str, str, str]] = []


def sample(kind: str, secret: str, paragraph: str | None = None, name: str | None = None) -> None:
    text = paragraph.format(secret=secret) if paragraph else f"Remember that my credential is {secret} for the account"
    SAMPLES.append((kind, name or kind, text, secret))


sample("aws_access_key_id", "AKIA" + rs(UPPER, 16))
sample("aws_access_key_id", "ASIA" + rs(UPPER, 16), name="aws_temporary_access_key_id")
sample("aws_secret_access_key", rs(B64, 40), "Set aws_secret_access_key = {secret} in the profile")
sample("gcp_api_key", "AIza" + rs(URLSAFE, 35))
sample(
    "gcp_service_account_key",
    rs(HEX, 40),
    '{{"type": "service_account", "project_id": "demo", "private_key_id": "{secret}"}}',
)
sample(
    "private_key_block",
    "-----BEGIN PRIVATE KEY-----\\n" + rs(B64, 64) + "\\n" + rs(B64, 64) + "\\n-----END PRIVATE KEY-----\\n",
    '{{"type": "service_account", "private_key": "{secret}", "client_email": "x@demo.iam.gserviceaccount.com"}}',
    name="gcp_service_account_private_key",
)
sample(
    "azure_storage_key",
    "DefaultEndpointsProtocol=https;AccountName=notesacct;AccountKey="
    + rs(B64, 86)
    + "==;EndpointSuffix=core.windows.net",
    "The storage connection string is {secret} for production",
)
sample("github_token", "ghp_" + rs(ALNUM, 36))
sample("github_token", "gho_" + rs(ALNUM, 36), name="github_oauth_token")
sample("github_token", "ghs_" + rs(ALNUM, 36), name="github_server_token")
sample("github_fine_grained_token", "github_pat_" + rs(ALNUM, 22) + "_" + rs(ALNUM, 59))
sample("gitlab_token", "glpat-" + rs(URLSAFE, 20))
sample("slack_token", "xoxb-" + rs(DIGITS, 12) + "-" + rs(DIGITS, 13) + "-" + rs(ALNUM, 24))
sample("slack_token", "xoxp-" + rs(DIGITS, 12) + "-" + rs(DIGITS, 12) + "-" + rs(ALNUM, 32), name="slack_user_token")
sample(
    "slack_webhook",
    "https://hooks.slack.com/services/T" + rs(UPPER, 8) + "/B" + rs(UPPER, 10) + "/" + rs(ALNUM, 24),
    "Post alerts to {secret} when the build breaks",
)
sample("stripe_key", "sk_live_" + rs(ALNUM, 24))
sample("stripe_key", "rk_live_" + rs(ALNUM, 24), name="stripe_restricted_key")
sample("twilio_key", "SK" + rs(HEX, 32))
sample("sendgrid_key", "SG." + rs(URLSAFE, 22) + "." + rs(URLSAFE, 43))
sample("openai_key", "sk-proj-" + rs(URLSAFE, 48))
sample("openai_key", "sk-" + rs(ALNUM, 48), name="openai_legacy_key")
sample("anthropic_key", "sk-ant-api03-" + rs(URLSAFE, 93) + "AA")
sample("npm_token", "npm_" + rs(ALNUM, 36))
sample("pypi_token", "pypi-AgEIcHlwaS5vcmc" + rs(URLSAFE, 60))
sample("heroku_key", "HRKU-" + rs(URLSAFE, 60))
sample(
    "heroku_key",
    f"{rs(HEX, 8)}-{rs(HEX, 4)}-{rs(HEX, 4)}-{rs(HEX, 4)}-{rs(HEX, 12)}",
    "Our heroku api key is {secret} for deploys",
    name="heroku_legacy_key",
)
sample("mailgun_key", "key-" + rs(string.ascii_lowercase + DIGITS, 32))
sample("shopify_token", "shpat_" + rs(HEX, 32))
sample("discord_bot_token", "M" + rs(ALNUM, 23) + "." + rs(URLSAFE, 6) + "." + rs(URLSAFE, 27))
sample(
    "discord_webhook",
    "https://discord.com/api/webhooks/" + rs(DIGITS, 18) + "/" + rs(URLSAFE, 68),
    "The bot posts through {secret} every hour",
)
sample("telegram_bot_token", rs(DIGITS, 9) + ":AA" + rs(URLSAFE, 33))
sample("private_key_block", pem("RSA PRIVATE KEY"), "My server key:\n{secret}", name="rsa_private_key")
sample("private_key_block", pem("EC PRIVATE KEY"), "The signing key:\n{secret}", name="ec_private_key")
sample("private_key_block", pem("OPENSSH PRIVATE KEY"), "Laptop key:\n{secret}", name="openssh_private_key")
sample("private_key_block", pem("PGP PRIVATE KEY BLOCK"), "Backup key:\n{secret}", name="pgp_private_key")
sample(
    "private_key_block",
    "-----BEGIN RSA PRIVATE KEY-----\n" + rs(B64, 64) + "\n" + rs(B64, 40),
    "A key pasted without its end:\n{secret}",
    name="truncated_private_key",
)
sample(
    "jwt",
    b64url({"alg": "HS256", "typ": "JWT"}) + "." + b64url({"sub": "1234567890", "name": "Ann"}) + "." + rs(URLSAFE, 43),
)
sample("secret_assignment", rs(ALNUM, 12), "Log in with password={secret} on the staging box", name="password_equals")
sample("secret_assignment", "Tr0ub4dor&3x", "The router config says passwd: {secret}", name="passwd_colon")
sample("secret_assignment", rs(ALNUM, 16), "Set secret = '{secret}' before running", name="secret_equals")
sample("secret_assignment", rs(ALNUM, 24), 'The client sends "api_key": "{secret}" with each call', name="json_api_key")
sample("secret_assignment", rs(HEX, 32), "Export auth_token={secret} first", name="hex_token_assignment")
sample(
    "url_credentials",
    "postgres://admin:" + rs(ALNUM, 14) + "@db.internal.example:5432/app",
    "Connect with {secret} from the office",
)
sample("url_credentials", "https://deploy:" + rs(ALNUM, 18) + "@git.example.org/repo.git", name="https_credentials")
sample("env_secret", rs(ALNUM, 10), "DATABASE_PASSWORD={secret}", name="env_password")
sample("env_secret", "whsec_" + rs(ALNUM, 32), "export STRIPE_WEBHOOK_SECRET={secret}", name="env_export_secret")
sample("env_secret", rs(ALNUM, 40), "SESSION_KEY = {secret}", name="env_key")
sample("high_entropy", rs(ALNUM, 32))
sample("high_entropy", rs(B64, 44), name="high_entropy_base64")

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
def test_at_least_20_kinds_each_with_a_sample() -> None:
    assert len(secrets.KINDS) >= 20
    assert {kind for kind, *_ in SAMPLES} == set(secrets.KINDS)


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
        assert snapshot(store) == snapshot(expected)  # the paragraph holding the secret added nothing at all
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
            assert snapshot(store) == snapshot(expected)
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
            assert snapshot(store) == snapshot(expected)
        store.forget("doc")
        assert snapshot(store)["ngrams"] == {}


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


CONTEXTUAL = ("secret_assignment", "env_secret", "url_credentials", "gcp_service_account_key", "heroku_legacy_key")
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
