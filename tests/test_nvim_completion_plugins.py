"""Neovim as people set it up: the README's configurations (clients/nvim/README.md), loaded exactly as written, with
the completion plugins people pair with language servers (nvim-cmp + cmp-nvim-lsp, blink.cmp with its pure-Lua
matcher), eagerly and lazy-loaded on InsertEnter as lazy.nvim does; typed into a Markdown buffer through pynvim
driving a headless Neovim, with the real server on a store made from the shipped model and its default settings
(personal adaptation on): once the menu has settled, its first item is what the server itself answers at the cursor.

The plugins come from `../shared/vendor` relative to the repository root (`$NEXTWORD_VENDOR` overrides it; see that
folder's README); Neovim and pynvim as in tests/test_clients.py. Without them these tests are skipped with the
reason, or fail where NEXTWORD_CLIENT_TESTS=required (CI).

Also here, the other things a person meets in Neovim: `setup{ cmd, db }` keeps `db`, a ghost text asked for just
before <Esc> never shows in Normal mode nor gets applied later, `:help nextword` works without `:helptags`, and an
Nvim older than 0.10 gets one clear message.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lsp_server.engine import Engine
from lsp_server.paths import DEFAULT_MODEL
from tests.test_clients import NO_NVIM, NVIM, NVIM_PLUGIN, REPO, need

README = NVIM_PLUGIN / "README.md"
HARNESS = NVIM_PLUGIN / "tests" / "plugin_manager.lua"
VENDOR_ENV = "NEXTWORD_VENDOR"
PLUGINS = {"hrsh7th/nvim-cmp": "nvim-cmp", "hrsh7th/cmp-nvim-lsp": "cmp-nvim-lsp", "saghen/blink.cmp": "blink.cmp"}
EAGER = {"nvim-cmp": ["nvim-cmp", "cmp-nvim-lsp"], "blink.cmp": ["blink.cmp"], "builtin": []}
# A Markdown file holds BEFORE; TEXT is typed on its last line, then PREFIX (the start of the next word). Some of
# the server's words for both are in the buffer, where nvim-cmp's default comparators (locality) would rank them
# first.
BEFORE = "Some said the Kingdom was in the Arab world.\n\n"
TEXT = "I live in the United "
PREFIX = "S"

try:
    import pynvim
except ImportError:  # pragma: no cover - the test extra installs it
    pynvim = None


def vendor_dir() -> Path:
    return Path(os.environ.get(VENDOR_ENV) or REPO.parent / "shared" / "vendor")


def missing() -> str:
    """Why these tests cannot run here, or ""."""
    if NO_NVIM:
        return NO_NVIM
    if pynvim is None:
        return "pynvim is not installed: pip install -e '.[test]'"
    absent = [name for name in PLUGINS.values() if not (vendor_dir() / name / "lua").is_dir()]
    if absent:
        return f"no {', '.join(absent)} in {vendor_dir()} (set ${VENDOR_ENV} to the vendored plugins' folder)"
    if not DEFAULT_MODEL.exists():
        return f"the shipped model {DEFAULT_MODEL} is missing"
    return ""


def readme_configs() -> dict[str, str]:
    """The README's Lua configurations, by the name in their `<!-- nvim-config: NAME -->` marker."""
    text = README.read_text()
    return dict(re.findall(r"<!-- nvim-config: ([\w. -]+?) -->\n```lua\n(.*?)```", text, re.S))


def server_command() -> list[str]:
    return [sys.executable, "-m", "lsp_server.cli", "serve"]


def as_written(config: str, command: list[str]) -> str:
    """A README configuration with its placeholders replaced: the repository, and the server command."""
    lua_command = ", ".join(json.dumps(part) for part in command)
    replaced = config.replace("'/path/to/.venv/bin/nextword', 'serve'", lua_command)
    replaced = replaced.replace("/path/to/nextword", str(REPO))
    assert "/path/to" not in replaced, replaced
    return replaced


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store made from the shipped model, as a new user's is (read only here: nothing is saved)."""
    need(missing())
    path = tmp_path_factory.mktemp("store") / "nextword.db"
    Engine.open(path, seed=True).close()
    return path


# What the server itself answers at the cursor (its items in their sortText order), asked once the menu has settled:
# with personal adaptation on (the default) that is the adaptive mixture's ranking, document cache included.
SERVER_TOP = """
    local client = vim.lsp.get_clients({ bufnr = 0, name = 'nextword' })[1]
    local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
    local answer = assert(client:request_sync('textDocument/completion', params, 20000, 0))
    local items = answer.result and answer.result.items or {}
    table.sort(items, function(a, b) return a.sortText < b.sortText end)
    return items[1] and items[1].label
"""


