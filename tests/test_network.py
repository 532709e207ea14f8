"""The server opens no network socket over stdio, and with `--tcp` listens on 127.0.0.1 only (Linux /proc checks)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.fuzz_server import Server
from store.countstore import CountStore

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
TABLES = ("tcp", "tcp6", "udp", "udp6", "raw", "raw6")


def inet_sockets() -> dict[str, tuple[str, str, str]]:
    """Every IPv4/IPv6 socket on the machine: inode -> (table, local address, state)."""
    found = {}
    for table in TABLES:
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            found[fields[9]] = (table, fields[1], fields[3])
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    with CountStore.open(path, order=3, tokenizer="prose", create=True) as store:
        store.learn("corpus", "The cat sat on the mat. The dog sat on the rug.")
    return path


def test_over_stdio_the_server_has_no_network_socket(db: Path, tmp_path: Path) -> None:
    server = Server(db, tmp_path)
    try:
        server.request("initialize", {"processId": None, "capabilities": {}, "rootUri": None})
        item = {"uri": "file:///x.md", "languageId": "markdown", "version": 1, "text": "The cat sat on the "}
        server.send_json({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": item}})
        answer = server.request(
            "textDocument/completion",
            {"textDocument": {"uri": "file:///x.md"}, "position": {"line": 0, "character": 19}},
        )
        assert answer["result"]["items"][0]["label"] == "mat"
        mine = socket_inodes(server.proc.pid)
        assert not mine & inet_sockets().keys()  # only the event loop's own socketpair, if any
    finally:
        server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_with_tcp_the_server_listens_on_127_0_0_1_only(db: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "NEXTWORD_DB": str(tmp_path / "unused.db")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lsp_server.cli", "serve", "--db", str(db), "--tcp", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        listening: list[tuple[str, str, str]] = []
        while time.monotonic() < deadline and not listening:
            sockets = inet_sockets()
            listening = [sockets[i] for i in socket_inodes(proc.pid) if i in sockets and sockets[i][2] == "0A"]
            time.sleep(0.05)
        assert listening, "the server never listened"
        assert listening == [("tcp", f"0100007F:{port:04X}", "0A")]  # 127.0.0.1, this port, LISTEN
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        proc.kill()
        proc.wait()
