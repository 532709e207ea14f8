"""What is never learned: `.nextwordignore` (gitignore syntax), `excludeGlobs`, files that hold credentials, and
the secrets inside documents that are learned; at the function level, then once end to end with the real server."""

from __future__ import annotations

import asyncio
import random
import shutil
import string
import subprocess
from pathlib import Path

import pytest

from lsp_server.ignore import IgnoreRules, never_learned
from store.countstore import CountStore, source_name
from tests.test_server import (
    CORPUS,
    build_store,
    command,
    complete,
    end_of,
    eventually,
    open_doc,
    save_doc,
    snapshot,
    sources_of,
    start_server,
    stop_server,
)

RULES = """\
# comments and blank lines are ignored

*.log
!important.log
/build
private/
docs/**/draft-*.md
**/tmp
a?c.txt
[!x]y.md
logs/**
\\#hash.md
trailing.md   \n"""


@pytest.mark.parametrize(
    ("path", "folder", "ignored"),
    [
        ("x.log", False, True),
        ("deep/down/x.log", False, True),
        ("important.log", False, False),  # re-included by "!"
        ("build", True, True),
        ("build/a.md", False, True),  # inside an excluded folder
        ("src/build/a.md", False, False),  # "/build" is anchored at the root
        ("private", True, True),
        ("private", False, False),  # "private/" matches folders only
        ("a/private/notes.md", False, True),  # unanchored: at any depth
        ("docs/draft-1.md", False, True),  # "**" matches zero folders
        ("docs/a/b/draft-2.md", False, True),
        ("docs/a/final.md", False, False),
        ("q/tmp/z.md", False, True),
        ("abc.txt", False, True),
        ("a/c.txt", False, False),  # "?" never matches "/"
        ("zy.md", False, True),
        ("xy.md", False, False),
        ("logs/a/b.md", False, True),
        ("logs", True, False),  # "logs/**" matches what is inside, not the folder
        ("#hash.md", False, True),  # an escaped "#"
        ("trailing.md", False, True),  # trailing blanks are dropped
        ("notes.md", False, False),
    ],
)
def test_gitignore_patterns(path: str, folder: bool, ignored: bool) -> None:
    rules = IgnoreRules(None, RULES.splitlines())
    assert rules.ignores(path, folder) is ignored


def test_a_negation_cannot_reinclude_a_file_inside_an_excluded_folder() -> None:
    rules = IgnoreRules(None, ["private/", "!private/keep.md"])
    assert rules.ignores("private/keep.md")


def test_comments_and_blank_lines_are_not_rules() -> None:
    rules = IgnoreRules(None, ["# a comment", "   ", "/", "*.md"])
    assert rules.patterns == ["*.md"]
    assert not rules.ignores("# a comment") and not rules.ignores("a.txt")


def test_a_line_git_rejects_is_skipped_and_named() -> None:
    rules = IgnoreRules(None, ["!", "*.log", "x\\"])
    assert rules.invalid == ["!", "x\\"]
    assert rules.ignores("a.log") and not rules.ignores("a.md")


