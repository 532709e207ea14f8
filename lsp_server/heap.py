"""Giving the heap memory Python has freed back to the operating system.

A long check or learn allocates tens of MB of small objects (scores, candidates, follower lists) and frees them;
glibc's malloc keeps most of that memory mapped for the next allocations, so the server's resident memory stays at
its high-water mark. `malloc_trim` returns the free pages (measured: 20 MB after a cold check of 5,200 words, in
1.3 ms). Elsewhere (macOS, Windows, musl) this is a no-op."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

TRIM_INTERVAL_S = 10.0
"""At most one trim in this many seconds (each walks the heap, holding malloc's lock for about a millisecond) ...
"""
LONG_WORK_S = 0.1
"""... except after work this long (a check of a long document, a large learn): its trim costs ~1% of it."""


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim` (from the symbols the process has loaded: no library search at start-up), or None where
    the C library has none."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, TypeError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_UNKNOWN = object()


class HeapTrimmer:
    """Calls `malloc_trim(0)` when asked, at most once every `interval_s` seconds (thread-safe)."""

    def __init__(self, interval_s: float = TRIM_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._trim: object = _UNKNOWN  # looked up at the first trim
        self._last = -float("inf")
        self._lock = threading.Lock()
        self._deferred: threading.Timer | None = None  # the trim promised for the end of the interval

    @property
    def available(self) -> bool:
        """Whether this C library has `malloc_trim`."""
        if self._trim is _UNKNOWN:
            self._trim = _malloc_trim()
        return self._trim is not None

    def trim_if_due(self, after_s: float = 0.0) -> bool:
        """Trim now, after work of `after_s` seconds, unless a trim ran less than `interval_s` ago and the work was
        shorter than LONG_WORK_S (or there is no `malloc_trim`); whether it ran. A trim declined is not lost: one
        runs when the interval is over (on a timer thread), so what the last work freed is returned within
        `interval_s` even when no work follows it."""
        if not self.available:
            return False
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.interval_s and after_s < LONG_WORK_S:
                self._defer(self._last + self.interval_s - now)
                return False
            self._last = now
        self._trim(0)  # type: ignore[operator]
        return True

    def trim_now(self) -> None:
        """Trim at once, whatever the interval (a checkpoint, the end of a session)."""
        if self.available:
            with self._lock:
                self._last = time.monotonic()
            self._trim(0)  # type: ignore[operator]

    @property
    def deferred(self) -> bool:
        """Whether a trim is waiting for the end of the interval."""
        return self._deferred is not None

    def _defer(self, delay_s: float) -> None:
        """Arrange one trim in `delay_s` seconds, unless one is arranged already (called holding the lock)."""
        if self._deferred is None:
            timer = threading.Timer(max(0.0, delay_s), self._run_deferred)
            timer.name = "nextword-heap-trim"
            timer.daemon = True
            self._deferred = timer
            timer.start()

    def _run_deferred(self) -> None:
        with self._lock:
            self._deferred = None
            self._last = time.monotonic()
        self._trim(0)  # type: ignore[operator]
