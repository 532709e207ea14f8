"""The server's settings: a defaulted dataclass, read from `initializationOptions` and
`workspace/didChangeConfiguration`. A bad value never stops the server: it is reported and the default is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from lm_core.corrections import KINDS
from lm_core.oddities import OddityConfig

ODDITY_THRESHOLD = OddityConfig().threshold_bits

DEFAULT_LANGUAGES = ("plaintext", "markdown", "gitcommit", "restructuredtext", "latex")


@dataclass(frozen=True)
class Settings:
    languages: tuple[str, ...] = DEFAULT_LANGUAGES  # language ids the server completes, checks and learns
    comments: bool = False  # also complete, check and learn the comments of code files (see lsp_server.comments)
    suggestions: int = 10  # completion items per request (1..100)
    oddity_threshold: float = ODDITY_THRESHOLD  # bits: flag a word when a correction makes its window 2**t times
    # likelier (after normalising; some kinds need more, see lm_core.oddities.OddityConfig)
    oddity_kinds: tuple[str, ...] = KINDS  # which kinds of oddity are looked for (lm_core.corrections.KINDS)
    perplexity_diagnostic: bool = True  # publish the document's perplexity as an Information diagnostic
    learning: bool = True  # learn documents on save
    learn_on_change: bool = False  # also learn while typing (debounced)
    inline_completion: bool = True  # multi-word ghost text
    inline_max_words: int = 6  # longest ghost-text continuation
    database: str | None = None  # store path; None: $NEXTWORD_DB or the user's data folder
    debounce_ms: int = 400  # wait after the last change before diagnostics (or learning on change)
    max_document_chars: int = 2_000_000  # larger documents get completions but no diagnostics or learning
    ignored_words: tuple[str, ...] = field(default=())  # never flagged as odd
    exclude_globs: tuple[str, ...] = ()  # files never learned, gitignore syntax, as in .nextwordignore (excludeGlobs)
    neural_model: str = "default"  # a neural checkpoint blended with the n-gram model (see paths.neural_model_path):
    # "default" picks the retrained or the shipped model; "" / "none": the n-gram model alone
    blend_weight: float | None = None  # the neural model's weight, 0..1; None: the checkpoint's, else 0.3
    adaptation: bool = True  # suggest from the adaptive mixture: store model, user layer, document cache (EM weights)
    cache_megabytes: int = 64  # memory for caches (follower lists, SQLite pages, checked sentences), in MiB


_BOUNDS: dict[str, tuple[float, float]] = {
    "suggestions": (1, 100),
    "oddity_threshold": (0.0, 64.0),
    "inline_max_words": (1, 30),
    "debounce_ms": (0, 60_000),
    "max_document_chars": (1_000, 1_000_000_000),
    "cache_megabytes": (8, 16_384),
}
_ALIASES = {
    "maxSuggestions": "suggestions",
    "oddityThreshold": "oddity_threshold",
    "perplexityDiagnostic": "perplexity_diagnostic",
    "learnOnChange": "learn_on_change",
    "inlineCompletion": "inline_completion",
    "inlineMaxWords": "inline_max_words",
    "debounceMs": "debounce_ms",
    "maxDocumentChars": "max_document_chars",
    "ignoredWords": "ignored_words",
    "oddityKinds": "oddity_kinds",
    "databasePath": "database",
}


def _to_snake(name: str) -> str:
    return _ALIASES.get(name, "".join("_" + c.lower() if c.isupper() else c for c in name))


def parse_settings(raw: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Settings from a client's JSON object (camelCase or snake_case keys, optionally under "nextword").

    Returns the settings and one message per rejected value (that value keeps its previous/default value).
    """
    settings = base or Settings()
    if raw is None:
        return settings, []
    if isinstance(raw, dict) and isinstance(raw.get("nextword"), dict):
        raw = raw["nextword"]
    if not isinstance(raw, dict):
        return settings, [f"nextword settings must be an object, not {type(raw).__name__}; using defaults"]
    known = {f.name: f for f in fields(Settings)}
    changes: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        name = _to_snake(str(key))
        if name not in known:
            problems.append(f"unknown nextword setting {key!r} ignored")
            continue
        default = getattr(Settings(), name)
        try:
            changes[name] = _coerce(name, value, default)
        except ValueError as exc:
            problems.append(f"nextword setting {key!r}: {exc}; using {getattr(settings, name)!r}")
    return replace(settings, **changes), problems


def _coerce(name: str, value: Any, default: Any) -> Any:
    if name == "database":
        if value is None or (isinstance(value, str) and value.strip()):
            return value
        raise ValueError("must be a file path or null")
    if name == "neural_model":
        if value is None:
            return "none"
        if isinstance(value, str):
            return value.strip() or "none"
        raise ValueError('must be "default", a checkpoint path, or "none"')
    if name == "oddity_kinds":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            unknown = [v for v in value if v not in KINDS]
            if unknown:
                raise ValueError(f"unknown kind(s) {', '.join(map(repr, unknown))}; known: {', '.join(KINDS)}")
            return tuple(dict.fromkeys(value))
        raise ValueError("must be a list of kinds: " + ", ".join(KINDS))
    if name == "blend_weight":
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
            return float(value)
        raise ValueError(f"must be a number between 0 and 1, or null, not {value!r}")
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"must be true or false, not {value!r}")
    if isinstance(default, tuple):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError("must be a list of strings")
    if isinstance(default, int | float) and not isinstance(value, bool) and isinstance(value, int | float):
        low, high = _BOUNDS[name]
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}, not {value!r}")
        return int(value) if isinstance(default, int) else float(value)
    kind = "a whole number" if isinstance(default, int) else "a number"
    raise ValueError(f"must be {kind}, not {value!r}")
