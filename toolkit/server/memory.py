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
import tracemalloc
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
