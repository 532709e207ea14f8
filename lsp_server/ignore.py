"""What the server never learns: files named by `.nextwordignore` (gitignore syntax, at a workspace folder's root),
by the `excludeGlobs` setting (the same syntax), and files that hold credentials by their name (`.env`, private keys,
see `store.secrets.is_secret_file`).

The matching is `pathspec.GitIgnoreSpec`, git's own rules (`*`, `?`, classes, `**`, anchoring, negation with the
last match winning, trailing spaces and escapes). `GitIgnoreSpec` answers for files; git also decides for folders
while it walks, and nothing inside an excluded folder can be re-included (`private/` then `!private/keep.md` still
excludes `private/keep.md`). So every parent folder of a path is asked first, of a second spec made of the same
lines with a folder-only pattern's trailing `/` dropped (asked only about folders, `x/` and `x` mean the same). A
line git would reject (a lone `!`, a trailing `\\`) is skipped and named in `IgnoreRules.invalid`; it never stops
the server.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from pathspec import GitIgnoreSpec
from pathspec.patterns.gitignore import GitIgnorePatternError

from store.secrets import is_secret_path

IGNORE_FILE = ".nextwordignore"
ALWAYS_SKIPPED_FOLDERS = frozenset({"node_modules"})
"""Besides hidden folders (a name starting with "."), never walked when learning a workspace."""


def _valid(line: str) -> bool:
    """Whether git accepts `line` as a pattern (blank lines and comments included)."""
    try:
        GitIgnoreSpec.from_lines([line])
    except GitIgnorePatternError:
        return False
    return True


def _as_folder_pattern(line: str) -> str:
    """`line` for asking about folders only: a folder-only pattern (`x/`, trailing spaces dropped as git does)
    without its trailing `/` (a line that would then be invalid, `!/`, is a no-op)."""
    pattern = line if line.endswith("\\ ") else line.rstrip()
    if pattern.endswith("/"):
        pattern = pattern[:-1]
    return pattern if _valid(pattern) else ""


class IgnoreRules:
    """Rules relative to one root folder: its `.nextwordignore` and extra patterns (the `excludeGlobs` setting)."""

    def __init__(self, root: Path | None, patterns: Iterable[str] = ()) -> None:
        self.root = root
        lines = list(patterns)
        self.invalid = [line for line in lines if not _valid(line)]
        valid = [line for line in lines if _valid(line)]
        self.spec = GitIgnoreSpec.from_lines(valid)
        self.folder_spec = GitIgnoreSpec.from_lines([_as_folder_pattern(line) for line in valid])

    @property
    def patterns(self) -> list[str]:
        """The lines that are rules (not blank, not comments, not invalid), in order."""
        return [p.pattern for p in self.spec.patterns if p.include is not None]  # type: ignore[attr-defined]

    @classmethod
    def load(cls, root: Path | None, extra: Iterable[str] = ()) -> IgnoreRules:
        """The root's `.nextwordignore` (if any; an unreadable one is treated as empty), then `extra`."""
        lines: list[str] = []
        if root is not None:
            try:
                lines = (root / IGNORE_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                lines = []
        return cls(root, [*lines, *extra])

    def ignores(self, path: Path | PurePosixPath | str, is_folder: bool = False) -> bool:
        """Whether `path` (absolute under the root, or relative to it) is excluded, itself or by a parent folder."""
        relative = self.relative(path)
        if relative is None:
            return False
        parts = PurePosixPath(relative).parts
        for depth in range(1, len(parts)):
            if self.folder_spec.match_file("/".join(parts[:depth])):
                return True
        return (self.folder_spec if is_folder else self.spec).match_file(relative)

    def relative(self, path: Path | PurePosixPath | str) -> str | None:
        """`path` relative to the root, with "/" separators (None when it lies outside the root)."""
        path = Path(path)
        if path.is_absolute():
            if self.root is None:
                return path.as_posix().lstrip("/")
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                return None
        return path.as_posix()


def never_learned(path: Path, rules: Iterable[IgnoreRules] = ()) -> str | None:
    """Why the file at `path` must not be learned (a short reason), or None if it may be."""
    if is_secret_path(path):  # by its name, or the name of the file a symbolic link leads to
        return f"{path.name} holds credentials"
    for rule_set in rules:
        if rule_set.ignores(path):
            where = f"{IGNORE_FILE} or excludeGlobs" if rule_set.root is not None else "excludeGlobs"
            return f"excluded by {where}"
    return None
