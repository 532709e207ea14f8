"""Fuzzing the real language server: random and malformed JSON-RPC messages and random edit sequences over stdio.

Starts `nextword serve` on a small store and sends it `--messages` messages drawn at random from: garbage bodies
(invalid JSON, invalid UTF-8, NUL bytes, JSON that is not an object), bytes with no Content-Length header at all
between two messages, messages missing their method or with ids of
the wrong type, unknown methods, every method the server handles with params that are valid, mutated (wrong types,
missing or extra fields, nulls, huge or negative numbers, out-of-range positions, unknown URIs, very long strings)
or absent, random edit sequences on a few documents (open, incremental and full changes with ranges anywhere,
versions out of order, saves that learn, closes, re-opens), and commands with random arguments. A reader thread
drains everything the server writes. Every 100 messages it must answer a request within 10 s.

At the end the server must still be running and answer a completion exactly as before; `nextword.statistics` must
agree with the store file (sources, tokens); and the store must pass `nextword doctor` (integrity, and counts equal
to a rebuild from its sources). Lines the server logged as internal errors are counted (there should be none).

    python bench/fuzz_server.py                  # 10,000 messages
    python bench/fuzz_server.py --quick          # 1,000 messages, not written to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, Stopwatch, section_text, write_section  # noqa: E402
from bench.reliability import make_text  # noqa: E402
from store.countstore import CountStore  # noqa: E402

CORPUS = (
    "The cat sat on the mat. The cat sat on the mat again. The dog sat on the rug. I have a dog. I have a cat.\n"
    "There is a problem with the plan. It is better than nothing. Their house is big. Its colour is red.\n"
)
PROBE = "The cat sat on the "
URIS = ["file:///fuzz/a.md", "file:///fuzz/b.txt", "untitled:Untitled-1", "file:///fuzz/c%20d.md"]
METHODS = [
    "textDocument/completion",
    "textDocument/inlineCompletion",
    "textDocument/hover",
    "textDocument/codeAction",
    "workspace/executeCommand",
    "textDocument/didOpen",
    "textDocument/didChange",
    "textDocument/didSave",
    "textDocument/didClose",
    "workspace/didChangeConfiguration",
    "$/cancelRequest",
    "$/setTrace",
]
COMMANDS = [
    "nextword.learnWorkspace",
    "nextword.forgetDocument",
    "nextword.pauseLearning",
    "nextword.resumeLearning",
    "nextword.statistics",
    "nextword.ignoreWord",
    "nextword.noSuchCommand",
]
UNFRAMED = object()  # Fuzzer.message's marker: send the bytes with no header
ODD_STRINGS = ["", "\x00", "\ud800", "😀" * 3, "\u202e\u200d", "a" * 10_000, "<script>", "../../etc/passwd", "%00"]


class Server:
    """`nextword serve` over pipes; a thread reads and parses every message it writes."""

    def __init__(self, db: Path, home: Path) -> None:
        env = {**os.environ, "XDG_DATA_HOME": str(home), "NEXTWORD_DB": str(home / "unused.db")}
        self.stderr = open(home / "server.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lsp_server.cli", "serve", "--db", str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            cwd=ROOT,
        )
        self.responses: dict[Any, dict[str, Any]] = {}
        self.notifications: Counter[str] = Counter()
        self.unparsable = 0
        self.error_popups: list[str] = []
        self.arrived = threading.Condition()
        self.write_lock = threading.Lock()
        self.next_id = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = -1
            while True:
                line = out.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = out.read(length) if length >= 0 else b""
            try:
                message = json.loads(body)
            except ValueError:
                self.unparsable += 1
                continue
            with self.arrived:
                if "method" in message and "id" in message:  # a request from the server: answer yes
                    self.send_json({"jsonrpc": "2.0", "id": message["id"], "result": None})
                elif "method" in message:
                    self.notifications[message["method"]] += 1
                    if message["method"] == "window/showMessage" and (message.get("params") or {}).get("type") == 1:
                        self.error_popups.append(str(message["params"].get("message"))[:200])
                else:
                    msg_id = message.get("id")
                    self.responses[msg_id if isinstance(msg_id, str | int | None) else repr(msg_id)] = message
                self.arrived.notify_all()

    def send_bytes(self, body: bytes, length: int | None = None) -> None:
        assert self.proc.stdin is not None
        with self.write_lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body)
            self.proc.stdin.flush()

    def send_unframed(self, data: bytes) -> None:
        """Bytes outside any message (no Content-Length header)."""
        assert self.proc.stdin is not None
        with self.write_lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def send_json(self, message: Any) -> None:
        self.send_bytes(json.dumps(message).encode("utf-8", "surrogatepass"))

    def request(self, method: str, params: Any, timeout: float = 10.0) -> dict[str, Any]:
        self.next_id += 1
        msg_id = f"sync-{self.next_id}"
        self.send_json({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        with self.arrived:
            while msg_id not in self.responses:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(
                        f"no answer to {method} within {timeout} s (server exit code {self.proc.poll()})"
                    )
                self.arrived.wait(left)
            return self.responses.pop(msg_id)

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.send_json({"jsonrpc": "2.0", "method": "exit"})
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


# --- the messages ---------------------------------------------------------------------------------------------------
def position(rng: random.Random) -> Any:
    choice = rng.random()
    if choice < 0.7:
        return {"line": rng.randint(0, 30), "character": rng.randint(0, 200)}
    return rng.choice(
        [
            {"line": -1, "character": 0},
            {"line": 2**31, "character": 2**31},
            {"line": 0},
            {"line": "0", "character": "1"},
            {"line": 1.5, "character": None},
            None,
            [],
            {"line": 10**30, "character": -(10**30)},
        ]
    )


def a_range(rng: random.Random) -> Any:
    return {"start": position(rng), "end": position(rng)}


def mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """A random variation of a JSON value: a field dropped, added, retyped or nulled."""
    if depth > 3 or rng.random() < 0.3:
        return rng.choice(
            [None, 0, -1, 2**63, 1.5e308, True, "", rng.choice(ODD_STRINGS), [], {}, [[[[]]]], {"a": {"b": {}}}]
        )
    if isinstance(value, dict) and value:
        value = dict(value)
        key = rng.choice(list(value))
        action = rng.random()
        if action < 0.3:
            del value[key]
        elif action < 0.5:
            value[rng.choice(["extra", "textDocument", "position", "\ud800", ""])] = mutate(rng, None, depth + 1)
        else:
            value[key] = mutate(rng, value[key], depth + 1)
        return value
    if isinstance(value, list) and value:
        return [mutate(rng, v, depth + 1) if rng.random() < 0.5 else v for v in value]
    return mutate(rng, None, depth + 1) if rng.random() < 0.5 else value


@dataclass
class Fuzzer:
    rng: random.Random
    versions: dict[str, int] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    next_id: int = 0

    def doc(self) -> dict[str, Any]:
        return {"uri": self.rng.choice(URIS)}

    def valid_params(self, method: str) -> Any:
        rng = self.rng
        uri = rng.choice(URIS)
        if method in ("textDocument/completion", "textDocument/hover"):
            return {"textDocument": {"uri": uri}, "position": position(rng)}
        if method == "textDocument/inlineCompletion":
            return {"textDocument": {"uri": uri}, "position": position(rng), "context": {"triggerKind": 1}}
        if method == "textDocument/codeAction":
            diagnostic = {
                "range": a_range(rng),
                "message": "odd",
                "source": "nextword",
                "code": "odd-word",
                "data": {"word": "the", "alternatives": ["a", "", 3]},
            }
            return {"textDocument": {"uri": uri}, "range": a_range(rng), "context": {"diagnostics": [diagnostic]}}
        if method == "workspace/executeCommand":
            arguments = rng.choice([[], [uri], [rng.choice(ODD_STRINGS)], [[uri]], [{"uri": uri}], [None, 1]])
            return {"command": rng.choice(COMMANDS), "arguments": arguments}
        if method == "textDocument/didOpen":
            self.versions[uri] = 1
            text = make_text(rng) if rng.random() < 0.8 else rng.choice(ODD_STRINGS)
            language = rng.choice(["markdown", "plaintext", "markdown", "python"])
            return {"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}
        if method == "textDocument/didChange":
            version = self.versions.get(uri, 0) + rng.choice([1, 1, 1, 0, -3, 100])
            self.versions[uri] = version
            changes = []
            for _ in range(rng.randint(1, 3)):
                text = rng.choice([make_text(rng, (1, 2)), " ", "\n", "", rng.choice(ODD_STRINGS)])
                changes.append({"text": text} if rng.random() < 0.2 else {"range": a_range(rng), "text": text})
            return {"textDocument": {"uri": uri, "version": version}, "contentChanges": changes}
        if method == "textDocument/didSave":
            return {"textDocument": {"uri": uri}}
        if method == "textDocument/didClose":
            self.versions.pop(uri, None)
            return {"textDocument": {"uri": uri}}
        if method == "workspace/didChangeConfiguration":
            return {"settings": {"nextword": mutate(rng, {"maxSuggestions": 5, "debounceMs": 0, "learning": True})}}
        if method == "$/cancelRequest":
            return {"id": rng.choice([self.next_id, -1, "x", None])}
        return {"value": "off"}

    def message(self) -> tuple[str, bytes | None, Any]:
        """(what kind of message, raw bytes to send or None, else a JSON value to send)."""
        rng = self.rng
        if rng.random() < 0.03:  # bytes with no Content-Length header at all, between two messages
            body = rng.choice(
                [
                    b"garbage without a header",
                    b"\x00\xff\xfe",
                    b"{}\r\n",
                    b"\r\n\r\n",
                    b"Content-Type: text/plain\r\n",
                    bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))).replace(b"Content-Length", b""),
                ]
            )
            return "unframed bytes", body, UNFRAMED
        roll = rng.random()
        if roll < 0.08:
            body = rng.choice(
                [
                    b"{",
                    b"not json",
                    b"\xff\xfe\x00garbage",
                    b'{"jsonrpc": "2.0", "method": "textDocument/completion", "id": 1, "params": {"a": "\xc3"}}',
                    bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))),
                    b"null",
                    b"[1, 2, 3]",
                    b'"a string"',
                    b"12",
                ]
            )
            return "garbage body", body, None
        if roll < 0.14:
            return (
                "not a proper message",
                None,
                rng.choice(
                    [
                        {"jsonrpc": "2.0", "id": 5},
                        {"jsonrpc": "2.0", "method": None, "id": 1},
                        {"jsonrpc": "1.0", "method": "textDocument/hover", "id": 2, "params": {}},
                        {"method": "textDocument/completion", "id": {"nested": True}, "params": {}},
                        {"jsonrpc": "2.0", "id": [1], "method": "textDocument/hover", "params": None},
                        {"jsonrpc": "2.0", "result": 1, "id": "never-asked"},
                        {"jsonrpc": "2.0", "error": {"code": 1, "message": "x"}, "id": 99},
                        {},
                    ]
                ),
            )
        if roll < 0.19:
            method = rng.choice(["foo/bar", "textDocument/unknown", "$/unknownNotification", "", "\x00"])
            message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": {}}
            if rng.random() < 0.5:
                self.next_id += 1
                message["id"] = self.next_id
            return "unknown method", None, message
        edits = ["textDocument/didOpen"] * 2 + ["textDocument/didChange"] * 4 + ["textDocument/didSave"] * 3
        method = rng.choice(METHODS + edits)
        params = self.valid_params(method)
        kind = "valid params"
        if rng.random() < 0.35:
            params, kind = (mutate(rng, params), "mutated params") if rng.random() < 0.8 else (None, "no params")
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        if not method.startswith(("textDocument/did", "workspace/didChange", "$/")):
            self.next_id += 1
            message["id"] = self.next_id if rng.random() < 0.9 else rng.choice([f"s{self.next_id}", 2**40])
        return kind, None, message


# --- one run --------------------------------------------------------------------------------------------------------
@dataclass
class FuzzResult:
    messages: int
    kinds: Counter[str]
    answered: int
    errors: int
    internal_errors: int
    tracebacks: int
    error_popups: list[str]
    problems: list[str]
    seconds: float
    learned: int


def run_fuzz(folder: Path, messages: int = 10_000, seed: int = 0, sync_every: int = 100) -> FuzzResult:
    db = folder / "fuzz.db"
    with CountStore.open(db, order=3, tokenizer="prose", create=True) as store:
        store.learn("corpus", CORPUS)
    home = folder / "home"
    home.mkdir(exist_ok=True)
    server = Server(db, home)
    fuzzer = Fuzzer(random.Random(seed))
    problems: list[str] = []
    with Stopwatch() as sw:
        server.request(
            "initialize",
            {
                "processId": os.getpid(),
                "capabilities": {},
                "rootUri": None,
                # adaptation off: the check at the end compares the completions with the store's own model
                "initializationOptions": {"nextword": {"debounceMs": 0, "adaptation": False}},
            },
        )
        server.send_json({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        sent = 0
        labels: list[str] = []
        try:
            for i in range(messages):
                kind, raw, message = fuzzer.message()
                fuzzer.kinds[kind] += 1
                if message is UNFRAMED:
                    server.send_unframed(raw)
                elif raw is not None:
                    server.send_bytes(raw)
                else:
                    server.send_json(message)
                sent += 1
                if (i + 1) % sync_every == 0:
                    server.request("workspace/executeCommand", {"command": "nextword.statistics", "arguments": []})
            # learning paused (what is in flight finishes first: one background thread), then the checks
            server.request("workspace/executeCommand", {"command": "nextword.pauseLearning", "arguments": []})
            settings = {"settings": {"nextword": {"maxSuggestions": 10}}}
            server.send_json({"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": settings})
            server.request("workspace/executeCommand", {"command": "nextword.statistics", "arguments": []})
            labels = probe(server)
            stats = server.request("workspace/executeCommand", {"command": "nextword.statistics", "arguments": []})
            problems.extend(check_statistics(db, stats.get("result") or {}))
        except RuntimeError as exc:
            problems.append(f"after {sent} messages: {exc}")
        finally:
            alive = server.proc.poll() is None
            server.close()
    if not alive:
        problems.append("the server had exited")
    from lsp_server.engine import Engine
    from store import doctor

    engine = Engine.open(db)
    expected = [s.word for s in engine.complete_at(PROBE, len(PROBE), 10).suggestions]
    engine.close()
    if labels != expected:
        problems.append(f"the server completes {PROBE!r} with {labels}, the store gives {expected}")
    report = doctor.diagnose(db)
    problems.extend(f"doctor: {p}" for p in report.problems)
    log = (home / "server.log").read_text(encoding="utf-8", errors="replace")
    internal = sum(1 for line in log.splitlines() if "internal error" in line or " ERROR " in line)
    learned = sum(1 for line in log.splitlines() if "nextword: learned " in line)
    errors = sum(1 for r in server.responses.values() if "error" in r)
    return FuzzResult(
        sent,
        fuzzer.kinds,
        len(server.responses),
        errors,
        internal,
        log.count("Traceback"),
        server.error_popups,
        problems,
        sw.seconds,
        learned,
    )


def probe(server: Server) -> list[str]:
    """Open a fresh document and complete after "The cat sat on the ": the labels, in order."""
    uri = f"file:///fuzz/probe-{time.monotonic_ns()}.md"
    item = {"uri": uri, "languageId": "markdown", "version": 1, "text": PROBE}
    server.send_json({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": item}})
    answer = server.request(
        "textDocument/completion",
        {"textDocument": {"uri": uri}, "position": {"line": 0, "character": len(PROBE)}},
    )
    server.send_json({"jsonrpc": "2.0", "method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}})
    return [item["label"] for item in (answer.get("result") or {}).get("items", [])]


def check_statistics(db: Path, stats: dict[str, Any]) -> list[str]:
    with CountStore.open(db) as store:
        sources = store.sources()
        truth = store.stats()
    problems = []
    if stats.get("sources") != len(sources):
        problems.append(f"statistics says {stats.get('sources')} sources, the store has {len(sources)}")
    if stats.get("tokens") != sum(s.tokens for s in sources):
        problems.append(f"statistics says {stats.get('tokens')} tokens, the store's sources have {truth['tokens']}")
    if stats.get("ngrams") != {str(n): c for n, c in truth["ngrams"].items()}:  # type: ignore[union-attr]
        problems.append(f"statistics says n-grams {stats.get('ngrams')}, the store has {truth['ngrams']}")
    return problems


def report(result: FuzzResult) -> str:
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in result.kinds.most_common())
    verdict = "yes" if not result.problems else "NO: " + "; ".join(result.problems[:5])
    popups = Counter(result.error_popups).most_common(5)
    examples = "".join(f"\n- {n} x `{text}`" for text, n in popups)
    return (
        f"{result.messages:,} random and malformed messages to `nextword serve` over stdio ({kinds}), with a "
        f"request every 100 messages that must be answered within 10 s.\n\n"
        f"| measure | value |\n|---|---|\n"
        f"| messages sent | {result.messages:,} |\n"
        f"| responses received (of which errors) | {result.answered:,} ({result.errors:,}) |\n"
        f"| learns on save during the run (from the server's log) | {result.learned:,} |\n"
        f"| lines the server logged as internal errors (tracebacks) | {result.internal_errors} "
        f"({result.tracebacks}) |\n"
        f"| error pop-ups sent to the editor (window/showMessage, type Error) | {len(result.error_popups)} |\n"
        f"| still running; completes exactly as an Engine on the store; statistics == the store; doctor healthy "
        f"| {verdict} |\n"
        f"| wall time | {result.seconds:.1f} s |\n"
        + (f"\nThe commonest error pop-ups:{examples}\n" if examples else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages to send (default 10,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1,000 messages, not written to bench/RESULTS.md")
    parser.add_argument("--results", type=Path, default=None, help="results file (default bench/RESULTS.md)")
    args = parser.parse_args()
    messages = 1000 if args.quick else args.messages
    with tempfile.TemporaryDirectory(prefix="nextword-fuzz-") as tmp:
        result = run_fuzz(Path(tmp), messages, args.seed)
    body = report(result)
    print(body)
    path = args.results or (None if args.quick else RESULTS)
    if path is not None:
        write_section(path, "fuzz_server", section_text("Fuzzing the language server", body, result.seconds))
    if result.problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