# git's tricky cases; every expected value is what `git check-ignore --no-index` (git 2.39) answers, and
# test_the_tricky_cases_agree_with_git asks git itself where it is installed.
GIT_CASES: list[tuple[list[str], str, bool]] = [
    # negation inside excluded folders: a file cannot come back, a folder re-included first lets it
    (["private/", "!private/keep.md"], "private/keep.md", True),
    (["out/", "!out/index.md"], "deep/out/index.md", True),
    (["/*", "!/docs", "/docs/*", "!/docs/keep.md"], "x.md", True),
    (["/*", "!/docs", "/docs/*", "!/docs/keep.md"], "docs/a.md", True),
    (["/*", "!/docs", "/docs/*", "!/docs/keep.md"], "docs/keep.md", False),
    (["/*", "!/docs", "/docs/*", "!/docs/keep.md"], "docs/sub/keep.md", True),
    (["*", "!*/", "!*.md"], "d/a.md", False),  # everything but Markdown, at any depth
    (["*", "!*/", "!*.md"], "d/a.txt", True),
    (["logs/**", "!logs/keep/", "!logs/keep/**"], "logs/a.md", True),
    (["logs/**", "!logs/keep/", "!logs/keep/**"], "logs/keep/x.md", False),
    (["*.tmp", "!*.tmp/"], "dir.tmp/x.md", False),
    (["*.tmp", "!*.tmp/"], "a.tmp", True),
    # "**"
    (["foo/**/bar"], "foo/bar", True),
    (["foo/**/bar"], "foo/x/y/bar", True),
    (["foo/**/bar"], "foox/bar", False),
    (["foo/**/bar"], "a/foo/bar", False),  # a pattern with an inner "/" is anchored
    (["a/**/b/"], "a/x/b/z.md", True),
    (["a/**/b/"], "a/b.md", False),
    (["**/secret"], "q/secret/x.md", True),
    (["**"], "a/b.md", True),
    (["**/", "x/"], "a.md", False),  # "**/": folders only, so not a file at the root
    (["**/", "x/"], "d/a.md", True),
    (["notes/*.md", "!notes/**/keep.md"], "notes/d/a.md", False),  # "*" never crosses "/"
    (["notes/*.md", "!notes/**/keep.md"], "notes/keep.md", False),
    (["doc/*.txt"], "x/doc/a.txt", False),
    # trailing spaces: dropped unless escaped; leading ones are kept
    (["trail.md   "], "trail.md", True),
    (["build/   ", "!build/keep.md"], "build/keep.md", True),
    (["sp\\ "], "sp ", True),
    (["sp\\ "], "spx", False),
    (["  lead.md"], "  lead.md", True),
    (["  lead.md"], "lead.md", False),
    # escapes and classes
    (["\\!bang.md"], "!bang.md", True),
    (["\\!bang.md"], "bang.md", False),
    (["[a-c]?.txt"], "a/ax.txt", True),
    (["[a-c]?.txt"], "dx.txt", False),
    (["*.[Bb][Aa][Kk]"], "x.BaK", True),
    (["*.LOG"], "a.log", False),  # case-sensitive, as git on Linux
]


@pytest.mark.parametrize(("rules", "path", "ignored"), GIT_CASES)
def test_gits_tricky_cases(rules: list[str], path: str, ignored: bool) -> None:
    assert IgnoreRules(None, rules).ignores(path) is ignored


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_tricky_cases_agree_with_git(tmp_path: Path) -> None:
    """The table above, asked of git itself (one repository per rule set, the files made on disk)."""
    by_rules: dict[tuple[str, ...], list[tuple[str, bool]]] = {}
    for rules, path, ignored in GIT_CASES:
        by_rules.setdefault(tuple(rules), []).append((path, ignored))
    for n, (rules, cases) in enumerate(by_rules.items()):
        repo = tmp_path / str(n)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        (repo / ".gitignore").write_text("\n".join(rules) + "\n")
        for path, ignored in cases:
            (repo / path).parent.mkdir(parents=True, exist_ok=True)
            (repo / path).touch()
            answer = subprocess.run(["git", "-C", str(repo), "check-ignore", "-q", "--no-index", path], check=False)
            assert (answer.returncode == 0) is ignored, (rules, path)


def test_rules_are_read_from_the_root_and_apply_to_absolute_paths(tmp_path: Path) -> None:
    (tmp_path / ".nextwordignore").write_text("secret-*.md\njournal/\n")
    rules = IgnoreRules.load(tmp_path, ["*.draft.md"])
    assert rules.ignores(tmp_path / "secret-plans.md")
    assert rules.ignores(tmp_path / "journal" / "2024" / "may.md")
    assert rules.ignores(tmp_path / "notes" / "a.draft.md")
    assert not rules.ignores(tmp_path / "notes" / "a.md")
    assert not rules.ignores(Path("/elsewhere/secret-plans.md"))  # outside the root: not its rules
    assert IgnoreRules.load(tmp_path / "missing").patterns == []


