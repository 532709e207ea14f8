"""The server's memory housekeeping, kept off the work a person waits for: giving the heap memory Python has freed
back to the operating system (`HeapTrimmer`), and running the interpreter's cyclic garbage collector between
completions rather than inside one (`CollectorPacer`).

A long check or learn allocates tens of MB of small objects (scores, candidates, follower lists) and frees them;
glibc's malloc keeps most of that memory mapped for the next allocations, so the server's resident memory stays at
its high-water mark. `malloc_trim` returns the free pages (measured: 20 MB after a cold check of 5,200 words, in
1.3 ms). Elsewhere (macOS, Windows, musl) this is a no-op."""

from __future__ import annotations

import gc
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


COLLECT_POLL_S = 0.01
"""How often the collector's thread looks whether a collection is due (a look costs microseconds)."""
FORCED_COLLECTION_FACTOR = 50
"""A collection runs even while a completion is in flight once this many times the first generation's threshold of
allocations are pending (700 x 50: ~1 MB of small objects at most): memory stays bounded under any load."""


class CollectorPacer:
    """Runs the interpreter's cyclic garbage collector on a thread of its own, while no request a person waits for
    is in flight (`busy` says whether one is), instead of in whichever thread's allocation crosses a threshold.

    With automatic collection every 700 container allocations, the thread that allocated paid for it, most often
    the one answering completions (its vocabulary-wide lists and the learn's rows in the youngest generation):
    in a 200-document soak 1 completion in 40 overlapped a collection (young generation 0.8 ms at the median,
    middle 2 ms, oldest 13-20 ms), and those completions' 99th percentile was 21 ms against 8 ms for the rest.
    Here automatic collection is off (`gc.disable`) while the pacer runs; every COLLECT_POLL_S its thread
    collects as CPython would (the same thresholds and counts, `gc.get_count`: the oldest generation whose count
    passed its threshold; CPython also puts the oldest off until a quarter of its objects are new, which Python
    cannot see, but the server freezes its long-lived tables, `gc.freeze`) once the youngest generation's
    threshold is reached and nothing is in flight. Collecting only decides *when*
    unreachable cycles are freed, never *whether*: reference counting frees everything else at once."""

    def __init__(self, busy: Callable[[], bool], poll_s: float = COLLECT_POLL_S) -> None:
        self.busy = busy
        self.poll_s = poll_s
        self.collections = [0, 0, 0]  # collections run by this pacer, per generation
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_enabled = True

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Turn automatic collection off and start collecting on the pacer's thread (once)."""
        if self._thread is not None:
            return
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nextword-collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the pacer's thread and give collection back to the interpreter (as it was before `start`)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        if self._was_enabled:
            gc.enable()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.collect_if_due()

    def collect_if_due(self) -> int | None:
        """Collect the generation CPython's own policy would (the oldest whose count passed its threshold) when
        the youngest generation's threshold is reached and nothing is in flight, or when FORCED_COLLECTION_FACTOR
        thresholds are pending whatever is in flight; the generation collected, or None."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        if thresholds[0] <= 0 or counts[0] <= thresholds[0]:  # CPython's tests: a count above its threshold
            return None
        if counts[0] <= FORCED_COLLECTION_FACTOR * thresholds[0] and self.busy():
            return None
        generation = 2 if counts[2] > thresholds[2] else 1 if counts[1] > thresholds[1] else 0
        gc.collect(generation)
        self.collections[generation] += 1
        return generation
