"""Files and folders only their owner can read: every file nextword writes is created 0600 and every folder it
creates 0700, whatever the umask (a model, a checkpoint, an export or a report holds what the person wrote)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def make_private_folder(path: Path) -> None:
    """Create `path` and any missing parents, each new one 0700; folders that already exist are left as they are."""
    missing: list[Path] = []
    here = Path(path)
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(folder, FOLDER_MODE)  # mkdir's mode is masked by the umask; be exact


def open_private(path: Path, mode: str = "wb", **kwargs: Any) -> IO[Any]:
    """`open(path, mode)` for writing ("w" or "wb", truncating), the file 0600 even if it existed with wider bits."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_private writes a file from the start: mode 'w' or 'wb', not {mode!r}")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def write_private_bytes(path: Path, data: bytes) -> None:
    with open_private(path, "wb") as f:
        f.write(data)


def write_private_text(path: Path, text: str) -> None:
    with open_private(path, "w", encoding="utf-8") as f:
        f.write(text)
