"""The server's first second: answering an editor before the LSP library is loaded.

`nextword serve` answers through pygls, and pygls with lsprotocol takes about a second of Python to import on
2 cores (lsprotocol defines ~1,000 attrs classes when it is imported), before it can answer anything; the model takes
another half second before the first completion (bench/startup.py). So, on stdio, the prelude comes first:

1. it answers `initialize` at once, with the capabilities pygls would answer (tests/test_prelude.py compares them
   for many clients' capabilities);
2. it opens the store and loads what suggesting reads, then imports the server (pygls) on another thread;
3. meanwhile it keeps the open documents (`initialized`, `didOpen`, `didChange`, `didClose`, settings) and answers
   completions and ghost text itself, with the same code as the server's handlers (`lsp_server.completing`);
4. once the server is imported it hands over (`Handover`): pygls reads first every message the prelude read, except
   the requests it answered (its answer to `initialize` is dropped), then reads on from where the prelude stopped, so
   it holds the same documents and settings as if it had read everything itself; it takes over the opened Engine.

Anything else ends the prelude at once and untouched: a request or notification it does not serve (hover, code
actions, a save, shutdown ...), a message it cannot read (garbage, bad JSON), a store that will not open, a setting
that names another store, an error while completing. pygls then reads that message as it always would, so every
error is reported in one place, the server's. Over TCP, from a terminal or a regular file, there is no prelude.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote

from lsp_server import completing
from lsp_server.heap import tune_malloc
from lsp_server.positions import apply_edit
from lsp_server.settings import Settings, parse_settings

if TYPE_CHECKING:
    from lsp_server.engine import Engine

log = logging.getLogger("nextword")

GIL_SWITCH_S = 0.0001  # a completion waiting for the interpreter lock while a learn or a check runs Python code on the
# background thread (or, here, while the server is imported) gets it within 0.1 ms (Python's default: 5 ms; it is
# waited for again after every numpy call and every read that let it go, tens of times in one completion;
# bench/soak.py: p99 halved against 1 ms)
READ_CHUNK = 1 << 20  # bytes read from stdin at a time
CONTENT_LENGTH = re.compile(rb"Content-Length: (\d+)")  # as pygls' reader matches the line (pygls.io_)
HEADER_LIMIT = 8192  # a header block longer than this is not one the prelude reads (pygls does)
DOCUMENT_EVENTS = ("textDocument/didOpen", "textDocument/didChange", "textDocument/didClose")
ENCODINGS = ("utf-8", "utf-16", "utf-32")  # the position encodings pygls offers
INFO = 3  # MessageType.Info

# What pygls (2.x) answers to `initialize` for this server's features, before the parts that depend on the client
# (`initialize_result`). tests/test_prelude.py builds pygls' own answer for many clients and compares: a feature
# added to the server fails that test until it is added here.
CAPABILITIES: dict[str, Any] = {
    "textDocumentSync": {"openClose": True, "change": 2, "save": True},
    "completionProvider": {"triggerCharacters": [" "]},
    "hoverProvider": True,
    "codeActionProvider": {"codeActionKinds": ["quickfix"]},
    "executeCommandProvider": {
        "commands": [
            "nextword.ignoreWord",
            "nextword.pauseLearning",
            "nextword.resumeLearning",
            "nextword.statistics",
            "nextword.forgetDocument",
            "nextword.learnWorkspace",
            "nextword.retrainNeural",
        ]
    },
    "inlineCompletionProvider": {},
    "workspace": {"workspaceFolders": {"supported": True, "changeNotifications": True}, "fileOperations": {}},
}


def server_version() -> str:
    """nextword's version, as the server tells the client (`serverInfo`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nextword")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def position_encoding(params: dict[str, Any]) -> str:
    """The position encoding pygls agrees with a client (`initialize`'s params, JSON): the first the client lists
    that pygls offers, else UTF-16 (the LSP default)."""
    general = _get(params, "capabilities", "general") or {}
    for encoding in general.get("positionEncodings") or ():
        if encoding in ENCODINGS:
            return str(encoding)
    return "utf-16"


def initialize_result(params: dict[str, Any]) -> dict[str, Any]:
    """The `InitializeResult` (JSON) pygls makes for this server and a client's `initialize` params (JSON)."""
    capabilities = json.loads(json.dumps(CAPABILITIES))
    capabilities["positionEncoding"] = position_encoding(params)
    sync = _get(params, "capabilities", "textDocument", "synchronization") or {}
    for name in ("willSave", "willSaveWaitUntil"):  # false when the client says either way: the server has neither
        if sync.get(name) is not None:
            capabilities["textDocumentSync"][name] = False
    return {"capabilities": capabilities, "serverInfo": {"name": "nextword", "version": server_version()}}


