"""Secret detection: nextword's table (`store.secrets.DETECTORS`) against Yelp's detect-secrets, side by side.

(a) Fake secrets: every example template of every kind in the table, plus kinds the table does not name (to see
what its high-entropy and keyword rules catch of formats it does not know), each drawn `--draws` times with random
characters and set in a sentence. A secret counts as found when a detector flags a span (ours) or a line
(detect-secrets, which reports lines) overlapping it: nextword drops the whole sentence either way.
(b) Prose about passwords and tokens, written here (sentences made from templates), and lines of WikiText-2 and
Gutenberg as a false-alarm check: flagged sentences (ours) or lines (detect-secrets) per 1,000 words. Prose that
is flagged is prose that is not learned.
(c) Cost on the learn path: seconds to scan the prose, per MB.

detect-secrets runs as its `scan_file` does (every default plugin, every default filter, on a `.md` file's lines).
"Both" is the union: a secret counts as found by either.

    python bench/secret_detection.py            # 20 draws of each example, writes the 'secrets' section of RESULTS.md
    python bench/secret_detection.py --quick    # 3 draws, 200 corpus lines, nothing written
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import random
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    base_parser,
    corpora_dir,
    fmt,
    markdown_table,
    package_version,
    require_files,
    results_path,
    section_text,
    write_section,
)
from store import secrets  # noqa: E402

# formats the table does not name: what do the general rules (entropy, keywords) catch of them?
OTHER_KINDS: dict[str, tuple[str, ...]] = {
    "artifactory_token": ("AKCp8{A69}",),
    "atlassian_api_token": ("ATATT3xFfGF0{S180}",),
    "postman_key": ("PMAK-{H24}-{H34}",),
    "linear_api_key": ("lin_api_{A40}",),
    "grafana_service_token": ("glsa_{A32}_{H8}",),
    "sentry_dsn": ("https://{H32}@o{D6}.ingest.sentry.io/{D7}",),
    "basic_auth_header": ("Authorization: Basic {B32}",),
    "ibm_cloud_key": ("IBM_CLOUD_API_KEY: {S44}",),
}

SUBJECTS = ("The user", "Every admin", "My colleague", "The new intern", "Our support team", "A customer", "She", "He")
VERBS = (
    "forgot the password for",
    "reset the password of",
    "typed the password into",
    "asked for a new token for",
    "lost the access token of",
    "rotated the API key of",
    "checked the secret settings of",
    "changed the passphrase of",
    "wrote down the PIN for",
    "revoked the credentials of",
)
OBJECTS = (
    "the staging server",
    "the shared mailbox",
    "her laptop",
    "the billing portal",
    "the old account",
    "the build machine",
)
ENDINGS = (
    ".",
    " yesterday.",
    " twice this week.",
    " before the meeting.",
    ", so the login page asked again.",
)
PLAIN = """\
The password field is empty until you type into it.
The token economy rewards good behaviour with points.
A password manager keeps every password in one encrypted vault.
Passwords should be long, and a passphrase of four words is easy to remember.
The password is correct, the token is valid and the secret is out.
Keep your API key private and rotate it every ninety days.
The secret to a good loaf is patience and a hot oven.
Bearer bonds were once common, and the ring bearer walked in first.
Each token is a word, a number or a punctuation mark.
The access token expires after one hour; the refresh token lasts a week.
Two-factor authentication asks for a code as well as the password.
Authorization: the act of giving someone permission to do something.
Password: see the vault. Token: a unit of text. Secret: keep calm.
The login form shows the password as dots, and the token count in the corner.
Use the --password option, or --password-stdin, to give it; mysql -p asks for it.
The machine learning course covers login pages and password strength meters.
My password was too short, so I changed it to a longer one.
Das Passwort ist zu kurz, sagte sie.
The key to the front door is under the mat, and the secret is safe with me.
A token of appreciation was given to every volunteer at the end of the year.
The API key page explains how to create, list and delete keys.
Never share your password, not even with the help desk.
The server rejected the token because its signature did not match.
The credentials file lives in the home folder and only its owner can read it.
Old systems stored passwords in plain text; new ones store salted hashes.
"""


def prose_sentences() -> list[str]:
    """A few hundred sentences about passwords, tokens and keys that hold no secret."""
    made = [f"{s} {v} {o}{e}" for s, v, o, e in itertools.product(SUBJECTS, VERBS, OBJECTS, ENDINGS)]
    rng = random.Random(7)
    return PLAIN.splitlines() + rng.sample(made, 400)


def corpus_lines(corpora: Path, limit: int) -> dict[str, list[str]]:
    """Non-empty lines of WikiText-2 (valid) and of two Gutenberg books, `limit` of each source."""
    wiki, alice, emma = require_files(
        corpora, ["wikitext-2/wiki.valid.tokens", "gutenberg/carroll-alice.txt", "gutenberg/austen-emma.txt"]
    )
    out: dict[str, list[str]] = {}
    for name, path in (("WikiText-2 valid", wiki), ("Gutenberg Alice", alice), ("Gutenberg Emma", emma)):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        out[name] = lines[:limit]
    return out


# --- the detectors compared ----------------------------------------------------------------------------------------
_KEEP = contextlib.ExitStack()
Flagger = Callable[[str], list[tuple[int, int]]]  # text -> flagged character spans


def ours(text: str) -> list[tuple[int, int]]:
    return [(s.start, s.end) for s in secrets.find_secrets(text)]


def detect_secrets_flagger() -> tuple[Flagger, str]:
    """detect-secrets as `scan_file` runs it (default plugins and filters, a `.md` file), flagging whole lines."""
    try:
        from detect_secrets.core import scan
        from detect_secrets.settings import default_settings
    except ImportError:
        sys.exit("error: bench/secret_detection.py compares with detect-secrets: pip install -e '.[bench]'")

    _KEEP.enter_context(default_settings())  # for the whole run (the context restores the settings on exit)

    def flag(text: str) -> list[tuple[int, int]]:
        lines = text.split("\n")
        offsets = list(itertools.accumulate((len(line) + 1 for line in lines), initial=0))
        found = scan._process_line_based_plugins(lines=list(enumerate(lines, start=1)), filename="notes.md")
        return sorted({(offsets[s.line_number - 1], offsets[s.line_number] - 1) for s in found})

    return flag, package_version("detect-secrets") or "?"


def union(a: Flagger, b: Flagger) -> Flagger:
    return lambda text: sorted(a(text) + b(text))


def overlaps(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(s < end and start < e for s, e in spans)


# --- (a) fake secrets ----------------------------------------------------------------------------------------------
def fake_samples(draws: int) -> Iterator[tuple[str, bool, str, str]]:
    """(kind, whether the table names it, text, secret) for every example, `draws` times."""
    rng = random.Random(20261206)
    templates = [(d.kind, True, t) for d in secrets.DETECTORS for t in d.examples]
    templates += [(k, False, t) for k, ts in OTHER_KINDS.items() for t in ts]
    for kind, known, template in templates:
        for _ in range(draws):
            text, secret = secrets.fake_example(template, rng)
            if text == secret:
                text = f"Remember that my credential is {secret} for the account."
            yield kind, known, text, secret


def detection(flaggers: dict[str, Flagger], draws: int) -> tuple[list[list[str]], dict[str, tuple[int, int]]]:
    found: dict[tuple[str, str], int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    known: dict[str, bool] = {}
    for kind, is_known, text, secret in fake_samples(draws):
        total[kind] += 1
        known[kind] = is_known
        start = text.index(secret)
        for name, flag in flaggers.items():
            found[(kind, name)] += overlaps(flag(text), start, start + len(secret))
    rows = []
    sums: dict[str, tuple[int, int]] = {}
    for group, label in ((True, "in the table"), (False, "not in the table")):
        kinds = [k for k in total if known[k] == group]
        for kind in kinds:
            rows.append([kind, label, str(total[kind])] + [pct(found[(kind, n)], total[kind]) for n in flaggers])
        n = sum(total[k] for k in kinds)
        for name in flaggers:
            hit = sum(found[(k, name)] for k in kinds)
            sums[f"{name} ({label})"] = (hit, n)
        rows.append([f"**all {label}**", "", str(n)] + [pct(sum(found[(k, m)] for k in kinds), n) for m in flaggers])
    return rows, sums


def pct(hit: int, n: int) -> str:
    return f"{100 * hit / n:.0f} %" if n else "-"


# --- (b) false alarms ----------------------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def false_alarms(flaggers: dict[str, Flagger], texts: dict[str, list[str]]) -> tuple[list[list[str]], dict]:
    """Per source: words, then for each flagger the lines flagged, per 1,000 words (each line scanned alone and
    within its source's whole text, so multi-line rules see what they would)."""
    rows = []
    alarms: dict[tuple[str, str], list[str]] = defaultdict(list)
    for source, lines in texts.items():
        words = sum(len(line.split()) for line in lines)
        text = "\n".join(lines)
        offsets = list(itertools.accumulate((len(line) + 1 for line in lines), initial=0))
        cells = []
        for name, flag in flaggers.items():
            spans = flag(text)
            flagged = [lines[i] for i in range(len(lines)) if overlaps(spans, offsets[i], offsets[i + 1] - 1)]
            alarms[(source, name)] = flagged
            cells.append(f"{len(flagged)} ({1000 * len(flagged) / words:.2f})")
        rows.append([source, f"{len(lines):,}", f"{words:,}", *cells])
    return rows, alarms


def scan_cost(flaggers: dict[str, Flagger], text: str) -> list[list[str]]:
    mb = len(text.encode()) / 1e6
    rows = []
    for name, flag in flaggers.items():
        start = time.perf_counter()
        flag(text)
        seconds = time.perf_counter() - start
        rows.append([name, f"{mb:.2f}", fmt(seconds, 3), fmt(seconds / mb, 3)])
    return rows


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--draws", type=int, default=20, help="random draws of each example template")
    parser.add_argument("--lines", type=int, default=3000, help="lines of each corpus source for false alarms")
    args = parser.parse_args()
    if args.quick:
        args.draws, args.lines = 3, 200
    started = time.perf_counter()
    with _KEEP:
        run(args, started)


def run(args: argparse.Namespace, started: float) -> None:
    ds, ds_version = detect_secrets_flagger()
    flaggers: dict[str, Flagger] = {"nextword": ours, "detect-secrets": ds, "both": union(ours, ds)}

    rows, sums = detection(flaggers, args.draws)
    header = ["kind", "", "samples", *flaggers]
    print(markdown_table(header, rows))
    texts = {"prose about passwords (ours)": prose_sentences(), **corpus_lines(corpora_dir(args.corpora), args.lines)}
    alarm_rows, alarms = false_alarms(flaggers, texts)
    alarm_header = ["source", "lines", "words", *(f"{n}: lines flagged (per 1,000 words)" for n in flaggers)]
    print(markdown_table(alarm_header, alarm_rows))
    examples = []
    for (source, name), flagged in alarms.items():
        if name != "both":
            examples += [f"- {name}, {source}: `{line[:110]}`" for line in flagged[:3]]
    print("\n".join(examples))
    whole = "\n".join(line for lines in texts.values() for line in lines)
    cost_rows = scan_cost({"nextword": ours, "detect-secrets": ds}, whole)
    cost_header = ["detector", "MB scanned", "seconds", "seconds per MB"]
    print(markdown_table(cost_header, cost_rows))

    out = results_path(args)
    if out is None:
        return
    summary = ", ".join(f"{k} {pct(*v)}" for k, v in sums.items())
    body = (
        f"detect-secrets {ds_version} (default plugins and filters, as `scan_file` runs them on a `.md` file) against"
        f" nextword's table (`store.secrets.DETECTORS`, {len(secrets.KINDS)} kinds); {args.draws} random draws of"
        " each example template, set in a sentence. A secret is found when a flagged span (nextword) or line"
        " (detect-secrets) overlaps it. The machine was shared with other engineers' work.\n\n"
        f"Found: {summary}.\n\n### Detection rate per kind\n\n{markdown_table(header, rows)}\n\n"
        "### False alarms: flagged lines (per 1,000 words)\n\n"
        f"{markdown_table(alarm_header, alarm_rows)}\n\nExamples of false alarms:\n\n"
        + ("\n".join(examples) or "(none)")
        + "\n\n"
        f"### Cost of a scan (all the prose above, one text)\n\n{markdown_table(cost_header, cost_rows)}\n"
    )
    write_section(
        out,
        "secrets",
        section_text(
            "Secret detection: nextword's table vs detect-secrets",
            body,
            time.perf_counter() - started,
            ["detect-secrets"],
        ),
    )


if __name__ == "__main__":
    main()
