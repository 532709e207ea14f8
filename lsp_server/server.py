"""The nextword language server (pygls): thin handlers that turn LSP requests into Engine calls.

Model work never runs on the event loop: requests a person waits for (completion, inline completion, hover) run on
one thread, background work (diagnostics, learning, commands) on another, and reads use their own SQLite connection,
so a learn never delays a key press. A completion request that a newer one for the same document has superseded by
the time its turn comes is answered as cancelled, not computed. Every handler catches
what goes wrong with its input, logs it, and answers empty: the server never dies on a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError, JsonRpcInvalidParams, JsonRpcRequestCancelled
from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import JsonRPCNotification, RPCNotification, RPCRequest

from lsp_server import completing
from lsp_server.completing import CursorProse
from lsp_server.framing import PipeReader, PrefixedStream, ResyncingStdin
from lsp_server.heap import HeapTrimmer
from lsp_server.paths import DEFAULT_NEURAL, personal_neural_path
from lsp_server.positions import LineIndex, offset_at, position_at
from lsp_server.prelude import Handover, configure_process, open_engine, server_version
from lsp_server.settings import Settings, parse_settings
from store.errors import StoreError, UnknownSourceError

if TYPE_CHECKING:
    from lm_core.oddities import OddityConfig
    from lsp_server.engine import Completion, Engine
    from store.countstore import LearnResult

# The language model (numpy, the store, the tokenizer) is imported when the engine opens, after `initialize` has
# been answered (on the interactive thread, see `start_warm_up`), never on the way to it: see bench/startup.py. So
# are the ignore rules (pathspec) and the credential detectors, which only learning needs.
log = logging.getLogger("nextword")
T = TypeVar("T")

PERPLEXITY_NOTIFICATION = "nextword/perplexity"
SOURCE = "nextword"
ODD_WORD = "odd-word"
WARM_ODDITIES_S = 3.0  # seconds after initialization that the oddity tables are loaded (unless a check needs them)
PERPLEXITY = "perplexity"
COMMANDS = {
    "learn_workspace": "nextword.learnWorkspace",
    "forget_document": "nextword.forgetDocument",
    "pause_learning": "nextword.pauseLearning",
    "resume_learning": "nextword.resumeLearning",
    "statistics": "nextword.statistics",
    "ignore_word": "nextword.ignoreWord",
    "retrain_neural": "nextword.retrainNeural",
}
RETRAIN_EPOCHS = 3  # nextword.retrainNeural's defaults: passes over the learned documents ...
RETRAIN_MINUTES = 5.0  # ... and its time budget
RETRAIN_MAX_EPOCHS = 1000  # the most a client may ask for: a bound against typos, far beyond any useful run ...
RETRAIN_MAX_MINUTES = 24 * 60  # ... and a day's budget: a longer run belongs to `nextword train-neural`
RETRAIN_LOG_EVERY = 5  # steps between $/progress reports: the learned documents make few steps per epoch
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".tex", ".text"}
INTERACTIVE_THREAD = "nextword-interactive"  # the thread completions and hovers run on (see NextwordServer.run)
YIELD_MAX_S = 0.25  # how long paused background work waits at most at one yield point (a stream of completions
# cannot starve it)
BACKGROUND_NICE = 10  # niceness added to the background and training threads (see `lower_thread_priority`)
LEARN_PAUSE_S = 0.3  # saved documents are learned once typing has paused this long (no completion or hover) ...
LEARN_WAIT_MAX_S = 3.0  # ... or at the latest this long after the first of them was saved, in one learn
EXIT_LEARN_S = 10.0  # at exit, saved documents not learned yet are learned for at most this long
CHECKPOINT_IDLE_S = 1.0  # the write-ahead log is checkpointed once learning has been quiet this long ...
CHECKPOINT_EVERY_FILES = 25  # ... and every this many files while the workspace is learned


IGNORED = "$/nextword/ignoredMessage"


def lower_thread_priority() -> None:
    """Lower the calling thread's scheduling priority by BACKGROUND_NICE steps of niceness (Linux schedules
    threads on their own): where the cores are busy (2 cores, the editor, the client), a learn's SQLite writes and
    numpy work, which run without the interpreter lock, take a core from a completion only when it is free.
    Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + BACKGROUND_NICE))
    except OSError:  # not allowed here (a sandbox): the thread keeps its priority
        log.debug("could not lower the background thread's priority")


_MESSAGE_KINDS: dict[type, str] = {}  # message class -> "request", "notification" or "other" (`_message_kind`)


def _message_kind(message: Any) -> str:
    """What pygls' `handle_message` would take `message` for: "request" or "notification" (the attributes its
    protocols name; attrs classes have them by class), "other" for responses and errors."""
    if isinstance(message, RPCRequest):
        return "request"
    if isinstance(message, RPCNotification):
        return "notification"
    return "other"


