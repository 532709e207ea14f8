"""The language server over raw stdio: bytes outside any message (no Content-Length header) are dropped and the
next well-framed message is answered; before, the stream stayed out of step for good (alive, never answering)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from lsp_server.framing import LINE_LIMIT, PipeReader, ResyncingStdin

ROOT = Path(__file__).resolve().parent.parent


def frame(message: dict[str, object]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def request(id_: int, method: str, params: dict[str, object]) -> bytes:
    return frame({"jsonrpc": "2.0", "id": id_, "method": method, "params": params})


def read_message(stream: io.BufferedReader) -> dict[str, object]:
    length = None
    while True:
        line = stream.readline()
        assert line, "the server closed its output"
        if line.startswith(b"Content-Length:"):
            length = int(line.split(b":")[1])
        elif line == b"\r\n" and length is not None:
            return json.loads(stream.read(length))


def response_to(stream: io.BufferedReader, id_: int) -> dict[str, object]:
    while True:
        message = read_message(stream)
        if message.get("id") == id_ and "method" not in message:
            return message


def test_the_reader_cuts_what_stands_before_a_header() -> None:
    raw = io.BytesIO(b"\x00\xffgarbageContent-Length: 2\r\n\r\n{}Content-Length: 3\r\n")
    reader = ResyncingStdin(raw)  # type: ignore[arg-type]
    assert reader.readline() == b"Content-Length: 2\r\n"
    assert reader.readline() == b"\r\n"
    assert reader.read(2) == b"{}"
    assert reader.readline() == b"Content-Length: 3\r\n"
    assert reader.dropped == 9


def test_the_pipe_reader_cuts_what_stands_before_a_header_and_drops_overlong_lines() -> None:
    async def read() -> tuple[list[bytes], int]:
        stream = asyncio.StreamReader(limit=LINE_LIMIT)
        stream.feed_data(b"\x00\xffgarbageContent-Length: 2\r\n\r\n{}" + b"x" * (LINE_LIMIT + 10) + b"\n")
        stream.feed_data(b"Content-Length: 3\r\n\r\n[1]Content-Length: 9\r\n\r\n{}")
        stream.feed_eof()
        reader = PipeReader(stream)
        got = [await reader.readline(), await reader.readline(), await reader.readexactly(2)]
        got += [await reader.readline(), await reader.readline(), await reader.readexactly(3)]
        got += [await reader.readline(), await reader.readline(), await reader.readexactly(9), await reader.readline()]
        return got, reader.dropped

    got, dropped = asyncio.run(read())
    assert got[:3] == [b"Content-Length: 2\r\n", b"\r\n", b"{}"]
    assert got[3:6] == [b"Content-Length: 3\r\n", b"\r\n", b"[1]"]  # the overlong line went whole
    assert got[6:] == [b"Content-Length: 9\r\n", b"\r\n", b"{}", b""]  # a body cut short by the end, then the end
    assert dropped == 9 + LINE_LIMIT


def test_unframed_garbage_does_not_put_the_server_out_of_step(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    server = subprocess.Popen(
        [sys.executable, "-m", "lsp_server.cli", "serve", "--db", str(tmp_path / "s.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert server.stdin is not None and server.stdout is not None
    timer = threading.Timer(120, server.kill)  # a server out of step never answers: fail instead of hanging
    timer.start()
    try:
        server.stdin.write(request(1, "initialize", {"processId": None, "rootUri": None, "capabilities": {}}))
        server.stdin.write(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
        server.stdin.flush()
        assert "capabilities" in response_to(server.stdout, 1)["result"]  # type: ignore[operator]
        for id_, garbage in enumerate([b"\x00\xff raw bytes, no header", b'{"jsonrpc": "2.0"}', b"\r\n\r\n"], 2):
            server.stdin.write(garbage)
            server.stdin.write(request(id_, "workspace/executeCommand", {"command": "nextword.statistics"}))
            server.stdin.flush()
            answer = response_to(server.stdout, id_)
            assert "result" in answer and "order" in answer["result"], answer  # type: ignore[operator]
        server.stdin.write(request(99, "shutdown", {}))
        server.stdin.write(frame({"jsonrpc": "2.0", "method": "exit"}))
        server.stdin.flush()
        assert response_to(server.stdout, 99)["result"] is None
        assert server.wait(timeout=30) == 0, server.stderr.read() if server.stderr else ""
    finally:
        timer.cancel()
        server.kill()


def test_a_regular_file_is_not_a_pipe_the_loop_can_watch(tmp_path: Path) -> None:
    """`nextword serve < messages.txt`: the event loop cannot watch a regular file, so the server falls back to
    pygls' thread-pool reader (with `ResyncingStdin`) instead of failing."""
    path = tmp_path / "messages.txt"
    path.write_bytes(request(1, "shutdown", {}))

    async def open_reader() -> PipeReader | None:
        with path.open("rb") as f:
            return await PipeReader.of_pipe(f)

    assert asyncio.run(open_reader()) is None


def test_the_server_reads_messages_from_a_regular_file_too(tmp_path: Path) -> None:
    path = tmp_path / "messages.txt"
    path.write_bytes(
        request(1, "initialize", {"processId": None, "rootUri": None, "capabilities": {}})
        + frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        + request(2, "shutdown", {})
        + frame({"jsonrpc": "2.0", "method": "exit"})
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    with path.open("rb") as messages:
        done = subprocess.run(
            [sys.executable, "-m", "lsp_server.cli", "serve", "--db", str(tmp_path / "s.db")],
            stdin=messages,
            capture_output=True,
            env=env,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr.decode()
    out = io.BufferedReader(io.BytesIO(done.stdout))  # type: ignore[arg-type]
    assert "capabilities" in response_to(out, 1)["result"]  # type: ignore[operator]
    assert response_to(out, 2)["result"] is None


def test_a_save_right_before_exit_is_learned(tmp_path: Path) -> None:
    """A save right before the editor quits is learned at exit (before, its learn was dropped with the event loop's
    tasks when it had not started), and the server then exits."""
    from store.countstore import CountStore

    db = tmp_path / "s.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    server = subprocess.Popen(
        [sys.executable, "-m", "lsp_server.cli", "serve", "--db", str(db), "--empty-store"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert server.stdin is not None and server.stdout is not None
    uri = (tmp_path / "notes.md").as_uri()
    sentences = " ".join(f"The {i}th fox ran over the hill to see the {i + 1}th dog." for i in range(400))
    try:
        server.stdin.write(request(1, "initialize", {"processId": None, "rootUri": None, "capabilities": {}}))
        server.stdin.write(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
        server.stdin.flush()
        response_to(server.stdout, 1)
        for method, params in [
            (
                "textDocument/didOpen",
                {"textDocument": {"uri": uri, "languageId": "markdown", "version": 1, "text": sentences}},
            ),
            ("textDocument/didSave", {"textDocument": {"uri": uri}}),
        ]:
            server.stdin.write(frame({"jsonrpc": "2.0", "method": method, "params": params}))
        server.stdin.write(request(2, "shutdown", {}))  # at once: the learn of the save may not have started
        server.stdin.write(frame({"jsonrpc": "2.0", "method": "exit"}))
        server.stdin.flush()
        started = time.monotonic()
        assert server.wait(timeout=60) == 0, server.stderr.read() if server.stderr else ""
        assert time.monotonic() - started < 30
    finally:
        server.kill()
    store = CountStore.open(db)
    assert [s.name for s in store.sources()] == [uri]
    store.close()
