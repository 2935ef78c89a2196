"""Server memory as the review's /mem endpoint reports it, read after a forced collection.

- ``rss_bytes``: resident set size (psutil), what the OS sees.
- ``live_heap_bytes``: bytes in use in the C heap (glibc ``mallinfo2``: arena + mmapped
  chunks in use). Python objects larger than 512 bytes, and every body-sized buffer, live
  there (pymalloc's small-object arenas are mapped directly and are not counted). It is
  the analogue of Julia's live heap in the review.
- ``malloc_free_bytes``: free bytes glibc keeps in its arenas instead of returning them to
  the OS: the gap between live heap and RSS that per-thread arenas open up.
- ``tracemalloc_*``: Python allocations, only when tracing was started (else null).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import psutil


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]


def _load_mallinfo2() -> Any:
    path = ctypes.util.find_library("c")
    if not path:
        return None
    libc = ctypes.CDLL(path)
    fn = getattr(libc, "mallinfo2", None)  # glibc >= 2.33
    if fn is None:
        return None
    fn.restype = _Mallinfo2
    fn.argtypes = []
    return fn


_mallinfo2 = _load_mallinfo2()
_process = psutil.Process()


def malloc_stats() -> tuple[int, int] | None:
    """(bytes in use, free bytes kept) of the glibc heap, or None off glibc."""
    if _mallinfo2 is None:
        return None
    mi = _mallinfo2()
    return mi.uordblks + mi.hblkhd, mi.fordblks


def memory_report(*, collect: bool = True, reset_peak: bool = False) -> dict[str, Any]:
    if collect:
        gc.collect()
    heap = malloc_stats()
    tracing = tracemalloc.is_tracing()
    current, peak = tracemalloc.get_traced_memory() if tracing else (None, None)
    report: dict[str, Any] = {
        "rss_bytes": _process.memory_info().rss,
        "live_heap_bytes": heap[0] if heap else None,
        "malloc_free_bytes": heap[1] if heap else None,
        "gc_objects": len(gc.get_objects()),
        "tracemalloc": tracing,
        "tracemalloc_current_bytes": current,
        "tracemalloc_peak_bytes": peak,
    }
    if tracing and reset_peak:
        tracemalloc.reset_peak()
    return report


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def rss_bytes_now() -> int:
    """RSS from /proc/self/statm: one read, no psutil object churn (the sampler's path)."""
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * _PAGE_BYTES


class MemorySampler:
    """Samples (seconds since start, RSS, live heap, responses served) every ``interval_s``
    on a thread of its own, without collecting garbage: memory over time, to tell growth
    with traffic from a plateau. Bounded: past ``max_samples`` every other sample is
    dropped and the interval doubles, so a long run keeps an even, bounded series."""

    def __init__(self, interval_s: float, responses: Callable[[], int],
                 max_samples: int = 4096) -> None:
        self.interval_s = interval_s
        self._responses = responses
        self._max = max_samples
        self._lock = threading.Lock()
        self._samples: list[tuple[float, int, int | None, int]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            heap = malloc_stats()
            sample = (round(time.monotonic() - self._t0, 3), rss_bytes_now(),
                      heap[0] if heap else None, self._responses())
            with self._lock:
                self._samples.append(sample)
                if len(self._samples) > self._max:
                    del self._samples[::2]
                    self.interval_s *= 2

    def series(self) -> dict[str, Any]:
        with self._lock:
            samples = list(self._samples)
        return {"interval_s": self.interval_s,
                "fields": ["s", "rss_bytes", "live_heap_bytes", "responses"],
                "samples": samples}

    def stop(self) -> None:
        self._stop.set()