class NextwordProtocol(LanguageServerProtocol):
    """pygls' protocol, but a message whose params cannot be read gets an error response (requests) or a log
    line (notifications), instead of no response and an error pop-up in the editor; the future pygls files
    for each notification it handles is forgotten once done; and a request the prelude answered already
    (`lsp_server.prelude`, read again so that pygls sets itself up) is not answered twice."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answered_early: set[Any] = set()  # ids of requests the prelude answered that pygls reads again

    def _send_response(self, msg_id: Any, result: Any = None, error: Any = None) -> None:
        if msg_id in self.answered_early:
            self.answered_early.discard(msg_id)
            return
        if error is None and type(result) is dict:
            # an answer already made JSON (completions, `lsp_server.completing`): written as it is, the same text
            # but without cattrs walking every item of it (~0.1 ms a completion)
            self._result_types.pop(msg_id, None)
            self._send_data({"id": msg_id, "jsonrpc": self.VERSION, "result": result})
            return
        super()._send_response(msg_id, result, error)

    def handle_message(self, message: Any) -> None:
        """pygls' `handle_message`, but a message's kind (request, notification, response) is found once per
        message class instead of with three `isinstance` checks against pygls' runtime-checkable protocols per
        message (~30 us each on a keystroke's two or three messages)."""
        kind = _MESSAGE_KINDS.get(type(message))
        if kind is None:
            kind = _MESSAGE_KINDS[type(message)] = _message_kind(message)
        if kind == "other" or message.jsonrpc != self.VERSION or (self._shutdown and message.method != "exit"):
            super().handle_message(message)  # pygls logs these and answers nothing
            return
        ctx = contextvars.copy_context()  # each handler within its own context, as pygls runs it
        if kind == "request":
            ctx.run(self._handle_request, message.id, message.method, message.params)
        else:
            ctx.run(self._handle_notification, message.method, message.params)

    def _handle_notification(self, method_name: str, params: Any) -> None:
        """pygls (2.1) files a future under a fresh id for every notification whose handler is a coroutine or a
        generator (didOpen, didChange and didClose are) and never removes it: one future with its lock and
        condition for every keystroke of a session, ~0.4 MB a document typed. Each new one goes when it is done."""
        pending = set(self._request_futures)
        super()._handle_notification(method_name, params)
        loop = asyncio.get_running_loop()  # messages are handled on the event loop's thread

        def forget(msg_id: Any) -> Callable[[Any], None]:
            return lambda _done: loop.call_soon_threadsafe(self._request_futures.pop, msg_id, None)

        for msg_id in set(self._request_futures) - pending:
            self._request_futures[msg_id].add_done_callback(forget(msg_id))

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except (JsonRpcInvalidParams, JsonRpcInternalError):
            method = data.get("method", "?")
            if "id" in data and "method" in data:
                log.warning("answering %s with an error: its params could not be read", method)
                error = JsonRpcInvalidParams(f"invalid params for {method}")
                self._send_response(data["id"], error=error.to_response_error())
            else:
                log.warning("ignoring %s: its params could not be read", method)
            return JsonRPCNotification(method=IGNORED, jsonrpc="2.0", params=None)


class NextwordServer(LanguageServer):
    """Server state: settings, the engine (opened lazily), per-document tasks and request generations."""

    def __init__(self, db: str | None = None, empty_store: bool = False) -> None:
        super().__init__("nextword", server_version(), protocol_cls=NextwordProtocol)
        self.settings = Settings(database=db)
        self.empty_store = empty_store  # a store not there yet starts empty (serve --empty-store), not seeded
        self.interactive = ThreadPoolExecutor(max_workers=1, thread_name_prefix=INTERACTIVE_THREAD)
        self.background = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="nextword-background", initializer=lower_thread_priority
        )
        self.training = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="nextword-training", initializer=lower_thread_priority
        )
        self.heap = HeapTrimmer()
        self.initialized = False  # the neural model is loaded only after initialization
        self.retraining = False
        self.neural_task: asyncio.Future[None] | None = None
        self._engine_lock = threading.Lock()
        self._engine: Engine | None = None
        self._adoptable: tuple[Engine, str | None] | None = None  # the prelude's Engine and the store setting
        self.learning_paused = False
        self.ignored: set[str] = set()
        self.diagnostic_tasks: dict[str, asyncio.Task[None]] = {}
        self.learn_tasks: dict[str, asyncio.Task[None]] = {}
        self.saved_text: dict[str, str] = {}  # the text of a save whose learn has not finished yet, by URI
        # documents waiting to be learned together (`learn_together`): URI -> (text, the future its learn awaits)
        self.learn_batch: dict[str, tuple[str, asyncio.Future[LearnResult]]] = {}
        self.learn_batch_since: float | None = None  # when the first of them joined
        self.learner_task: asyncio.Task[None] | None = None
        self.last_interactive = -float("inf")  # time.monotonic() when a request a person waits for last ran
        self.completion_generation: dict[str, int] = {}
        self.checkpoint_task: asyncio.Task[None] | None = None
        self._waiting = 0  # requests a person waits for (completion, hover) in flight; background work yields to them
        self._quiet = threading.Condition()  # notified when none is in flight any more
        self.warm_up: Future[None] | None = None  # loading what the first completion needs (start_warm_up)

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Log what went wrong; only errors of the server's own making reach the user, never bad input."""
        if isinstance(error, JsonRpcRequestCancelled):
            return
        if source is JsonRpcException or isinstance(error, JsonRpcException | ValueError):
            # what the client sent could not be read as a message (pygls reports those with this source)
            log.warning("bad message from the client: %s", error)
            return
        log.error("internal error: %r", error)
        super().report_server_error(error, source)

    # --- the engine, on its own thread -----------------------------------------------------------------------
    def engine(self) -> Engine:
        """The Engine (opened on first use). Raises StoreError if the store cannot be opened. A store that is not
        there yet is made from the shipped model, as the CLI makes it (empty with `empty_store`); the user is told
        once, when it is made."""
        with self._engine_lock:
            if self._engine is None:
                adopted = self._adopt()
                engine = adopted or open_engine(self.settings, self.empty_store)
                engine.yield_point = self.yield_to_waiting
                self._engine = engine
                note = None if adopted else engine.seeded_note()  # the prelude said it
                if note:
                    self.message(note, types.MessageType.Info)
            return self._engine

    def _adopt(self) -> Engine | None:
        """The Engine the prelude opened (`take_over`), when it opened the store the settings name now (the budget
        of its caches follows the settings); else None, and it is closed."""
        adoptable, self._adoptable = self._adoptable, None
        if adoptable is None:
            return None
        engine, database = adoptable
        if database != self.settings.database:
            engine.close()
            return None
        engine.set_cache_budget(self.settings.cache_megabytes * 2**20)
        return engine

    def take_over(self, handover: Handover) -> None:
        """Take over from the prelude (`lsp_server.prelude`): its Engine, to be used when the settings name its
        store, and the requests it answered that pygls reads again, whose answers pygls must not send again."""
        self.protocol.answered_early.update(handover.replayed)
        if handover.engine is not None:
            with self._engine_lock:
                self._adoptable = (handover.engine, handover.database)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Run work a person is waiting for (completion, hover) on the interactive thread; background work (learning,
        checking) pauses at its next yield point until it is done (`yield_to_waiting`)."""
        self.waiting += 1
        self.last_interactive = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.interactive, work, *args)
        finally:
            self.waiting -= 1
            self.last_interactive = time.monotonic()

    @property
    def waiting(self) -> int:
        """How many requests a person waits for (completion, hover) are in flight."""
        return self._waiting

    @waiting.setter
    def waiting(self, count: int) -> None:
        with self._quiet:
            self._waiting = count
            if count == 0:
                self._quiet.notify_all()

    def start_warm_up(self) -> Future[None]:
        """Load what the first completion needs (the model's modules, the store, its vocabulary and unigrams) on the
        interactive thread, once, from `initialize` on: while the client reads the answer and opens its documents.
        The background thread starts its work (checks, adaptation, the neural model) only once this is done, so
        nothing competes with it for the interpreter lock (bench/startup.py)."""
        if self.warm_up is None:
            self.warm_up = self.interactive.submit(_warm_up, self)
            self.background.submit(futures.wait, [self.warm_up])
        return self.warm_up

    def yield_to_waiting(self) -> None:
        """The Engine's yield point, on the background thread: block (the interpreter lock free, no polling that
        would take it back from the completion) while a request a person waits for is in flight, at most
        YIELD_MAX_S, so that a learn never holds up the completion typed right after a save."""
        if threading.current_thread().name.startswith(INTERACTIVE_THREAD):
            return  # the work a person waits for never waits for itself
        with self._quiet:
            self._quiet.wait_for(lambda: not self._waiting, timeout=YIELD_MAX_S)

    def serve_stdio(self, handover: Handover | None = None) -> None:
        """Serve over stdin / stdout until the client says exit or the input ends (pygls' `start_io`, with the
        event loop reading stdin itself: see `lsp_server.framing`), after the prelude's `handover` if any: its
        pending bytes are read first."""
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
        if handover is not None:
            self.take_over(handover)
        runner = asyncio.Runner()
        try:
            runner.run(self._read_stdio(handover.pending if handover else b""))
        except BrokenPipeError:
            log.error("the client closed the connection")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            saved = dict(self.saved_text)  # saves not learned yet, taken before closing cancels their tasks
            runner.close()
            learn_saved_at_exit(self, saved)
            self.shutdown()

    async def _read_stdio(self, pending: bytes = b"") -> None:
        reader: PipeReader | StdinAsyncReader | None = await PipeReader.of_pipe(sys.stdin.buffer, pending)
        if reader is None:
            stdin = ResyncingStdin(PrefixedStream(pending, sys.stdin.buffer))
            reader = StdinAsyncReader(stdin, self.thread_pool)  # type: ignore[arg-type]
        assert self._stop_event is not None
        await run_async(self._stop_event, reader, self.protocol, log, self.report_server_error)

    async def run_background(self, work: Callable[..., T], *args: Any) -> T:
        """Run diagnostics, learning and commands on the background thread; then give the heap memory they freed
        back to the system (`lsp_server.heap`, at most every few seconds)."""
        return await asyncio.get_running_loop().run_in_executor(self.background, self._then_trim, work, args)

    def _then_trim(self, work: Callable[..., T], args: tuple[Any, ...]) -> T:
        started = time.monotonic()
        try:
            return work(*args)
        finally:
            self.heap.trim_if_due(after_s=time.monotonic() - started)

    def reopen(self) -> None:
        """Close the engine so the next use opens the store named by the settings."""
        with self._engine_lock:
            if self._adoptable is not None:
                self._adoptable[0].close()
                self._adoptable = None
            if self._engine is not None:
                self._engine.close()
            self._engine = None

    # --- documents --------------------------------------------------------------------------------------------
    def is_open(self, uri: str) -> bool:
        documents = self.workspace.text_documents
        return unquote(uri) in documents or uri in documents

    def open_document(self, uri: str) -> Any | None:
        """The open document at `uri`, or None (logged) for a document the client never opened."""
        document = self.workspace.text_documents.get(unquote(uri)) or self.workspace.text_documents.get(uri)
        if document is None:
            log.warning("request for a document that is not open: %s", uri)
        return document

    def prose(self, document: Any, cursor: int | None = None) -> str | None:
        """The document's text as nextword should read it (`lsp_server.completing.prose`)."""
        return completing.prose(getattr(document, "language_id", None), document.source, self.settings, cursor)

    def encoding(self) -> str:
        """The position encoding agreed with the client: "utf-8", "utf-16" (the LSP default) or "utf-32"."""
        negotiated = getattr(self.server_capabilities, "position_encoding", None)
        value = getattr(negotiated, "value", negotiated) or "utf-16"
        return str(value).lower()

    def diagnose_open_documents(self) -> None:
        """Check every open document again now (the model, the settings or the ignored words changed)."""
        for uri in list(self.workspace.text_documents):
            schedule_diagnostics(self, uri, delay=0)

    def log_to_client(self, text: str) -> None:
        """An informational line in the editor's log for the server (window/logMessage), not a pop-up."""
        log.info(text)
        self.window_log_message(types.LogMessageParams(type=types.MessageType.Info, message=text))

    def message(self, text: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=text))

    def apply_settings(self, raw: Any) -> None:
        old = self.settings
        self.settings, problems = parse_settings(raw, self.settings)
        for problem in problems:
            log.warning(problem)
            self.message(problem)
        if self.settings.database != old.database:
            self.background.submit(self.reopen)
        elif self.settings.cache_megabytes != old.cache_megabytes and self._engine is not None:
            budget = self.settings.cache_megabytes * 2**20
            self.background.submit(lambda: self.engine().set_cache_budget(budget))
        neural = ("database", "neural_model", "blend_weight")
        if self.initialized and any(getattr(self.settings, k) != getattr(old, k) for k in neural):
            schedule_neural(self)
        if self.initialized and (self.settings.adaptation, self.settings.database) != (old.adaptation, old.database):
            self.background.submit(_set_adaptation, self)


