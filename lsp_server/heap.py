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


def _libc_function(name: str, argtypes: list[type], restype: type) -> Callable[..., int] | None:
    """A function of the C library the process has loaded (no library search at start-up), or None where it has
    no such function (not glibc)."""
    import ctypes

    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, TypeError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = restype
    return function


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    import ctypes

    return _libc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)


M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 20
"""Blocks of at least this many bytes come from a mapping of their own, given back to the system when freed. glibc
starts at 128 KB but raises the mark to the size of every mapped block freed, up to 32 MB: once a user layer's
rebuild has freed its multi-MB arrays, the next rebuild's (a little larger each time, as the layer grows) come from
the heap, where they leave holes too small for the next ones; the heap grew by ~13 MB every 100 documents of a
soak while the memory in use stayed flat. A fixed 1 MB keeps those out of the heap, while a completion's
vocabulary-wide arrays (~350 KB) stay in it (a mapping of their own would cost page faults on every completion)."""
TRIM_THRESHOLD_BYTES = 32 << 20
"""Free memory at the top of the heap kept for the next allocations (glibc's automatic trim), set with the mmap
threshold because fixing that one stops glibc from raising this one from its 128 KB: then every completion gave the
top of the heap back and took it again, ~470 page faults and +0.9 ms at the median. The server trims itself after
its background work (`HeapTrimmer`)."""


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD_BYTES and its trim threshold at TRIM_THRESHOLD_BYTES for a
    long-running server, unless the person set `MALLOC_MMAP_THRESHOLD_` themselves; whether it was set (False
    without glibc)."""
    import ctypes
    import os

    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


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
        self.trim_now()
