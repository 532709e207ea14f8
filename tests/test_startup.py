"""Start-up: what `nextword serve` imports before it can answer `initialize`. The models, numpy, the store and torch
are imported once the engine opens (after `initialize`), so the editor's server is ready as soon as the LSP library
is; bench/startup.py measures the seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lm_core.oddities import OddityConfig
from lsp_server.settings import ODDITY_THRESHOLD

REPO = Path(__file__).resolve().parent.parent
LATER = ("numpy", "torch", "lm_core.ngram", "lm_core.tokenize", "lm_core.oddities", "store.countstore", "sqlite_utils")


def test_the_server_answers_initialize_before_importing_the_models() -> None:
    code = (
        "import sys, json; import lsp_server.cli, lsp_server.server; "
        f"print(json.dumps([m for m in {list(LATER)!r} if m in sys.modules]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True
    )
    assert json.loads(proc.stdout) == []


def test_the_settings_default_threshold_is_the_oddity_detectors() -> None:
    assert OddityConfig().threshold_bits == ODDITY_THRESHOLD