class Editor:
    """A headless Neovim driven through pynvim, with helpers to wait on what it shows."""

    def __init__(self, nvim: Any) -> None:
        self.nvim = nvim

    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.exec_lua(code, *args)

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what} (last: {value!r})")

    def settled(self, what: str, probe: Callable[[], Any], quiet: float = 1.0, timeout: float = 30.0) -> Any:
        """The first non-empty value of `probe` that stays the same for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            value = probe()
            if value != last:
                last, since = value, time.monotonic()
            elif value and time.monotonic() - since >= quiet:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what} to settle (last: {last!r})")

    def attached(self) -> None:
        self.wait(
            "the nextword client",
            lambda: self.lua(
                "local c = vim.lsp.get_clients({ bufnr = 0, name = 'nextword' })[1] return c ~= nil and c.initialized"
            ),
        )

    def type(self, keys: str, pause: float = 0.05) -> None:
        """Type `keys` (`<Esc>` is Escape) one at a time, `pause` seconds apart, as a person does: plugins that
        react to each change (nvim-cmp's TextChangedI) see each one."""
        for key in re.findall(r"<Esc>|.", keys, re.S):
            self.nvim.input(key if key == "<Esc>" else key.replace("<", "<lt>"))
            time.sleep(pause)


@pytest.fixture
def editor(tmp_path: Path, seeded_store: Path) -> Iterator[Editor]:
    """A fresh headless Neovim (its own config and data folders) whose default store is `seeded_store`."""
    assert pynvim is not None and NVIM is not None
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "NEXTWORD_DB": str(seeded_store),
        "PYTHONPATH": str(REPO),
    }
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # pynvim's child Neovim inherits this process's environment
    try:
        nvim = pynvim.attach("child", argv=[NVIM, "--embed", "--headless", "--clean", "-u", "NONE"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    nvim.command(f"cd {tmp_path}")
    try:
        yield Editor(nvim)
    finally:
        with contextlib.suppress(Exception):  # the child is gone once it quits
            nvim.command("qa!")
        nvim.close()


def load_config(editor: Editor, name: str, command: list[str] | None = None) -> None:
    """Load the README's configuration `name` as written (lazy ones through the lazy.nvim stand-in)."""
    config = as_written(readme_configs()[name], command or server_command())
    folders = {repo: str(vendor_dir() / folder) for repo, folder in PLUGINS.items()}
    editor.lua("_G.harness = dofile(...)", str(HARNESS))
    if name.startswith("lazy "):
        editor.lua("local config, folders = ... harness.lazy(assert(loadstring(config))(), folders)", config, folders)
    else:
        for folder in EAGER[name]:
            editor.lua("harness.load(...)", str(vendor_dir() / folder))
        editor.lua("assert(loadstring(...))()", config)


MENU = {
    "nvim-cmp": """
        local cmp = require('cmp')
        if not cmp.visible() then return {} end
        return vim.tbl_map(function(e) return e.completion_item.label end, cmp.get_entries())
    """,
    "blink.cmp": """
        local blink = require('blink.cmp')
        if not blink.is_menu_visible() then return {} end
        return vim.tbl_map(function(item) return item.label end, blink.get_items())
    """,
}
BUILTIN_ON = """
    return vim.fn.pumvisible() == 1 or #vim.api.nvim_get_autocmds({ buffer = 0, event = 'InsertCharPre' }) > 0
"""


@pytest.mark.parametrize(
    "name", ["nvim-cmp", "lazy nvim-cmp", "blink.cmp", "lazy blink.cmp"], ids=lambda n: n.replace(" ", "-")
)
def test_the_servers_top_word_is_the_menus_first_item(
    editor: Editor, seeded_store: Path, tmp_path: Path, name: str
) -> None:
    plugin = name.removeprefix("lazy ")
    load_config(editor, name)
    notes = tmp_path / "notes.md"
    notes.write_text(BEFORE)
    editor.nvim.command(f"edit {notes}")
    editor.nvim.command("normal! G")
    editor.attached()
    if name.startswith("lazy "):  # not loaded before Insert mode
        assert editor.lua("return package.loaded[...] == nil", "cmp" if plugin == "nvim-cmp" else "blink.cmp")

    editor.type("i" + TEXT)
    after_space = editor.settled(f"{plugin}'s menu after a space", lambda: editor.lua(MENU[plugin]))
    assert editor.nvim.current.line == TEXT
    assert after_space[0] == editor.lua(SERVER_TOP), after_space
    assert editor.lua(BUILTIN_ON) is False  # one menu: built-in completion is not on as well

    editor.type(PREFIX)
    after_prefix = editor.settled(f"{plugin}'s menu after {PREFIX!r}", lambda: editor.lua(MENU[plugin]))
    assert after_prefix[0] == editor.lua(SERVER_TOP), after_prefix
    assert editor.lua(BUILTIN_ON) is False
    assert editor.lua("return require('nextword').completion_engine()") == plugin


# --- the rest of what a person meets in Neovim ------------------------------------------------------------------
NOTES = """
    _G.notes = {}
    vim.notify = function(message, level) table.insert(_G.notes, { message = message, level = level }) end
"""
GHOSTS = """
    local namespace = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
    return namespace and #vim.api.nvim_buf_get_extmarks(0, namespace, 0, -1, {}) or 0
"""


def test_builtin_set_up_with_cmd_and_db_uses_that_store_made_from_the_shipped_model(
    editor: Editor, seeded_store: Path, tmp_path: Path
) -> None:
    # The README's built-in set-up gives both `cmd` (as every virtual-env user must) and `db`: the store named by
    # `db` is used (not dropped), made from the shipped model on first use, and the server says so once.
    home = tmp_path / "home"
    editor.lua("vim.env.HOME = ...", str(home))
    editor.lua(NOTES)
    load_config(editor, "builtin")
    notes = tmp_path / "notes.md"
    notes.write_text("")
    editor.nvim.command(f"edit {notes}")
    editor.attached()
    db = home / "notes" / "nextword.db"
    init_options = editor.lua("return vim.lsp.get_clients({ bufnr = 0, name = 'nextword' })[1].config.init_options")
    assert init_options["nextword"]["databasePath"] == str(db)

    editor.type("i" + TEXT)
    popup = editor.settled(
        "the built-in completion menu",
        lambda: editor.lua("return vim.tbl_map(function(i) return i.word end, vim.fn.complete_info({'items'}).items)"),
    )
    assert popup[0] == editor.lua(SERVER_TOP)
    assert db.exists()
    messages = [n["message"] for n in editor.lua("return _G.notes")]
    assert [m for m in messages if "new store" in m] == [
        f"LSP[nextword] nextword: new store {db}, started from the shipped model (WikiText-2 train (CC BY-SA 3.0)); "
        "'nextword serve --empty-store' (or learn --empty-store) makes an empty one instead"
    ]


def test_a_ghost_text_asked_for_just_before_escape_is_never_shown_nor_applied(editor: Editor, tmp_path: Path) -> None:
    load_config(editor, "builtin")
    notes = tmp_path / "notes.md"
    notes.write_text("First line.\nSecond line.\n")
    editor.nvim.command(f"edit {notes}")
    editor.attached()
    # In Insert mode the ghost text shows (Nvim asks 200 ms after the cursor moves) ...
    editor.type("GoI live in the United")
    editor.wait("a ghost text in Insert mode", lambda: editor.lua(GHOSTS) > 0)
    # ... but one asked for as <Esc> is pressed never shows in Normal mode, and a later accept applies nothing.
    editor.type(" <Esc>", pause=0)
    time.sleep(2.5)
    assert editor.lua("return vim.api.nvim_get_mode().mode") == "n"
    assert editor.lua(GHOSTS) == 0
    editor.nvim.command("normal! gg")
    assert editor.lua("return vim.lsp.inline_completion.get()") is False
    time.sleep(0.3)
    assert editor.nvim.current.buffer[:] == ["First line.", "Second line.", "I live in the United "]


def test_help_works_without_helptags(editor: Editor) -> None:
    editor.lua("vim.opt.rtp:append(...)", str(NVIM_PLUGIN))
    editor.nvim.command("help nextword")  # E149 (an NvimError here) without the shipped tags file
    assert editor.lua("return vim.fn.expand('%:t')") == "nextword.txt"
    editor.nvim.command("help nextword-cmp")
    assert "nvim-cmp and blink.cmp" in editor.lua("return vim.fn.getline(vim.fn.line('.') + 1)")


def test_nvim_before_0_10_gets_one_clear_message_and_no_errors(editor: Editor, tmp_path: Path) -> None:
    editor.lua(NOTES)
    editor.lua(  # what vim.fn.has answers on Nvim 0.9
        "local has = vim.fn.has vim.fn.has = function(f) return f:match('^nvim%-0%.1%d') and 0 or has(f) end"
    )
    editor.lua("vim.opt.rtp:append(...)", str(NVIM_PLUGIN))
    assert editor.lua("return require('nextword').setup({})") is False
    notes = tmp_path / "notes.md"
    notes.write_text("Some text.\n")
    editor.nvim.command(f"edit {notes}")
    editor.type("AMore text. <Esc>")
    time.sleep(0.5)
    [note] = editor.lua("return _G.notes")
    assert note["level"] == 4 and note["message"].startswith("nextword needs Nvim 0.10 or later, not NVIM v0.")
    assert note["message"].endswith("; the plugin stays off.")
    assert editor.lua("return #vim.lsp.get_clients()") == 0
    assert "Error" not in editor.lua("return vim.fn.execute('messages')")
