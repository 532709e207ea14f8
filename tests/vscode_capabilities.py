"""Record the initialize request a real VS Code sends through the extension, as the capabilities fixture of
clients/vscode/test/e2e.test.ts: code-server with the built .vsix opens a Markdown file; the server command is a
wrapper that copies what VS Code writes to the server into a file, and the first message's clientInfo and
capabilities are kept.

    python -m tests.vscode_capabilities --code-server .editors/CS93/node_modules/.bin/code-server \\
        --node /usr/bin --out clients/vscode/test/fixtures/vscode-1.93.1-capabilities.json

(code-server 4.93.1 is VS Code 1.93.1, the oldest code-server on npm that the extension's engine range ^1.91
admits; it runs on Node 20.) tests/test_vscode_e2e.py compares the fixture with what the VS Code it runs sends.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.test_vscode_e2e import open_file, running_vscode, wait_until


def read_messages(raw: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages in `raw` (LSP base protocol: Content-Length headers, a blank line, the JSON body)."""
    messages = []
    while raw:
        header, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            break
        length = next(
            int(line.split(b":")[1]) for line in header.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        if len(rest) < length:
            break
        messages.append(json.loads(rest[:length]))
        raw = rest[length:]
    return messages


def recording_server(folder: Path) -> tuple[Path, Path]:
    """A server command that copies its input to a file, and that file."""
    record = folder / "to-server.bin"
    wrapper = folder / "recording-nextword"
    wrapper.write_text(f'#!/bin/sh\ntee "{record}" | exec "{sys.executable}" -m lsp_server.cli serve "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, record


def initialize_request(server: Path | None, node: Path | None, folder: Path) -> dict[str, Any]:
    """The initialize request's params that the extension sends from the VS Code at `server`."""
    wrapper, record = recording_server(folder)
    workspace = folder / "notes"
    workspace.mkdir()
    (workspace / "a.md").write_text("The cat sat on the mat.\n")
    settings = {"nextword.server.command": str(wrapper), "nextword.neuralModel": "none", "nextword.learning": False}
    with running_vscode(folder / "home", settings, server, node) as vscode:
        page = vscode.open(workspace, "capabilities")
        open_file(page, "a.md")
        wait_until(lambda: record.exists() and read_messages(record.read_bytes()), "the initialize request", 60)
        page.close()
    first = read_messages(record.read_bytes())[0]
    assert first["method"] == "initialize", first
    return first["params"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code-server", type=Path, default=None, help="the code-server executable")
    parser.add_argument("--node", type=Path, default=None, help="the folder of the `node` it runs on")
    parser.add_argument("--out", type=Path, required=True, help="the fixture to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        params = initialize_request(args.code_server, args.node, Path(tmp))
    version = params["clientInfo"]["version"]
    fixture = {
        "source": f"the initialize request of VS Code {version} (code-server) through the nextword extension, "
        "recorded by tests/vscode_capabilities.py",
        "clientInfo": params["clientInfo"],
        "capabilities": params["capabilities"],
    }
    args.out.write_text(json.dumps(fixture, indent=2) + "\n")
    print(f"{args.out}: {params['clientInfo']}")


if __name__ == "__main__":
    main()