server = NextwordServer()


# --- lifecycle and configuration -------------------------------------------------------------------------------
@server.feature(types.INITIALIZE)
def initialize(ls: NextwordServer, params: types.InitializeParams) -> None:
    ls.apply_settings(params.initialization_options)
    ls.start_warm_up()


@server.feature(types.INITIALIZED)
def initialized(ls: NextwordServer, params: types.InitializedParams) -> None:
    warm_up = ls.start_warm_up()
    # the inflection table and the spelling index (under a second of Python), after the first completions had the GIL
    asyncio.get_running_loop().call_later(WARM_ODDITIES_S, ls.background.submit, _warm_oddities, ls)
    ls.initialized = True
    schedule_neural(ls, after=asyncio.wrap_future(warm_up))
    ls.background.submit(_set_adaptation, ls)


def _set_adaptation(ls: NextwordServer) -> None:
    """Turn the adaptive mixture on or off as the `adaptation` setting says (on the background thread: building
    the user layer takes seconds for a large store); an imported ARPA model has nothing learned to adapt to."""
    try:
        engine = ls.engine()
        if ls.settings.adaptation:
            engine.enable_adaptation()  # an imported ARPA model has nothing learned: it stays off
        else:
            engine.disable_adaptation()
        ls.interactive.submit(_settle, ls)
    except StoreError as exc:
        log.warning("no adaptation: the store cannot be opened: %s", exc)
    except Exception:  # never kill the server from a background task
        log.exception("enabling adaptation failed")


def schedule_neural(ls: NextwordServer, after: asyncio.Future[Any] | None = None) -> None:
    """Attach the neural model the `neuralModel` setting picks (or detach, when it picks none) on the background
    thread; until it is ready, completions come from the n-gram model (torch is imported there, never on the way to
    a completion)."""
    ls.neural_task = asyncio.ensure_future(_load_neural(ls, after))


async def _load_neural(ls: NextwordServer, after: asyncio.Future[Any] | None = None) -> None:
    if after is not None:  # at start-up, the n-gram model first: importing torch would slow the first completion
        await after
    setting, weight = ls.settings.neural_model, ls.settings.blend_weight
    chosen_by_us = setting.strip().lower() == DEFAULT_NEURAL
    try:
        changed = await ls.run_background(lambda: ls.engine().use_neural(setting, weight))
    except StoreError as exc:
        log.warning("no neural model: the store cannot be opened: %s", exc)
        return
    except Exception as exc:  # CheckpointError (one line), or numpy failing
        log.warning("neural model %r not loaded: %s", setting, exc)
        if not chosen_by_us:  # the user named it: say so; the default quietly stays on the n-gram model
            ls.message(f"nextword stays on the n-gram model: {exc}")
        return
    if changed:
        path = ls.engine().neural_path
        log.info("neural model %s", f"{path} attached" if path else "detached")
        ls.interactive.submit(_settle, ls)
        ls.diagnose_open_documents()


