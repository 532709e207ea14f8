"""Where nextword keeps its files, and the default model it ships.

The user's store defaults to `$XDG_DATA_HOME/nextword/nextword.db` (`~/.local/share/nextword/nextword.db`), or the
path in `NEXTWORD_DB`. On first use it is seeded from the shipped default model (an n-gram store built from
WikiText-2, gzip-compressed inside the package), so nextword completes text with no corpus around.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import BinaryIO

from lm_core.files import make_private_folder, open_private
from store.errors import StoreError

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_MODEL = DATA_DIR / "default-ngram.db.gz"  # gzip: a first start decompresses it in ~0.25 s (xz: ~1 s)
DEFAULT_NEURAL_MODEL = DATA_DIR / "default-neural.pt"  # an LSTM over the same tokens, blended with the store
DEFAULT_BASE_NAME = "WikiText-2 train (CC BY-SA 3.0)"  # the shipped store's base source
DEFAULT_NEURAL = "default"  # the neuralModel setting that picks a model by itself (see neural_model_path)
NO_NEURAL = ("", "none", "off")  # neuralModel settings that mean the n-gram model alone


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "nextword"


def default_db_path() -> Path:
    """The store the CLI and the server use when none is named."""
    override = os.environ.get("NEXTWORD_DB")
    return Path(override).expanduser() if override else user_data_dir() / "nextword.db"


def seed_from_default_model(path: Path, model: Path = DEFAULT_MODEL) -> bool:
    """Create the store at `path` from the shipped default model if there is no store there yet.

    Returns True if it seeded the store. The copy is written beside the target and renamed into place, so an
    interrupted seed never leaves a partial store; the file gets mode 0600.
    """
    if path.exists() and path.stat().st_size > 0:
        return False
    if not model.exists():
        return False
    make_private_folder(path.parent)
    partial = path.with_name(path.name + ".seeding")
    try:  # a full disk or an interrupt leaves no partial copy behind
        with open_private(partial, "wb") as out, open(model, "rb") as src:
            _gunzip(src, out)
        os.replace(partial, path)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StoreError(
                f"could not copy the shipped model to {path} ({exc.strerror or exc}; a full disk?); nothing was left"
            ) from exc
        raise
    return True


def personal_neural_path(store: Path) -> Path:
    """Where retraining on the user's own text writes its checkpoint: beside the store, `<store>.neural.pt`."""
    return Path(f"{store}.neural.pt")


def neural_model_path(setting: str | None, store: Path, base_sources: list[str]) -> Path | None:
    """The checkpoint the `neuralModel` setting names, or None for the n-gram model alone.

    `default` (the default) picks the user's retrained model beside the store if there is one, else the shipped
    neural model when the store grew from the shipped n-gram model (its `base_sources` include DEFAULT_BASE_NAME),
    since the two were trained on the same tokens; a store built from other text gets no model unless one is named.
    `""`, `none`, `off` (or None): no neural model. Anything else is a path (`~` expanded).
    """
    if setting is None or setting.strip().lower() in NO_NEURAL:
        return None
    if setting.strip().lower() != DEFAULT_NEURAL:
        return Path(setting).expanduser()
    personal = personal_neural_path(store)
    if personal.exists():
        return personal
    if DEFAULT_BASE_NAME in base_sources and DEFAULT_NEURAL_MODEL.exists():
        return DEFAULT_NEURAL_MODEL
    return None


SEED_CHUNK = 4 << 20  # compressed bytes inflated at a time: long calls that let go of the interpreter lock (the
# server imports the model's modules meanwhile: `lsp_server.prelude.open_engine`)


def _gunzip(src: BinaryIO, out: BinaryIO) -> None:
    """Write the gzip stream `src` inflated to `out` (one member; an incomplete stream is an error)."""
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        while chunk := src.read(SEED_CHUNK):
            out.write(inflater.decompress(chunk))
        out.write(inflater.flush())
    except zlib.error as exc:
        raise StoreError(f"the shipped model is damaged ({exc}): reinstall nextword") from exc
    if not inflater.eof:
        raise StoreError("the shipped model is truncated: reinstall nextword")
