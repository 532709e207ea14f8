"""Secrets that must never be learned: API keys, tokens, private keys, passwords, credentials in URLs.

`DETECTORS` is the one table of what is recognised: for each kind its pattern, templates of fake examples, and the
guard that keeps ordinary writing from being flagged. `find_secrets(text)` returns every secret it recognises, with
its kind and character span; `store.sources.analyse` drops each sentence that a secret overlaps, so no token of a
secret, nor the words written around it in the same sentence, reaches the counts, and what was never counted can
never be suggested. `is_secret_file(path)` names files that are never learned at all (`.env`, private keys,
credential files); `is_secret_path` also follows a symbolic link to its target's name.

`bench/secrets.py` measures this table against Yelp's detect-secrets on fake secrets of every kind and on prose
about passwords and tokens (see SECURITY.md for the figures and the choice).

Deliberately not flagged by the entropy rule: strings of hexadecimal digits only (git commit SHAs in commit
messages, content hashes, hex colours) and UUIDs. They are identifiers that ordinary writing quotes, they are not
credentials by themselves, and flagging them would drop many legitimate sentences. A hexadecimal secret is still
caught when it is assigned to a secret-named key (`token=...`), follows one in prose ("the token is ..."), or
carries a provider prefix (Twilio `SK...`, Databricks `dapi...`, Shopify `shpat_...`).

Every pattern is linear in the text (bounded repetitions only), so a 50 MB line is scanned in seconds.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePath

__all__ = [
    "DETECTORS",
    "KINDS",
    "Detector",
    "Secret",
    "contains_secret",
    "fake_example",
    "find_secrets",
    "is_secret_file",
    "is_secret_path",
    "looks_random",
    "redact",
]


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
class Detector:
    """One kind of secret: the single definition that `find_secrets`, the tests, `bench/secrets.py` and SECURITY.md
    read.

    - `pattern`: what is found (a regular expression, or several whose matches all count: each starts with its own
      literal, so the regex engine can skip to it; None for the detectors that are code: `secret_assignment`,
      `password_in_prose` and `high_entropy`, see `_assignments`, `_prose_passwords` and `looks_random`);
    - `examples`: templates of fake examples (`fake_example` expands them: `{A36}` is 36 random letters and digits,
      see `_ALPHABETS`); where a template holds more than the secret, the secret is between `[[` and `]]`;
    - `guard`: what keeps ordinary writing from being flagged (said in words; where it is a check of its own and not
      a part of `pattern`, `reject` holds it: a match that `reject` finds in is not a secret);
    - `prefilter`: the pattern runs only when one of these substrings occurs (for patterns without a literal);
    - a pattern found from a literal in its middle (a regular expression cannot be searched for quickly from a
      character class) is written whole, with the regular-expression comment `(?#found from here)` (`FOUND_FROM`)
      where the search starts: what stands before it is checked backwards from each match (within `_BACK_LIMIT`
      characters), and the secret starts where that part does.
    """

    kind: str
    pattern: str | tuple[str, ...] | None
    examples: tuple[str, ...]
    guard: str
    reject: str = ""
    prefilter: tuple[str, ...] = ()
    compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False, default=())
    compiled_reject: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    compiled_before: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        compile_ = object.__setattr__
        sources = (self.pattern,) if isinstance(self.pattern, str) else (self.pattern or ())
        before = ""
        if len(sources) == 1 and FOUND_FROM in sources[0]:
            before, found = sources[0].split(FOUND_FROM)
            sources = (found,)
        compile_(self, "compiled", tuple(re.compile(source, re.MULTILINE) for source in sources))
        compile_(self, "compiled_reject", re.compile(self.reject) if self.reject else None)
        compile_(self, "compiled_before", re.compile(f"(?:{before})\\Z") if before else None)


FOUND_FROM = "(?#found from here)"
"""Where the search for a pattern starts (a regular-expression comment; see `Detector`)."""
_BACK_LIMIT = 64  # characters looked at before a match for the part of its pattern written before FOUND_FROM
_WORD_EDGE = "not inside a longer token (no letter, digit, _ or - on either side)"
_PASSWORD_WORDS = r"passw(?:or)?d|passwort|kennwort|passphrase|contrase(?:ñ|n)a|mot de passe|pwd"
# a value that reads as a password rather than a word: 6+ characters, a letter, and a digit or a symbol
_PASSWORD_SHAPED = r"(?=[^\s\"'`,;]{0,200}?[A-Za-z])(?=[^\s\"'`,;]{0,200}?[0-9!@#$%^&*+?~])[^\s\"'`,;]{6,200}"

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private_key_block",
        # up to its END line; without one, over the lines that can belong to a key: base64, "Name: value" headers
        # (PGP armour, encrypted PEM) and blank lines
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:(?s:.{0,50000}?)"
        r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"|(?:(?:\n|\\n)(?:[A-Za-z0-9+/=]{1,100}|[A-Za-z-]{1,30}: [^\n]{0,200}|[ \t]{0,10})(?=\n|\\n|\Z))*)",
        (
            "My server key:\n[[-----BEGIN RSA PRIVATE KEY-----\n{B64}\n{B64}\n{B64}\n-----END RSA PRIVATE KEY-----]]",
            "The signing key:\n[[-----BEGIN EC PRIVATE KEY-----\n{B64}\n{B64}\n-----END EC PRIVATE KEY-----]]",
            "Laptop key:\n[[-----BEGIN OPENSSH PRIVATE KEY-----\n{B64}\n{B64}\n-----END OPENSSH PRIVATE KEY-----]]",
            "Backup key:\n[[-----BEGIN PGP PRIVATE KEY BLOCK-----\n{B64}\n{B64}\n-----END PGP PRIVATE KEY BLOCK-----]]",
            "A key pasted without its end:\n[[-----BEGIN RSA PRIVATE KEY-----\n{B64}\n{B40}]]",
            '{{"type": "service_account", "private_key": "[[-----BEGIN PRIVATE KEY-----\\n{B64}\\n{B64}\\n'
            '-----END PRIVATE KEY-----]]\\n", "client_email": "x@demo.iam.gserviceaccount.com"}}',
        ),
        "the BEGIN ... PRIVATE KEY armour line itself; public keys and certificates are not matched",
    ),
    Detector(
        "gcp_service_account_key",
        r"\"private_key(?:_id)?\"[ \t]{0,5}:[ \t]{0,5}\"[^\"\n]{8,}\"",
        ('{{"type": "service_account", "project_id": "demo", "private_key_id": "[[{H40}]]"}}',),
        'the JSON key "private_key" or "private_key_id" with a quoted value of 8+ characters',
    ),
    Detector(
        "aws_access_key_id",
        _lit("A") + r"(?:KIA|SIA|BIA|CCA|GPA|IDA|IPA|NPA|NVA|ROA|PKA|SCA)[A-Z0-9]{16}" + _E,
        ("AKIA{U16}", "ASIA{U16}"),
        "a fixed four-letter prefix and exactly 16 upper-case letters or digits, " + _WORD_EDGE,
    ),
    Detector(
        "aws_secret_access_key",
        r"(?i:aws)[A-Za-z0-9_.-]{0,20}(?i:secret)[A-Za-z0-9_.-]{0,20}[\"']?[ \t]{0,5}[:=][ \t]{0,5}[\"']?"
        r"[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
        ("Set aws_secret_access_key = [[{B40}]] in the profile",),
        "a key naming both aws and secret, assigned exactly 40 base64 characters",
        prefilter=("aws", "AWS", "Aws"),
    ),
    Detector("gcp_api_key", _lit("AIza") + r"[0-9A-Za-z_-]{35}" + _E, ("AIza{S35}",), "AIza and exactly 35 characters"),
    Detector(
        "google_oauth_client_secret",
        _lit("GOCSPX-") + r"[A-Za-z0-9_-]{28}" + _E,
        ("GOCSPX-{S28}",),
        "GOCSPX- and exactly 28 characters, " + _WORD_EDGE,
    ),
    Detector(
        "azure_storage_key",
        r"(?:DefaultEndpointsProtocol=[^;\s]{1,10};)?(?:[A-Za-z]{3,30}=[^;\s]{1,200};){0,5}"
        r"(?:AccountKey|SharedAccessKey|SharedAccessSignature)=[A-Za-z0-9+/%&=:-]{20,}"
        r"(?:;[A-Za-z]{3,30}=[^;\s]{1,200}){0,5}",
        (
            "The storage connection string is [[DefaultEndpointsProtocol=https;AccountName=notesacct;AccountKey="
            "{B86}==;EndpointSuffix=core.windows.net]] for production",
        ),
        "AccountKey=, SharedAccessKey= or SharedAccessSignature= followed by 20+ key characters",
        prefilter=("AccountKey=", "SharedAccessKey=", "SharedAccessSignature="),
    ),
    Detector(
        "github_token",
        _lit("gh") + r"[pousr]_[A-Za-z0-9]{36,}" + _E,
        ("ghp_{A36}", "gho_{A36}", "ghs_{A36}"),
        "ghp_/gho_/ghu_/ghs_/ghr_ and 36+ letters or digits",
    ),
    Detector(
        "github_fine_grained_token",
        _lit("github_pat_") + r"[A-Za-z0-9_]{40,}" + _E,
        ("github_pat_{A22}_{A59}",),
        "github_pat_ and 40+ characters",
    ),
    Detector(
        "gitlab_token",
        _lit("gl") + r"(?:pat|dt|rt|ptt|cbt|oas)-[A-Za-z0-9_-]{20,}" + _E,
        ("glpat-{S20}",),
        "glpat-/gldt-/glrt-/glptt-/glcbt-/gloas- and 20+ characters",
    ),
    Detector(
        "slack_token",
        _lit("x") + r"(?:ox[abposre]|app)-[A-Za-z0-9-]{10,}" + _E,
        ("xoxb-{D12}-{D13}-{A24}", "xoxp-{D12}-{D12}-{A32}"),
        "xoxb-/xoxp-/xoxa-/... and 10+ characters",
    ),
    Detector(
        "slack_webhook",
        r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_]{6,}/[A-Za-z0-9_]{6,}"
        r"(?:/[A-Za-z0-9_]{6,})?",
        ("Post alerts to [[https://hooks.slack.com/services/T{U8}/B{U10}/{A24}]] when the build breaks",),
        "the hooks.slack.com host with two path parts of 6+ characters",
    ),
    Detector(
        "stripe_key",
        (
            _lit("sk_") + r"(?:live|test)_[A-Za-z0-9]{16,}" + _E,
            _lit("rk_") + r"(?:live|test)_[A-Za-z0-9]{16,}" + _E,
            _lit("whsec_") + r"[A-Za-z0-9]{24,}" + _E,
        ),
        ("sk_live_{A24}", "rk_live_{A24}", "whsec_{A32}"),
        "sk_live_/sk_test_/rk_live_/rk_test_ and 16+, or whsec_ and 24+ letters or digits",
    ),
    Detector(
        "twilio_key",
        (_lit("SK") + r"[0-9a-fA-F]{32}" + _E, _lit("AC") + r"[0-9a-fA-F]{32}" + _E),
        ("SK{H32}", "AC{H32}"),
        "SK or AC and exactly 32 hexadecimal digits",
    ),
    Detector(
        "sendgrid_key",
        _lit("SG.") + r"[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}" + _E,
        ("SG.{S22}.{S43}",),
        "SG. and two dot-separated parts",
    ),
    Detector(
        "anthropic_key", _lit("sk-ant-") + r"[A-Za-z0-9_-]{20,}" + _E, ("sk-ant-api03-{S93}AA",), "sk-ant- and 20+"
    ),
    Detector(
        "openai_key",
        _lit("sk-") + r"(?!ant-)(?=[A-Za-z_-]{0,200}[0-9])(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}" + _E,
        ("sk-proj-{S48}", "sk-{A48}"),
        "sk- and 20+ characters with a digit among them (so sk-learn-tutorial-for-beginners is not one)",
    ),
    Detector(
        "huggingface_token",
        _lit("hf_") + r"[A-Za-z]{34}" + _E,
        ("hf_{L34}",),
        "hf_ and exactly 34 letters, " + _WORD_EDGE,
    ),
    Detector(
        "databricks_token",
        _lit("dapi") + r"[0-9a-f]{32}(?:-[0-9]{1,2})?" + _E,
        ("dapi{H32}", "dapi{H32}-2"),
        "dapi and exactly 32 lower-case hexadecimal digits",
    ),
    Detector(
        "mailchimp_key",
        r"(?<![A-Za-z0-9_-])[0-9a-f]{32}(?#found from here)-us[0-9]{1,2}" + _E,
        ("{H32}-us{D2}",),
        "exactly 32 lower-case hexadecimal digits, then -us and a data-centre number",
    ),
    Detector(
        "square_token",
        _lit("sq0") + r"(?:csp-[A-Za-z0-9_-]{43}|atp-[A-Za-z0-9_-]{22})" + _E,
        ("sq0csp-{S43}", "sq0atp-{S22}"),
        "sq0csp- and exactly 43, or sq0atp- and exactly 22 characters",
    ),
    Detector("new_relic_key", _lit("NRAK-") + r"[A-Z0-9]{27}" + _E, ("NRAK-{U27}",), "NRAK- and exactly 27"),
    Detector("npm_token", _lit("npm_") + r"[A-Za-z0-9]{36}" + _E, ("npm_{A36}",), "npm_ and exactly 36 characters"),
    Detector("pypi_token", _lit("pypi-") + r"[A-Za-z0-9_-]{50,}" + _E, ("pypi-AgEIcHlwaS5vcmc{S60}",), "pypi- and 50+"),
    Detector(
        "heroku_key",
        (
            _lit("HRKU-") + r"[A-Za-z0-9_-]{20,}" + _E,
            r"[hH](?:eroku|EROKU)[^\n]{0,40}?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        ),
        ("HRKU-{S60}", "Our heroku api key is [[{H8}-{H4}-{H4}-{H4}-{H12}]] for deploys"),
        "HRKU- and 20+ characters; a UUID only within 40 characters after the word heroku",
    ),
    Detector("mailgun_key", _lit("key-") + r"[0-9a-zA-Z]{32}" + _E, ("key-{L32}",), "key- and exactly 32 characters"),
    Detector(
        "shopify_token",
        _lit("shp") + r"(?:at|ca|pa|ss)_[a-fA-F0-9]{32}" + _E,
        ("shpat_{H32}",),
        "shpat_/shpca_/shppa_/shpss_ and 32 hexadecimal digits",
    ),
    Detector(
        "discord_bot_token",
        r"(?<![A-Za-z0-9_-])[MNO][A-Za-z0-9_-]{23,27}(?#found from here)\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,40}"
        + _E,
        ("M{A23}.{S6}.{S27}",),
        "three dot-separated parts of 24-28, 6-7 and 27-40 characters, the first starting with M, N or O",
    ),
    Detector(
        "discord_webhook",
        r"https?://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{5,30}/[A-Za-z0-9_-]{20,}",
        ("The bot posts through [[https://discord.com/api/webhooks/{D18}/{S68}]] every hour",),
        "the discord.com/api/webhooks/ path",
    ),
    Detector(
        "telegram_bot_token",
        r"(?<![0-9])[0-9]{8,10}(?#found from here):AA(?<=[0-9]{8}:AA)[A-Za-z0-9_-]{33}" + _E,
        ("{D9}:AA{S33}",),
        "8-10 digits, :AA and exactly 33 characters",
    ),
    Detector(
        "jwt",
        _lit("eyJ") + r"[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*" + _E,
        ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkFubiJ9.{S43}",),
        "two base64 JSON parts (eyJ...) joined by dots",
    ),
    Detector(
        "url_credentials",
        r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,20}(?#found from here)"
        r"://[^\s/:@\"'<>]{1,100}:(?![0-9]{1,5}(?:/|\Z))[^\s@\"'<>]{1,200}@[^\s@\"'<>]+",
        (
            "Connect with [[postgres://admin:{A14}@db.internal.example:5432/app]] from the office",
            "https://deploy:{A18}@git.example.org/repo.git",
            "The replica is [[postgres://app:{A6}/{A8}@db.internal.example/app]] today",
        ),
        "user:password@ right after scheme://; a port (host:8080/...@) is not a password",
    ),
    Detector(
        "netrc_credentials",
        _lit("machine") + r"[ \t\r\n]{1,20}[^\s]{1,200}"
        r"(?:[ \t\r\n]{1,20}(?:login|account|port|protocol)[ \t\r\n]{1,20}[^\s]{1,200}){0,4}"
        r"[ \t\r\n]{1,20}password[ \t\r\n]{1,20}[^\s]{1,200}",
        (
            "[[machine api.example.com login ann password {A12}]]",
            "Our netrc:\n[[machine git.example.org\n  login deploy\n  password {A14}]]",
        ),
        "the .netrc words machine, login and password in that order",
    ),
    Detector(
        "authorization_header",
        (
            r"(?:Authorization|authorization|AUTHORIZATION)[\"']?[ \t]{0,5}[:=][ \t]{0,5}[\"']?"
            r"(?i:token|bearer|basic|digest)[ \t]{1,5}"
            r"[A-Za-z0-9._~+/=-]{8,}",
            # "Bearer" with no letter before it (the look-behind spans the letter and the 6 letters of the word)
            r"(?:Bearer|bearer|BEARER)(?<![A-Za-z]......)[ \t]{1,5}"
            r"(?=[A-Za-z0-9._~+/-]{0,300}[0-9])[A-Za-z0-9._~+/-]{16,}=*",
        ),
        (
            "curl -H '[[Authorization: token {H40}]]' https://api.example.com/user",
            "Send [[Authorization: Bearer {S40}]] with every request",
            "the header carries [[Bearer {H40}]] now",
        ),
        "Authorization: token/Bearer/Basic and 8+ characters; Bearer alone only with 16+ characters and a digit",
        prefilter=("uthorization", "UTHORIZATION", "earer", "EARER"),
    ),
    Detector(
        "command_line_password",
        (
            r"m(?<![A-Za-z0-9_-]m)(?:ysql|ariadb)[a-z]{0,5}[ \t][^\n]{0,200}?[ \t]-p(?![ \t\n])[^\s\"']{1,200}",
            r"--(?:password|passwd|pass|token|secret|api-key|apikey)(?:=|[ \t]{1,5})(?![-<$])"
            r"(?:\"[^\"\n]{3,200}\"|'[^'\n]{3,200}'|" + _PASSWORD_SHAPED + r")",
            r"-(?<![A-Za-z0-9_-]-)(?:u|-user)[ \t]{1,5}[\"']?[^\s:\"']{1,100}:[^\s\"'@]{1,200}",
        ),
        (
            "Run [[mysql -u root -p{A10}]] to get in",
            "Then [[mysql -h db -p{A10}]] app again",
            "Start it with [[--password {A5}9{A4}]] from the shell",
            "Start it with [[--password='{A12}']] as before",
            "Fetch it with curl [[-u ann:{A12}]] https://api.example.com",
        ),
        "mysql's -p with its value attached (a lone -p prompts); --password VALUE only with a quoted or"
        " password-shaped value (so --password option is not one); -u/--user USER:PASSWORD",
        prefilter=("mysql", "mariadb", "--", "-u "),
    ),
    Detector(
        "password_in_prose",
        None,  # `_prose_passwords`: found from the verb, then the word before it and the value after are checked
        (
            "My password is [[Opal7Crane]] and nobody knows it",
            "the token is [[{H40}]] for the test account",
            "Das Passwort ist [[Lantern6Pike]] seit gestern",
        ),
        "a password word, then is/was (ist, est, es), then a value of 6+ characters holding a letter and a digit or"
        " a symbol, or 16+ hexadecimal digits (so 'the password is correct' is not one)",
    ),
    Detector(
        "env_secret",
        r"^[ \t]{0,20}(?:export[ \t]+)?[A-Z0-9_]{0,40}"
        r"(?:SECRET|TOKEN|PASSWORD|PASSWD|PWD|PASS|KEY|CREDENTIALS?|AUTH|PRIVATE|SALT|SIGNATURE|DSN)"
        r"[A-Z0-9_]{0,40}[ \t]{0,5}=[ \t]{0,5}\S[^\n]*",
        ("DATABASE_PASSWORD=[[{A10}]]", "export STRIPE_WEBHOOK_SECRET=[[whsec_{A32}]]", "SESSION_KEY = [[{A40}]]"),
        "an upper-case NAME holding SECRET, TOKEN, PASSWORD, KEY ... at the start of a line, then = and a value",
    ),
    Detector(
        "secret_assignment",
        None,
        (
            "Log in with password=[[{A12}]] on the staging box",
            "The router config says passwd: [[Tr0ub4dor&3x]]",
            "Set secret = '[[{A16}]]' before running",
            'The client sends "api_key": "[[{A24}]]" with each call',
            "Export auth_token=[[{H32}]] first",
            "[[password: Opal7Crane]], user: admin",
            "Passwort: [[Lantern6Pike]] (neu)",
        ),
        "a key naming a secret (password, passwd, Passwort, pwd, secret, token, api_key, credentials ...) then = and"
        " a value of 3+ characters, or : and a quoted value or one that ends its line; after a password word, also a"
        " password-shaped value followed by more text; true/false/null/none/yes/no are not values",
    ),
    Detector(
        "high_entropy",
        None,
        ("{A32}", "{B44}"),
        "20+ characters mixing two of lower case, upper case and digits, entropy over a threshold that grows with"
        " the length, not reading as words; hexadecimal strings (commit SHAs, hashes) and UUIDs are not flagged",
    ),
)

# "my password is Opal7Crane", "the token is <hex>", "das Passwort ist ...": found from the verb (fast to find), then
# the password word before it and the value after it are checked.
_PROSE_VERB = re.compile(
    r"[ \t](?:is|was|ist|war|est|es)[ \t]{1,5}(?=[\"'`]?(?:[0-9a-fA-F]{16,}(?![A-Za-z0-9_-])|" + _PASSWORD_SHAPED + "))"
)
_PROSE_KEY_BEFORE = re.compile(
    r"(?<![A-Za-z])(?i:" + _PASSWORD_WORDS + r"|token|secret|api[ _-]?key|access[ _-]?key)s?[ \t]{0,4}\Z"
)
_PROSE_VALUE = re.compile(r"[\"'`]?(?:[0-9a-fA-F]{16,}(?![A-Za-z0-9_-])|" + _PASSWORD_SHAPED + ")")


def _prose_passwords(text: str) -> list[Secret]:
    found: list[Secret] = []
    for verb in _PROSE_VERB.finditer(text):
        value = _PROSE_VALUE.match(text, verb.end())
        if value is None:
            continue
        key = _PROSE_KEY_BEFORE.search(text, max(0, verb.start() - 30), verb.start())
        if key is not None:
            found.append(Secret("password_in_prose", key.start(), value.end()))
    return found


# Assignments to a key that names a secret: password, passwd, pwd, passphrase, secret, token, api key, access key,
# private key, auth key, credential(s); "pass" only as a whole word. Found from the separator (":" or "=" after a
# key character, quote or blank), then the key is looked for in the few characters before it.
_SECRET_KEY = (
    r"(?:" + _PASSWORD_WORDS + r"|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|auth[_-]?key|credentials?|(?<![a-z])pass(?![a-z]))"
)
_KEY_WORDS = ("pass", "pwd", "secret", "token", "key", "credential", "wort", "contrase")
_SEPARATOR = re.compile(r"[:=](?<=[A-Za-z0-9_.\-\"' \t][:=])")
_KEY_BEFORE = re.compile(r"(?i:" + _SECRET_KEY + r")[A-Za-z0-9_.-]{0,30}[\"']?[ \t]{0,5}\Z")
_PASSWORD_KEY_BEFORE = re.compile(r"(?i:" + _PASSWORD_WORDS + r")[\"']?[ \t]{0,5}\Z")
_TRIVIAL = r"(?!(?i:true|false|null|none|nil|undefined|yes|no|on|off)\b)"
_VALUE_AFTER_EQUALS = re.compile(
    r"[ \t]{0,5}" + _TRIVIAL + r"(?:\"[^\"\n]{3,500}\"|'[^'\n]{3,500}'|[^\s\"',;)]{3,500})"
)
# After ":", only a quoted value (JSON, YAML) or one that is the last thing on its line: "Token: a unit of text."
# is prose, "password: hunter2" is not; after a password word also a password-shaped value that more text follows
# ("password: Opal7Crane, user: admin").
_VALUE_AFTER_COLON = re.compile(
    r"[ \t]{0,5}" + _TRIVIAL + r"(?:\"[^\"\s]{3,500}\"|'[^'\s]{3,500}'|[^\s\"']{3,500}[ \t]*$)", re.MULTILINE
)
_PASSWORD_VALUE = re.compile(r"[ \t]{0,5}" + _PASSWORD_SHAPED)
KINDS: tuple[str, ...] = tuple(dict.fromkeys(d.kind for d in DETECTORS))
_PATTERNS = tuple(d for d in DETECTORS if d.compiled)

# --- fake examples (tests and benchmarks; nothing key-like is written in the repository) ---------------------------
_ALPHABETS = {
    "A": string.ascii_letters + string.digits,
    "U": string.ascii_uppercase + string.digits,
    "L": string.ascii_lowercase + string.digits,
    "H": "0123456789abcdef",
    "B": string.ascii_letters + string.digits + "+/",
    "S": string.ascii_letters + string.digits + "_-",
    "D": string.digits,
}
_PLACEHOLDER = re.compile(r"\{([AULHBSD])(\d+)\}|\{\{|\}\}")


def fake_example(template: str, rng: random.Random) -> tuple[str, str]:
    """A template of `Detector.examples` made concrete with random characters from `rng`: (the text, the secret in
    it). `{A36}` is 36 characters of alphabet A (see `_ALPHABETS`: letters and digits; U upper case and digits; L
    lower case and digits; H hexadecimal; B base64; S URL-safe base64; D digits); `{{` and `}}` are braces."""

    def fill(m: re.Match[str]) -> str:
        if m[0] in ("{{", "}}"):
            return m[0][0]
        if m[1] == "L" and template.startswith("hf_"):  # HuggingFace tokens are letters only
            return "".join(rng.choice(string.ascii_letters) for _ in range(int(m[2])))
        return "".join(rng.choice(_ALPHABETS[m[1]]) for _ in range(int(m[2])))

    text = _PLACEHOLDER.sub(fill, template)
    if "[[" not in text:
        return text, text
    before, rest = text.split("[[", 1)
    secret, after = rest.split("]]", 1)
    return before + secret + after, secret


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
    for detector in _PATTERNS:
        if detector.prefilter and not any(g in text for g in detector.prefilter):
            continue
        for m in (m for pattern in detector.compiled for m in pattern.finditer(text)):
            start = m.start()
            if detector.compiled_before is not None:
                before = detector.compiled_before.search(text, max(0, start - _BACK_LIMIT), start)
                if before is None:
                    continue
                start = before.start()
            if detector.compiled_reject is not None and detector.compiled_reject.search(text, start, m.end()):
                continue
            found.append(Secret(detector.kind, start, m.end()))
    found.extend(_assignments(text))
    found.extend(_prose_passwords(text))
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
        if value is None and m[0] == ":" and _PASSWORD_KEY_BEFORE.search(text, lo, sep):
            value = _PASSWORD_VALUE.match(text, sep + 1)
        if value is not None:
            found.append(Secret("secret_assignment", key.start(), value.end()))
    return found


def redact(text: str, mark: str = "•") -> str:
    """`text` with every character of every secret replaced by `mark` (lengths and line breaks kept), for output
    that shows a person's text: `nextword report`."""
    chars = list(text)
    for secret in find_secrets(text):
        for i in range(secret.start, secret.end):
            if chars[i] != "\n":
                chars[i] = mark
    return "".join(chars)


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


def is_secret_path(path: str | PurePath) -> bool:
    """Whether the file at `path` holds credentials by its name or, where it is a symbolic link, by the name of the
    file it leads to (`notes.md -> .env` is never learned either)."""
    if is_secret_file(path):
        return True
    try:
        return Path(path).is_symlink() and is_secret_file(Path(path).resolve())
    except (OSError, RuntimeError):  # a loop of links, or a path that cannot be examined: not learned either
        return True