def _warm_up(ls: NextwordServer) -> None:
    """Suggest once at a sentence start: opens the store and loads what suggesting reads (the unigrams, the word
    lists and, with adaptation on, the mixture's alignments), so the person's first completion finds them."""
    try:
        ls.engine().next_words(("<s>",), ls.settings.suggestions)
    except StoreError as exc:
        ls.message(f"nextword cannot open its store: {exc}", types.MessageType.Error)
    except Exception:  # never kill the server from a background task
        log.exception("warm-up failed")


def _settle(ls: NextwordServer) -> None:
    """On the interactive thread, once the suggesting model has changed (the neural model attached, adaptation
    turned on): suggest once (`_warm_up`: that thread's own network state and mixture are made now, not in the
    person's next completion), then move every object alive into the collector's permanent generation
    (`gc.freeze`): the model's tables are millions of objects that never become garbage, and a full collection
    that walks them stalls a completion by tens of milliseconds."""
    _warm_up(ls)
    gc.freeze()


def _warm_oddities(ls: NextwordServer) -> None:
    try:
        from lm_core import corrections

        corrections.warm()
        ls.engine().oddity_vocabulary()
        gc.freeze()  # as `_settle`: the tables just made never become garbage, and full collections walking them
        # took ~40 ms of a re-check after a one-word edit (60 against 20 ms) and ~0.3 s of a cold check of 5,000 words
    except StoreError:
        pass  # said by the warm-up of the interactive thread
    except Exception:  # never kill the server from a background task
        log.exception("warming the oddity tables failed")


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: NextwordServer, params: types.DidChangeConfigurationParams) -> None:
    ls.apply_settings(params.settings)
    ls.diagnose_open_documents()


# --- document events -----------------------------------------------------------------------------------------
@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: NextwordServer, params: types.DidOpenTextDocumentParams) -> None:
    schedule_diagnostics(ls, params.text_document.uri, delay=0)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: NextwordServer, params: types.DidSaveTextDocumentParams) -> None:
    uri = params.text_document.uri
    document = ls.open_document(uri)
    saved = None if document is None else ls.prose(document)
    schedule_learning(ls, uri, delay=0, text=saved)  # the saved text: learned even if the document closes first


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: NextwordServer, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    schedule_diagnostics(ls, uri)
    if ls.settings.learn_on_change:
        schedule_learning(ls, uri, delay=ls.settings.debounce_ms / 1000)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: NextwordServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    cancel_task(ls.diagnostic_tasks, uri)
    if uri not in ls.saved_text:  # a learn after a save goes on (it has its text); a debounced one is dropped
        cancel_learning(ls, uri)
    ls.completion_generation.pop(uri, None)
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


def cancel_task(tasks: dict[str, asyncio.Task[None]], uri: str) -> None:
    """Cancel and forget the pending task (debounced diagnostics or learning) of one document, if any."""
    task = tasks.pop(uri, None)
    if task is not None:
        task.cancel()


def cancel_learning(ls: NextwordServer, uri: str) -> None:
    """Cancel the document's pending learn, if any, and forget the saved text it was to learn."""
    cancel_task(ls.learn_tasks, uri)
    ls.saved_text.pop(uri, None)


def schedule_learning(ls: NextwordServer, uri: str, delay: float, text: str | None = None) -> None:
    """Learn the document (replacing what it contributed before) after `delay` seconds, unless paused: `text` if
    given (the text as saved), else the open document's text then."""
    if not ls.settings.learning or ls.learning_paused:
        return
    cancel_learning(ls, uri)
    if text is not None:
        ls.saved_text[uri] = text
    ls.learn_tasks[uri] = asyncio.ensure_future(_learn_later(ls, uri, delay))


@contextlib.contextmanager
def _guarded(ls: NextwordServer, told: str, logged: str) -> Iterator[None]:
    """Background work that never kills the server: cancelled quietly; a store that cannot be used is told to the
    user (`told`: the error follows); anything else is logged (`logged`, with its traceback)."""
    try:
        yield
    except asyncio.CancelledError:
        pass
    except StoreError as exc:
        ls.message(f"{told}: {exc}")
    except Exception:
        log.exception(logged)


async def _learn_later(ls: NextwordServer, uri: str, delay: float) -> None:
    try:
        with _guarded(ls, f"nextword could not learn {uri}", f"learning {uri} failed"):
            await asyncio.sleep(delay)
            text = ls.saved_text.get(uri)
            if text is None:
                document = ls.open_document(uri)
                text = None if document is None else ls.prose(document)
            if text is None or not _may_learn(ls, uri, text):
                return
            await learn_together(ls, uri, text)
            schedule_checkpoint(ls)
            if ls.is_open(uri):
                schedule_diagnostics(ls, uri, delay=0)
    finally:
        if ls.learn_tasks.get(uri) is asyncio.current_task():  # done, and not replaced by a newer learn of it
            ls.learn_tasks.pop(uri, None)
            ls.saved_text.pop(uri, None)


def _may_learn(ls: NextwordServer, uri: str, text: str) -> bool:
    """Whether `text` of the document at `uri` is learned now (learning not paused, the document not excluded, not
    over maxDocumentChars); says why not in the log."""
    if ls.learning_paused:
        return False
    reason = _never_learned(ls, uri)
    if reason is not None:
        log.info("not learning %s: %s", uri, reason)
        return False
    if len(text) > ls.settings.max_document_chars:
        ls.log_to_client(f"not learning {uri}: {len(text):,} characters is over maxDocumentChars")
        return False
    return True


def _learn_now(ls: NextwordServer, uri: str, text: str) -> LearnResult:
    """Learn `text` as the document `uri` (on the background thread)."""
    result = ls.engine().learn(uri, text)
    log.info("learned %s: %d tokens, %d n-gram counts changed", uri, result.tokens, result.changed_ngrams)
    return result


async def learn_together(ls: NextwordServer, uri: str, text: str) -> LearnResult:
    """Learn `text` as the document `uri` with the other documents saved meanwhile, in one learn
    (`Engine.learn_many`: one count update, one commit, one warm-up), once typing pauses for LEARN_PAUSE_S (no
    completion or hover in flight or answered within it) or LEARN_WAIT_MAX_S after the first of them was saved.
    A person who saves while typing on never meets a learn's work between two keystrokes once a document: the
    tables every suggestion derives from the counts change once a batch (bench/soak.py). A newer text of the same
    document replaces the one waiting; cancelled (the document closed unsaved, learning paused, the document
    forgotten), it leaves the batch unless the batch's learn has begun."""
    future: asyncio.Future[LearnResult] = asyncio.get_running_loop().create_future()
    waiting = ls.learn_batch.get(uri)
    if waiting is not None:
        waiting[1].cancel()
    ls.learn_batch[uri] = (text, future)
    if ls.learn_batch_since is None:
        ls.learn_batch_since = time.monotonic()
    if ls.learner_task is None or ls.learner_task.done():
        ls.learner_task = asyncio.ensure_future(_learn_batches(ls))
    try:
        return await future
    finally:
        if future.cancelled() and ls.learn_batch.get(uri, (None, None))[1] is future:
            del ls.learn_batch[uri]


