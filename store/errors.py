"""Named errors of the count store. Each message is one line a person can act on."""

from __future__ import annotations


class StoreError(Exception):
    """Base class: anything wrong with a store or with what was asked of it."""


class NotAStoreError(StoreError):
    """The file is not an SQLite database, or is one that nextword did not create. It is left untouched."""


class CorruptStoreError(StoreError):
    """The file is a damaged SQLite database. It is left untouched."""


class StoreMismatchError(StoreError):
    """The store was built with another order, tokenizer or schema version than the one asked for."""


class InputError(StoreError):
    """A file or text to learn from cannot be used: missing, a directory, binary, not UTF-8, or empty."""


class UnknownSourceError(StoreError):
    """Forgetting a source the store never learned."""


class ImportedModelError(StoreError):
    """Learning, forgetting or exporting counts asked of an imported ARPA model, which holds no counts."""
