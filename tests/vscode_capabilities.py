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
import tempfile
from pathlib import Path
from typing import Any

from tests.test_vscode_e2e import initialize_params, running_vscode


def record(server: Path | None, node: Path | None, folder: Path) -> dict[str, Any]:
    """The initialize request's params that the extension sends from the VS Code at `server`."""
    settings = {"nextword.server.args": ["-m", "lsp_server.cli", "serve"], "nextword.neuralModel": "none"}
    with running_vscode(folder / "home", settings, server, node) as vscode:
        return initialize_params(vscode, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code-server", type=Path, default=None, help="the code-server executable")
    parser.add_argument("--node", type=Path, default=None, help="the folder of the `node` it runs on")
    parser.add_argument("--out", type=Path, required=True, help="the fixture to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        params = record(args.code_server, args.node, Path(tmp))
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
