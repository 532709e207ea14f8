"""The prelude (`lsp_server.prelude`): `nextword serve` answers `initialize` and the first completions before the LSP
library is loaded, then hands over to pygls, which must end up exactly where it would have been had it read every
message itself: the same answer to `initialize`, the same documents, every request answered once."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.capabilities import ServerCapabilitiesBuilder
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import PositionCodec

from lsp_server.positions import apply_edit
from lsp_server.prelude import Prelude, _parse_frame, initialize_result
from lsp_server.server import server

REPO = Path(__file__).resolve().parent.parent
VSCODE = json.loads((REPO / "clients/vscode/test/fixtures/vscode-1.93.1-capabilities.json").read_text())
TEXT = "The cat sat on the mat. The dog sat on the rug. The cat sat on the mat. "
URI = "file:///notes/pets.md"


# --- the answer to initialize --------------------------------------------------------------------------------------
def pygls_initialize_result(params: dict[str, Any]) -> dict[str, Any]:
    """What pygls answers this server for `params` (as `LanguageServerProtocol.lsp_initialize` builds it)."""
    protocol = server.protocol
    converter = protocol._converter
    client = converter.structure(params, types.InitializeParams).capabilities
    encoding = ServerCapabilitiesBuilder.choose_position_encoding(client)
    features = set({**protocol.fm.features, **protocol.fm.builtin_features})
    capabilities = ServerCapabilitiesBuilder(
        client,
        features,
        protocol.fm.feature_options,
        list(protocol.fm.commands),
        server._text_document_sync_kind,
        server._notebook_document_sync,
        encoding,
    ).build()
    result = types.InitializeResult(capabilities=capabilities, server_info=protocol.server_info)
    return json.loads(json.dumps(converter.unstructure(result)))


CLIENTS = {
    "no capabilities": {},
    "VS Code 1.93": VSCODE["capabilities"],
    "UTF-8 first (Neovim)": {"general": {"positionEncodings": ["utf-8", "utf-16", "utf-32"]}},
    "UTF-32 only": {"general": {"positionEncodings": ["utf-32"]}},
    "unknown encodings": {"general": {"positionEncodings": ["ucs-2", "UTF-8"]}},
    "no save hooks": {"textDocument": {"synchronization": {"willSave": False, "willSaveWaitUntil": False}}},
    "one save hook": {"textDocument": {"synchronization": {"willSave": True}}},
    "notebooks, renames, file operations": {
        "notebookDocument": {"synchronization": {"dynamicRegistration": True}},
        "textDocument": {"rename": {"prepareSupport": True}},
        "workspace": {"fileOperations": {"didCreate": True, "willRename": True}, "workspaceFolders": True},
    },
}


@pytest.mark.parametrize("client", list(CLIENTS.values()), ids=list(CLIENTS))
def test_the_prelude_answers_initialize_as_pygls_does(client: dict[str, Any]) -> None:
    params = {"processId": None, "rootUri": None, "capabilities": client}
    assert initialize_result(params) == pygls_initialize_result(params)


# --- documents kept before pygls ----------------------------------------------------------------------------------
PIECES = ["a", "é", "😀", "\n", "\r\n", " ", "word", "\u2028", "x\ty", ""]


def random_text(rng: random.Random, pieces: int) -> str:
    return "".join(rng.choice(PIECES) for _ in range(pieces))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
def test_an_edit_changes_the_preludes_copy_as_pygls_changes_its_own(encoding: str) -> None:
    rng = random.Random(encoding)
    for _ in range(300):
        source = random_text(rng, rng.randrange(0, 12))
        lines = source.count("\n") + 2
        start = {"line": rng.randrange(0, lines + 1), "character": rng.randrange(0, 12)}
        end = {"line": rng.randrange(start["line"], lines + 2), "character": rng.randrange(0, 12)}
        edit = {"range": {"start": start, "end": end}, "text": random_text(rng, rng.randrange(0, 4))}
        document = TextDocument(
            URI, source, sync_kind=types.TextDocumentSyncKind.Incremental, position_codec=PositionCodec(encoding)
        )
        change = types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(**start), end=types.Position(**end)), text=edit["text"]
        )
        document.apply_change(change)
        assert apply_edit(source, edit, encoding) == document.source, (source, edit)
    assert apply_edit("old text", {"text": "all new"}, encoding) == "all new"


# --- reading messages -----------------------------------------------------------------------------------------------
def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", **message}).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_a_frame_is_read_whole_and_anything_unusual_is_left_to_pygls() -> None:
    whole = frame({"method": "initialized", "params": {}})
    assert _parse_frame(bytearray(whole + b"Content-")) == (
        len(whole),
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
    )
    assert _parse_frame(bytearray(whole[:-3])) is None  # not all there yet
    typed = whole.replace(b"\r\n\r\n", b"\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n", 1)
    assert _parse_frame(bytearray(typed))[0] == len(typed)  # type: ignore[index]
    assert _parse_frame(bytearray(b"garbage" + whole)) is False
    assert _parse_frame(bytearray(b"Content-Length: 5\r\n\r\n{nope")) is False
    assert _parse_frame(bytearray(b"Content-Length: 2\r\n\r\n[]")) is False
    assert _parse_frame(bytearray(b"X-Other: 1\r\n" + whole)) is False
    assert _parse_frame(bytearray(whole.replace(b"Content-Length", b"content-length"))) is False  # pygls reads not
    assert _parse_frame(bytearray(whole.replace(b"Content-Length: ", b"Content-Length:  "))) is False


# --- serving and handing over, in process ----------------------------------------------------------------------
def run_prelude(tmp_path: Path, messages: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]], bytes]:
    """Run a prelude on a store at tmp_path with `messages` waiting on its input; (handover, its answers, the
    bytes of the messages)."""
    data = b"".join(frame(m) for m in messages)
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    out = io.BytesIO()
    prelude = Prelude(str(tmp_path / "s.db"), empty_store=True, stdin=read_end, stdout=out)
    try:
        handover = prelude.run()
    finally:
        os.close(read_end)
    answers, rest = [], out.getvalue()
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        length = int(head.split(b":")[1])
        answers.append(json.loads(rest[:length]))
        rest = rest[length:]
    return handover, answers, data


def learned_store(tmp_path: Path) -> None:
    from lsp_server.engine import Engine

    engine = Engine.open(tmp_path / "s.db", create=True)
    engine.learn("pets", TEXT * 3)
    engine.close()


def initialize(request_id: int = 1, **capabilities: Any) -> dict[str, Any]:
    # the n-gram model alone, not adapting: answers that do not depend on when the neural model or the mixture is ready
    options = {"suggestions": 3, "neuralModel": "none", "adaptation": False}
    params = {"processId": None, "rootUri": None, "capabilities": capabilities, "initializationOptions": options}
    return {"id": request_id, "method": "initialize", "params": params}


def completion(request_id: int, line: int, character: int, method: str = "textDocument/completion") -> dict[str, Any]:
    position = {"line": line, "character": character}
    return {"id": request_id, "method": method, "params": {"textDocument": {"uri": URI}, "position": position}}


def ghost_text(request_id: int, line: int, character: int) -> dict[str, Any]:
    request = completion(request_id, line, character, "textDocument/inlineCompletion")
    request["params"]["context"] = {"triggerKind": 2}  # automatic
    return request


def test_the_prelude_answers_completions_and_hands_pygls_what_it_read_and_what_it_did_not(tmp_path: Path) -> None:
    learned_store(tmp_path)
    opened = {"uri": URI, "languageId": "markdown", "version": 1, "text": "The cat sat on the mat.\nThe dog "}
    edit = {"range": {"start": {"line": 1, "character": 8}, "end": {"line": 1, "character": 8}}, "text": "sat on the "}
    served = [
        initialize(),
        {"method": "initialized", "params": {}},
        {"method": "textDocument/didOpen", "params": {"textDocument": opened}},
        completion(2, 1, 8),
        {
            "method": "textDocument/didChange",
            "params": {"textDocument": {"uri": URI, "version": 2}, "contentChanges": [edit]},
        },
        completion(3, 1, 19),
        ghost_text(4, 1, 19),
        {"method": "$/cancelRequest", "params": {"id": 3}},
    ]
    left = [completion(5, 1, 3, "textDocument/hover"), completion(6, 1, 19)]
    handover, answers, _data = run_prelude(tmp_path, served + left)

    assert [a["id"] for a in answers] == [1, 2, 3, 4] and handover.answered == {1, 2, 3, 4}
    assert answers[0]["result"]["capabilities"]["completionProvider"] == {"triggerCharacters": [" "]}
    assert answers[1]["result"]["items"][0]["label"] == "sat"  # "The dog " -> sat
    after_edit = [i["label"] for i in answers[2]["result"]["items"]]
    assert after_edit[0] == "rug" and answers[2]["result"]["items"][0]["textEdit"]["range"]["start"] == {
        "line": 1,
        "character": 19,
    }
    assert answers[3]["result"]["items"][0]["range"]["end"] == {"line": 1, "character": 19}
    # pygls reads again initialize, initialized, the open and the edit (not the answered requests, not the cancel),
    # then the hover and the completion the prelude did not read
    expected = b"".join(frame(m) for m in [served[0], served[1], served[2], served[4], *left])
    assert handover.pending == expected
    assert handover.engine is not None and handover.database == str(tmp_path / "s.db")
    assert handover.completions == 3 and handover.replayed == {1}  # only initialize's answer is pygls' to drop
    handover.engine.close()


def test_a_setting_that_names_another_store_is_left_to_the_server(tmp_path: Path) -> None:
    learned_store(tmp_path)
    other = {"method": "workspace/didChangeConfiguration", "params": {"settings": {"nextword": {"database": "x.db"}}}}
    same = {"method": "workspace/didChangeConfiguration", "params": {"settings": {"nextword": {"suggestions": 2}}}}
    handover, answers, _data = run_prelude(tmp_path, [initialize(), same, other])
    assert [a["id"] for a in answers] == [1]
    assert handover.pending == frame(initialize()) + frame(same) + frame(other)
    assert handover.engine is not None
    handover.engine.close()


def test_a_client_that_does_not_start_with_initialize_meets_pygls_alone(tmp_path: Path) -> None:
    messages = [{"method": "initialized", "params": {}}, initialize()]
    handover, answers, data = run_prelude(tmp_path, messages)
    assert answers == [] and handover.pending == data and handover.engine is None and handover.answered == set()


def test_a_store_that_cannot_be_opened_is_left_to_the_server_to_report(tmp_path: Path) -> None:
    (tmp_path / "s.db").write_bytes(b"not a database" * 100)
    messages = [initialize(), {"method": "initialized", "params": {}}, completion(2, 0, 0)]
    handover, answers, data = run_prelude(tmp_path, messages)
    assert [a["id"] for a in answers] == [1]  # initialize is answered; pygls answers the completion (an error)
    assert handover.engine is None and handover.pending == data


# --- the real server, over pipes ------------------------------------------------------------------------------------
class Client:
    """A JSON-RPC client over a server process's pipes that keeps every message the server sent."""

    def __init__(self, argv: list[str], tmp_path: Path) -> None:
        self.stderr = (tmp_path / f"stderr-{len(list(tmp_path.glob('stderr-*')))}.txt").open("wb")
        env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env, cwd=REPO
        )
        self.received: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame(message))
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = 0
        while (line := self.proc.stdout.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            length = int(value) if name.lower() == "content-length" else length
        message = json.loads(self.proc.stdout.read(length))
        self.received.append(message)
        return message

    def answer_to(self, request_id: int) -> Any:
        """The answer to a request (its result, or its error), read already or now (answers may come in any order)."""
        while True:
            for message in self.received:
                if message.get("id") == request_id and "method" not in message:
                    return message.get("result", message.get("error"))
            self.read()

    def session(self) -> list[Any]:
        """The answers to a short session: initialize, then completions and ghost text typed straight away, then a
        hover (which only pygls serves), then a completion again."""
        opened = {"uri": URI, "languageId": "markdown", "version": 1, "text": "The cat sat on the "}
        answers = []
        self.send(initialize(1, general={"positionEncodings": ["utf-8"]}))
        answers.append(self.answer_to(1))
        self.send({"method": "initialized", "params": {}})
        self.send({"method": "textDocument/didOpen", "params": {"textDocument": opened}})
        self.send(completion(2, 0, 19))
        self.send(ghost_text(3, 0, 19))
        answers += [self.answer_to(2), self.answer_to(3)]
        time.sleep(2.5)  # pygls is imported by now: what follows is its
        self.send(completion(4, 0, 5, "textDocument/hover"))
        self.send(completion(5, 0, 19))
        answers += [self.answer_to(4), self.answer_to(5)]
        self.send({"id": 6, "method": "shutdown", "params": None})
        self.answer_to(6)
        self.send({"method": "exit", "params": None})
        assert self.proc.wait(timeout=30) == 0
        self.stderr.close()
        return answers


def test_a_session_served_first_by_the_prelude_reads_as_one_served_by_pygls_alone(tmp_path: Path) -> None:
    learned_store(tmp_path)
    db = str(tmp_path / "s.db")
    with_prelude = Client([sys.executable, "-m", "lsp_server.cli", "serve", "--db", db], tmp_path)
    answers = with_prelude.session()
    log = (tmp_path / "stderr-0.txt").read_text()
    assert "answered 2 completions in the first" in log  # the completion and the ghost text: the prelude's
    pygls_alone = [sys.executable, "-c", f"from lsp_server.server import main; main(db={db!r})"]
    assert answers == Client(pygls_alone, tmp_path).session()
    assert answers[1]["items"][0]["label"] == "mat" and answers[3]["contents"]["value"].startswith("**cat**")
    ids = [m["id"] for m in with_prelude.received if "id" in m and "method" not in m]
    assert ids == [1, 2, 3, 4, 5, 6]  # every request answered once: pygls' answer to initialize was dropped


def test_params_pygls_cannot_read_are_left_to_it_to_answer(tmp_path: Path) -> None:
    learned_store(tmp_path)
    no_context = completion(2, 0, 0, "textDocument/inlineCompletion")  # lsprotocol requires a context
    negative = completion(3, -1, 0)
    whole = {"text": "The cat "}
    no_text = {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}}
    opened = {"uri": URI, "languageId": "markdown", "version": 1, "text": ""}
    change = {"textDocument": {"uri": URI, "version": 2}, "contentChanges": [whole]}
    served = [
        initialize(),
        {"method": "textDocument/didOpen", "params": {"textDocument": opened}},
        {"method": "textDocument/didChange", "params": change},
    ]
    for unread in (no_context, negative, {**change, "contentChanges": [whole, no_text]}):
        message = unread if "id" in unread else {"method": "textDocument/didChange", "params": unread}
        handover, answers, data = run_prelude(tmp_path, [*served, message])
        assert [a["id"] for a in answers] == [1] and handover.pending == data
        handover.engine.close()


def test_the_prelude_imports_neither_the_lsp_library_nor_the_models() -> None:
    code = (
        "import sys, json; import lsp_server.cli, lsp_server.prelude; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'pygls', 'lsprotocol', 'cattrs', "
        "'numpy', 'torch', 'sqlite_utils'})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True
    )
    assert json.loads(proc.stdout) == []