def test_never_learned_names_credential_files_and_excluded_ones(tmp_path: Path) -> None:
    rules = IgnoreRules(tmp_path, ["drafts/"])
    assert never_learned(tmp_path / ".env", [rules]) == ".env holds credentials"
    assert never_learned(tmp_path / "id_ed25519", [rules]) is not None
    assert never_learned(tmp_path / "drafts" / "a.md", [rules]) is not None
    assert never_learned(tmp_path / "notes.md", [rules]) is None


# --- end to end -----------------------------------------------------------------------------------------------------
def _key() -> str:
    rng = random.Random(5)
    return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))


@pytest.mark.asyncio(loop_scope="module")
async def test_the_server_never_learns_ignored_files_credentials_or_secrets(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    for folder in ("notes", "private", "notes/tmp"):
        (workspace / folder).mkdir(parents=True)
    (workspace / ".nextwordignore").write_text("private/\nsecret-*.md\n")
    learnable = {
        workspace / "a.md": "The cat sat on the sofa. My sofa is red.\n",
        workspace / "notes" / "b.md": "There is a dog on the sofa.\n",
    }
    excluded = {
        workspace / "private" / "diary.md": "Dear diary, the sofa is mine.\n",
        workspace / "secret-plans.md": "The plan is to buy a sofa.\n",
        workspace / "notes" / "c.draft.md": "A draft about the sofa.\n",  # excludeGlobs
        workspace / "prod.env": "DATABASE_URL=postgres://app:hunter22@db/app\n",  # never a text suffix anyway
    }
    for path, text in {**learnable, **excluded}.items():
        path.write_text(text)
    db = build_store(tmp_path / "s.db", {"corpus": CORPUS})
    client = await start_server(
        "visual-studio-code", db, tmp_path / "home", {"excludeGlobs": ["*.draft.md"]}, workspace=workspace
    )
    try:
        result = await command(client, "nextword.learnWorkspace")
        assert result == {"learned": 2, "skipped": 0, "files": 2, "cancelled": False}
        assert set(sources_of(db)) == {"corpus", *(source_name(p) for p in learnable)}

        # saved documents: the excluded ones and a .env file are not learned ...
        for path in [*excluded, workspace / ".env"]:
            uri = open_doc(client, "The sofa is red and the cat is big.\n", path.as_uri(), "plaintext")
            save_doc(client, uri)
        # ... a document with a secret is learned without the sentence holding it
        key = _key()
        secret_doc = f"The sofa is soft.\n\nMy token is {key} for the repo.\n\nThe cat is big.\n"
        uri = open_doc(client, secret_doc, (workspace / "notes" / "d.md").as_uri())
        save_doc(client, uri)
        await eventually(lambda: uri in sources_of(db), "the document with a secret to be learned")
        await asyncio.sleep(0.3)  # any wrongly scheduled learn of the excluded documents would have landed by now
        assert set(sources_of(db)) == {"corpus", uri, *(source_name(p) for p in learnable)}

        expected = tmp_path / "expected.db"
        with CountStore.open(expected, order=3, tokenizer="prose", create=True) as store:
            store.learn("corpus", CORPUS)
            for path in learnable:
                store.learn_file(path)
            store.learn(uri, "The sofa is soft.\n\nThe cat is big.\n")
        assert snapshot(db) == snapshot(expected)
        with CountStore.open(db) as store:
            assert not any(key.lower()[4:12] in word for word in store.vocab.words)

        probe = "My token is gh"
        probe_uri = open_doc(client, probe)
        completion = await complete(client, probe_uri, end_of(probe))
        assert completion is not None and not any(item.label.startswith("ghp") for item in completion.items)
        await command(client, "nextword.forgetDocument", uri)
        assert uri not in sources_of(db)
    finally:
        await stop_server(client)