async def _learn_batches(ls: NextwordServer) -> None:
    """Learn the waiting documents together at the next pause in typing, until none is waiting."""
    while ls.learn_batch:
        await _typing_pause(ls)
        batch = {uri: waiting for uri, waiting in ls.learn_batch.items() if not waiting[1].done()}
        ls.learn_batch, ls.learn_batch_since = {}, None
        if not batch:
            continue
        documents = [(uri, text) for uri, (text, _) in batch.items()]
        try:
            results = await ls.run_background(_learn_batch_now, ls, documents)
        except asyncio.CancelledError:  # shutting down
            for _, future in batch.values():
                future.cancel()
            raise
        except Exception as exc:  # the store cannot be used: each document's task says so
            for _, future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            continue
        for (_, future), result in zip(batch.values(), results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


async def _typing_pause(ls: NextwordServer) -> None:
    """Return once no request a person waits for is in flight and typing has paused LEARN_PAUSE_S, or the first
    waiting document has waited LEARN_WAIT_MAX_S."""
    while True:
        now = time.monotonic()
        idle = now - ls.last_interactive
        waited = now - (ls.learn_batch_since if ls.learn_batch_since is not None else now)
        if not ls.waiting and (idle >= LEARN_PAUSE_S or waited >= LEARN_WAIT_MAX_S):
            return
        await asyncio.sleep(max(0.005, min(LEARN_PAUSE_S - idle, LEARN_WAIT_MAX_S - waited)))


def _learn_batch_now(ls: NextwordServer, documents: list[tuple[str, str]]) -> list[LearnResult | Exception]:
    """Learn the documents (URI, text) together (on the background thread); where that fails for a reason other
    than the store (which fails them all), each one alone, its own error in its place."""
    engine = ls.engine()
    try:
        results: list[LearnResult | Exception] = list(engine.learn_many(documents))
    except StoreError:
        raise
    except Exception:
        if len(documents) == 1:
            raise
        log.exception("learning %d documents together failed; learning them one at a time", len(documents))
        results = []
        for uri, text in documents:
            try:
                results.append(engine.learn(uri, text))
            except Exception as exc:  # this document's own error, for its task to report
                results.append(exc)
    for (uri, _), result in zip(documents, results, strict=True):
        if not isinstance(result, Exception):
            log.info("learned %s: %d tokens (%d documents together)", uri, result.tokens, len(documents))
    return results


def learn_saved_at_exit(ls: NextwordServer, saved: dict[str, str]) -> None:
    """Learn the saved documents whose learn had not finished when the event loop stopped (a save right before the
    editor quits; their tasks went with the loop), on the background thread, for at most EXIT_LEARN_S. A learn
    that was running then finishes first; the same text learned again changes nothing."""
    jobs = [ls.background.submit(_learn_now, ls, uri, text) for uri, text in saved.items() if _may_learn(ls, uri, text)]
    done, late = futures.wait(jobs, timeout=EXIT_LEARN_S)
    for job in done:
        if job.exception() is not None:
            log.error("learning a saved document at exit failed: %r", job.exception())
    if late:
        log.warning("%d saved documents were not learned: exit came first", len(late))


def schedule_checkpoint(ls: NextwordServer, delay: float = CHECKPOINT_IDLE_S) -> None:
    """Checkpoint the store's write-ahead log on the background thread once no learn has come for `delay` seconds
    (the store defers checkpoints, so no learn pays for one; see `CountStore.defer_checkpoints`)."""
    if ls.checkpoint_task is not None:
        ls.checkpoint_task.cancel()
    ls.checkpoint_task = asyncio.ensure_future(_checkpoint_later(ls, delay))


async def _checkpoint_later(ls: NextwordServer, delay: float) -> None:
    try:
        await asyncio.sleep(delay)
        await ls.run_background(_checkpoint, ls)
    except asyncio.CancelledError:
        pass


def _checkpoint(ls: NextwordServer) -> None:
    try:
        ls.engine().checkpoint()
    except Exception:  # a checkpoint that cannot run now runs next time; never kill the server for it
        log.exception("checkpoint failed")
    ls.heap.trim_now()


# --- diagnostics -----------------------------------------------------------------------------------------------
def schedule_diagnostics(ls: NextwordServer, uri: str, delay: float | None = None) -> None:
    """Recompute the document's diagnostics after a quiet period (debounced per document)."""
    cancel_task(ls.diagnostic_tasks, uri)
    wait = ls.settings.debounce_ms / 1000 if delay is None else delay
    ls.diagnostic_tasks[uri] = asyncio.ensure_future(_diagnose_later(ls, uri, wait))


async def _diagnose_later(ls: NextwordServer, uri: str, delay: float) -> None:
    with _guarded(ls, f"nextword cannot check {uri}", f"diagnostics for {uri} failed"):
        await asyncio.sleep(delay)
        document = ls.open_document(uri)
        if document is None:  # closed meanwhile (e.g. a learn finished after the close): nothing of it stays
            ls.diagnostic_tasks.pop(uri, None)
            return
        text, version = ls.prose(document), document.version
        if text is None:
            ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
            return
        if len(text) > ls.settings.max_document_chars:
            ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
            ls.log_to_client(f"no diagnostics for {uri}: {len(text):,} characters is over maxDocumentChars")
            return
        settings = ls.settings
        ignored = frozenset(ls.ignored | {w.casefold() for w in settings.ignored_words})
        # the oddity detector's modules are imported on the background thread, never on the event loop's
        check = await ls.run_background(lambda: ls.engine().check(text, oddity_config(settings), ignored))
        diagnostics = build_diagnostics(text, check, settings, ls.encoding())
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=version)
        )
        perplexity = None if math.isnan(check.perplexity) else round(check.perplexity, 2)
        ls.protocol.notify(PERPLEXITY_NOTIFICATION, {"uri": uri, "perplexity": perplexity, "tokens": check.tokens})


def oddity_config(settings: Settings) -> OddityConfig:
    """The oddity detector's configuration from the server's settings (threshold and kinds)."""
    from lm_core.oddities import OddityConfig

    return OddityConfig(threshold_bits=settings.oddity_threshold, kinds=frozenset(settings.oddity_kinds))