# The params the prelude serves, as lsprotocol requires them (a `type`, a nested shape, or a tuple of allowed values):
# params of another shape are left to pygls, which answers them as it always does (an error, for a request).
_UINT = "uint"
_POSITION = {"line": _UINT, "character": _UINT}
_RANGE = {"start": _POSITION, "end": _POSITION}
SHAPES: dict[str, dict[str, Any]] = {
    "initialize": {"capabilities": dict},
    "textDocument/didOpen": {"textDocument": {"uri": str, "languageId": str, "version": int, "text": str}},
    "textDocument/didChange": {"textDocument": {"uri": str, "version": int}, "contentChanges": list},
    "textDocument/didClose": {"textDocument": {"uri": str}},
    "textDocument/completion": {"textDocument": {"uri": str}, "position": _POSITION},
    "textDocument/inlineCompletion": {
        "textDocument": {"uri": str},
        "position": _POSITION,
        "context": {"triggerKind": (1, 2)},
    },
    "$/cancelRequest": {"id": (int, str)},
}
OPTIONAL_SHAPES: dict[str, dict[str, Any]] = {"textDocument/completion": {"context": {"triggerKind": (1, 2, 3)}}}


def readable(method: str, params: Any) -> bool:
    """Whether `params` have the shape lsprotocol requires of `method`'s (the parts the prelude relies on)."""
    if not _fits(params, SHAPES.get(method, {})):
        return False
    optional = OPTIONAL_SHAPES.get(method, {})
    if any(key in params and not _fits(params[key], shape) for key, shape in optional.items()):
        return False
    if method == "textDocument/didChange":
        edits = params["contentChanges"]  # each replaces the whole text, or the range it names
        return all(
            _fits(edit, {"text": str}) and ("range" not in edit or _fits(edit["range"], _RANGE)) for edit in edits
        )
    return True


def _fits(value: Any, shape: Any) -> bool:
    """Whether `value` (JSON) has `shape`: a dict of required keys' shapes, _UINT, a tuple of allowed values or
    types, or a type (a bool is not an int)."""
    if isinstance(shape, dict):
        return isinstance(value, dict) and all(key in value and _fits(value[key], sub) for key, sub in shape.items())
    if shape == _UINT:
        return type(value) is int and 0 <= value < 2**31
    if isinstance(shape, tuple):
        return any(_fits(value, allowed) if isinstance(allowed, type) else _same(value, allowed) for allowed in shape)
    return isinstance(value, shape) and not (isinstance(value, bool) and shape is not bool)


def _same(value: Any, allowed: Any) -> bool:
    return type(value) is type(allowed) and value == allowed


