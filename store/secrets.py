"""Secrets that must never be learned: API keys, tokens, private keys, passwords, credentials in URLs.

`find_secrets(text)` returns every secret it recognises, with its kind and character span; `store.sources.analyse`
drops each sentence that a secret overlaps, so no token of a secret, nor the words written around it in the same
sentence, reaches the counts, and what was never counted can never be suggested. `is_secret_file(path)` names
files that are never learned at all (`.env`, private keys, credential files).

What is recognised (`KINDS`, each tested in `tests/test_secrets.py`):

- provider formats, by their fixed prefixes and lengths: AWS access key ids and secret access keys, Google API keys
  and service-account private keys, Azure storage keys and connection strings, GitHub (classic and fine-grained),
  GitLab, Slack (tokens and webhooks), Stripe, Twilio, SendGrid, OpenAI, Anthropic, npm, PyPI, Heroku, Mailgun,
  Shopify, Discord (bot tokens and webhooks) and Telegram bot tokens;
- PEM private key blocks (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP), up to their END line or the end of the text;
- JSON Web Tokens;
- assignments to a key that names a secret: `password=...`, `passwd: ...` (at the end of a line or quoted),
  `secret=...`, `api_key=...`, `token=...`, JSON `"password": "..."`, and `.env`-style `DB_PASSWORD=...` lines;
- credentials in URLs (`scheme://user:password@host`);
- long high-entropy strings: 20 or more characters of `[A-Za-z0-9+/=_-]` mixing at least two of lower case, upper
  case and digits, whose Shannon entropy per character is over a threshold that grows with the length, and that do
  not read as words (less than half of their letters in pronounceable word-like pieces, so `AbstractFactoryBean2`,
  `x86_64-unknown-linux-gnu` and `Users/JohnSmith/Documents` are not flagged).

Deliberately not flagged by the entropy rule: strings of hexadecimal digits only (git commit SHAs in commit
messages, content hashes, hex colours) and UUIDs. They are identifiers that ordinary writing quotes, they are not
credentials by themselves, and flagging them would drop many legitimate sentences. A hexadecimal secret is still
caught when it is assigned to a secret-named key (`token=...`) or carries a provider prefix (Twilio `SK...`,
Mailgun `key-...`, Shopify `shpat_...`).

Every pattern is linear in the text (bounded repetitions only), so a 50 MB line is scanned in about a second.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePath

__all__ = ["KINDS", "Secret", "contains_secret", "find_secrets", "is_secret_file", "looks_random"]


@dataclass(frozen=True, slots=True)
class Secret:
    """One secret found in a text: `text[start:end]` is it (or the assignment or block holding it)."""

    kind: str
    start: int
    end: int


_TOKEN_CHARS = "A-Za-z0-9_-"
_E = r"(?![A-Za-z0-9_-])"  # not followed by a token character


def _lit(prefix: str) -> str:
    """A literal that does not continue a token (the check comes after the literal, so the regex engine can jump
    from one occurrence of the literal to the next instead of trying every position)."""
    escaped = re.escape(prefix)
    return f"{escaped}(?<![{_TOKEN_CHARS}]{escaped})"


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    guards: tuple[str, ...] = ()  # run only when one of these substrings occurs (for patterns without a literal)
    back: re.Pattern[str] | None = None  # what the match's start extends back over (it starts after a prefix)
    back_check: re.Pattern[str] | None = None  # what the extended match must then fully match


def _rule(kind: str, source: str, *, guards: tuple[str, ...] = (), back: str = "", back_check: str = "") -> _Rule:
    extend = re.compile(f"[{back}]{{0,{_BACK_LIMIT}}}\\Z") if back else None
    check = re.compile(back_check, re.DOTALL) if back_check else None
    return _Rule(kind, re.compile(source, re.MULTILINE), guards, extend, check)


_BACK_LIMIT = 64
_CASES = ("heroku", "Heroku", "HEROKU")
_RULES: tuple[_Rule, ...] = (
    _rule(
        "private_key_block",
        # up to its END line; without one, over the lines that can belong to a key: base64, "Name: value" headers
        # (PGP armour, encrypted PEM) and blank lines
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:(?s:.{0,50000}?)"
        r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"|(?:(?:\n|\\n)(?:[A-Za-z0-9+/=]{1,100}|[A-Za-z-]{1,30}: [^\n]{0,200}|[ \t]{0,10})(?=\n|\\n|\Z))*)",
    ),
    _rule("gcp_service_account_key", r"\"private_key(?:_id)?\"[ \t]{0,5}:[ \t]{0,5}\"[^\"\n]{8,}\""),
    _rule(
        "aws_access_key_id",
        _lit("A") + r"(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA|SCA)[A-Z0-9]{16}" + _E,
    ),
    _rule(
        "aws_secret_access_key",
        r"(?i:aws)[A-Za-z0-9_.-]{0,20}(?i:secret)[A-Za-z0-9_.-]{0,20}[\"']?[ \t]{0,5}[:=][ \t]{0,5}[\"']?"
        r"[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
        guards=("aws", "AWS", "Aws"),
    ),
    _rule("gcp_api_key", _lit("AIza") + r"[0-9A-Za-z_-]{35}" + _E),
    _rule(
        "azure_storage_key",
        r"(?:DefaultEndpointsProtocol=[^;\s]{1,10};)?(?:[A-Za-z]{3,30}=[^;\s]{1,200};){0,5}"
        r"(?:AccountKey|SharedAccessKey|SharedAccessSignature)=[A-Za-z0-9+/%&=:-]{20,}(?:;[A-Za-z]{3,30}=[^;\s]{1,200}){0,5}",
        guards=("AccountKey=", "SharedAccessKey=", "SharedAccessSignature="),
    ),
    _rule("github_token", _lit("gh") + r"[pousr]_[A-Za-z0-9]{36,}" + _E),
    _rule("github_fine_grained_token", _lit("github_pat_") + r"[A-Za-z0-9_]{40,}" + _E),
    _rule("gitlab_token", _lit("gl") + r"(?:pat|dt|rt|ptt|cbt|oas)-[A-Za-z0-9_-]{20,}" + _E),
    _rule("slack_token", _lit("x") + r"(?:ox[abposre]|app)-[A-Za-z0-9-]{10,}" + _E),
    _rule(
        "slack_webhook",
        r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_]{6,}/[A-Za-z0-9_]{6,}"
        r"(?:/[A-Za-z0-9_]{6,})?",
    ),
    _rule("stripe_key", _lit("sk_") + r"(?:live|test)_[A-Za-z0-9]{16,}" + _E),
    _rule("stripe_key", _lit("rk_") + r"(?:live|test)_[A-Za-z0-9]{16,}" + _E),
    _rule("stripe_key", _lit("whsec_") + r"[A-Za-z0-9]{24,}" + _E),
    _rule("twilio_key", _lit("SK") + r"[0-9a-fA-F]{32}" + _E),
    _rule("twilio_key", _lit("AC") + r"[0-9a-fA-F]{32}" + _E),
    _rule("sendgrid_key", _lit("SG.") + r"[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}" + _E),
    _rule("anthropic_key", _lit("sk-ant-") + r"[A-Za-z0-9_-]{20,}" + _E),
    _rule(  # with a digit somewhere, so "sk-learn-tutorial-for-beginners" is not one
        "openai_key",
        _lit("sk-") + r"(?!ant-)(?=[A-Za-z_-]{0,200}[0-9])(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}" + _E,
    ),
    _rule("npm_token", _lit("npm_") + r"[A-Za-z0-9]{36}" + _E),
    _rule("pypi_token", _lit("pypi-") + r"[A-Za-z0-9_-]{50,}" + _E),
    _rule("heroku_key", _lit("HRKU-") + r"[A-Za-z0-9_-]{20,}" + _E),
    _rule(
        "heroku_key",
        r"(?i:heroku)[^\n]{0,40}?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        guards=_CASES,
    ),
    _rule("mailgun_key", _lit("key-") + r"[0-9a-zA-Z]{32}" + _E),
    _rule("shopify_token", _lit("shp") + r"(?:at|ca|pa|ss)_[a-fA-F0-9]{32}" + _E),
    _rule(  # found from its first dot; the 24-28 characters before it, starting with M, N or O, are checked after
        "discord_bot_token",
        r"\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,40}" + _E,
        back=_TOKEN_CHARS,
        back_check=r"[MNO][A-Za-z0-9_-]{23,27}\..*",
    ),
    _rule(
        "discord_webhook",
        r"https?://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{5,30}/[A-Za-z0-9_-]{20,}",
    ),
    _rule(
        "telegram_bot_token",
        r":AA(?<=[0-9]{8}:AA)[A-Za-z0-9_-]{33}" + _E,
        back="0-9",
        back_check=r"[0-9]{8,10}:.*",
    ),
    _rule("jwt", _lit("eyJ") + r"[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*" + _E),
    _rule(  # found from its "://"; the scheme before it is added after
        "url_credentials",
        r"://[^\s/:@\"'<>]{1,100}:[^\s/@\"'<>]{1,200}@[^\s@\"'<>]+",
        back="A-Za-z0-9+.-",
        back_check=r"[A-Za-z][A-Za-z0-9+.-]{0,20}://.*",
    ),
    _rule(
        "env_secret",
        r"^[ \t]{0,20}(?:export[ \t]+)?[A-Z0-9_]{0,40}"
        r"(?:SECRET|TOKEN|PASSWORD|PASSWD|PWD|PASS|KEY|CREDENTIALS?|AUTH|PRIVATE|SALT|SIGNATURE|DSN)"
        r"[A-Z0-9_]{0,40}[ \t]{0,5}=[ \t]{0,5}\S[^\n]*",
    ),
)

# Assignments to a key that names a secret: password, passwd, pwd, passphrase, secret, token, api key, access key,
# private key, auth key, credential(s); "pass" only as a whole word. Found from the separator (":" or "=" after a
# key character, quote or blank), then the key is looked for in the few characters before it.
_SECRET_KEY = (
    r"(?:passw(?:or)?d|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|auth[_-]?key|credentials?|(?<![a-z])pass(?![a-z]))"
)
_KEY_WORDS = ("pass", "pwd", "secret", "token", "key", "credential")
_SEPARATOR = re.compile(r"[:=](?<=[A-Za-z0-9_.\-\"' \t][:=])")
_KEY_BEFORE = re.compile(r"(?i:" + _SECRET_KEY + r")[A-Za-z0-9_.-]{0,30}[\"']?[ \t]{0,5}\Z")
_TRIVIAL = r"(?!(?i:true|false|null|none|nil|undefined|yes|no|on|off)\b)"
_VALUE_AFTER_EQUALS = re.compile(
    r"[ \t]{0,5}" + _TRIVIAL + r"(?:\"[^\"\n]{3,500}\"|'[^'\n]{3,500}'|[^\s\"',;)]{3,500})"
)
# After ":", only a quoted value (JSON, YAML) or one that is the last thing on its line: "Token: a unit of text."
# is prose, "password: hunter2" is not.
_VALUE_AFTER_COLON = re.compile(
    r"[ \t]{0,5}" + _TRIVIAL + r"(?:\"[^\"\s]{3,500}\"|'[^'\s]{3,500}'|[^\s\"']{3,500}[ \t]*$)", re.MULTILINE
)
KINDS: tuple[str, ...] = (*dict.fromkeys(r.kind for r in _RULES), "secret_assignment", "high_entropy")

# --- the entropy rule ---------------------------------------------------------------------------------------------
_CANDIDATE = re.compile(r"[A-Za-z0-9+/=_-]{20,}")
_HEX = re.compile(r"[0-9a-fA-F-]+=*")
_SEGMENT = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
_CLASSES = (re.compile("[a-z]"), re.compile("[A-Z]"), re.compile("[0-9]"))
_LONG_CONSONANTS = re.compile(r"[b-df-hj-np-tv-xz]{5}")


def _entropy(s: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _pronounceable(piece: str) -> bool:
    word = piece.lower()
    if len(word) < 4:
        return False
    vowels = sum(ch in "aeiouy" for ch in word)
    return 0.15 <= vowels / len(word) < 1 and not _LONG_CONSONANTS.search(word)


def _reads_as_words(s: str) -> bool:
    """At least half of the letters are in word-like pieces (split at case changes, digits and symbols)."""
    letters = sum(ch.isalpha() for ch in s)
    return letters > 0 and sum(len(p) for p in _SEGMENT.findall(s) if _pronounceable(p)) * 2 >= letters


def looks_random(s: str) -> bool:
    """Whether a run of 20+ token characters looks like a random key rather than a word, path or identifier (a run
    longer than 1,000 characters is judged by its first 1,000)."""
    s = s[:1000]
    if len(s) < 20 or _HEX.fullmatch(s):
        return False
    classes = sum(1 for c in _CLASSES if c.search(s))
    if classes < 2 or _reads_as_words(s):
        return False
    return _entropy(s) >= min(3.0 + (len(s) - 20) * 0.05, 3.8)


# --- finding --------------------------------------------------------------------------------------------------------
def find_secrets(text: str) -> list[Secret]:
    """Every secret recognised in `text`, ordered by start (spans of different kinds may overlap)."""
    found: list[Secret] = []
    for rule in _RULES:
        if rule.guards and not any(g in text for g in rule.guards):
            continue
        for m in rule.pattern.finditer(text):
            start = m.start()
            if rule.back is not None:
                extended = rule.back.search(text, max(0, start - _BACK_LIMIT), start)
                start = extended.start() if extended else start
                if rule.back_check is not None and not rule.back_check.fullmatch(text, start, m.end()):
                    continue
            found.append(Secret(rule.kind, start, m.end()))
    found.extend(_assignments(text))
    found.sort(key=lambda s: (s.start, s.end))
    starts = [s.start for s in found]
    ends = list(itertools.accumulate((s.end for s in found), max))
    for m in _CANDIDATE.finditer(text):  # a random-looking string not already inside a secret of a known kind
        j = bisect.bisect_right(starts, m.start())
        if (not j or ends[j - 1] < m.end()) and looks_random(m[0]):
            found.append(Secret("high_entropy", m.start(), m.end()))
    found.sort(key=lambda s: (s.start, s.end))
    return found


def _assignments(text: str) -> list[Secret]:
    found: list[Secret] = []
    for m in _SEPARATOR.finditer(text):
        sep = m.start()
        if found and sep < found[-1].end:
            continue
        lo = max(0, sep - 60)
        window = text[lo:sep].lower()
        if not any(word in window for word in _KEY_WORDS):
            continue
        key = _KEY_BEFORE.search(text, lo, sep)
        if key is None:
            continue
        value = (_VALUE_AFTER_EQUALS if m[0] == "=" else _VALUE_AFTER_COLON).match(text, sep + 1)
        if value is not None:
            found.append(Secret("secret_assignment", key.start(), value.end()))
    return found


def contains_secret(text: str) -> bool:
    return bool(find_secrets(text))


# --- files that are never learned -----------------------------------------------------------------------------------
_SECRET_NAMES = frozenset(
    {
        ".env",
        ".envrc",
        ".netrc",
        "_netrc",
        ".npmrc",
        ".pypirc",
        ".pgpass",
        ".git-credentials",
        ".htpasswd",
        "credentials",
        "credentials.json",
        "id_rsa",
        "id_dsa",
        "id_ecdsa",
        "id_ed25519",
    }
)
_SECRET_SUFFIXES = frozenset({".env", ".pem", ".key", ".p12", ".pfx", ".keystore", ".jks", ".asc", ".gpg"})


def is_secret_file(path: str | PurePath) -> bool:
    """Whether a file holds credentials by its name: `.env` and `.env.*`, `*.env`, private keys and certificates'
    keys (`id_rsa`, `*.pem`, `*.key`, ...), and credential files (`.netrc`, `.npmrc`, `.pypirc`, ...)."""
    name = PurePath(path).name.lower()
    if name in _SECRET_NAMES or name.startswith(".env."):
        return True
    return PurePath(name).suffix in _SECRET_SUFFIXES