def build_diagnostics(text: str, check: Any, settings: Settings, encoding: str) -> list[types.Diagnostic]:
    """The perplexity diagnostic (if enabled) and one diagnostic per odd word, alternatives in `data`."""
    index = LineIndex(text, encoding)
    diagnostics: list[types.Diagnostic] = []
    if settings.perplexity_diagnostic and check.tokens:
        diagnostics.append(
            types.Diagnostic(
                range=index.range(0, 0),
                message=f"Perplexity {check.perplexity:.1f} over {check.tokens} tokens",
                severity=types.DiagnosticSeverity.Information,
                source=SOURCE,
                code=PERPLEXITY,
                data={"perplexity": check.perplexity, "tokens": check.tokens},
            )
        )
    for odd in check.oddities:
        alternatives = [a for a, _ in odd.alternatives]
        shown = ", ".join(repr(a) if a else "(remove it)" for a in alternatives)
        diagnostics.append(
            types.Diagnostic(
                range=index.range(odd.start, odd.end),
                message=f"'{odd.word}' reads oddly here; likelier: {shown}",
                severity=types.DiagnosticSeverity.Warning,
                source=SOURCE,
                code=ODD_WORD,
                data={
                    "word": odd.word,
                    "alternatives": alternatives,
                    "gain_bits": [round(g, 2) for _, g in odd.alternatives],
                    "surprisal_bits": None if math.isinf(odd.surprisal) else round(odd.surprisal, 2),
                    "kinds": list(odd.kinds),
                    "reasons": list(odd.reasons),
                },
            )
        )
    return diagnostics


# --- completion --------------------------------------------------------------------------------------------------
@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[" "]))
async def completion(ls: NextwordServer, params: types.CompletionParams) -> dict[str, Any] | None:
    """The next words at the cursor (`lsp_server.completing.completion_list`, a CompletionList as JSON)."""
    uri = params.text_document.uri
    generation = ls.completion_generation.get(uri, 0) + 1
    ls.completion_generation[uri] = generation
    await asyncio.sleep(0)  # let requests already read (a newer completion, a $/cancelRequest) take effect first
    if ls.completion_generation.get(uri) != generation:
        raise JsonRpcRequestCancelled("superseded by a newer completion request")
    at = _cursor_prose(ls, ls.open_document(uri), params.position)
    if at is None:
        return None
    k = ls.settings.suggestions

    def work() -> Completion:
        if ls.completion_generation.get(uri) != generation:
            raise JsonRpcRequestCancelled("superseded by a newer completion request")
        return ls.engine().complete_at(at.text, at.offset, k)

    result = await _complete(ls, work)
    return None if result is None else completing.completion_list(result, at)


def _cursor_prose(ls: NextwordServer, document: Any | None, position: types.Position) -> CursorProse | None:
    """The prose at `position` of an open `document`; None when there is no document or no prose there."""
    if document is None:
        return None
    language = getattr(document, "language_id", None)
    return completing.cursor_prose(
        language, document.source, position.line, position.character, ls.encoding(), ls.settings
    )


async def _complete(ls: NextwordServer, work: Callable[[], T]) -> T | None:
    """Run completion work on the interactive thread; None (the user told) when the store cannot be read."""
    try:
        return await ls.run(work)
    except StoreError as exc:
        ls.message(f"nextword cannot complete: {exc}")
        return None


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(ls: NextwordServer, params: types.InlineCompletionParams) -> dict[str, Any] | None:
    """The words that most likely come next, as ghost text (an InlineCompletionList as JSON)."""
    if not ls.settings.inline_completion:
        return None
    at = _cursor_prose(ls, ls.open_document(params.text_document.uri), params.position)
    if at is None:
        return None
    max_words = ls.settings.inline_max_words

    def work() -> dict[str, Any]:
        return completing.inline_completion_list(ls.engine().continue_at(at.text, at.offset, max_words), at)

    return await _complete(ls, work)


# --- hover and code actions -----------------------------------------------------------------------------------
@server.feature(types.TEXT_DOCUMENT_HOVER)
async def hover(ls: NextwordServer, params: types.HoverParams) -> types.Hover | None:
    document = ls.open_document(params.text_document.uri)
    if document is None:
        return None
    offset = offset_at(document.source, params.position, ls.encoding())
    text = ls.prose(document, offset)
    if text is None:
        return None
    settings = ls.settings
    ignored = frozenset(ls.ignored | {w.casefold() for w in settings.ignored_words})
    info = await ls.run(lambda: ls.engine().word_info(text, offset, config=oddity_config(settings)))
    if info is None:
        return None
    alternatives = ", ".join(f"{a.word} ({a.prob:.1%})" for a in info.alternatives)
    value = (
        f"**{info.word}**: surprisal {info.surprisal:.1f} bits (P = {info.prob:.2g})\n\n"
        f"Likelier here: {alternatives or '(none)'}"
    )
    start, end = info.start, info.end
    odd = info.odd
    if odd is not None and not any(w.casefold() in ignored for w in odd.word.split()):
        start, end = odd.start, odd.end
        value = hover_oddity(odd) + "\n\n---\n\n" + value
    encoding = ls.encoding()
    word_range = types.Range(start=position_at(text, start, encoding), end=position_at(text, end, encoding))
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=value), range=word_range)


def hover_oddity(odd: Any) -> str:
    """Why a flagged word reads oddly, in plain words, with what to write instead (Markdown)."""
    lines = [f"**'{odd.word}'** reads oddly here."]
    for (alternative, _), reason in zip(odd.alternatives, odd.reasons, strict=True):
        shown = f"'{alternative}'" if alternative else "(remove it)"
        lines.append(f"- {shown}: {reason}")
    return "\n".join(lines)


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix])
)
def code_action(ls: NextwordServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    uri = params.text_document.uri
    document = ls.open_document(uri)
    actions: list[types.CodeAction] = []
    for diagnostic in params.context.diagnostics:
        if diagnostic.source != SOURCE or diagnostic.code != ODD_WORD or not isinstance(diagnostic.data, dict):
            continue
        word = str(diagnostic.data.get("word", ""))
        kinds = diagnostic.data.get("kinds") or []
        for n, alternative in enumerate(diagnostic.data.get("alternatives", []) or []):
            if not isinstance(alternative, str):
                continue
            edit_range = diagnostic.range
            if alternative == "" and document is not None:
                edit_range = _with_space_before(document.source, diagnostic.range, ls.encoding())
            doubled = (n < len(kinds) and kinds[n] == "doubled") or not kinds  # older diagnostics carry no kinds
            removal = f"Remove the repeated '{word}'" if doubled else f"Remove '{word}'"
            title = f"Replace with '{alternative}'" if alternative else removal
            actions.append(
                types.CodeAction(
                    title=title,
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diagnostic],
                    is_preferred=not actions,
                    edit=types.WorkspaceEdit(changes={uri: [types.TextEdit(range=edit_range, new_text=alternative)]}),
                )
            )
        actions.append(
            types.CodeAction(
                title=f"Ignore '{word}'",
                kind=types.CodeActionKind.QuickFix,
                diagnostics=[diagnostic],
                command=types.Command(title=f"Ignore '{word}'", command=COMMANDS["ignore_word"], arguments=[word]),
            )
        )
    actions.append(
        types.CodeAction(
            title="Forget this document (nextword)",
            kind=types.CodeActionKind.Empty,
            command=types.Command(title="Forget this document", command=COMMANDS["forget_document"], arguments=[uri]),
        )
    )
    return actions


