"""What the server never learns: files named by `.nextwordignore` (gitignore syntax, at a workspace folder's root),
by the `excludeGlobs` setting (the same syntax), and files that hold credentials by their name (`.env`, private keys,
see `store.secrets.is_secret_file`).

The gitignore syntax supported: blank lines and `#` comments; `*` (anything but `/`), `?` (one character but `/`),
`[...]` classes (`[!...]` negated); `**` as a whole segment (`**/x` at any depth, `x/**` everything inside,
`a/**/b` zero or more folders between); a leading or inner `/` anchors the pattern at the root, otherwise it matches
at any depth; a trailing `/` matches folders only (and so everything in them); `!` re-includes what an earlier
pattern excluded (but, as in git, not inside an excluded folder); `\\` escapes the next character (`\\#`, `\\!`,
`\\ `). The last matching pattern wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from store.secrets import is_secret_path

IGNORE_FILE = ".nextwordignore"
ALWAYS_SKIPPED_FOLDERS = frozenset({"node_modules"})
"""Besides hidden folders (a name starting with "."), never walked when learning a workspace."""


@dataclass(frozen=True)
class Rule:
    pattern: str
    regex: re.Pattern[str]
    negated: bool
    folders_only: bool


def _segment(text: str) -> str:
    """One pattern (without `**` segments) as a regex body."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(re.escape(text[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = text.find("]", i + 2 if text[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = text[i + 1 : end]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                body = body.replace("\\", "\\\\").replace("[", "\\[")
                out.append(f"[^/{body}]" if negate else f"[{body}]")
                i = end + 1
                continue
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def compile_rule(line: str) -> Rule | None:
    """One line of an ignore file as a rule (None for blank lines and comments)."""
    pattern = line.rstrip("\n").rstrip("\r")
    stripped = pattern.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(pattern):
        stripped += " "  # an escaped trailing space is kept
    pattern = stripped
    if not pattern or pattern.startswith("#"):
        return None
    negated = pattern.startswith("!")
    if negated:
        pattern = pattern[1:]
    folders_only = pattern.endswith("/")
    pattern = pattern.rstrip("/")
    if not pattern:
        return None
    anchored = "/" in pattern
    pattern = pattern.lstrip("/")
    parts = pattern.split("/")
    body = ""
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            if last:
                body += ".*" if index == 0 else "/.*"
            elif index == 0:
                body += "(?:.*/)?"
            else:
                body += "/(?:.*/)?"
        else:
            if index > 0 and parts[index - 1] != "**":
                body += "/"
            body += _segment(part)
    regex = ("^" if anchored else "^(?:.*/)?") + body + "$"
    return Rule(line.strip(), re.compile(regex, re.DOTALL), negated, folders_only)


class IgnoreRules:
    """Rules relative to one root folder: its `.nextwordignore` and extra patterns (the `excludeGlobs` setting)."""

    def __init__(self, root: Path | None, patterns: Iterable[str] = ()) -> None:
        self.root = root
        self.rules = [r for r in (compile_rule(p) for p in patterns) if r is not None]

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

    def _matches(self, relative: str, is_folder: bool) -> bool | None:
        """True (excluded) / False (re-included) by the last matching rule, None if no rule matches."""
        verdict = None
        for rule in self.rules:
            if rule.folders_only and not is_folder:
                continue
            if rule.regex.match(relative):
                verdict = not rule.negated
        return verdict

    def ignores(self, path: Path | PurePosixPath | str, is_folder: bool = False) -> bool:
        """Whether `path` (absolute under the root, or relative to it) is excluded, itself or by a parent folder."""
        relative = self.relative(path)
        if relative is None:
            return False
        parts = PurePosixPath(relative).parts
        for depth in range(1, len(parts)):
            if self._matches("/".join(parts[:depth]), True):
                return True
        return bool(self._matches(relative, is_folder))

    def relative(self, path: Path | PurePosixPath | str) -> str | None:
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