def _get(tree: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def open_engine(settings: Settings, empty_store: bool) -> Engine:
    """The Engine as the server uses it: the store the settings name (a new one seeded from the shipped model unless
    `empty_store`), checkpoints left to the server's quiet moments, caches within the settings' budget. A store
    that is not there yet is seeded on another thread while the model's modules are imported (decompressing lets
    go of the interpreter lock): a first start's first completion comes ~0.2 s sooner."""
    from lsp_server.paths import default_db_path, seed_from_default_model

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nextword-seed") as pool:
        path = Path(settings.database).expanduser() if settings.database else default_db_path()
        seeding = None if empty_store else pool.submit(seed_from_default_model, path)
        from lsp_server.engine import Engine

        seeded = seeding is not None and seeding.result()  # its error (a full disk), if any, is raised here
    engine = Engine.open(settings.database, create=empty_store, seed=not empty_store)
    engine.seeded = engine.seeded or seeded
    engine.defer_checkpoints()  # run when learning is quiet (server.schedule_checkpoint), not in a learn
    engine.set_cache_budget(settings.cache_megabytes * 2**20)
    return engine


@dataclass
class Handover:
    """What the prelude hands to the server: bytes for pygls to read first (the messages to read again, then what
    the prelude had not read yet), the ids of the requests it answered (`answered`; of those, `replayed` are read
    again by pygls, whose answers to them must not be sent), and the Engine it opened with the store setting it
    was opened for (None when it opened none)."""

    pending: bytes = b""
    answered: set[Any] = field(default_factory=set)
    replayed: set[Any] = field(default_factory=set)  # `initialize`'s id: pygls sets itself up from it
    engine: Engine | None = None
    database: str | None = None
    seconds: float = 0.0  # how long it served

    @property
    def completions(self) -> int:
        """Completions and ghost texts the prelude answered (pygls never sees them)."""
        return len(self.answered - self.replayed)


@dataclass
class Document:
    language_id: str | None
    source: str


class FrameReader:
    """LSP messages (`Content-Length` framed JSON) from a file descriptor, read whole before they are consumed, so
    that one the prelude does not serve stays for pygls, byte for byte. `wake` is a pipe whose readability ends a
    wait for input."""

    def __init__(self, fd: int, wake: int) -> None:
        self.fd = fd
        self.wake = wake
        self.buffer = bytearray()
        self.ended = False  # the input ended

    def peek(self) -> tuple[int, dict[str, Any]] | None:
        """The next message and its length in bytes, waiting for it; None when the input ended, when what comes
        next is not a message the prelude reads, or when it would have to wait for input after `wake` (messages
        received whole before are still returned)."""
        while True:
            parsed = _parse_frame(self.buffer)
            if parsed is not None or self.ended:
                return parsed if isinstance(parsed, tuple) else None
            readable, _, _ = select.select([self.fd, self.wake], [], [])
            if self.wake in readable:
                return None
            chunk = os.read(self.fd, READ_CHUNK)
            if not chunk:
                self.ended = True
            self.buffer += chunk

    def consume(self, length: int) -> bytes:
        frame = bytes(self.buffer[:length])
        del self.buffer[:length]
        return frame


def _parse_frame(buffer: bytearray) -> tuple[int, dict[str, Any]] | bool | None:
    """(length, message) for a whole message at the start of `buffer`; None while it is incomplete; False when
    it is not a message the prelude reads. It reads only what pygls reads alike: a `Content-Length: N` line exactly
    as pygls matches it, at most a `Content-Type` line besides, a JSON object (not garbage before the header,
    other headers, bad JSON)."""
    end = buffer.find(b"\r\n\r\n", 0, HEADER_LIMIT)
    if end < 0:
        return False if len(buffer) >= HEADER_LIMIT else None
    length = None
    for line in bytes(buffer[:end]).split(b"\r\n"):
        match = CONTENT_LENGTH.fullmatch(line)
        if match and length is None:
            length = int(match.group(1))
        elif not line.startswith(b"Content-Type:"):
            return False
    if not length:
        return False
    total = end + 4 + length
    if len(buffer) < total:
        return None
    try:
        message = json.loads(bytes(buffer[end + 4 : total]))
    except (ValueError, UnicodeDecodeError):
        return False
    return (total, message) if isinstance(message, dict) else False


class Prelude:
    """Serves an editor over stdin / stdout until the server (pygls) is imported, then hands over (`run`)."""

    def __init__(self, db: str | None, empty_store: bool, stdin: int = 0, stdout: BinaryIO | None = None) -> None:
        self.settings = Settings(database=db)
        self.empty_store = empty_store
        self.out = stdout if stdout is not None else sys.stdout.buffer
        self.wake_read, self.wake_write = os.pipe()
        self.reader = FrameReader(stdin, self.wake_read)
        self.documents: dict[str, Document] = {}
        self.encoding = "utf-16"
        self.handover = Handover()
        self.replay: list[bytes] = []  # frames pygls reads again

    def run(self) -> Handover:
        """Serve until the server is imported or a message the prelude does not serve comes; return the handover."""
        started = time.monotonic()
        importer: threading.Thread | None = None
        try:
            if self._initialize():
                importer = threading.Thread(target=self._import_server, name="nextword-import", daemon=True)
                importer.start()
                self._serve()
        finally:
            if importer is not None:
                importer.join()
            os.close(self.wake_read)
            os.close(self.wake_write)
        self.handover.pending = b"".join(self.replay) + bytes(self.reader.buffer)
        self.handover.seconds = time.monotonic() - started
        return self.handover

    def _initialize(self) -> bool:
        """Answer `initialize` and open the store; False when the prelude serves no more: what comes first is not an
        `initialize` it can read (left unread), or the store cannot be opened (the server opens it again, and says)."""
        peeked = self.reader.peek()
        if peeked is None or peeked[1].get("method") != "initialize" or peeked[1].get("jsonrpc") != "2.0":
            return False
        if "id" not in peeked[1]:
            return False
        length, message = peeked
        params = message.get("params")
        if not isinstance(params, dict) or not readable("initialize", params):
            return False
        settings, _problems = parse_settings(params.get("initializationOptions"), self.settings)  # told by pygls
        self.replay.append(self.reader.consume(length))
        self.handover.answered.add(message["id"])
        self.handover.replayed.add(message["id"])
        self.encoding = position_encoding(params)
        self._send({"jsonrpc": "2.0", "id": message["id"], "result": initialize_result(params)})
        self.settings = settings
        try:
            engine = open_engine(settings, self.empty_store)
        except Exception:  # the server opens it again and says what is wrong
            log.debug("the prelude could not open the store", exc_info=True)
            return False
        try:
            engine.next_words(("<s>",), settings.suggestions)  # loads the unigrams and word lists
        except Exception:
            log.debug("the prelude could not suggest", exc_info=True)
            engine.close()
            return False
        self.handover.engine, self.handover.database = engine, settings.database
        note = engine.seeded_note()  # said once, when the store was made (the server does not say it again)
        if note:
            self._send({"jsonrpc": "2.0", "method": "window/showMessage", "params": {"type": INFO, "message": note}})
        return True

    def _import_server(self) -> None:
        try:
            import lsp_server.server  # noqa: F401
        except Exception:  # the main thread imports it again and fails there, with the traceback
            log.debug("importing the server failed", exc_info=True)
        finally:
            os.write(self.wake_write, b"!")

    def _serve(self) -> None:
        """Serve messages until one the prelude does not serve, or until the server is imported and every message
        received whole by then is served."""
        while (peeked := self.reader.peek()) is not None:
            length, message = peeked
            try:
                served = self._handle(message)
            except Exception:  # the server reads it again and says what is wrong
                log.debug("the prelude leaves %s to the server", message.get("method"), exc_info=True)
                return
            if served is None:
                return
            frame = self.reader.consume(length)
            if served:
                self.replay.append(frame)

    def _handle(self, message: dict[str, Any]) -> bool | None:
        """Serve one message: True (pygls reads it again), False (answered here: pygls never sees it), None (not
        served: the prelude ends, the message unread)."""
        method, params = message.get("method"), message.get("params")
        if not isinstance(method, str) or message.get("jsonrpc") != "2.0" or "result" in message or "error" in message:
            return None
        if method == "initialized" and params in (None, {}):
            return True
        if not isinstance(params, dict) or not readable(method, params):
            return None
        if "id" in message:
            return self._answer(method, message["id"], params)
        if method == "workspace/didChangeConfiguration" and "settings" in params:
            settings, _problems = parse_settings(params.get("settings"), self.settings)  # told by pygls
            if settings.database != self.settings.database:
                return None  # another store: the server opens it
            self.settings = settings
            return True
        if method == "$/cancelRequest":  # for a request answered here (each is answered before the next is read)
            return params.get("id") not in self.handover.answered
        return self._document_event(method, params)

    def _document_event(self, method: str | None, params: dict[str, Any]) -> bool | None:
        if method not in DOCUMENT_EVENTS:
            return None
        item = params["textDocument"]
        uri = unquote(item["uri"])
        if method == "textDocument/didOpen":
            self.documents[uri] = Document(item.get("languageId"), item["text"])
        elif method == "textDocument/didChange":
            document = self.documents[uri]
            for edit in params["contentChanges"]:
                document.source = apply_edit(document.source, edit, self.encoding)
        else:
            self.documents.pop(uri, None)
        return True

    def _answer(self, method: str | None, request_id: Any, params: dict[str, Any]) -> bool | None:
        if method not in ("textDocument/completion", "textDocument/inlineCompletion"):
            return None
        document = self.documents[unquote(params["textDocument"]["uri"])]
        position = params["position"]
        settings = self.settings
        at = completing.cursor_prose(
            document.language_id, document.source, position["line"], position["character"], self.encoding, settings
        )
        engine = self.handover.engine
        assert engine is not None
        result: dict[str, Any] | None = None
        if at is not None and method == "textDocument/completion":
            result = completing.completion_list(engine.complete_at(at.text, at.offset, settings.suggestions), at)
        elif at is not None and settings.inline_completion:
            found = engine.continue_at(at.text, at.offset, settings.inline_max_words)
            result = completing.inline_completion_list(found, at)
        self._send({"jsonrpc": "2.0", "id": request_id, "result": result})
        self.handover.answered.add(request_id)
        return False

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode("utf-8")
        self.out.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.out.flush()


def stdin_is_a_stream(fd: int = 0) -> bool:
    """Whether the prelude can serve on `fd`: a pipe or a socket on a POSIX system (what editors give a server)."""
    if os.name != "posix":
        return False
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def configure_process() -> None:
    """What a server process sets once, prelude or not: its log lines on stderr, the interpreter lock's switch
    interval (GIL_SWITCH_S), and malloc's mmap threshold (`lsp_server.heap.tune_malloc`)."""
    logging.basicConfig(level=logging.WARNING, format="nextword: %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    sys.setswitchinterval(GIL_SWITCH_S)
    tune_malloc()


def serve(
    tcp: bool = False, host: str = "127.0.0.1", port: int = 2087, db: str | None = None, empty_store: bool = False
) -> None:
    """`nextword serve`: the prelude on stdio (when stdin is a pipe or a socket), then the server."""
    configure_process()
    handover = None
    if not tcp and stdin_is_a_stream():
        handover = Prelude(db, empty_store).run()
        if handover.completions:
            log.info(
                "answered %d completions in the first %.2f s, before the LSP library was loaded",
                handover.completions,
                handover.seconds,
            )
    from lsp_server.server import main

    main(tcp=tcp, host=host, port=port, db=db, empty_store=empty_store, handover=handover)