def _with_space_before(text: str, word_range: types.Range, encoding: str) -> types.Range:
    """The range of a word plus the white space before it (removing a doubled word removes one space too)."""
    start = offset_at(text, word_range.start, encoding)
    begin = start
    while begin > 0 and text[begin - 1] in " \t":
        begin -= 1
    return types.Range(start=position_at(text, begin, encoding), end=word_range.end)


# --- commands ----------------------------------------------------------------------------------------------------
class Progress:
    """One `$/progress` of long work that the client may cancel: begun once, reported (from any thread), ended once.
    A client that refuses server-initiated progress gets none, and the work goes on."""

    def __init__(self, ls: NextwordServer, token: str, loop: asyncio.AbstractEventLoop) -> None:
        self.ls, self.token, self.loop = ls, token, loop
        self.loop_thread = threading.get_ident()  # made on the event loop's thread

    @classmethod
    async def begin(cls, ls: NextwordServer, title: str) -> Progress:
        token = str(uuid.uuid4())
        try:
            await ls.work_done_progress.create_async(token)
        except Exception:  # the client does not support server-initiated progress: go on without it
            log.info("client refused window/workDoneProgress/create; %s without progress", title)
        ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(title=title, cancellable=True, percentage=0))
        return cls(ls, token, asyncio.get_running_loop())

    def cancelled(self) -> bool:
        """Whether the client cancelled it (window/workDoneProgress/cancel)."""
        future = self.ls.work_done_progress.tokens.get(self.token)
        return future is not None and future.cancelled()

    def report(self, message: str, percentage: int) -> None:
        """Say how far the work is (percentage 0-100); from another thread, it is sent from the event loop."""
        value = types.WorkDoneProgressReport(message=message, percentage=percentage)
        if threading.get_ident() == self.loop_thread:
            self.ls.work_done_progress.report(self.token, value)
        else:
            self.loop.call_soon_threadsafe(self.ls.work_done_progress.report, self.token, value)

    def end(self, message: str) -> None:
        self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
        self.ls.work_done_progress.tokens.pop(self.token, None)


@server.command(COMMANDS["ignore_word"])
def ignore_word(ls: NextwordServer, *args: Any) -> dict[str, Any]:
    words = [str(a) for a in _flatten(args) if isinstance(a, str) and a]
    ls.ignored.update(w.casefold() for w in words)
    ls.diagnose_open_documents()
    return {"ignored": sorted(ls.ignored)}


@server.command(COMMANDS["pause_learning"])
def pause_learning(ls: NextwordServer, *args: Any) -> dict[str, Any]:
    ls.learning_paused = True
    for uri in list(ls.learn_tasks):
        cancel_learning(ls, uri)
    return {"learning": False}


@server.command(COMMANDS["resume_learning"])
def resume_learning(ls: NextwordServer, *args: Any) -> dict[str, Any]:
    ls.learning_paused = False
    return {"learning": True}


@server.command(COMMANDS["statistics"])
async def statistics(ls: NextwordServer, *args: Any) -> dict[str, Any]:
    stats = await ls.run_background(lambda: ls.engine().stats())
    return {
        **{k: v for k, v in stats.items() if k != "ngrams"},
        "ngrams": {str(n): c for n, c in stats.get("ngrams", {}).items()},  # type: ignore[union-attr]
        "learning": not ls.learning_paused and ls.settings.learning,
        "ignored": sorted(ls.ignored),
    }


@server.command(COMMANDS["forget_document"])
async def forget_document(ls: NextwordServer, *args: Any) -> dict[str, Any]:
    uris = [a for a in _flatten(args) if isinstance(a, str)]
    if not uris:
        raise ValueError("nextword.forgetDocument needs the document's URI")
    uri = uris[0]
    cancel_learning(ls, uri)
    try:
        result = await ls.run_background(lambda: ls.engine().forget(uri))
    except UnknownSourceError:
        return {"uri": uri, "forgotten": False, "changed_ngrams": 0}
    schedule_checkpoint(ls)
    schedule_diagnostics(ls, uri, delay=0)
    return {"uri": uri, "forgotten": True, "changed_ngrams": result.changed_ngrams}


@server.command(COMMANDS["learn_workspace"])
async def learn_workspace(ls: NextwordServer, *args: Any) -> dict[str, Any]:
    """Learn every text file of the workspace folders, with $/progress; cancellable from the client."""
    files = _workspace_text_files(ls)
    progress = await Progress.begin(ls, "nextword: learning the workspace")
    learned = skipped = 0
    cancelled = False
    try:
        for i, path in enumerate(files):
            if progress.cancelled():
                cancelled = True
                break
            try:
                await ls.run_background(lambda p=path: ls.engine().learn_file(p))
                learned += 1
                if learned % CHECKPOINT_EVERY_FILES == 0:
                    await ls.run_background(_checkpoint, ls)
            except StoreError as exc:
                skipped += 1
                log.info("not learned: %s", exc)
            progress.report(path.name, int(100 * (i + 1) / max(len(files), 1)))
    except asyncio.CancelledError:
        cancelled = True
    finally:
        schedule_checkpoint(ls)
        progress.end(f"learned {learned} files" + (" (cancelled)" if cancelled else ""))
    return {"learned": learned, "skipped": skipped, "files": len(files), "cancelled": cancelled}


@server.command(COMMANDS["retrain_neural"])
async def retrain_neural(ls: NextwordServer, *args: Any) -> dict[str, Any]:
    """Fine-tune the attached neural model (or, with none attached, train `lm_core.training.SMALL_MODEL` from
    scratch: a one-layer 128-unit LSTM) on the documents the store has learned, then attach the result.

    Training runs on a thread of its own (diagnostics and learning go on meanwhile) for at most RETRAIN_EPOCHS
    epochs and RETRAIN_MINUTES minutes (an optional argument {"epochs": n, "minutes": m} changes them), with
    $/progress (loss and perplexity) and cancellation (window/workDoneProgress/cancel). The checkpoint is written
    next to the store, as `<store>.neural.pt`. Returns {"status": "finished" | "cancelled" | "failed" | "busy",
    "epochs", "valid_perplexity", "path"} (and "error" when it failed).
    """
    options = next((a for a in _flatten(args) if isinstance(a, dict)), {})
    epochs, minutes = options.get("epochs", RETRAIN_EPOCHS), options.get("minutes", RETRAIN_MINUTES)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= RETRAIN_MAX_EPOCHS:
        raise ValueError(f"nextword.retrainNeural: epochs must be a whole number from 1 to {RETRAIN_MAX_EPOCHS}")
    if not isinstance(minutes, int | float) or isinstance(minutes, bool) or not 0 < minutes <= RETRAIN_MAX_MINUTES:
        raise ValueError(f"nextword.retrainNeural: minutes must be a number above 0, at most {RETRAIN_MAX_MINUTES}")
    if ls.retraining:
        return {"status": "busy", "epochs": 0, "valid_perplexity": None, "path": None}
    ls.retraining = True
    try:
        return await _retrain(ls, epochs, float(minutes))
    finally:
        ls.retraining = False


async def _retrain(ls: NextwordServer, epochs: int, minutes: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    progress = await Progress.begin(ls, "nextword: retraining the neural model")
    cancelled = progress.cancelled

    def report(p: Any) -> None:  # on the training thread
        message = f"epoch {p.epoch}/{p.epochs}: loss {p.loss:.3f}, perplexity {p.perplexity:,.1f}"
        if p.valid_perplexity is not None:
            message += f", valid perplexity {p.valid_perplexity:,.1f}"
        progress.report(message, min(100, int(100 * (p.epoch - 1 + p.batch / p.batches) / p.epochs)))

    def read() -> tuple[list[list[str]], Path, Path | None]:
        engine = ls.engine()
        return engine.learned_sentences(), personal_neural_path(engine.store.path), engine.neural_path

    output: Path | None = None
    result: dict[str, Any] = {"status": "failed", "epochs": 0, "valid_perplexity": None, "path": None}
    try:
        sentences, output, current = await ls.run_background(read)

        def train() -> Any:
            import torch

            from lm_core import neural, training

            torch.set_num_threads(1)
            init = neural.load_checkpoint(current) if current is not None else None
            config = training.TrainConfig(epochs=epochs, max_minutes=minutes, log_every=RETRAIN_LOG_EVERY)
            return training.train_on_sentences(sentences, output, init, config, progress=report, should_stop=cancelled)

        trained = await loop.run_in_executor(ls.training, train)
        finished = trained.stopped != "cancelled"
        ppl = trained.best_valid_perplexity if math.isfinite(trained.best_valid_loss) else None
        result = {
            "status": "finished" if finished else "cancelled",
            "epochs": trained.epochs_run,
            "valid_perplexity": ppl,
            "path": str(output) if output.exists() else None,
        }
        if finished:
            weight = ls.settings.blend_weight
            await ls.run_background(lambda: ls.engine().attach_neural(output, weight))
            ls.diagnose_open_documents()
    except asyncio.CancelledError:
        result["status"] = "cancelled"
    except Exception as exc:  # too little text, a damaged checkpoint, torch missing: said in one line
        log.warning("retraining failed: %s", exc)
        result["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        ls.message(f"nextword could not retrain the neural model: {result['error']}")
    finally:
        end = result["status"]
        if result["valid_perplexity"] is not None:
            end += f": valid perplexity {result['valid_perplexity']:,.1f}"
        progress.end(end)
    return result


def _workspace_roots(ls: NextwordServer) -> list[Path]:
    roots: list[Path] = []
    for folder in (ls.workspace.folders or {}).values():
        parsed = urlparse(folder.uri)
        if parsed.scheme == "file":
            roots.append(Path(unquote(parsed.path)))
    if not roots and ls.workspace.root_path:
        roots.append(Path(ls.workspace.root_path))
    return roots


def _never_learned(ls: NextwordServer, uri: str) -> str | None:
    """Why the document at `uri` must not be learned (credentials by its name or a symbolic link's target,
    `.nextwordignore`, `excludeGlobs`), or None. A document that is not a local file (`untitled:`,
    `vscode-remote://`) is judged by the path in its URI: the credential names and `excludeGlobs` apply (a
    `.nextwordignore` on another machine cannot be read). Secrets inside any document are dropped all the same."""
    from lsp_server.ignore import IgnoreRules, never_learned
    from store.secrets import is_secret_file

    parsed = urlparse(uri)
    if parsed.scheme != "file":
        path = PurePosixPath(unquote(parsed.path) or uri)
        if is_secret_file(path):
            return f"{path.name} holds credentials"
        if IgnoreRules(None, ls.settings.exclude_globs).ignores(path):
            return "excluded by excludeGlobs"
        return None
    path = Path(unquote(parsed.path))
    roots = [root for root in _workspace_roots(ls) if path.is_relative_to(root)]
    rules = [IgnoreRules.load(root, ls.settings.exclude_globs) for root in roots]
    return never_learned(path, rules or [IgnoreRules(None, ls.settings.exclude_globs)])


def _workspace_text_files(ls: NextwordServer) -> list[Path]:
    """Text files (by suffix) under the workspace folders; never outside them, never hidden files or folders, never
    node_modules, never files that hold credentials (`.env`, keys) or that `.nextwordignore` or `excludeGlobs`
    exclude (excluded folders are not even walked)."""
    from lsp_server.ignore import ALWAYS_SKIPPED_FOLDERS, IgnoreRules, never_learned

    files: list[Path] = []
    for root in _workspace_roots(ls):
        rules = IgnoreRules.load(root, ls.settings.exclude_globs)
        found: list[Path] = []
        for folder, subfolders, names in os.walk(root):
            here = Path(folder)
            subfolders[:] = [
                d
                for d in subfolders
                if not d.startswith(".") and d not in ALWAYS_SKIPPED_FOLDERS and not rules.ignores(here / d, True)
            ]
            for name in names:
                path = here / name
                if name.startswith(".") or path.suffix.lower() not in TEXT_SUFFIXES:
                    continue
                if path.is_file() and not path.is_symlink() and never_learned(path, [rules]) is None:
                    found.append(path)
        files.extend(sorted(found))
    return files


def _flatten(args: Any) -> list[Any]:
    out: list[Any] = []
    for arg in args if isinstance(args, list | tuple) else [args]:
        out.extend(_flatten(arg) if isinstance(arg, list | tuple) else [arg])
    return out


def main(
    tcp: bool = False,
    host: str = "127.0.0.1",
    port: int = 2087,
    db: str | None = None,
    empty_store: bool = False,
    handover: Handover | None = None,
) -> None:
    """Serve over stdio (default) or TCP (bound to `host`, 127.0.0.1 unless asked otherwise); on stdio, after the
    prelude's `handover` if it served first (`lsp_server.prelude.serve`)."""
    configure_process()
    logging.getLogger("pygls").setLevel(logging.CRITICAL)  # it logs every cancelled request with a traceback
    if db:
        server.settings = Settings(database=db)
    server.empty_store = empty_store
    if tcp:
        server.start_tcp(host, port)
    else:
        server.serve_stdio(handover)
